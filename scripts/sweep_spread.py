#!/usr/bin/env python3
"""The spread of a depth sweep over repeats: `sweep_spread.py SWEEP_DIR [SWEEP_DIR ...]`.

Each SWEEP_DIR is one `dus sweep` (experiments/sweep.h writes its sweep.json), typically the same
command with another `--set run.seed=N`. Prints a markdown table, one row per variant that
every sweep has: its final eval loss in each sweep, the mean and the spread (max - min), and
the paired difference to the base model trained on for the same tokens (baseline-base of the
same sweep): the mean and the range of that difference, at equal tokens and at equal FLOPs
(eval_loss_at_base_flops). A variant beats simply training the base longer only where the
whole range of its difference is below zero.
"""

import argparse
import json
import math
import os
import sys


def load(sweep_dir):
    path = os.path.join(sweep_dir, "sweep.json")
    try:
        with open(path) as f:
            sweep = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"sweep_spread: cannot read {path}: {e}")
    if not sweep.get("complete"):
        sys.exit(f"sweep_spread: {path}: the sweep is not complete (run the dus sweep command again)")
    return {v["name"]: v for v in sweep["variants"]}


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_range(values, signed=False):
    if not values:
        return "-"
    mean = sum(values) / len(values)
    form = "{:+.4f}" if signed else "{:.4f}"
    if len(values) == 1:
        return form.format(mean)
    return f"{form.format(mean)} [{form.format(min(values))}, {form.format(max(values))}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", help="sweep directories (each with a complete sweep.json)")
    args = ap.parse_args()
    sweeps = [load(d) for d in args.sweeps]
    names = [n for n in sweeps[0] if all(n in s for s in sweeps)]
    for s, d in zip(sweeps, args.sweeps):
        if "baseline-base" not in s:
            sys.exit(f"sweep_spread: {d}: no baseline-base run (sweep with --baselines all or base)")

    print(f"{len(sweeps)} sweeps: " + ", ".join(args.sweeps))
    print()
    print("| variant | layers | final eval loss per sweep | mean | spread | vs base, equal tokens "
          "| vs base, equal FLOPs |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        finals = [s[name]["final_eval_loss"] for s in sweeps]
        if not all(number(x) for x in finals):
            continue
        base = [s["baseline-base"]["final_eval_loss"] for s in sweeps]
        d_tokens = [f - b for f, b in zip(finals, base)]
        at_flops = [s[name].get("eval_loss_at_base_flops") for s in sweeps]
        d_flops = [a - b for a, b in zip(at_flops, base) if number(a)]
        mean = sum(finals) / len(finals)
        print(f"| {name} | {sweeps[0][name]['layers']} | " + ", ".join(f"{x:.4f}" for x in finals) +
              f" | {mean:.4f} | {max(finals) - min(finals):.4f} | " +
              ("-" if name == "baseline-base" else fmt_range(d_tokens, signed=True)) + " | " +
              ("-" if name == "baseline-base" else fmt_range(d_flops, signed=True)) + " |")


if __name__ == "__main__":
    main()
