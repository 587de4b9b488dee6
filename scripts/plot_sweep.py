#!/usr/bin/env python3
"""Plots a depth sweep: `plot_sweep.py SWEEP_DIR --out FILE.png`.

Reads SWEEP_DIR/sweep.json (experiments/sweep.h, written by `dus sweep`) and writes one PNG with
three panels, every run of the sweep on each:
  left:   eval loss against training tokens (equal tokens: every run trains the same budget);
  middle: eval loss against training FLOPs (equal compute: a deeper model pays more per token;
          the base model's own pretraining is not counted, as sweep.json's flops_note says);
  right:  recovery against training tokens for the up-scaled runs (the baselines have none).
The base model's held-out loss (base_loss) is a dashed line on the loss panels. Up-scaled
runs are solid lines, the base trained on is black, the from-scratch baselines are dotted in
the colour of the scaled run of the same size.
`dus report SWEEP_DIR` (and `dus sweep` at its end) run it with the set-up venv's Python.
"""

import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def size_tag(row):
    """m1 / every2: what links a scaled run to the scratch baseline of its size."""
    if row.get("m") is not None:
        return f"m{row['m']}"
    if row.get("every") is not None:
        return f"every{row['every']}"
    return None


def style(row, colours):
    kind = row.get("kind")
    if kind == "base":
        return {"color": "black", "ls": "-", "marker": "s"}
    colour = colours.get(size_tag(row), "gray")
    if kind == "scratch":
        return {"color": colour, "ls": ":", "marker": "x"}
    return {"color": colour, "ls": "-", "marker": "o"}


def label(row):
    parts = [row["name"], f"{row['layers']} layers"]
    if finite(row.get("final_eval_loss")):
        parts.append(f"final {row['final_eval_loss']:.4f}")
    return ", ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep directory (sweep.json)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)

    path = os.path.join(args.sweep_dir, "sweep.json")
    if not os.path.exists(path):
        sys.exit(f"plot_sweep: {path} not found (is {args.sweep_dir} a dus sweep directory?)")
    with open(path, encoding="utf-8") as f:
        sweep = json.load(f)
    rows = sweep.get("variants", [])
    tags = sorted({size_tag(r) for r in rows if r.get("kind") != "base" and size_tag(r)},
                  key=lambda t: (t.rstrip("0123456789"), int("".join(c for c in t if c.isdigit()) or 0)))
    palette = plt.get_cmap("tab10")
    colours = {t: palette(i % 10) for i, t in enumerate(tags)}

    fig, (ax_tok, ax_flop, ax_rec) = plt.subplots(1, 3, figsize=(18, 5.5))
    base_loss = sweep.get("base_loss")
    for row in rows:
        curve = [p for p in row.get("curve", []) if finite(p.get("eval_loss"))]
        if not curve:
            continue
        st = style(row, colours)
        kw = {"color": st["color"], "ls": st["ls"], "marker": st["marker"], "ms": 3, "lw": 1.3}
        ax_tok.plot([p["tokens"] for p in curve], [p["eval_loss"] for p in curve], label=label(row), **kw)
        ax_flop.plot([p["flops"] for p in curve], [p["eval_loss"] for p in curve], label=row["name"], **kw)
        rec = [p for p in curve if finite(p.get("recovery"))]
        if rec:
            ax_rec.plot([p["tokens"] for p in rec], [p["recovery"] for p in rec], label=row["name"], **kw)

    for ax in (ax_tok, ax_flop):
        if finite(base_loss):
            ax.axhline(base_loss, color="gray", ls="--", lw=1, label=f"base_loss {base_loss:.4f}")
        # A scratch run starts far above the others: keep the interesting range readable.
        finals = [r["final_eval_loss"] for r in rows if finite(r.get("final_eval_loss"))]
        starts = [r["scaled_loss_0"] for r in rows if finite(r.get("scaled_loss_0"))]
        if finals:
            lo = min(finals + ([base_loss] if finite(base_loss) else []))
            hi = max(finals + starts + ([base_loss] if finite(base_loss) else []))
            pad = 0.08 * max(hi - lo, 1e-3)
            ax.set_ylim(lo - pad, hi + 3 * pad)
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(EngFormatter())
    budget = sweep.get("budget_tokens")
    ax_tok.set_xlabel("training tokens")
    ax_tok.set_title(f"eval loss at equal tokens ({budget:,} per run)" if finite(budget) else "eval loss vs tokens")
    ax_flop.set_xlabel("training FLOPs (this run only; base pretraining not counted)")
    ax_flop.set_title("eval loss at equal compute")
    if finite(sweep.get("base_flops")):
        ax_flop.axvline(sweep["base_flops"], color="black", ls="-.", lw=0.8, alpha=0.6,
                        label="baseline-base's total FLOPs")
    ax_rec.axhline(1.0, color="gray", ls="--", lw=1, label="recovery 1 (back to base_loss)")
    ax_rec.set_xlabel("training tokens")
    ax_rec.set_ylabel("recovery = (loss_0 - eval) / (loss_0 - base_loss)")
    ax_rec.set_title("recovery of the up-scaled runs")
    ax_rec.grid(alpha=0.3)
    ax_rec.xaxis.set_major_formatter(EngFormatter())
    for ax in (ax_tok, ax_flop, ax_rec):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    if not sweep.get("complete", True):
        fig.suptitle("sweep not complete: unfinished runs are missing", color="tab:red")
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"plot_sweep: wrote {args.out}")


if __name__ == "__main__":
    main()
