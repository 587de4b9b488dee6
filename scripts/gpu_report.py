#!/usr/bin/env python3
"""The helpers of scripts/gpu_run.sh (standard library only: it runs under whatever python3 the
GPU machine has, and under the venv in the dry run).

  gpu_report.py corpus --out FILE --bytes N [--seed S]     deterministic pseudo-text, one
      document per line: a fixed lexicon, each word with a few likely successors (a bigram
      grammar), so a model has something to learn and its loss falls
  gpu_report.py model --out FILE --hidden H --layers L --heads A --kv-heads K --head-dim D
      --intermediate I --vocab V --max-positions P                a MistralForCausalLM config.json
  gpu_report.py layers --config IN --layers L --out OUT     IN with num_hidden_layers = L
  gpu_report.py ranks --nproc N -- DUS ARGS...              N ranks of DUS ARGS started by hand with
      torchrun's variables, all on device 0 (LOCAL_RANK=0) and each with its own NCCL_HOSTID, so
      NCCL accepts several ranks on one GPU (it refuses two ranks of one host on one device,
      "Duplicate GPU detected"; with distinct host ids they talk over its socket transport on
      loopback). Output lines prefixed "[rank i] "; exit code: the first failing rank's
  gpu_report.py report --work DIR --out FILE                the markdown report (see gpu_run.sh)

The report reads what gpu_run.sh leaves in WORK: info.env (key=value facts about the machine
and the build), steps.tsv (one line per step: id, rc, seconds, limit, expected rc, log, note),
logs/*.log, runs/*/metrics.jsonl and runs/*/final/*.safetensors. Re-rendered after every step,
so a run cut short still leaves a report of what it reached.
"""

import argparse
import bisect
import itertools
import json
import math
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time

# ---------------------------------------------------------------------------------------------
# corpus, model, layers


def make_corpus(path, n_bytes, seed):
    rng = random.Random(seed)
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "th", "st", "pr"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
    codas = ["", "", "n", "r", "s", "t", "nd", "ll", "th"]
    lexicon = set()
    while len(lexicon) < 3000:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.choice([1, 1, 2, 2, 3])))
        lexicon.add(word)
    words = sorted(lexicon)
    rng.shuffle(words)
    # Zipf-like unigram weights; each word prefers 6 successors (80% of the time).
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words))))

    def unigram():
        return bisect.bisect_left(cum, rng.random() * cum[-1])

    successors = [[unigram() for _ in range(6)] for _ in words]
    out, size = [], 0
    while size < n_bytes:
        sentences = []
        for _ in range(rng.randint(1, 4)):
            w = unigram()
            seq = [w]
            for _ in range(rng.randint(4, 18)):
                w = rng.choice(successors[w]) if rng.random() < 0.8 else unigram()
                seq.append(w)
            text = " ".join(words[i] for i in seq)
            sentences.append(text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!", "?", ";"]))
        line = " ".join(sentences)
        out.append(line)
        size += len(line) + 1
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"corpus {path}: {len(out)} lines, {size} bytes (seed {seed})")


