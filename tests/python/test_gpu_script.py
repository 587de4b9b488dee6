"""scripts/gpu_run.sh in its dry run (DUS_GPU_DRY_RUN=1): steps 3-6 on the CPU with tiny sizes
and the normal build, so the script's logic (recipes, kill + resume, the loss comparisons, the
result-line parsing, the report) is checked where there is no GPU.

- the report says PASS for the bitwise resume equality, and shows all DUS steps of both runs;
- the killed run was really killed (exit 137) and resumed from a checkpoint before the kill;
- one rank under `dus launch` gives the single process's losses exactly; two ranks (Gloo on the
  CPU), under the launcher and started by hand on one device, within 1e-5;
- the speed table has a tokens/s figure for dus and for transformers (eager and compiled);
- a broken comparison is caught: the report of a run whose resumed losses were altered says FAIL.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("DUS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DUS = os.environ.get("DUS_BIN", os.path.join(SRC, "build", "dus"))


class GpuScriptDryRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-gpu-dry-")
        cls.work, cls.out = os.path.join(cls.tmp, "work"), os.path.join(cls.tmp, "out")
        # The dus under test is the one ctest names; its build folder is the script's build dir.
        build_dir = os.path.relpath(os.path.dirname(os.path.abspath(DUS)), os.path.abspath(SRC))
        env = dict(os.environ, DUS_GPU_DRY_RUN="1", DUS_GPU_WORK=cls.work, OUT_DIR=cls.out,
                   DUS_BUILD_DIR=build_dir, PYTHON=sys.executable)
        cls.proc = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=SRC, env=env, capture_output=True,
                                  text=True, timeout=600)
        with open(os.path.join(cls.out, "gpu_report.md")) as f:
            cls.report = f.read()
        with open(os.path.join(cls.work, "info.env")) as f:
            cls.info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assertInReport(self, pattern):
        # The report is long: name the pattern, and show only the summary on failure.
        summary = self.report.split("## 1.")[0][-2500:]
        self.assertTrue(re.search(pattern, self.report), f"{pattern!r} not in the report; its top:\n{summary}")

    def step(self, sid):
        with open(os.path.join(self.work, "steps.tsv")) as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        return {r[0]: r for r in rows}[sid]

    def test_report_passes_and_prints(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout[-4000:] + self.proc.stderr[-2000:])
        self.assertIn("overall: PASS", self.report)
        self.assertIn("DRY RUN", self.report)
        self.assertIn("overall: PASS", self.proc.stdout, "the report is printed at the end of stdout")
        self.assertTrue(os.path.getsize(os.path.join(self.out, "gpu_logs.tar.gz")) > 0)

    def test_resume_bitwise_equal(self):
        steps, kill_at = int(self.info["dus_steps"]), int(self.info["kill_at"])
        self.assertInReport(r"\*\*Resume equality: PASS\*\*")
        self.assertInReport(r"\| resume bitwise equal \| PASS \| max \|diff\| 0 over %d steps; "
                            r"weights: all \d+ tensors bitwise equal \|" % steps)
        self.assertEqual(self.step("dus_killed")[1], "137")
        with open(os.path.join(self.work, "logs", "dus_resume.log")) as f:
            m = re.search(r"resuming from \S+ \(step (\d+)\)", f.read())
        self.assertIsNotNone(m)
        self.assertLess(int(m.group(1)), kill_at, "resumed from a checkpoint before the killed step")

    def test_data_parallel_losses(self):
        self.assertInReport(r"\| data parallel launch1 \| PASS \| max rel diff 0 ")
        for name in ("launch2_ddp", "launch2_zero1", "hand2_ddp", "hand2_zero1"):
            m = re.search(r"\| data parallel %s \| PASS \| max rel diff (\S+) " % name, self.report)
            self.assertIsNotNone(m, name)
            self.assertLess(float(m.group(1)), 1e-5)
            self.assertInReport(r"\| %s \| gloo \| %s \|" % (name, self.info["dus_steps"]))

    def test_speed_table(self):
        for impl in ("dus", "transformers eager", "transformers \\+ compile"):
            self.assertInReport(r"\| 2 \| %s \| [\d,]+ \| [\d,]+ \|" % impl)

    def test_altered_loss_is_caught(self):
        # The same work folder with one resumed loss nudged by one ulp: the comparison must fail.
        work = os.path.join(self.tmp, "altered")
        shutil.copytree(self.work, work)
        path = os.path.join(work, "runs", "killed", "metrics.jsonl")
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        last = [r for r in recs if r["kind"] == "train"][-1]
        next_up = struct.unpack("<Q", struct.pack("<d", last["loss"]))[0] + 1
        last["loss"] = struct.unpack("<d", struct.pack("<Q", next_up))[0]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        out = os.path.join(self.tmp, "altered.md")
        subprocess.run([sys.executable, "scripts/gpu_report.py", "report", "--work", work, "--out", out], cwd=SRC,
                       check=True, capture_output=True)
        with open(out) as f:
            text = f.read()
        self.assertIn("**Resume equality: FAIL**", text)
        self.assertIn("overall: FAIL", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
