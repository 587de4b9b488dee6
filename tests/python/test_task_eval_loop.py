"""Task accuracy inside the training loop (eval.tasks), checked against `dus eval` run apart.

A 4-layer base is pretrained on Proverbs 1-9; the DUS m=1 run (6 layers) scores a 50-item
multiple-choice task (test_eval_parity's, from Proverbs 10-16) on the base, on the scaled model
and every 8 steps. Asserted:
  * base_acc / scaled_acc_0 in metrics.jsonl equal `dus eval` on the base model directory and on
    the model `dus scale` writes with the same plan; the last `tasks` record equals `dus eval`
    on the run's final checkpoint (acc, acc_norm and their stderrs, exactly: same weights, fp32);
  * `tasks` records at the steps eval.tasks_every gives (and the last step), TensorBoard tags
    tasks/<name>/acc and acc_norm, recovery.json's tasks section and `dus report`'s lines;
  * killed with SIGKILL after a task evaluation and resumed: the task records and recovery.json's
    tasks equal the uninterrupted run's (seconds aside);
  * 2 ranks (`dus launch --nproc 2`, Gloo; each scores half the items) give the 1-rank base and
    scaled accuracies;
  * a bad task file or eval.tasks without data.tokenizer stops the run before step 1, named.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dus_testlib import make_kjv_dataset, read_metrics, run  # noqa: E402
from test_eval_parity import make_task  # noqa: E402

TASK = "dus_kjv_mc"


def eval_json(model, task, *extra):
    """`dus eval MODEL --tasks TASK` -> the task's report."""
    out = model.rstrip("/") + ".eval.json"
    run("eval", model, "--tasks", task, "--batch", "4", "--out", out, *extra)
    with open(out) as f:
        return json.load(f)["tasks"][0]