def write_model(a):
    cfg = {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "vocab_size": a.vocab, "hidden_size": a.hidden, "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim, "max_position_embeddings": a.max_positions, "rms_norm_eps": 1e-05,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "sliding_window": None,
        "tie_word_embeddings": False, "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2,
        "dtype": "float32",
    }
    with open(a.out, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def write_layers(a):
    with open(a.config) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = a.layers
    with open(a.out, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# reading what gpu_run.sh left


def read_env(path):
    info = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v
    return info


class Step:
    def __init__(self, fields):
        self.id, rc, self.seconds, self.limit, self.expect, self.log, self.note = (fields + [""] * 7)[:7]
        self.rc = rc  # a number, or "skip"

    @property
    def skipped(self):
        return self.rc == "skip"

    @property
    def ok(self):
        return not self.skipped and self.rc == self.expect

    @property
    def timed_out(self):
        return self.rc in ("124", "137") and self.expect != "137"

    def verdict(self):
        if self.skipped:
            return "SKIPPED"
        if self.ok:
            return "PASS"
        return "TIMEOUT" if self.timed_out else "FAIL"


def read_steps(path):
    steps = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    s = Step(line.rstrip("\n").split("\t"))
                    steps[s.id] = s  # a re-run step replaces the earlier line
    return steps


def read_text(path, tail=None):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return text[-tail:] if tail else text


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    records = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass  # a torn last line of a killed run
    return records


def train_losses(run_dir):
    return [(r["step"], r.get("loss")) for r in read_metrics(run_dir) if r.get("kind") == "train"]


def bits(x):
    """The IEEE-754 bits of a logged loss (None for a missing or non-numeric value). metrics.jsonl
    holds the shortest round-trip form, so equal bits here are equal doubles in the trainer."""
    if not isinstance(x, (int, float)):
        return None
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def result_line(text):
    """key=value pairs of the last `result ...` line (dus bench train, bench_hf_train.py)."""
    found = None
    for line in text.splitlines():
        if line.startswith("result "):
            found = line
    if not found:
        return {}
    out = {}
    for tok in found.split()[1:]:
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def safetensors_tensors(path):
    """name -> (dtype, shape, raw bytes) of a .safetensors file, parsed by hand (no torch)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        b, e = meta["data_offsets"]
        out[name] = (meta["dtype"], tuple(meta["shape"]), data[b:e])
    return out


def compare_weights(dir_a, dir_b):
    """(equal, detail) for the final/ models of two runs, tensor by tensor, bit for bit."""
    files = sorted(f for f in os.listdir(dir_a) if f.endswith(".safetensors")) if os.path.isdir(dir_a) else []
    if not files:
        return None, f"no .safetensors in {dir_a}"
    differing, count = [], 0
    for name in files:
        pb = os.path.join(dir_b, name)
        if not os.path.exists(pb):
            return False, f"{pb} missing"
        ta, tb = safetensors_tensors(os.path.join(dir_a, name)), safetensors_tensors(pb)
        if sorted(ta) != sorted(tb):
            return False, f"{name}: tensor names differ"
        for k in ta:
            count += 1
            if ta[k] != tb[k]:
                differing.append(k)
    if differing:
        return False, f"{len(differing)} of {count} tensors differ (first: {differing[0]})"
    return True, f"all {count} tensors bitwise equal"


# ---------------------------------------------------------------------------------------------
# the report


def fmt(x, spec=".6g"):
    return "-" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


class Report:
    def __init__(self, work):
        self.work = work
        self.info = read_env(os.path.join(work, "info.env"))
        self.steps = read_steps(os.path.join(work, "steps.tsv"))
        self.lines = []
        self.checks = []  # (name, PASS|FAIL|SKIPPED|INFO, detail) for the summary

    def log(self, name):
        return read_text(os.path.join(self.work, "logs", name + ".log"))

    def run_dir(self, name):
        return os.path.join(self.work, "runs", name)

    def add(self, *lines):
        self.lines.extend(lines)

    def step_row(self, sid, what):
        s = self.steps.get(sid)
        if not s:
            return f"| {sid} | {what} | not reached | | | |"
        note = s.note.replace("|", "/")
        rc = "-" if s.skipped else s.rc
        return f"| {sid} | {what} | {s.verdict()} | {rc} (want {s.expect}) | {s.seconds} / {s.limit} | {note} |"

    def step_verdict(self, sid):
        s = self.steps.get(sid)
        return s.verdict() if s else "not reached"

    # -- sections ---------------------------------------------------------------------------

    def header(self):
        i = self.info
        dry = i.get("mode") == "dry-run"
        self.add(f"# DUS Trainer GPU report{' (DRY RUN on CPU: logic check, not a GPU result)' if dry else ''}", "")
        self.add("| fact | value |", "|---|---|")
        for key, label in [("date", "date (UTC)"), ("commit", "commit"), ("mode", "mode"), ("device", "device"),
                           ("gpu", "GPU"), ("gpu_memory", "GPU memory"), ("driver", "driver"),
                           ("torch", "torch"), ("nvcc", "nvcc"), ("cores", "CPU cores"),
                           ("transformers", "transformers"), ("bench_device_flag", "dus bench train --device"),
                           ("bench_layers_flag", "dus bench train --layers"),
                           ("share_gpus", "DUS_SHARE_GPUS in the sources"), ("budget_s", "wall budget (s)"),
                           ("elapsed_s", "elapsed (s)")]:
            if key in i:
                self.add(f"| {label} | {i[key]} |")
        self.add("")

    def build_section(self):
        self.add("## 1. Configure and build", "",
                 "| step | what | result | rc | seconds / limit | note |", "|---|---|---|---|---|---|")
        self.add(self.step_row("configure", "cmake configure (CUDA kernels ON)"),
                 self.step_row("build", "cmake --build --target dus test_kernels (keep going)"), "")
        c, b = self.steps.get("configure"), self.steps.get("build")
        if not c:
            self.checks.append(("build", "not reached", ""))
        elif c.skipped and b and b.skipped:
            self.checks.append(("build", "SKIPPED", b.note))
        else:
            built = f"dus built: {self.info.get('built_dus', '?')}, test_kernels built: {self.info.get('built_test_kernels', '?')}"
            self.add(built, "")
            ok = c.ok and b is not None and b.ok
            secs = sum(float(s.seconds) for s in (c, b) if s and not s.skipped)
            self.checks.append(("configure + build", "PASS" if ok else "FAIL", f"{secs:.0f} s; {built}"))
            if not ok:
                tail = self.log("build")[-3000:] if b else self.log("configure")[-3000:]
                errors = [l for l in tail.splitlines() if "error" in l.lower()][:15]
                self.add("Build log (error lines of the tail):", "", "```", *(errors or tail.splitlines()[-15:]), "```", "")

    def kernels_section(self):
        self.add("## 2. Kernel op tests", "",
                 "| step | what | result | rc | seconds / limit | note |", "|---|---|---|---|---|---|",
                 self.step_row("kernels_gpu", 'test_kernels "[gpu]"'),
                 self.step_row("kernels_selftest", "self-test table (kernels: auto)"), "")
        text = self.log("kernels_gpu")
        summary = [l for l in text.splitlines() if re.match(r"^(test cases|assertions|All tests|===)", l)]
        skips = [l.strip() for l in text.splitlines() if "skip" in l.lower()][:5]
        if summary or skips:
            self.add("```", *[l for l in summary if not l.startswith("===")], *skips, "```", "")
        table = [l for l in self.log("kernels_selftest").splitlines()
                 if re.match(r"^  (rmsnorm|rope|swiglu|cross_entropy|adamw|attention)\b|^kernels", l)]
        if table:
            self.add("Self-test (max error per op, as resolve_kernels logs it):", "", "```", *table, "```", "")
        v = self.step_verdict("kernels_gpu")
        self.checks.append(("kernel op tests [gpu]", v, summary[-1] if summary else ""))

    def resume_section(self):
        self.add("## 3. Single-GPU DUS training, kill -9 and exact resume", "",
                 "| step | what | result | rc | seconds / limit | note |", "|---|---|---|---|---|---|")
        for sid, what in [("corpus", "generate the pseudo-text corpus (python)"),
                          ("tokenizer", "dus tokenizer train"), ("prepare", "dus prepare"),
                          ("base_train", "dus train: from-scratch base"),
                          ("dus_straight", "dus train: DUS m=1, straight"),
                          ("dus_killed", "dus train: DUS m=1, DUS_TEST_KILL_AT_STEP"),
                          ("dus_resume", "dus resume of the killed run")]:
            self.add(self.step_row(sid, what))
        self.add("")
        for name, sid in [("base", "base_train"), ("straight", "dus_straight")]:
            lines = [l for l in self.log(sid).splitlines()
                     if re.match(r"^(device|kernels|precision|scaled|seam|base_loss|scaled_loss_0|matmul peak|batch) ", l)]
            if lines:
                self.add(f"`{name}` run:", "", "```", *lines, "```", "")
        a, b = train_losses(self.run_dir("straight")), train_losses(self.run_dir("killed"))
        want = int(self.info.get("dus_steps", "0") or 0)
        ck_step = None
        m = re.search(r"resuming from \S+ \(step (\d+)\)", self.log("dus_resume"))
        if m:
            ck_step = int(m.group(1))
        if not a or not b:
            self.checks.append(("resume bitwise equal", "FAIL" if self.steps.get("dus_resume") else "not reached",
                                "missing metrics"))
            return
        steps_a, steps_b = [s for s, _ in a], [s for s, _ in b]
        equal_steps = steps_a == steps_b == list(range(1, want + 1))
        diffs = []
        for (s, x), (_, y) in zip(a, b):
            d = abs(x - y) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else math.inf
            diffs.append((s, d, bits(x) == bits(y) and bits(x) is not None))
        all_bits = equal_steps and all(eq for _, _, eq in diffs)
        max_d = max(d for _, d, _ in diffs)
        before = [d for s, d, _ in diffs if ck_step is not None and s <= ck_step]
        after = [d for s, d, _ in diffs if ck_step is None or s > ck_step]
        ea = [r for r in read_metrics(self.run_dir("straight")) if r.get("kind") == "eval"]
        eb = [r for r in read_metrics(self.run_dir("killed")) if r.get("kind") == "eval"]
        ev_eq = [(x.get("step"), bits(x.get("eval_loss")) == bits(y.get("eval_loss"))) for x, y in zip(ea, eb)]
        w_eq, w_detail = compare_weights(os.path.join(self.run_dir("straight"), "final"),
                                         os.path.join(self.run_dir("killed"), "final"))
        verdict = "PASS" if all_bits and self.step_verdict("dus_killed") == "PASS" else "FAIL"
        self.add(f"**Resume equality: {verdict}** — per-step training loss (metrics.jsonl, kind \"train\", key "
                 f"\"loss\") of the straight run vs the killed+resumed run: steps {steps_a[0]}..{steps_a[-1]} "
                 f"({len(a)}) vs {len(b)} records; bitwise equal: {'yes' if all_bits else 'NO'}; "
                 f"max |diff| {max_d:.3g}.", "")
        if before and max(before) > 0:
            self.add("> The steps before the checkpoint already differ, in two processes fed the same data: the "
                     "GPU path is not deterministic run to run (atomics: e.g. flash attention's backward "
                     "accumulates dQ with atomicAdd unless deterministic algorithms are on), so no resume can be "
                     "bitwise equal until the trainer runs deterministic kernels on CUDA.", "")
        self.add(f"- killed in step {self.info.get('kill_at', '?')}, resumed from the checkpoint of step "
                 f"{ck_step if ck_step is not None else '?'}: max |diff| up to that step (two processes, same "
                 f"inputs: run-to-run determinism) {fmt(max(before) if before else None, '.3g')}; after it "
                 f"(the resume itself) {fmt(max(after) if after else None, '.3g')}",
                 f"- eval losses: {len(ea)} vs {len(eb)} records, "
                 f"{'all bitwise equal' if ev_eq and all(e for _, e in ev_eq) and len(ea) == len(eb) else 'DIFFER'}",
                 f"- final weights (final/*.safetensors, bytes per tensor): {w_detail}", "")
        self.add("| step | straight | killed + resumed | abs diff |", "|---|---|---|---|")
        for (s, x), (_, y) in zip(a, b):
            self.add(f"| {s} | {fmt(x, '.17g')} | {fmt(y, '.17g')} | "
                     f"{fmt(abs(x - y) if isinstance(x, float) and isinstance(y, float) else None, '.3g')} |")
        self.add("")
        self.checks.append(("resume bitwise equal", verdict, f"max |diff| {max_d:.3g} over {len(a)} steps; "
                            f"weights: {w_detail}"))
        self.straight = a

    def distributed_section(self):
        runs = [("launch1", "launch1", "dus launch --nproc 1 -- train (no process group: WORLD_SIZE 1)"),
                ("launch2_ddp", "launch2_ddp", "DUS_SHARE_GPUS=1 dus launch --nproc 2, ddp"),
                ("hand2_ddp", "hand2_ddp", "2 ranks by hand on device 0 (NCCL_HOSTID each), ddp"),
                ("launch2_zero1", "launch2_zero1", "DUS_SHARE_GPUS=1 dus launch --nproc 2, zero1"),
                ("hand2_zero1", "hand2_zero1", "2 ranks by hand on device 0 (NCCL_HOSTID each), zero1")]
        runs = [r for r in runs if r[0] in self.steps or r[0] == "launch1"]
        self.add("## 4. Data parallel: dus launch with one rank; two ranks sharing the GPU", "",
                 "| step | what | result | rc | seconds / limit | note |", "|---|---|---|---|---|---|",
                 *[self.step_row(sid, what) for sid, _, what in runs], "")
        ref = getattr(self, "straight", None) or train_losses(self.run_dir("straight"))
        bound = float(self.info.get("dist_rtol", "1e-2"))
        self.add(f"Losses against the single-process straight run of section 3 (relative difference per step; "
                 f"sanity bound {bound:g}: "
                 f"{'fp32 order-of-summation noise' if bound < 1e-4 else 'bf16 runs whose batch splits differently drift apart; not a parity claim'}).",
                 "", "| run | backend | steps | first loss | last loss | max rel diff | within bound |",
                 "|---|---|---|---|---|---|---|")
        for sid, name, _ in runs:
            s = self.steps.get(sid)
            if s and s.skipped:
                self.add(f"| {name} | - | - | - | - | - | skipped: {s.note} |")
                self.checks.append((f"data parallel {name}", "SKIPPED", s.note))
                continue
            if not s:
                self.checks.append((f"data parallel {name}", "not reached", ""))
                continue
            losses = train_losses(self.run_dir(name))
            m = re.search(r"distributed +rank 0 of (\d+) \((\w+)", self.log(sid))
            backend = m.group(2) if m else ("none (1 rank)" if sid == "launch1" else "-")
            if not losses or not ref:
                reason = ""
                text = self.log(sid)
                if "Duplicate GPU" in text:
                    reason = "NCCL refused two ranks on one GPU (\"Duplicate GPU detected\")"
                elif "invalid device ordinal" in text.lower():
                    reason = "rank 1 asked for cuda:1 (no DUS_SHARE_GPUS in this build?)"
                self.add(f"| {name} | {backend} | 0 | - | - | - | {reason or self.step_verdict(sid)} |")
                self.checks.append((f"data parallel {name}", "FAIL", reason or "no metrics"))
                continue
            common = {st: l for st, l in ref}
            rel = [abs(l - common[st]) / abs(common[st]) for st, l in losses
                   if st in common and isinstance(l, float) and isinstance(common[st], float) and common[st]]
            worst = max(rel) if rel else math.inf
            # One rank runs the single process's code path: anything but 0 is run-to-run
            # nondeterminism. Two ranks split the batch: order-of-summation differences.
            ok = s is not None and s.ok and len(losses) == len(ref) and worst <= (0 if sid == "launch1" else bound)
            self.add(f"| {name} | {backend} | {len(losses)} | {fmt(losses[0][1], '.6f')} | {fmt(losses[-1][1], '.6f')} | "
                     f"{worst:.3g} | {'yes' if ok else 'NO'} |")
            self.checks.append((f"data parallel {name}", "PASS" if ok else "FAIL",
                                f"max rel diff {worst:.3g} vs the single process" +
                                (" (want 0: the same code path)" if sid == "launch1" else f" (bound {bound:g})")))
        self.add("")
        for sid, _, _ in runs:
            s = self.steps.get(sid)
            if s and not s.skipped and not s.ok:
                lines = [l for l in self.log(sid).splitlines() if re.search(r"error|Error|NCCL WARN|what\(\)|hint", l)]
                self.add(f"`{sid}` errors (first lines):", "", "```", *lines[:8], "```", "")

    def speed_section(self):
        self.add("## 5-6. Training speed: dus bench train vs transformers (same shapes, same GPU, same invocation)", "",
                 "| step | what | result | rc | seconds / limit | note |", "|---|---|---|---|---|---|")
        layer_sets = self.info.get("bench_layers", "").split()
        ids = []
        for L in layer_sets:
            ids += [(f"bench_dus_L{L}", f"dus bench train, {L} layers", L, "dus"),
                    (f"hf_eager_L{L}", f"transformers eager, {L} layers", L, "transformers eager"),
                    (f"hf_compile_L{L}", f"transformers + torch.compile, {L} layers", L, "transformers + compile")]
        for sid, what, _, _ in ids:
            if sid in self.steps:
                self.add(self.step_row(sid, what))
        self.add("", f"Shapes: {self.info.get('bench_shape', '?')}.", "")
        results = {sid: result_line(self.log(sid)) for sid, _, _, _ in ids}
        mfu_keys = sorted({k for sid, *_ in ids if sid.startswith("bench_dus") for k in results[sid] if k.startswith("mfu")})
        self.add("| layers | implementation | tokens/s (median) | fastest step tokens/s | vs transformers eager | "
                 "peak memory MiB | " + " | ".join(mfu_keys) + (" |" if mfu_keys else "") + " note |",
                 "|---|---|---|---|---|---|" + "---|" * len(mfu_keys) + "---|")
        for L in layer_sets:
            dus = results.get(f"bench_dus_L{L}", {})
            eager = results.get(f"hf_eager_L{L}", {})
            for sid, _, lay, impl in ids:
                if lay != L or sid not in self.steps:
                    continue
                r = results[sid]
                tok = r.get("tokens_per_s")
                ratio = (tok / eager["tokens_per_s"]) if isinstance(tok, float) and isinstance(eager.get("tokens_per_s"), float) else None
                mem, mem_note = peak_memory(r)
                mfus = []
                for k in mfu_keys:
                    if sid.startswith("bench_dus"):
                        mfus.append(fmt(r.get(k), ".1%"))
                    elif isinstance(dus.get(k), float) and isinstance(tok, float) and isinstance(dus.get("tokens_per_s"), float):
                        # The same model and tokens: the same FLOPs per token, so MFU scales with tokens/s.
                        mfus.append(fmt(dus[k] * tok / dus["tokens_per_s"], ".1%") + "*")
                    else:
                        mfus.append("-")
                note = mem_note
                if "compile_s" in r:
                    note += f" first step (compile, {r.get('compile_backend', '?')}) {r['compile_s']:.0f} s"
                if not r:
                    note = self.step_verdict(sid) + (": " + self.steps[sid].note if self.steps[sid].note else "")
                self.add(f"| {L} | {impl} | {fmt(tok, ',.0f')} | {fmt(r.get('best_tokens_per_s'), ',.0f')} | "
                         f"{fmt(ratio, '.2f')} | {fmt(mem, ',.0f')} | " + "".join(f"{m} | " for m in mfus) + f"{note} |")
        self.add("", "`*` transformers' MFU derived from dus's at the same FLOPs per token (tokens/s ratio).", "")
        for sid, _, _, impl in ids:
            r = results.get(sid)
            if r and sid.startswith("bench_dus"):
                self.add(f"`{sid}` result line: " + " ".join(f"{k}={v}" for k, v in r.items()), "")
        for sid, _, _, _ in ids:
            if sid.startswith("bench_dus"):
                table = [l for l in self.log(sid).splitlines() if l.startswith("|")]
                if table:
                    self.add(f"`{sid}` table:", "", *table, "")
        for sid, what, _, _ in ids:
            s = self.steps.get(sid)
            if not s:
                continue
            if s.skipped:
                self.checks.append((what, "SKIPPED", s.note))
            else:
                ok = s.ok and bool(results.get(sid))
                detail = f"{results[sid]['tokens_per_s']:,.0f} tokens/s" if results.get(sid, {}).get("tokens_per_s") else s.note
                self.checks.append((what, "PASS" if ok else s.verdict() if not s.ok else "FAIL", detail))

    def lead_section(self):
        i = self.info
        self.add("## Flags the lead's branch must provide (checked in this build)", "",
                 f"- `dus bench train --device cuda`: {i.get('bench_device_flag', '?')} "
                 "(without it the bench would time a CPU run of the 7B-shaped stack; the step is skipped)",
                 f"- `dus bench train --layers L`: {i.get('bench_layers_flag', '?')} "
                 "(without it the script passes a copy of the config with num_hidden_layers = L)",
                 f"- `DUS_SHARE_GPUS=1` (two ranks on one device): {i.get('share_gpus', '?')} in train/ or cli/. "
                 "NCCL 2.5+ refuses two ranks of one host on the same GPU (\"Duplicate GPU detected\", "
                 "ncclInvalidUsage) unless each rank has its own NCCL_HOSTID (then they talk over NCCL's socket "
                 "transport on loopback): the hand2_* runs do that by hand (LOCAL_RANK=0, NCCL_HOSTID per rank); "
                 "the opt-in should set it per rank too (and NCCL_SOCKET_IFNAME=lo) before the first collective.",
                 "- MFU against the datasheet and the measured peak: the bench's `result` line is parsed "
                 "generically; every `mfu_*` key it prints becomes a column above.", "")

    def summary(self):
        fails = [c for c in self.checks if c[1] not in ("PASS", "SKIPPED", "INFO")]
        overall = "PASS" if not fails and self.checks else "FAIL"
        out = [f"## Summary: {overall}", "", "| check | result | detail |", "|---|---|---|"]
        out += [f"| {n} | {v} | {d} |" for n, v, d in self.checks]
        out.append("")
        budget = [l for l in self.info.get("estimate", "").split(";") if l]
        if budget and self.info.get("mode") != "dry-run":
            # Each item is PREFIX:SECONDS; the steps whose id starts with PREFIX are summed.
            out += ["Time: the script header's estimate for an H100/H200 vs this run (steps by id prefix):", "",
                    "| steps | estimate s | this run s |", "|---|---|---|"]
            for item in budget:
                prefix, est = item.split(":")
                got = [float(s.seconds) for k, s in self.steps.items() if k.startswith(prefix) and not s.skipped]
                out.append(f"| {prefix}* | {est} | {sum(got):.0f} |" if got else f"| {prefix}* | {est} | - |")
            out.append(f"| total | {sum(int(i.split(':')[1]) for i in budget)} | {self.info.get('elapsed_s', '?')} (wall) |")
            out.append("")
        return overall, out

    def render(self):
        self.header()
        self.build_section()
        self.kernels_section()
        self.resume_section()
        self.distributed_section()
        self.speed_section()
        self.lead_section()
        overall, summary = self.summary()
        # The file has the summary first, after the facts; the console copy has it last, since
        # the device tool returns only the end of stdout.
        head_end = next((k for k, l in enumerate(self.lines) if l.startswith("## 1.")), len(self.lines))
        body = self.lines[:head_end] + summary + self.lines[head_end:] + [f"overall: {overall}"]
        console = self.lines + summary + [f"overall: {overall}"]
        return "\n".join(body) + "\n", "\n".join(console) + "\n", overall


def peak_memory(r):
    for k in ("peak_cuda_mib", "peak_gpu_mib", "cuda_peak_mib", "peak_device_mib", "peak_mem_mib"):
        if isinstance(r.get(k), float):
            return r[k], ""
    for k, v in r.items():
        if "peak" in k and any(w in k for w in ("cuda", "gpu", "device")) and isinstance(v, float):
            return v, ""
    if isinstance(r.get("peak_rss_mib"), float):
        return r["peak_rss_mib"], "memory is host RSS (no GPU peak in the result line)"
    return None, ""


def run_ranks(nproc, command, grace_s=10.0):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    lock = threading.Lock()

    def pump(rank, stream):
        for line in stream:
            with lock:
                sys.stdout.write(f"[rank {rank}] {line}")
                sys.stdout.flush()

    threads = []
    for r in range(nproc):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK="0", WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_HOSTID=f"dus-shared-gpu-rank{r}")
        env.setdefault("NCCL_SOCKET_IFNAME", "lo")
        env.setdefault("NCCL_MNNVL_ENABLE", "0")  # "hosts" of one machine: no multi-node NVLink probing
        p = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        t = threading.Thread(target=pump, args=(r, p.stdout), daemon=True)
        t.start()
        threads.append(t)
    print(f"ranks: {nproc} ranks of {' '.join(command[:2])} on device 0, MASTER_PORT={port}", flush=True)
    failed_at = None
    first_bad = 0
    while any(p.poll() is None for p in procs):
        for r, p in enumerate(procs):
            rc = p.poll()
            if rc not in (None, 0) and failed_at is None:
                failed_at, first_bad = time.time(), (128 - rc if rc < 0 else rc)
                print(f"ranks: rank {r} exited with {rc}; stopping the others in {grace_s:.0f} s", flush=True)
        if failed_at is not None and time.time() - failed_at > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=5)
    if failed_at is None:
        bad = [p.returncode for p in procs if p.returncode != 0]
        first_bad = (128 - bad[0] if bad[0] < 0 else bad[0]) if bad else 0
    return first_bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--out", required=True)
    c.add_argument("--bytes", type=int, required=True)
    c.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("model")
    for k in ("hidden", "layers", "heads", "kv-heads", "head-dim", "intermediate", "vocab", "max-positions"):
        m.add_argument("--" + k, type=int, required=True)
    m.add_argument("--out", required=True)
    lay = sub.add_parser("layers")
    lay.add_argument("--config", required=True)
    lay.add_argument("--layers", type=int, required=True)
    lay.add_argument("--out", required=True)
    rk = sub.add_parser("ranks")
    rk.add_argument("--nproc", type=int, default=2)
    rk.add_argument("command", nargs=argparse.REMAINDER, help="-- DUS ARGS...")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "corpus":
        make_corpus(a.out, a.bytes, a.seed)
    elif a.cmd == "model":
        write_model(a)
    elif a.cmd == "layers":
        write_layers(a)
    elif a.cmd == "ranks":
        command = a.command[1:] if a.command[:1] == ["--"] else a.command
        return run_ranks(a.nproc, command)
    else:
        text, console, overall = Report(a.work).render()
        for path, content in ((a.out, text), (os.path.join(a.work, "report_console.md"), console)):
            with open(path + ".tmp", "w") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
        print(f"report {a.out}: {overall}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
