#!/usr/bin/env python3
"""Plots the loss recovery of a DUS run: `plot_recovery.py RUN_DIR --out FILE.png`.

Reads RUN_DIR/metrics.jsonl (train and eval records, train/metrics_log.h) and, when present,
RUN_DIR/recovery.json (train/recovery_tracker.h, RecoveryTracker::summary_json) and writes
one PNG:
  top:    train loss and eval loss against training tokens, the base model's loss (base_loss)
          and the loss right after scaling (scaled_loss_0) as horizontal lines, and the
          milestones (recovery 0.5 / 0.9 / 1.0, eval_loss below base_loss) as markers;
  middle: only for a run that evaluates multiple-choice tasks (eval.tasks): each task's acc
          (solid, shaded +- acc_stderr) and acc_norm (dashed) against training tokens, from the
          `tasks` records of metrics.jsonl (else recovery.json's task history), with the base
          model's base_acc (dotted) and the scaled model's scaled_acc_0 (dash-dot) as
          horizontal lines, from recovery.json (else the `start` record). Chance is not drawn:
          a task file does not say it;
  bottom: a heat map of per-layer gradient norms at each evaluation (log colour scale), the
          layers labelled by origin and the seams between copies marked.
Works for runs without scaling (no base_loss, no seams) and without layer statistics.
`dus report RUN_DIR` runs it with the set-up venv's Python (matplotlib, Agg backend).
"""

import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

MILESTONE_STYLE = {
    "recovery_0.5": ("recovery 0.5", "tab:olive"),
    "recovery_0.9": ("recovery 0.9", "tab:cyan"),
    "recovery_1.0": ("recovery 1.0", "tab:green"),
    "beat_base": ("below base_loss", "tab:purple"),
}


