"""What a bad file or a failing disk must not do: crash the process or lose more than the work
since the last good checkpoint. On CPU, with the tiny recipe and the KJV corpus, on real
filesystems (a tmpfs of a few MB, a read-only mount, a file-size limit) rather than mocked
writes.

- `dus prepare --force` over an existing dataset replaces it (it once segfaulted);
- a damaged newest checkpoint of any kind (state.json missing a key, config.json garbage, a
  weight of the wrong shape, a missing moment, no recipe.yaml) is skipped with a warning naming
  it, and the run resumes from the previous one, bitwise;
- a save that fails (disk full, read-only, file-size limit) leaves training going, retries at
  the next checkpoint step, and stops with a clear error after checkpoint.max_failed_saves in a
  row, never touching the last good checkpoint;
- the loss spike guard skips an update and survives a resume; train.skip_batches set on resume
  skips a data range exactly as if it had been set from the start;
- stdout is line-buffered when it is a file: start-up lines appear before the first step ends.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import torch
from safetensors.torch import load_file, save_file

from dus_testlib import DUS, SRC, make_kjv_dataset, read_metrics, run

STEP6, STEP12 = "step_00000006", "step_00000012"


def train_losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def same_weights(test, a, b):
    wa = load_file(os.path.join(a, "final", "model.safetensors"))
    wb = load_file(os.path.join(b, "final", "model.safetensors"))
    test.assertEqual(sorted(wa), sorted(wb))
    for k in wa:
        test.assertTrue(torch.equal(wa[k], wb[k]), k)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def try_mount_tmpfs(path, size_bytes, read_only=False):
    """Mounts a tmpfs of size_bytes at path; False where this machine does not allow it."""
    os.makedirs(path, exist_ok=True)
    opts = f"size={size_bytes}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True).returncode == 0


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


class FaultTolerance(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-faults-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Exo 40:38", "genesis-exodus")
        cls.reference = os.path.join(cls.tmp, "reference")
        run("train", "recipes/tests/base.yaml", "--run-dir", cls.reference, *cls.common)
        cls.mounts = []

    @classmethod
    def tearDownClass(cls):
        for m in cls.mounts:
            umount(m)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, name, *extra, env=None, check=True, preexec_fn=None):
        run_dir = os.path.join(self.tmp, name)
        args = [DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, *extra]
        e = dict(os.environ)
        e.update(env or {})
        proc = subprocess.run(args, capture_output=True, text=True, cwd=SRC, env=e, timeout=600,
                              preexec_fn=preexec_fn)
        if check and proc.returncode != 0:
            raise AssertionError(f"dus train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return run_dir, proc

    # --- files the trainer reads -------------------------------------------------------------

    def test_prepare_force_replaces_an_existing_dataset(self):
        corpus = os.path.join(self.tmp, "force.txt")
        with open(corpus, "w") as f:
            f.write("In the beginning God created the heaven and the earth.\n" * 50)
        tokenizer = self.common[3].split("=", 1)[1]
        out = os.path.join(self.tmp, "force-data")
        run("prepare", "--tokenizer", tokenizer, "--input", corpus, "--lines", "--out", out, "--quiet")
        with open(os.path.join(out, "stale-marker"), "w") as f:
            f.write("from the first prepare")
        proc = run("prepare", "--tokenizer", tokenizer, "--input", corpus, "--lines", "--out", out,
                   "--quiet", "--force", check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(os.path.exists(os.path.join(out, "index.json")))
        self.assertFalse(os.path.exists(os.path.join(out, "stale-marker")), "the old directory was not replaced")
        leftovers = [n for n in os.listdir(self.tmp) if n.startswith("force-data.")]
        self.assertEqual(leftovers, [])

    def damaged_copy(self, name, damage):
        broken = os.path.join(self.tmp, name)
        shutil.copytree(self.reference, broken)
        shutil.rmtree(os.path.join(broken, "final"))
        damage(os.path.join(broken, "checkpoints", STEP12))
        return broken

    def test_damaged_newest_checkpoint_of_any_kind_falls_back(self):
        def drop_key(key):
            def damage(ck):
                path = os.path.join(ck, "state.json")
                with open(path) as f:
                    state = json.load(f)
                del state[key]
                with open(path, "w") as f:
                    json.dump(state, f)
            return damage

        def rewrite_tensor(file, name, make):
            def damage(ck):
                path = os.path.join(ck, file)
                tensors = load_file(path)
                tensors[name] = make(tensors[name])
                save_file(tensors, path)
            return damage

        def drop_tensor(file, name):
            def damage(ck):
                path = os.path.join(ck, file)
                tensors = load_file(path)
                del tensors[name]
                save_file(tensors, path)
            return damage

        def overwrite(file, text):
            def damage(ck):
                with open(os.path.join(ck, file), "w") as f:
                    f.write(text)
            return damage

        with open(os.path.join(self.reference, "checkpoints", STEP12, "config.json")) as f:
            wider = dict(json.load(f), hidden_size=48)
        cases = [
            ("state.json without tokens", drop_key("tokens"), 'missing key "tokens"'),
            ("state.json without loader", drop_key("loader"), 'missing key "loader"'),
            ("state.json without recovery", drop_key("recovery"), 'missing key "recovery"'),
            ("config.json garbage", overwrite("config.json", "{not json"), "config.json"),
            ("config.json of another width", overwrite("config.json", json.dumps(wider)), "config.json implies"),
            ("a weight of the wrong shape", rewrite_tensor("model.safetensors", "model.norm.weight",
                                                           lambda t: t[:-1].clone()), "model.norm.weight"),
            ("a weight in bf16", rewrite_tensor("model.safetensors", "model.norm.weight",
                                                lambda t: t.to(torch.bfloat16)), "expected F32"),
            ("a missing moment", drop_tensor("optimizer.safetensors", "exp_avg_sq.model.norm.weight"),
             "exp_avg_sq.model.norm.weight"),
            ("no recipe.yaml", lambda ck: os.remove(os.path.join(ck, "recipe.yaml")), "no recipe.yaml"),
        ]
        for i, (what, damage, message) in enumerate(cases):
            with self.subTest(what):
                broken = self.damaged_copy(f"damaged-{i}", damage)
                proc = run("resume", broken, check=False)
                self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
                self.assertIn(f"warning: skipping checkpoint {broken}/checkpoints/{STEP12}", proc.stderr)
                self.assertIn(message, proc.stderr)
                self.assertIn(f"resuming from {broken}/checkpoints/{STEP6}", proc.stdout)
                self.assertEqual(train_losses(self.reference), train_losses(broken))
                same_weights(self, self.reference, broken)

    # --- saves that fail ---------------------------------------------------------------------

    def checkpoint_bytes(self):
        return dir_bytes(os.path.join(self.reference, "checkpoints", STEP12))

    def test_disk_full_save_fails_training_goes_on_and_the_retry_succeeds(self):
        # A tmpfs with room for the run's logs and one checkpoint and a half, plus a filler
        # file: the first save fits, the second does not (the first is kept until the second is
        # complete) and fails; the test then frees the filler and the next save succeeds.
        ck = self.checkpoint_bytes()
        mount = os.path.join(self.tmp, "small-fs")
        if not try_mount_tmpfs(mount, int(ck * 1.6) + int(ck * 1.5) + (1 << 20)):
            self.skipTest("cannot mount a tmpfs here (needs root); the file-size-limit test still runs")
        self.mounts.append(mount)
        filler = os.path.join(mount, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * int(ck * 1.5))
        run_dir = os.path.join(mount, "run")
        args = [DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common,
                "--set", "train.steps=24", "--set", "checkpoint.every=8", "--set", "checkpoint.keep=1",
                "--set", "log.tensorboard=false"]
        err_lines = []
        with subprocess.Popen(args, cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stderr:
                err_lines.append(line)
                if "warning: checkpoint at step 16 (periodic) failed" in line:
                    os.remove(filler)  # space comes back before the save at step 24
            out = proc.stdout.read()
            proc.wait(timeout=300)
        err = "".join(err_lines)
        self.assertEqual(proc.returncode, 0, out + err)
        self.assertIn("No space left on device", err)
        self.assertIn("training goes on; the last good checkpoint is step 8", err)
        self.assertEqual(os.listdir(os.path.join(run_dir, "checkpoints")).count("step_00000016"), 0)
        self.assertTrue(os.path.exists(os.path.join(run_dir, "checkpoints", "step_00000024", "state.json")))
        self.assertFalse([n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.endswith(".tmp")])
        records = read_metrics(run_dir)
        self.assertEqual([r["step"] for r in records if r["kind"] == "checkpoint_failed"], [16])
        self.assertEqual([r["step"] for r in records if r["kind"] == "train"], list(range(1, 25)))
        # The failed save changed nothing in training: the same losses as with room to spare.
        roomy, _ = self.train("disk-full-reference", "--set", "train.steps=24", "--set", "checkpoint.every=8",
                              "--set", "checkpoint.keep=1", "--set", "log.tensorboard=false")
        self.assertEqual(train_losses(roomy), train_losses(run_dir))
        same_weights(self, roomy, run_dir)

    def assert_stops_after_failed_saves(self, run_dir, proc, reason):
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn(reason, proc.stderr)
        self.assertIn("warning: checkpoint at step 4 (periodic) failed", proc.stderr)
        self.assertIn("training goes on; the last good checkpoint is none yet (1 of", proc.stderr)
        self.assertIn("2 checkpoint saves in a row failed", proc.stderr)
        self.assertIn("dus resume", proc.stderr)
        steps = [s for s, _ in train_losses(run_dir)]
        self.assertEqual(steps, list(range(1, 9)), "training did not go on between the failed saves")
        self.assertEqual(train_losses(self.reference)[:8], train_losses(run_dir))

    def test_file_size_limit_fails_every_save_then_stops_the_run(self):
        # RLIMIT_FSIZE below a checkpoint's model file: each save fails with EFBIG (dus ignores
        # SIGXFSZ), the logs (small files) still write.
        limit = min(os.path.getsize(os.path.join(self.reference, "checkpoints", STEP12, "model.safetensors")) // 2,
                    1 << 20)

        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        run_dir, proc = self.train("fsize", "--set", "checkpoint.every=4", "--set", "checkpoint.max_failed_saves=2",
                                   check=False, preexec_fn=limit_file_size)
        self.assert_stops_after_failed_saves(run_dir, proc, "File too large")
        self.assertEqual([n for n in os.listdir(os.path.join(run_dir, "checkpoints"))
                          if n.startswith("step_")], [], "a failed save left a directory behind")

    def test_read_only_checkpoint_directory_stops_the_run_after_failed_saves(self):
        run_dir = os.path.join(self.tmp, "read-only")
        checkpoints = os.path.join(run_dir, "checkpoints")
        if not try_mount_tmpfs(checkpoints, 1 << 20, read_only=True):
            self.skipTest("cannot mount a tmpfs here (needs root)")
        self.mounts.append(checkpoints)
        _, proc = self.train("read-only", "--set", "checkpoint.every=4", "--set", "checkpoint.max_failed_saves=2",
                             check=False)
        self.assert_stops_after_failed_saves(run_dir, proc, "Read-only file system")

    def test_a_failed_save_keeps_the_previous_checkpoint(self):
        # Save at 6 succeeds; the directory is then made read-only (remount), so the save at 12
        # fails: step 6 is untouched and the run resumes from it bitwise.
        run_dir = os.path.join(self.tmp, "keeps-previous")
        checkpoints = os.path.join(run_dir, "checkpoints")
        if not try_mount_tmpfs(checkpoints, 16 << 20):
            self.skipTest("cannot mount a tmpfs here (needs root)")
        self.mounts.append(checkpoints)
        args = [DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common,
                "--set", "checkpoint.max_failed_saves=1"]
        with subprocess.Popen(args, cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                if line.startswith("checkpoint ") and STEP6 in line:
                    subprocess.run(["mount", "-o", "remount,ro", checkpoints], check=True)
                    break
            out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 2, out + err)
        self.assertIn("1 checkpoint saves in a row failed", err)
        subprocess.run(["mount", "-o", "remount,rw", checkpoints], check=True)
        self.assertEqual(sorted(n for n in os.listdir(checkpoints) if n.startswith("step_")), [STEP6])
        run("resume", run_dir)
        self.assertEqual(train_losses(self.reference), train_losses(run_dir))
        same_weights(self, self.reference, run_dir)

    # --- training faults ---------------------------------------------------------------------

    def test_loss_spike_guard_skips_the_update_and_resumes_exactly(self):
        guard = ["--set", "train.loss_spike_factor=3", "--set", "train.loss_spike_window=4"]
        # Off by default: a spike is logged but the update happens.
        off, _ = self.train("spike-off", env={"DUS_TEST_SPIKE_STEPS": "9"})
        recs = {r["step"]: r for r in read_metrics(off) if r["kind"] == "train"}
        self.assertFalse(recs[9].get("skipped", False))
        straight, proc = self.train("spike-on", *guard, env={"DUS_TEST_SPIKE_STEPS": "9"})
        recs = {r["step"]: r for r in read_metrics(straight) if r["kind"] == "train"}
        self.assertTrue(recs[9].get("skipped") and recs[9].get("loss_spike"))
        self.assertEqual([s for s, r in recs.items() if r.get("skipped")], [9])
        self.assertIn("warning: step 9: loss", proc.stdout)
        self.assertEqual(train_losses(self.reference)[:8], train_losses(straight)[:8])
        self.assertNotEqual(train_losses(off)[9:], train_losses(straight)[9:])
        # Killed after the checkpoint at 6, resumed: the guard's window came back with it.
        killed, proc = self.train("spike-killed", *guard, env={"DUS_TEST_SPIKE_STEPS": "9", "DUS_TEST_KILL_AT_STEP": "8"},
                                  check=False)
        self.assertEqual(proc.returncode, -9)
        e = dict(os.environ, DUS_TEST_SPIKE_STEPS="9")
        subprocess.run([DUS, "resume", killed], cwd=SRC, env=e, check=True, capture_output=True)
        self.assertEqual(train_losses(straight), train_losses(killed))
        same_weights(self, straight, killed)

    def test_skip_batches_set_on_resume_equals_set_from_the_start(self):
        skip = ["--set", "train.skip_batches=[[7,8]]"]
        straight, _ = self.train("skip-straight", *skip)
        records = read_metrics(straight)
        self.assertEqual([r["step"] for r in records if r["kind"] == "skip"], [7, 8])
        self.assertEqual([s for s, _ in train_losses(straight)], [1, 2, 3, 4, 5, 6, 9, 10, 11, 12])
        self.assertEqual(train_losses(self.reference)[:6], train_losses(straight)[:6])
        killed, proc = self.train("skip-killed", env={"DUS_TEST_KILL_AT_STEP": "8"}, check=False)
        self.assertEqual(proc.returncode, -9)
        run("resume", killed, *skip)  # a known bad range learned after the fact
        self.assertEqual(train_losses(straight), train_losses(killed))
        same_weights(self, straight, killed)
        proc = run("resume", killed, "--set", "train.skip_batches=[[9,3]]", check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("train.skip_batches", proc.stderr)

    # --- messages ----------------------------------------------------------------------------

    def test_stdout_to_a_file_is_line_buffered(self):
        # Hung inside step 1: nothing flushes stdout explicitly before then, so the start-up
        # lines reach the file only if stdout is line-buffered.
        run_dir = os.path.join(self.tmp, "line-buffered")
        log = os.path.join(self.tmp, "line-buffered.log")
        e = dict(os.environ, DUS_TEST_HANG_AT_STEP="1")
        with open(log, "w") as f:
            proc = subprocess.Popen([DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common],
                                    cwd=SRC, stdout=f, stderr=subprocess.STDOUT, env=e)
        try:
            deadline = time.monotonic() + 120
            text = ""
            while time.monotonic() < deadline and "batch            " not in text:
                time.sleep(0.5)
                with open(log) as f:
                    text = f.read()
            self.assertIsNone(proc.poll(), "the run should still be inside step 1")
            for line in ("dus train        run", "model            from scratch", "batch            "):
                self.assertIn(line, text)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    unittest.main()
