"""scripts/crossover_analysis.py on a hand-made study directory: the paired differences to the
base continued, the equal-FLOPs reading of a curve (also for the block-expansion sweep, which
has no baseline-base of its own), the FLOPs-matched comparison, the spread over seeds and the
crossover between two base budgets."""

import json
import math
import os
import sys
import tempfile
import unittest

SRC = os.environ.get("DUS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "scripts"))
import crossover_analysis as ca  # noqa: E402

FPT = {4: 100.0, 6: 150.0, 8: 200.0}  # FLOPs per token by layers
BUDGET = 1000


def variant(name, layers, final, curve_losses):
    """A sweep.json row whose curve has evaluations at 0, 500 and 1000 tokens."""
    curve = [{"step": i, "tokens": t, "flops": t * FPT[layers], "eval_loss": l}
             for i, (t, l) in enumerate(zip([0, 500, 1000], curve_losses))]
    return {"name": name, "layers": layers, "flops_per_token": FPT[layers],
            "final_eval_loss": final, "base_loss": 5.0, "flops": BUDGET * FPT[layers],
            "curve": curve}


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def make_base(study, steps, final):
    d = os.path.join(study, "runs", f"base-s{steps}")
    write(os.path.join(d, "recovery.json"), {"final_eval_loss": final})
    write(os.path.join(d, "final", "config.json"), {})
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"kind": "eval", "tokens": steps * 8192, "eval_loss": final}) + "\n")


def make_sweep(study, steps, seed, cont, m1, m0, be):
    d = os.path.join(study, "sweeps", f"base-s{steps}-seed{seed}")
    write(os.path.join(d, "dus", "sweep.json"), {"complete": True, "variants": [
        variant("baseline-base", 4, cont, [5.0, 4.9, cont]),
        variant("dus-m1", 6, m1, [5.2, 5.0, m1]),
        variant("dus-m0", 8, m0, [5.3, 5.1, m0])]})
    write(os.path.join(d, "blockexp", "sweep.json"), {"complete": True, "variants": [
        variant("blockexp-every2", 6, be, [5.0, 4.8, be])]})


class CrossoverAnalysisTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        study = self.tmp.name
        make_base(study, 128, 5.0)
        make_base(study, 512, 4.5)
        make_base(study, 1024, 4.4)  # no sweep yet: left out of the rows
        # Under-trained base: up-scaling loses at equal tokens.
        make_sweep(study, 128, 1234, cont=4.80, m1=4.82, m0=4.83, be=4.79)
        # Better-trained base, two seeds: up-scaling wins.
        make_sweep(study, 512, 1234, cont=4.40, m1=4.37, m0=4.36, be=4.35)
        make_sweep(study, 512, 1235, cont=4.42, m1=4.38, m0=4.39, be=4.36)
        fm = os.path.join(study, "sweeps", "base-s512-seed1234", "flops-matched",
                          "base-for-6-layers")
        write(os.path.join(fm, "recovery.json"), {"final_eval_loss": 4.38})
        write(os.path.join(fm, "final", "config.json"), {})
        self.rows = ca.analyse(ca.collect(study))

    def tearDown(self):
        self.tmp.cleanup()

    def test_rows_are_the_bases_with_sweeps(self):
        self.assertEqual([r["base_steps"] for r in self.rows], [128, 512])
        self.assertEqual(self.rows[1]["seeds"], [1234, 1235])

    def test_equal_tokens_is_the_paired_difference_over_seeds(self):
        d = self.rows[1]["variants"]["dus-m1"]["vs_continued_equal_tokens"]
        self.assertAlmostEqual(d["mean"], ((4.37 - 4.40) + (4.38 - 4.42)) / 2)
        self.assertAlmostEqual(d["min"], -0.04)
        self.assertAlmostEqual(d["max"], -0.03)
        self.assertEqual(d["n"], 2)

    def test_equal_flops_reads_every_curve_at_the_base_continued_flops(self):
        # baseline-base spent 1000 x 100 FLOPs; a 6-layer run had spent them at 666.7 tokens:
        # 2/3 of the way from 500 (4.8) to 1000 (4.79) on the block-expansion curve.
        d = self.rows[0]["variants"]["blockexp-every2"]["vs_continued_equal_flops_curve"]
        at = 4.8 + (100000 / 150 - 500) / 500 * (4.79 - 4.8)
        self.assertAlmostEqual(d["mean"], at - 4.80)

    def test_flops_matched_compares_final_losses(self):
        v = self.rows[1]["variants"]
        self.assertAlmostEqual(v["dus-m1"]["vs_continued_equal_flops_matched"], 4.37 - 4.38)
        self.assertAlmostEqual(v["blockexp-every2"]["vs_continued_equal_flops_matched"], 4.35 - 4.38)
        self.assertIsNone(v["dus-m0"]["vs_continued_equal_flops_matched"])  # no 8-layer run

    def test_crossover_between_budgets_is_log_linear(self):
        t0, t1 = 128 * 8192, 512 * 8192
        d0, d1 = 4.82 - 4.80, -0.035
        a = d0 / (d0 - d1)
        expect = math.exp(math.log(t0) + a * (math.log(t1) - math.log(t0)))
        tokens, wins_above = ca.crossover(self.rows, "dus-m1", "vs_continued_equal_tokens")
        self.assertAlmostEqual(tokens, expect, delta=1.0)
        self.assertTrue(wins_above)
        self.assertIn("dus-m1, equal tokens: crossover", ca.table(self.rows))


if __name__ == "__main__":
    unittest.main()
