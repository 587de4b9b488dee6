"""End to end on CPU: `dus sweep` on a real corpus (Genesis from Debian's
bible-kjv) with tiny Mistral models.

A 6-layer base is pretrained from scratch, then swept: dus m = 1 and m = 2 (10 and 8 layers),
the base trained on, and each scaled size from random init, all at 4 steps x 512 tokens.
- the sweep is killed (kill -9, by a test hook) after its first run, then again in the middle
  of a run (after its checkpoint at step 2); the reruns skip the finished runs (their files
  are untouched), resume the interrupted one from its checkpoint, and finish the rest;
- every run trained the same tokens (the last train record of each metrics.jsonl);
- sweep.json, the table (`dus sweep` and `dus report SWEEP`), the scratch configs and the PNG;
- block expansion variants; --jobs 2 (child processes); and the errors: a budget that is not whole steps, a recipe
  without model.init_from, an invalid m.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from dus_testlib import DUS, SRC, make_kjv_dataset, read_metrics, run

TOKENS_PER_STEP = 512  # recipes/tests/base.yaml: 8 sequences x 64 tokens
STEPS = 4


def tree_mtimes(path):
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, path)] = os.stat(full).st_mtime_ns
    return out


class SweepE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-sweep-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Gen 50:26", "genesis")
        # The tests' tiny model with 6 layers, so that dus m = 1 and m = 2 are both valid (m < n/2).
        with open(os.path.join(SRC, "recipes/tests/tiny_model.json")) as f:
            config = json.load(f)
        config["num_hidden_layers"] = 6
        cls.config = os.path.join(cls.tmp, "tiny6.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)
        cls.base = os.path.join(cls.tmp, "base")
        run("train", "recipes/tests/base.yaml", "--run-dir", cls.base, *cls.common,
            "--set", f"model.config={cls.config}", "--set", "train.steps=10", "--set", "eval.every=10",
            "--set", "checkpoint.every=10", "--set", "log.tensorboard=false")
        # Every sweep run: 4 steps, evaluations at 2 and 4, a checkpoint at 2 (the resume point).
        cls.sweep_args = ["recipes/tests/dus.yaml", *cls.common,
                          "--set", f"model.init_from={os.path.join(cls.base, 'final')}",
                          "--set", "eval.every=2", "--set", "eval.sequences=8", "--set", "checkpoint.every=2",
                          "--set", "log.tensorboard=false", "--set", "log.every=2",
                          "--budget-tokens", str(STEPS * TOKENS_PER_STEP)]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sweep(self, sweep_dir, *extra, env=None, check=True):
        return run("sweep", *self.sweep_args, "--sweep-dir", sweep_dir, *extra, env=env, check=check)

    def test_sweep_killed_resumed_and_reported(self):
        sweep_dir = os.path.join(self.tmp, "sweep")
        names = ["baseline-base", "dus-m1", "dus-m2", "baseline-scratch-m1", "baseline-scratch-m2"]

        # 1. Killed (kill -9) right after the first run finished.
        proc = self.sweep(sweep_dir, "--m", "1,2", env={"DUS_TEST_SWEEP_STOP_AFTER": "1"}, check=False)
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        self.assertIn("sweep [1/5] baseline-base", proc.stdout)
        self.assertIn("done in", proc.stdout)
        first = os.path.join(sweep_dir, "baseline-base")
        self.assertTrue(os.path.exists(os.path.join(first, "final", "config.json")))
        self.assertFalse(os.path.exists(os.path.join(sweep_dir, "dus-m1")))
        first_files = tree_mtimes(first)

        # 2. Rerun, killed in the middle of dus-m1's step 3 (after its checkpoint at step 2).
        proc = self.sweep(sweep_dir, "--m", "1,2", env={"DUS_TEST_KILL_AT_STEP": "3"}, check=False)
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        self.assertIn("sweep [1/5] baseline-base            skip (finished)", proc.stdout)
        self.assertIn("sweep [2/5] dus-m1                   start", proc.stdout)
        self.assertTrue(os.path.isdir(os.path.join(sweep_dir, "dus-m1", "checkpoints", "step_00000002")))

        # 3. Rerun to the end: the finished run is skipped, the killed one resumes at step 2.
        proc = self.sweep(sweep_dir, "--m", "1,2")
        out = proc.stdout
        self.assertIn("sweep [1/5] baseline-base            skip (finished)", out)
        self.assertIn("sweep [2/5] dus-m1                   resume from step_00000002", out)
        self.assertIn("resuming from", out)
        for i, name in enumerate(names[2:], start=3):
            self.assertIn(f"sweep [{i}/5] {name:<24} start", out)
        self.assertEqual(tree_mtimes(first), first_files, "the finished run was touched by the rerun")

        # Equal budgets, read from the metrics: every run's last train record.
        for name in names:
            metrics = read_metrics(os.path.join(sweep_dir, name))
            train = [r for r in metrics if r["kind"] == "train"]
            self.assertEqual([r["step"] for r in train], list(range(1, STEPS + 1)), name)
            self.assertEqual(train[-1]["tokens"], STEPS * TOKENS_PER_STEP, name)
            self.assertEqual(len([r for r in metrics if r["kind"] == "start"]), 1, name)

        with open(os.path.join(sweep_dir, "sweep.json")) as f:
            sweep = json.load(f)
        self.assertTrue(sweep["complete"])
        self.assertEqual(sweep["budget_tokens"], STEPS * TOKENS_PER_STEP)
        rows = {r["name"]: r for r in sweep["variants"]}
        self.assertEqual(sorted(rows), sorted(names))
        self.assertEqual([rows[n]["layers"] for n in names], [6, 10, 8, 10, 8])
        self.assertEqual(rows["dus-m1"]["parameters"], rows["baseline-scratch-m1"]["parameters"])
        for name, row in rows.items():
            self.assertEqual(row["tokens"], STEPS * TOKENS_PER_STEP, name)
            self.assertAlmostEqual(row["flops"], row["tokens"] * row["flops_per_token"], delta=1e-6 * row["flops"])
            self.assertIsNotNone(row["final_eval_loss"], name)
            self.assertGreater(row["tokens_per_s"], 0, name)
            self.assertEqual([p["tokens"] for p in row["curve"] if p["step"] > 0],
                             [2 * TOKENS_PER_STEP, 4 * TOKENS_PER_STEP], name)
            self.assertIn("beat_base", row["milestones"])
        base_loss = sweep["base_loss"]
        self.assertAlmostEqual(rows["baseline-base"]["base_loss"], base_loss, places=6)
        self.assertAlmostEqual(rows["dus-m1"]["base_loss"], base_loss, places=6)
        self.assertGreater(rows["dus-m1"]["scaled_loss_0"], base_loss, "scaling should raise the loss")
        self.assertIsNone(rows["baseline-scratch-m1"]["base_loss"])
        self.assertGreater(rows["dus-m1"]["flops_per_token"], rows["baseline-base"]["flops_per_token"])
        self.assertEqual(sweep["base_flops"], rows["baseline-base"]["flops"])
        self.assertAlmostEqual(rows["baseline-base"]["eval_loss_at_base_flops"],
                               rows["baseline-base"]["final_eval_loss"], places=9)
        # The scratch baselines are the scaled configs from random init.
        with open(os.path.join(sweep_dir, "configs", "scratch-m2.json")) as f:
            self.assertEqual(json.load(f)["num_hidden_layers"], 8)
        with open(os.path.join(sweep_dir, "baseline-scratch-m2", "run_info.json")) as f:
            self.assertEqual(json.load(f)["layers"], 8)

        # The table at the end and from dus report, and the figure.
        for name in names:
            self.assertIn(name, out[out.index("variant "):])
        self.assertTrue(os.path.getsize(os.path.join(sweep_dir, "sweep.png")) > 10000)
        report = run("report", sweep_dir, "--no-plot").stdout
        print(report)
        self.assertIn("budget           2,048 tokens per run (4 steps x 512 tokens)", report)
        for name in names:
            self.assertIn(name, report)
        # Every variant against the base continued, at equal tokens and at equal FLOPs, from
        # the numbers in sweep.json.
        continued = rows["baseline-base"]["final_eval_loss"]
        self.assertIn(f"vs continued     variant - baseline-base (the base continued: final {continued:.4f})",
                      report)
        for name in names[1:]:
            tokens = f"{rows[name]['final_eval_loss'] - continued:+.4f}"
            flops = rows[name]["eval_loss_at_base_flops"]
            flops = "-" if flops is None else f"{flops - continued:+.4f}"
            self.assertRegex(report, rf"\n {{17}}{name} +equal tokens +{re.escape(tokens)} +equal FLOPs +{re.escape(flops)}\n")
        self.assertNotRegex(report, r"\n +baseline-base +equal tokens")

        # A finished sweep rerun does nothing but report.
        again = self.sweep(sweep_dir, "--m", "1,2", "--no-plot").stdout
        self.assertEqual(again.count("skip (finished)"), 5)
        # Another budget in the same directory is another sweep: refused.
        proc = run("sweep", *self.sweep_args[:-1], str(2 * STEPS * TOKENS_PER_STEP), "--sweep-dir", sweep_dir, "--m", "1",
                   check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("another recipe, --set or budget", proc.stderr)

    def test_parallel_jobs(self):
        sweep_dir = os.path.join(self.tmp, "sweep-jobs")
        proc = self.sweep(sweep_dir, "--m", "1,2", "--baselines", "base", "--jobs", "2", "--no-plot",
                          "--set", "eval.every=4", "--set", "checkpoint.every=4")
        threads = max(1, (os.cpu_count() or 1) // 2)
        self.assertIn("(child process", proc.stdout)
        self.assertRegex(proc.stdout, rf"child process \d+, {threads} thread{'' if threads == 1 else 's'}, log ")
        with open(os.path.join(sweep_dir, "sweep.json")) as f:
            sweep = json.load(f)
        self.assertTrue(sweep["complete"])
        self.assertEqual(sorted(r["name"] for r in sweep["variants"]), ["baseline-base", "dus-m1", "dus-m2"])
        for row in sweep["variants"]:
            self.assertEqual(row["tokens"], STEPS * TOKENS_PER_STEP)
            with open(os.path.join(sweep_dir, row["name"], "run_info.json")) as f:
                self.assertEqual(json.load(f)["threads"], max(1, (os.cpu_count() or 1) // 2))
            with open(os.path.join(sweep_dir, row["name"], "train.log")) as f:
                self.assertIn("final model", f.read())

    def test_block_expansion(self):
        sweep_dir = os.path.join(self.tmp, "sweep-blocks")
        out = run("sweep", *self.sweep_args, "--sweep-dir", sweep_dir, "--method", "block_expansion", "--every", "3",
                  "--baselines", "scratch", "--no-plot").stdout
        self.assertNotIn("vs continued", out)  # no base continued to compare with
        with open(os.path.join(sweep_dir, "sweep.json")) as f:
            rows = {r["name"]: r for r in json.load(f)["variants"]}
        self.assertEqual(sorted(rows), ["baseline-scratch-every3", "blockexp-every3"])
        self.assertEqual(rows["blockexp-every3"]["layers"], 8)  # 6 base layers + a copy after every 3rd
        # Function-preserving: the expanded model starts at the base's loss.
        self.assertAlmostEqual(rows["blockexp-every3"]["scaled_loss_0"], rows["blockexp-every3"]["base_loss"], places=4)

    def test_errors_before_work(self):
        sweep_dir = os.path.join(self.tmp, "sweep-bad")
        cases = [
            (["--m", "1", "--budget-tokens", "1000"], "--budget-tokens", "not a whole number of steps of 512"),
            (["--m", "3"], "--m 3", ""),
            (["--m", "1,x"], "--m", "comma-separated"),
            (["--every", "1"], "--every", "does not apply to --method dus"),
        ]
        for extra, where, message in cases:
            with self.subTest(extra=extra):
                args = [a for a in self.sweep_args if a not in ("--budget-tokens", str(STEPS * TOKENS_PER_STEP))]
                proc = run("sweep", *args, "--sweep-dir", sweep_dir, *extra, check=False)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertIn(where, proc.stderr)
                self.assertIn(message, proc.stderr)
                self.assertFalse(os.path.exists(sweep_dir), "a bad sweep created its directory")
        proc = run("sweep", "recipes/tests/base.yaml", *self.common, "--m", "1", "--sweep-dir", sweep_dir,
                   check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("model.init_from", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
