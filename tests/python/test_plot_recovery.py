"""scripts/plot_recovery.py on run directories written by the trainer's own writers.

`metrics_sample run-dir DIR` (tests/metrics_sample.cpp) writes metrics.jsonl and recovery.json
of a synthetic up-scaled run (8 layers, one seam) with MetricsLog and RecoveryTracker, so the
plot reads the real formats; `run-dir-plain` a run without scaling (no base_loss, no seams).
Checks: the PNG is written and decodes to a real image, for a scaled run, a run without
scaling, a run without recovery.json, and a metrics.jsonl with a torn last line.
Run by ctest (DUS_METRICS_SAMPLE_BIN and DUS_SOURCE_DIR set).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

SAMPLE = os.environ.get("DUS_METRICS_SAMPLE_BIN", "metrics_sample")
SOURCE = os.environ.get("DUS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PLOT = os.path.join(SOURCE, "scripts", "plot_recovery.py")


class PlotRecoveryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def run_dir(self, mode):
        path = os.path.join(self.tmp.name, mode)
        subprocess.run([SAMPLE, mode, path], check=True)
        return path

    def plot(self, run_dir):
        out = os.path.join(self.tmp.name, "plots", os.path.basename(run_dir) + ".png")
        proc = subprocess.run([sys.executable, PLOT, run_dir, "--out", out],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(os.path.exists(out))
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        image = mpimg.imread(out)
        self.assertGreater(image.shape[0], 300)
        self.assertGreater(image.shape[1], 300)
        self.assertGreater(image.std(), 0.01)  # not a blank canvas
        return out

    def test_scaled_run(self):
        run = self.run_dir("run-dir")
        with open(os.path.join(run, "recovery.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["base_loss"], 2.0)
        self.assertEqual(summary["seam"]["seams"][0]["layer"], 4)
        self.assertIsNotNone(summary["milestones"]["recovery_0.5"])
        self.assertGreater(os.path.getsize(self.plot(run)), 20000)

    def test_run_without_scaling(self):
        run = self.run_dir("run-dir-plain")
        with open(os.path.join(run, "recovery.json")) as f:
            summary = json.load(f)
        self.assertIsNone(summary["base_loss"])
        self.assertEqual(summary["seam"]["seams"], [])
        self.plot(run)

    def test_without_recovery_json_and_with_a_torn_line(self):
        run = self.run_dir("run-dir-plain")
        os.remove(os.path.join(run, "recovery.json"))
        with open(os.path.join(run, "metrics.jsonl"), "a") as f:
            f.write('{"kind":"train","step":121,"lo')
        self.plot(run)

    def test_missing_run_dir_is_a_clear_error(self):
        proc = subprocess.run([sys.executable, PLOT, os.path.join(self.tmp.name, "nope"),
                               "--out", os.path.join(self.tmp.name, "x.png")],
                              capture_output=True, text=True)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("metrics.jsonl not found", proc.stderr)


if __name__ == "__main__":
    unittest.main()