def metrics_of(report):
    return {k: report[k] for k in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")}


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class TaskEvalLoop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-task-loop-")
        cls.common = make_kjv_dataset(cls.tmp, "Prov 1:1-Prov 9:18", "proverbs")
        cls.tokenizer = os.path.join(cls.tmp, "tokenizer", "tokenizer.model")
        cls.task = os.path.join(cls.tmp, TASK + ".jsonl")
        make_task(cls.task)
        cls.base_run = os.path.join(cls.tmp, "base")
        run("train", "recipes/tests/base.yaml", "--run-dir", cls.base_run, *cls.common)
        cls.base = os.path.join(cls.base_run, "final")
        shutil.copy(cls.tokenizer, cls.base)  # `dus eval` takes the tokenizer beside the weights
        # fp32 everywhere and the plain ATen ops: the loop and `dus eval` compute the same numbers.
        cls.args = ["--set", f"model.init_from={cls.base}", "--set", "train.steps=12", "--set", "eval.every=4",
                    "--set", "checkpoint.every=6", "--set", "kernels=off", "--set", f"eval.tasks=[{cls.task}]",
                    "--set", "eval.tasks_every=8", *cls.common]
        cls.run_dir = os.path.join(cls.tmp, "dus")
        cls.proc = run("train", "recipes/tests/dus.yaml", "--run-dir", cls.run_dir, *cls.args)
        cls.records = read_metrics(cls.run_dir)
        cls.start = [r for r in cls.records if r["kind"] == "start"][0]
        cls.task_records = [r for r in cls.records if r["kind"] == "tasks"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_start_scores_equal_dus_eval_on_base_and_scaled_models(self):
        start = self.start["tasks"][TASK]
        self.assertEqual(start["items"], 50)
        base = eval_json(self.base, self.task)
        self.assertEqual((start["base_acc"], start["base_acc_norm"]), (base["acc"], base["acc_norm"]))
        scaled_dir = os.path.join(self.tmp, "scaled")
        run("scale", "--base", self.base, "--m", "1", "--out", scaled_dir)
        scaled = eval_json(scaled_dir, self.task)
        self.assertEqual((start["scaled_acc_0"], start["scaled_acc_norm_0"]), (scaled["acc"], scaled["acc_norm"]))
        print(f"\nbase acc {base['acc']:.2f} / {base['acc_norm']:.2f}, scaled {scaled['acc']:.2f} / "
              f"{scaled['acc_norm']:.2f} (50 items of 2-5 choices, chance 0.32)", flush=True)
        self.assertIn("base task", self.proc.stdout)
        self.assertIn("scaled task", self.proc.stdout)

    def test_records_at_tasks_every_and_last_equal_dus_eval_on_final_checkpoint(self):
        self.assertEqual([r["step"] for r in self.task_records], [8, 12])
        for r in self.task_records:
            self.assertEqual(r["tokens"], r["step"] * 512)
            self.assertGreater(r["seconds"], 0)
        final = eval_json(self.run_dir, self.task)  # the newest checkpoint: step 12
        last = self.task_records[-1]["tasks"][TASK]
        self.assertEqual({k: last[k] for k in metrics_of(final)}, metrics_of(final))
        with open(os.path.join(self.run_dir, "recovery.json")) as f:
            summary = json.load(f)
        (entry,) = summary["tasks"]
        self.assertEqual(entry["name"], TASK)
        self.assertEqual(entry["final_acc"], final["acc"])
        self.assertEqual(entry["base_acc"], self.start["tasks"][TASK]["base_acc"])
        self.assertEqual([h["step"] for h in entry["history"]], [8, 12])
        self.assertGreater(summary["task_eval_seconds"], 0)
        base, scaled = entry["base_acc"], entry["scaled_acc_0"]
        for h in entry["history"]:
            if base > scaled:
                self.assertAlmostEqual(h["recovery"], (h["acc"] - scaled) / (base - scaled), places=12)
            else:
                self.assertIsNone(h["recovery"])
        report = run("report", self.run_dir, "--no-plot").stdout
        self.assertIn(f"task {TASK} (50 items): acc base", report)
        self.assertIn("s per task evaluation", report)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(os.path.join(self.run_dir, "tensorboard"))
        events.Reload()
        tags = events.Tags()["scalars"]
        for tag in (f"tasks/{TASK}/acc", f"tasks/{TASK}/acc_norm"):
            self.assertIn(tag, tags)
            self.assertEqual([e.step for e in events.Scalars(tag)], [8, 12])

    def test_kill_and_resume_gives_the_same_task_records(self):
        d = os.path.join(self.tmp, "killed")
        killed = run("train", "recipes/tests/dus.yaml", "--run-dir", d, *self.args,
                     env={"DUS_TEST_KILL_AT_STEP": "10"}, check=False)
        self.assertNotEqual(killed.returncode, 0)
        self.assertEqual([r["step"] for r in read_metrics(d) if r["kind"] == "tasks"], [8])
        run("resume", d)
        resumed = [r for r in read_metrics(d) if r["kind"] == "tasks"]
        self.assertEqual(without_seconds(resumed), without_seconds(self.task_records))
        with open(os.path.join(d, "recovery.json")) as f:
            a = json.load(f)
        with open(os.path.join(self.run_dir, "recovery.json")) as f:
            b = json.load(f)
        self.assertEqual(a["tasks"], b["tasks"])

    def test_two_ranks_score_the_same_start_accuracies(self):
        d = os.path.join(self.tmp, "ranks2")
        run("launch", "--nproc", "2", "--", "train", "recipes/tests/dus.yaml", "--run-dir", d, *self.args,
            "--set", "train.steps=4")
        start = [r for r in read_metrics(d) if r["kind"] == "start"][0]
        self.assertEqual(start["tasks"], self.start["tasks"])
        self.assertEqual([r["step"] for r in read_metrics(d) if r["kind"] == "tasks"], [4])

    def test_bad_task_file_and_missing_tokenizer_stop_before_step_1(self):
        bad = os.path.join(self.tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"context": "a", "choices": [" b"], "gold": 0}\n{"context": "a", "choices": [], "gold": 0}\n')
        args = [a.replace(self.task, bad) for a in self.args]
        proc = run("train", "recipes/tests/dus.yaml", "--run-dir", os.path.join(self.tmp, "bad"), *args, check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(f"{bad}:2", proc.stderr)
        self.assertNotRegex(proc.stdout, r"step\s+\d+/\d+")  # no training step ran
        self.assertNotIn("base_loss", proc.stdout)  # nor the base model's evaluation
        proc = run("train", "recipes/tests/dus.yaml", "--run-dir", os.path.join(self.tmp, "notok"), *self.args,
                   "--set", "data.tokenizer=", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("eval.tasks", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
