#!/usr/bin/env python3
"""The crossover study's table and figure: `crossover_analysis.py STUDY_DIR [--results DIR]`.

Reads what scripts/crossover_study.sh wrote (finished runs only, so it also works on a study
still running):
  STUDY/runs/base-sN/                            the bases, N pretraining steps
  STUDY/sweeps/base-sN-seedS/dus/sweep.json      baseline-base, dus-m0, dus-m1
  STUDY/sweeps/base-sN-seedS/blockexp/sweep.json blockexp-every2
  STUDY/sweeps/base-sN-seed1234/flops-matched/base-for-L-layers/   the base continued for the
                                                  FLOPs an L-layer run spent on the budget
and writes into --results (default recipes/crossover/results):
  crossover.md    the table: per base budget, every variant's final held-out loss minus the
                  base continued for the same tokens (equal tokens), and at equal FLOPs, read
                  two ways: (a) the variant's eval curve at the FLOPs the base continued spent
                  (what `dus sweep` reports; the variant is mid-schedule there), (b) its final
                  loss against the base continued for as many FLOPs as the variant spent, to the
                  end of its own decayed schedule (seed 1234). Several seeds: mean [min, max].
  crossover.png   those differences against the base's pretraining tokens, with the crossover
  summary.json    every number of the table
  sweeps/         the raw sweep.json files, and the flops-matched runs' summaries
A negative difference means up-scaling beat continuing the base.
"""

import argparse
import glob
import json
import math
import os
import re
import shutil

STEP_TOKENS = 8192
VARIANTS = [  # name, label, layers
    ("dus-m1", "DUS m=1 (6 layers)", 6),
    ("dus-m0", "DUS m=0 (8 layers)", 8),
    ("blockexp-every2", "block expansion every 2 (6 layers)", 6),
]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def base_curve(run_dir):
    """(tokens, eval_loss) of a run's evaluations, from its metrics.jsonl."""
    pts = []
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if r.get("kind") == "eval" and finite(r.get("eval_loss")):
                    pts.append((r["tokens"], r["eval_loss"]))
    except OSError:
        pass
    return pts


def collect(study):
    """Everything finished, by base steps: {steps: {...}}."""
    bases = {}
    for d in sorted(glob.glob(os.path.join(study, "runs", "base-s*"))):
        m = re.search(r"base-s(\d+)$", d)
        rec = load_json(os.path.join(d, "recovery.json"))
        if not m or not rec or not os.path.exists(os.path.join(d, "final", "config.json")):
            continue
        steps = int(m.group(1))
        bases[steps] = {"steps": steps, "tokens": steps * STEP_TOKENS,
                        "pretrain_final_loss": rec.get("final_eval_loss"),
                        "curve": base_curve(d), "seeds": {}, "flops_matched": {}}
    for d in sorted(glob.glob(os.path.join(study, "sweeps", "base-s*-seed*"))):
        m = re.search(r"base-s(\d+)-seed(\d+)$", d)
        if not m or int(m.group(1)) not in bases:
            continue
        steps, seed = int(m.group(1)), int(m.group(2))
        rows = {}
        raw = {}
        for kind in ("dus", "blockexp"):
            s = load_json(os.path.join(d, kind, "sweep.json"))
            if not s:
                continue
            raw[kind] = s
            for v in s["variants"]:
                rows[v["name"]] = v
        if "baseline-base" in rows:
            bases[steps]["seeds"][seed] = {"rows": rows, "raw": raw}
        for fm in sorted(glob.glob(os.path.join(d, "flops-matched", "base-for-*-layers"))):
            layers = int(re.search(r"base-for-(\d+)-layers", fm).group(1))
            rec = load_json(os.path.join(fm, "recovery.json"))
            if rec and finite(rec.get("final_eval_loss")) and \
                    os.path.exists(os.path.join(fm, "final", "config.json")):
                pts = base_curve(fm)
                bases[steps]["flops_matched"][layers] = {
                    "final_eval_loss": rec["final_eval_loss"],
                    "tokens": pts[-1][0] if pts else None, "seed": seed, "run_dir": fm}
    return bases


def loss_at_flops(curve, flops):
    """Eval loss on a sweep run's curve at `flops`, linear between evaluations (as dus sweep
    reads eval_loss_at_base_flops); None outside the curve."""
    for p0, p1 in zip(curve, curve[1:]):
        if p0["flops"] <= flops <= p1["flops"]:
            if p1["flops"] == p0["flops"]:
                return p1["eval_loss"]
            a = (flops - p0["flops"]) / (p1["flops"] - p0["flops"])
            return p0["eval_loss"] + a * (p1["eval_loss"] - p0["eval_loss"])
    return None


