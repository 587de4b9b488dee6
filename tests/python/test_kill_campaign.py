"""Kills at the moments a random kill rarely lands on, and the kill campaign.

- named kill points (DUS_TEST_KILL_AT, train/fault_injection.h): kill -9 right after a
  checkpoint's rename, before `latest` names it: the resume starts from that checkpoint, not
  the older one `latest` still names; kill -9 before the first checkpoint, then `dus train`
  again: metrics.jsonl holds each step once; SIGTERM inside a save: exit 0 after the next
  step, with its checkpoint; SIGTERM as soon as start-up prints its first line (kernel
  self-tests, model set-up still to come): exit 0 after step 1, with its checkpoint;
- scripts/kill_campaign.py, short: 6 kill -9 and 6 SIGTERM at random moments and at the named
  kill points, each followed by `dus resume`; the script asserts that no checkpoint is
  half-written, that each resume starts at the newest complete checkpoint, that a SIGTERM
  exits 0 with a checkpoint, and that losses, eval records and final weights are bitwise those
  of the uninterrupted run. The full campaign: `scripts/kill_campaign.py --kills 50`.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from dus_testlib import DUS, SRC, make_kjv_dataset, read_metrics, run


def train_steps(run_dir):
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]


class KillPoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-killpoints-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Gen 50:26", "genesis")
        cls.common += ["--set", "run.threads=1", "--set", "checkpoint.every=3", "--set", "eval.every=2"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, name, env=None, check=False):
        run_dir = os.path.join(self.tmp, name)
        proc = run("train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, env=env, check=check)
        return run_dir, proc

    def test_kill_after_rename_resumes_from_the_renamed_checkpoint(self):
        run_dir, proc = self.train("rename", env={"DUS_TEST_KILL_AT": "rename:2"})
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
            self.assertEqual(f.read().strip(), "step_00000003")  # not yet updated
        proc = run("resume", run_dir)
        self.assertRegex(proc.stdout, r"resuming from \S+step_00000006 \(step 6\)")
        self.assertEqual(train_steps(run_dir), list(range(1, 13)))

    def test_train_again_after_a_kill_before_the_first_checkpoint(self):
        run_dir, proc = self.train("restart", env={"DUS_TEST_KILL_AT": "eval:1"})
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        self.assertEqual(train_steps(run_dir), [1, 2])
        self.train("restart", check=True)
        self.assertEqual(train_steps(run_dir), list(range(1, 13)))

    def test_sigterm_inside_a_save_stops_after_the_next_step(self):
        run_dir, proc = self.train("term", env={"DUS_TEST_KILL_AT": "save:1", "DUS_TEST_KILL_SIGNAL": "TERM"})
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("stopped by SIGTERM at step 4", proc.stdout)
        self.assertTrue(os.path.exists(os.path.join(run_dir, "checkpoints", "step_00000004", "state.json")))

    def test_sigterm_during_start_up_stops_after_step_1(self):
        run_dir = os.path.join(self.tmp, "term-start")
        proc = subprocess.Popen(["stdbuf", "-oL", DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir,
                                 *self.common], cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        self.assertTrue(first.startswith("dus train"), first)
        self.assertEqual(proc.returncode, 0, first + out + err)
        self.assertIn("stopped by SIGTERM at step 1", out)
        self.assertTrue(os.path.exists(os.path.join(run_dir, "checkpoints", "step_00000001", "state.json")))


class KillCampaign(unittest.TestCase):
    def campaign(self, sig):
        proc = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "kill_campaign.py"), "--kills", "6",
                               "--signal", sig, "--steps", "24", "--seed", "3"],
                              capture_output=True, text=True, timeout=600)
        print(proc.stdout[-2500:])
        self.assertEqual(proc.returncode, 0, proc.stdout[-6000:] + proc.stderr[-3000:])
        self.assertEqual(re.search(r"kills sent\s+(\d+)", proc.stdout).group(1), "6")
        self.assertRegex(proc.stdout, r"mismatches\s+0\n")

    def test_kill_9(self):
        self.campaign("KILL")

    def test_sigterm(self):
        self.campaign("TERM")


if __name__ == "__main__":
    unittest.main()