def read_jsonl(path):
    """Records of a metrics.jsonl; a torn or corrupt line is skipped with a warning."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                print(f"plot_recovery: {path}:{number}: skipping an unreadable line", file=sys.stderr)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def tokens_lookup(train):
    """step -> tokens from the train records, for eval records that carry no tokens."""
    steps = np.array([r["step"] for r in train], dtype=np.int64)
    tokens = np.array([r["tokens"] for r in train], dtype=np.float64)
    order = np.argsort(steps)
    steps, tokens = steps[order], tokens[order]

    def lookup(step):
        if len(steps) == 0:
            return float("nan")
        i = int(np.searchsorted(steps, step, side="right")) - 1
        return float(tokens[max(i, 0)])

    return lookup


def load_run(run_dir):
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(metrics_path):
        sys.exit(f"plot_recovery: {metrics_path} not found (is {run_dir} a run directory?)")
    records = read_jsonl(metrics_path)
    train = [r for r in records if r.get("kind") == "train" and finite(r.get("step"))
             and finite(r.get("tokens")) and finite(r.get("loss"))]
    evals = [r for r in records if r.get("kind") == "eval" and finite(r.get("step"))
             and finite(r.get("eval_loss"))]
    summary = {}
    summary_path = os.path.join(run_dir, "recovery.json")
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
    lookup = tokens_lookup(train)
    tasks = load_tasks(records, summary, lookup)
    history_tokens = {h["step"]: h["tokens"] for h in summary.get("history", [])
                      if finite(h.get("step")) and finite(h.get("tokens"))}
    eval_points = []
    for r in evals:
        tokens = r.get("tokens")
        if not finite(tokens):
            tokens = history_tokens.get(r["step"], lookup(r["step"]))
        eval_points.append((float(tokens), float(r["eval_loss"]), r["step"]))
    if not evals:  # an older log: take the evaluations from recovery.json
        eval_points = [(float(h["tokens"]), float(h["eval_loss"]), h["step"])
                       for h in summary.get("history", []) if finite(h.get("eval_loss"))]
    return train, eval_points, summary, tasks


def load_tasks(records, summary, lookup):
    """Per task name, in order of first appearance: {"points": [(tokens, acc, acc_stderr,
    acc_norm, acc_norm_stderr)], "base_acc", "scaled_acc_0"}. Empty for a run without tasks."""
    tasks = {}

    def entry(name):
        return tasks.setdefault(name, {"points": [], "base_acc": None, "scaled_acc_0": None})

    def point(tokens, m):
        return (float(tokens), float(m["acc"]),
                float(m["acc_stderr"]) if finite(m.get("acc_stderr")) else float("nan"),
                float(m["acc_norm"]) if finite(m.get("acc_norm")) else float("nan"),
                float(m["acc_norm_stderr"]) if finite(m.get("acc_norm_stderr")) else float("nan"))

    for r in records:
        if r.get("kind") == "start" and isinstance(r.get("tasks"), dict):
            for name, m in r["tasks"].items():
                e = entry(name)
                for key in ("base_acc", "scaled_acc_0"):
                    if isinstance(m, dict) and finite(m.get(key)):
                        e[key] = float(m[key])
        elif r.get("kind") == "tasks" and finite(r.get("step")) and isinstance(r.get("tasks"), dict):
            tokens = r.get("tokens") if finite(r.get("tokens")) else lookup(r["step"])
            for name, m in r["tasks"].items():
                if isinstance(m, dict) and finite(m.get("acc")):
                    entry(name)["points"].append(point(tokens, m))
    logged = any(e["points"] for e in tasks.values())
    for t in summary.get("tasks") or []:
        if not isinstance(t, dict) or "name" not in t:
            continue
        e = entry(t["name"])
        for key in ("base_acc", "scaled_acc_0"):  # the summary is written last: it wins
            if finite(t.get(key)):
                e[key] = float(t[key])
        if not logged:  # an older or truncated log: take the evaluations from recovery.json
            e["points"] = [point(h["tokens"], h) for h in t.get("history") or []
                           if finite(h.get("tokens")) and finite(h.get("acc"))]
    for e in tasks.values():
        e["points"].sort(key=lambda p: p[0])
    return {name: e for name, e in tasks.items()
            if e["points"] or e["base_acc"] is not None or e["scaled_acc_0"] is not None}


def plot_losses(ax, train, eval_points, summary):
    if train:
        ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.6,
                color="tab:blue", label="train loss")
    if eval_points:
        ax.plot([p[0] for p in eval_points], [p[1] for p in eval_points], "o-", ms=3, lw=1.2,
                color="tab:orange", label="eval loss")
    base, scaled = summary.get("base_loss"), summary.get("scaled_loss_0")
    if finite(base):
        ax.axhline(base, color="black", ls="--", lw=1, label=f"base_loss {base:.4f}")
    if finite(scaled):
        ax.axhline(scaled, color="tab:red", ls=":", lw=1, label=f"scaled_loss_0 {scaled:.4f}")
    eval_by_step = {p[2]: p for p in eval_points}
    for name, point in (summary.get("milestones") or {}).items():
        if not point:
            continue
        label, color = MILESTONE_STYLE.get(name, (name, "gray"))
        ax.axvline(point["tokens"], color=color, ls="-.", lw=0.8, alpha=0.7)
        y = eval_by_step[point["step"]][1] if point["step"] in eval_by_step else None
        if y is not None:
            ax.plot([point["tokens"]], [y], marker="*", ms=12, color=color, ls="none",
                    label=f"{label}: step {point['step']}")
        else:
            ax.plot([], [], color=color, ls="-.", label=f"{label}: step {point['step']}")
    ax.xaxis.set_major_formatter(EngFormatter())  # 500k, 2M, 1.5G tokens
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss")
    title = "loss recovery"
    final = summary.get("final_recovery")
    if finite(final):
        title += f" (final recovery {final:.3f})"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right")


def plot_tasks(ax, tasks):
    for k, (name, t) in enumerate(tasks.items()):
        color = plt.get_cmap("tab10")(k % 10)
        if t["points"]:
            tokens, acc, acc_se, acc_norm, _ = (np.array(c) for c in zip(*t["points"]))
            ax.plot(tokens, acc, "o-", ms=3, lw=1.2, color=color, label=f"{name} acc {acc[-1]:.3f}")
            if np.isfinite(acc_se).any():
                ax.fill_between(tokens, acc - acc_se, acc + acc_se, color=color, alpha=0.15, lw=0)
            if np.isfinite(acc_norm).any():
                ax.plot(tokens, acc_norm, "s--", ms=2.5, lw=1, color=color,
                        label=f"{name} acc_norm {acc_norm[-1]:.3f}")
        if t["base_acc"] is not None:
            ax.axhline(t["base_acc"], color=color, ls=":", lw=1.2, label=f"{name} base_acc {t['base_acc']:.3f}")
        if t["scaled_acc_0"] is not None:
            ax.axhline(t["scaled_acc_0"], color=color, ls="-.", lw=1,
                       label=f"{name} scaled_acc_0 {t['scaled_acc_0']:.3f}")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("training tokens")
    ax.set_ylabel("accuracy")
    ax.set_title("multiple-choice tasks: acc (solid, +- stderr), acc_norm (dashed)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def plot_heat_map(ax, fig, summary):
    history = [h for h in summary.get("history", []) if h.get("grad_norm")]
    seam = summary.get("seam") or {}
    labels = seam.get("layers") or []
    if not history:
        ax.text(0.5, 0.5, "no per-layer gradient norms recorded", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    n_layers = max(len(h["grad_norm"]) for h in history)
    grid = np.full((n_layers, len(history)), np.nan)  # (layers, evaluations)
    for j, h in enumerate(history):
        for i, g in enumerate(h["grad_norm"]):
            if finite(g):
                grid[i, j] = g
    positive = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size and \
        positive.min() < positive.max() else None
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", origin="upper",
                      interpolation="nearest", cmap="viridis", norm=norm)
    fig.colorbar(image, ax=ax, label="gradient norm")
    step_ticks = np.linspace(0, len(history) - 1, min(len(history), 10)).round().astype(int)
    ax.set_xticks(step_ticks)
    ax.set_xticklabels([str(history[k]["step"]) for k in step_ticks], fontsize=8)
    ax.set_xlabel("step (evaluation)")
    every = max(1, n_layers // 24)  # readable labels up to ~24 rows
    yticks = list(range(0, n_layers, every))
    ax.set_yticks(yticks)
    ax.set_yticklabels([f"{i}: {labels[i]}" if i < len(labels) else str(i) for i in yticks],
                       fontsize=7)
    ax.set_ylabel("decoder layer")
    for s in seam.get("seams") or []:
        y = s["layer"] - 0.5
        ax.axhline(y, color="red", lw=1.5)
        ax.text(1.0, y, " seam " + s.get("name", ""), color="red", fontsize=7, va="bottom",
                ha="right", transform=ax.get_yaxis_transform())
    title = "per-layer gradient norm at each evaluation"
    ax.set_title(title + (" (seams in red)" if seam.get("seams") else ""))


def make_figure(run_dir):
    """The figure and the names of its panels, top to bottom."""
    train, eval_points, summary, tasks = load_run(run_dir)
    n_layers = max([len(h.get("grad_norm") or []) for h in summary.get("history", [])] + [0])
    layer_ratio = 1 + min(n_layers, 48) / 32
    if not tasks:
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(11, 9 + min(n_layers, 48) * 0.08),
            gridspec_kw={"height_ratios": [1, layer_ratio]})
        panels = ["loss", "layers"]
    else:
        fig, (top, middle, bottom) = plt.subplots(
            3, 1, figsize=(11, 12.5 + min(n_layers, 48) * 0.08),
            gridspec_kw={"height_ratios": [1, 0.75, layer_ratio]})
        middle.sharex(top)  # the same token axis as the losses
        plot_tasks(middle, tasks)
        panels = ["loss", "tasks", "layers"]
    plot_losses(top, train, eval_points, summary)
    plot_heat_map(bottom, fig, summary)
    fig.tight_layout()
    return fig, panels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run directory (metrics.jsonl, recovery.json)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)

    fig, panels = make_figure(args.run_dir)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"plot_recovery: wrote {args.out} (panels: {', '.join(panels)})")


if __name__ == "__main__":
    main()