def spread(values):
    values = [v for v in values if finite(v)]
    if not values:
        return None
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(s, signed=True):
    if not s:
        return "-"
    f = "{:+.4f}" if signed else "{:.4f}"
    if s["n"] == 1:
        return f.format(s["mean"])
    return f"{f.format(s['mean'])} [{f.format(s['min'])}, {f.format(s['max'])}]"


def analyse(bases):
    out = []
    for steps in sorted(bases):
        b = bases[steps]
        if not b["seeds"]:
            continue
        seeds = sorted(b["seeds"])
        cont = [b["seeds"][s]["rows"]["baseline-base"]["final_eval_loss"] for s in seeds]
        row = {"base_steps": steps, "base_tokens": b["tokens"],
               "base_loss": b["seeds"][seeds[0]]["rows"]["baseline-base"].get("base_loss"),
               "pretrain_final_loss": b["pretrain_final_loss"], "seeds": seeds,
               "continued": spread(cont), "continued_per_seed": cont, "variants": {}}
        for name, label, layers in VARIANTS:
            d_tok, d_flops_curve, finals = [], [], []
            for s, c in zip(seeds, cont):
                v = b["seeds"][s]["rows"].get(name)
                if not v or not finite(v.get("final_eval_loss")):
                    continue
                finals.append(v["final_eval_loss"])
                d_tok.append(v["final_eval_loss"] - c)
                # The block-expansion sweep has no baseline-base of its own: read every curve
                # at the FLOPs of the same seed's base continued.
                at = loss_at_flops(v["curve"], b["seeds"][s]["rows"]["baseline-base"]["flops"])
                if finite(at):
                    d_flops_curve.append(at - c)
            fm = b["flops_matched"].get(layers)
            d_fm = None
            if fm and 1234 in b["seeds"]:
                v = b["seeds"][1234]["rows"].get(name)
                if v and finite(v.get("final_eval_loss")):
                    d_fm = v["final_eval_loss"] - fm["final_eval_loss"]
            if not finals:
                continue
            row["variants"][name] = {
                "label": label, "layers": layers, "final": spread(finals),
                "final_per_seed": finals, "vs_continued_equal_tokens": spread(d_tok),
                "vs_continued_equal_flops_curve": spread(d_flops_curve),
                "vs_continued_equal_flops_matched": d_fm,
                "flops_matched_continued": fm["final_eval_loss"] if fm else None}
        out.append(row)
    return out


def crossover(rows, name, key):
    """Base tokens where the difference changes sign (log-linear between budgets), or None."""
    pts = []
    for r in rows:
        v = r["variants"].get(name)
        x = v and v.get(key)
        x = x["mean"] if isinstance(x, dict) else x
        if finite(x):
            pts.append((r["base_tokens"], x))
    for (t0, d0), (t1, d1) in zip(pts, pts[1:]):
        if d0 > 0 >= d1 or d0 < 0 <= d1:
            a = d0 / (d0 - d1)
            return math.exp(math.log(t0) + a * (math.log(t1) - math.log(t0))), d0 > 0
    return None


