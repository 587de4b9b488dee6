"""scripts/plot_recovery.py on run directories written by the trainer's own writers.

`metrics_sample run-dir DIR` (tests/metrics_sample.cpp) writes metrics.jsonl and recovery.json
of a synthetic up-scaled run (8 layers, one seam) with MetricsLog and RecoveryTracker, so the
plot reads the real formats; `run-dir-plain` a run without scaling (no base_loss, no seams).
Checks: the PNG is written and decodes to a real image, for a scaled run, a run without
scaling, a run without recovery.json, and a metrics.jsonl with a torn last line. Task accuracy:
`tasks` records (and the start record's and recovery.json's baselines, in the schema the trainer
writes for eval.tasks) added to such a run give a third panel whose curves and horizontal lines
carry exactly the values written; recovery.json's task history stands in for missing records;
runs without tasks keep their two panels.
Run by ctest (DUS_METRICS_SAMPLE_BIN and DUS_SOURCE_DIR set).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

SAMPLE = os.environ.get("DUS_METRICS_SAMPLE_BIN", "metrics_sample")
SOURCE = os.environ.get("DUS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PLOT = os.path.join(SOURCE, "scripts", "plot_recovery.py")

# Two tasks evaluated every 40 steps of the sample run (4096 tokens per step).
TASK_STEPS = [40, 80, 120]
TASK_ACC = {"verse_completion": [0.31, 0.36, 0.405], "arc_tiny": [0.22, 0.25, 0.24]}
TASK_BASE = {"verse_completion": (0.35, 0.34, 0.30, 0.29), "arc_tiny": (0.26, 0.27, 0.21, 0.23)}


def load_plot_module():
    spec = importlib.util.spec_from_file_location("plot_recovery", PLOT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_tasks(run, records=True, summary=True):
    """Adds task evaluations to a sample run dir, as the training loop writes them."""
    metrics = os.path.join(run, "metrics.jsonl")
    with open(metrics) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not any(r.get("kind") == "start" for r in lines):  # metrics_sample writes none
        lines.insert(0, {"kind": "start", "step": 0})
    for r in lines:
        if r.get("kind") == "start":
            r["tasks"] = {name: {"items": 200, "base_acc": b[0], "base_acc_norm": b[1],
                                 "scaled_acc_0": b[2], "scaled_acc_norm_0": b[3]}
                          for name, b in TASK_BASE.items()}
    history = {name: [] for name in TASK_ACC}
    for k, step in enumerate(TASK_STEPS):
        tasks = {}
        for name, acc in TASK_ACC.items():
            m = {"items": 200, "acc": acc[k], "acc_stderr": 0.03, "acc_norm": acc[k] + 0.02,
                 "acc_norm_stderr": 0.03, "recovery": None if k == 0 else 0.5 * k}
            tasks[name] = m
            history[name].append(dict(m, step=step, tokens=step * 4096))
        if records:
            lines.append({"kind": "tasks", "step": step, "tokens": step * 4096, "seconds": 1.5 * step,
                          "tasks": tasks})
    with open(metrics, "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    if summary:
        path = os.path.join(run, "recovery.json")
        with open(path) as f:
            s = json.load(f)
        s["tasks"] = [{"name": name, "file": f"tasks/{name}.jsonl", "items": 200, "base_acc": b[0],
                       "base_acc_norm": b[1], "scaled_acc_0": b[2], "scaled_acc_norm_0": b[3],
                       "final_acc": TASK_ACC[name][-1], "final_acc_norm": TASK_ACC[name][-1] + 0.02,
                       "final_recovery": 1.0, "history": history[name]}
                      for name, b in TASK_BASE.items()]
        s["task_eval_seconds"] = 2.5
        with open(path, "w") as f:
            json.dump(s, f)


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
        self.stdout = proc.stdout
        return out

    def task_axis(self, run):
        fig, panels = load_plot_module().make_figure(run)
        self.addCleanup(plt.close, fig)
        self.assertEqual(panels, ["loss", "tasks", "layers"])
        return fig.axes[1]

    def check_task_curves(self, ax):
        by_label = {line.get_label(): line for line in ax.get_lines()}
        for name, acc in TASK_ACC.items():
            curve = by_label[f"{name} acc {acc[-1]:.3f}"]
            self.assertEqual(list(curve.get_xdata()), [s * 4096 for s in TASK_STEPS])
            self.assertEqual(list(curve.get_ydata()), acc)
            self.assertEqual(curve.get_linestyle(), "-")
            norm = by_label[f"{name} acc_norm {acc[-1] + 0.02:.3f}"]
            self.assertEqual(list(norm.get_ydata()), [a + 0.02 for a in acc])
            self.assertEqual(norm.get_linestyle(), "--")
            base, _, scaled, _ = TASK_BASE[name]
            self.assertEqual(list(by_label[f"{name} base_acc {base:.3f}"].get_ydata()), [base, base])
            self.assertEqual(list(by_label[f"{name} scaled_acc_0 {scaled:.3f}"].get_ydata()), [scaled, scaled])
            self.assertEqual(curve.get_color(), norm.get_color())
        self.assertNotEqual(by_label["arc_tiny acc 0.240"].get_color(),
                            by_label["verse_completion acc 0.405"].get_color())

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

    def test_task_accuracy_panel(self):
        run = self.run_dir("run-dir")
        plain_height = mpimg.imread(self.plot(run)).shape[0]
        self.assertIn("(panels: loss, layers)", self.stdout)
        add_tasks(run)
        with_tasks = self.plot(run)
        self.assertIn("(panels: loss, tasks, layers)", self.stdout)
        self.assertGreater(mpimg.imread(with_tasks).shape[0], plain_height)
        self.check_task_curves(self.task_axis(run))

    def test_task_history_from_recovery_json_and_baselines_from_start(self):
        run = self.run_dir("run-dir")
        add_tasks(run, records=False)  # a log cut before the records: recovery.json's history
        self.check_task_curves(self.task_axis(run))
        run = self.run_dir("run-dir-plain")
        add_tasks(run, summary=False)  # no recovery.json tasks yet: the start record's baselines
        self.check_task_curves(self.task_axis(run))
        self.plot(run)

    def test_runs_without_tasks_keep_two_panels(self):
        for mode in ("run-dir", "run-dir-plain"):
            fig, panels = load_plot_module().make_figure(self.run_dir(mode))
            self.assertEqual(panels, ["loss", "layers"])
            self.assertEqual(len([a for a in fig.axes if a.get_label() != "<colorbar>"]), 2)
            plt.close(fig)

    def test_missing_run_dir_is_a_clear_error(self):
        proc = subprocess.run([sys.executable, PLOT, os.path.join(self.tmp.name, "nope"),
                               "--out", os.path.join(self.tmp.name, "x.png")],
                              capture_output=True, text=True)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("metrics.jsonl not found", proc.stderr)


if __name__ == "__main__":
    unittest.main()