def table(rows):
    lines = [
        "| base pretraining tokens | base loss | base continued (final) | variant | final "
        "| equal tokens | equal FLOPs (curve) | equal FLOPs (matched run) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = True
        for name, _, _ in VARIANTS:
            v = r["variants"].get(name)
            if not v:
                continue
            head = (f"{r['base_tokens'] / 1e6:.2f}M ({r['base_steps']} steps) | "
                    f"{r['base_loss']:.4f} | {fmt(r['continued'], signed=False)} |") if first \
                else "| | |"
            fm = v["vs_continued_equal_flops_matched"]
            lines.append(f"| {head} {name} | {fmt(v['final'], signed=False)} | "
                         f"{fmt(v['vs_continued_equal_tokens'])} | "
                         f"{fmt(v['vs_continued_equal_flops_curve'])} | "
                         f"{'-' if fm is None else f'{fm:+.4f}'} |")
            first = False
    lines.append("")
    lines.append("Differences are the variant's held-out loss minus the base continued's (negative: "
                 "up-scaling wins); several seeds: mean [min, max] of the paired differences. "
                 "Equal FLOPs (curve): the variant's eval curve read at the FLOPs the base "
                 "continued spent on the budget (mid-schedule for the variant). Equal FLOPs "
                 "(matched run): the variant's final loss minus the base continued for as many "
                 "FLOPs as the variant spent, each at the end of its own decayed schedule (seed "
                 "1234).")
    for name, label, _ in VARIANTS:
        for key, what in [("vs_continued_equal_tokens", "equal tokens"),
                          ("vs_continued_equal_flops_matched", "equal FLOPs (matched run)"),
                          ("vs_continued_equal_flops_curve", "equal FLOPs (curve)")]:
            c = crossover(rows, name, key)
            if c:
                lines.append(f"- {name}, {what}: crossover at about {c[0] / 1e6:.1f}M base "
                             f"pretraining tokens ({'up-scaling wins above' if c[1] else 'up-scaling wins below'})")
    return "\n".join(lines) + "\n"


def figure(rows, bases, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    fpt = next((s["rows"]["baseline-base"]["flops_per_token"] for b in bases.values()
                for s in b["seeds"].values()), None)
    colors = {"dus-m1": "tab:blue", "dus-m0": "tab:orange", "blockexp-every2": "tab:green"}
    panels = [("vs_continued_equal_tokens", "equal tokens (4.19M continued tokens each)"),
              ("vs_continued_equal_flops_matched",
               "equal FLOPs: base continued for the variant's FLOPs")]
    for ax, (key, title) in zip(axes[:2], panels):
        for name, label, _ in VARIANTS:
            xs, ys, lo, hi = [], [], [], []
            for r in rows:
                v = r["variants"].get(name)
                x = v and v.get(key)
                if isinstance(x, dict):
                    xs.append(r["base_tokens"])
                    ys.append(x["mean"])
                    lo.append(x["mean"] - x["min"])
                    hi.append(x["max"] - x["mean"])
                elif finite(x):
                    xs.append(r["base_tokens"])
                    ys.append(x)
                    lo.append(0)
                    hi.append(0)
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=label,
                            color=colors[name])
            if key == "vs_continued_equal_flops_matched":
                xs2, ys2 = [], []
                for r in rows:
                    v = r["variants"].get(name)
                    x = v and v.get("vs_continued_equal_flops_curve")
                    if isinstance(x, dict):
                        xs2.append(r["base_tokens"])
                        ys2.append(x["mean"])
                if xs2:
                    ax.plot(xs2, ys2, linestyle=":", marker=".", color=colors[name], alpha=0.6,
                            label=f"{name}: curve at the base's FLOPs")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        if key == "vs_continued_equal_flops_matched":  # the gap spans two decades: log, and 0
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("base pretraining tokens")
        if fpt:  # every base is the same model: its pretraining FLOPs are tokens x FLOPs/token
            top = ax.secondary_xaxis("top", functions=(lambda t: t * fpt, lambda f: f / fpt))
            top.set_xlabel("base pretraining FLOPs", fontsize=8)
        ax.set_ylabel("variant loss - base continued loss")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for steps in sorted(bases):
        pts = bases[steps]["curve"]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"base {steps} steps")
    for r in rows:
        ax.scatter([r["base_tokens"] + 4194304], [r["continued"]["mean"]], marker="x",
                   color="black")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("tokens")
    ax.set_ylabel("held-out loss")
    ax.set_title("bases' pretraining curves (x: + 4.19M continued)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "..", "recipes",
                                                      "crossover", "results"))
    args = ap.parse_args()
    bases = collect(args.study)
    rows = analyse(bases)
    os.makedirs(os.path.join(args.results, "sweeps"), exist_ok=True)
    for steps, b in bases.items():
        for seed, s in b["seeds"].items():
            for kind, raw in s["raw"].items():
                with open(os.path.join(args.results, "sweeps",
                                       f"base-s{steps}-seed{seed}-{kind}.sweep.json"), "w") as f:
                    json.dump(raw, f, indent=1)
                    f.write("\n")
        for layers, fm in b["flops_matched"].items():
            shutil.copyfile(os.path.join(fm["run_dir"], "recovery.json"),
                            os.path.join(args.results, "sweeps",
                                         f"base-s{steps}-seed{fm['seed']}-flops-matched-"
                                         f"{layers}-layers.recovery.json"))
    text = table(rows)
    with open(os.path.join(args.results, "crossover.md"), "w") as f:
        f.write(text)
    summary = {"rows": rows, "bases": {str(k): {kk: vv for kk, vv in v.items()
                                                if kk not in ("seeds",)}
                                       for k, v in bases.items()}}
    with open(os.path.join(args.results, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    if rows:
        figure(rows, bases, os.path.join(args.results, "crossover.png"))
    print(text)
    print(f"wrote {args.results}/crossover.md, crossover.png, summary.json, sweeps/")


if __name__ == "__main__":
    main()
