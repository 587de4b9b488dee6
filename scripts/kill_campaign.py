#!/usr/bin/env python3
"""Kill campaign: kills a small training run over and over and proves that each kill loses at
most the work since the newest complete checkpoint, and that the resumed run is bitwise the
uninterrupted one.

  ~/.cache/dus-trainer/venv/bin/python scripts/kill_campaign.py [--kills 50] [--signal KILL|TERM]

1. Prepares a corpus once (the King James Bible from Debian's bible-kjv, tokenizer and shards
   made by dus) and runs the job uninterrupted: the reference (train and eval records of
   metrics.jsonl, final/model.safetensors).
2. Runs the same job again, sending --kills signals (seeded RNG), each followed by `dus resume`
   (or `dus train` again while no checkpoint exists) until the run completes; a completed run
   is compared with the reference and, while kills remain, a new one is started. A kill is
   either a uniformly random delay after the process starts (start-up, steps, saves, evals)
   or a named kill point inside a save, right after its rename, or inside an evaluation
   (DUS_TEST_KILL_AT, train/fault_injection.h).
3. After each kill: every checkpoints/step_* directory is complete (all files, a parseable
   state.json naming its step, safetensors whose header fits the file); the next resume starts
   from the newest such directory; with SIGTERM the process exits 0 with a checkpoint at the
   step it names.
4. At the end: every step's loss (each step exactly once in metrics.jsonl: a resume cuts the
   killed process's records past its checkpoint), the eval records and the final weights are
   bitwise the reference's. Prints a table; exits 1 on any failure.

Cost on 2 cores: about 2 s of start-up per process plus the steps; 50 kills in a few minutes.
Uses DUS_BIN (default build/dus).
"""

import argparse
import collections
import glob
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DUS_BIN", os.path.join(ROOT, "build", "dus"))
os.environ.setdefault("DUS_SOURCE_DIR", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
from dus_testlib import DUS, SRC, make_kjv_dataset, read_metrics  # noqa: E402

PHASES = ["start-up", "step", "save", "rename", "eval", "other"]
CHECKPOINT_FILES = ["config.json", "state.json", "recipe.yaml", "model.safetensors", "optimizer.safetensors"]


class Job:
    """The recipe: saves and evals every few steps, so kills land in them often."""

    def __init__(self, steps, ckpt_every, eval_every, data_args):
        self.steps, self.ckpt_every, self.eval_every = steps, ckpt_every, eval_every
        self.args = ["recipes/tests/base.yaml", *data_args,
                     "--set", f"train.steps={steps}", "--set", f"checkpoint.every={ckpt_every}",
                     "--set", "checkpoint.keep=2", "--set", f"eval.every={eval_every}",
                     "--set", "eval.sequences=8", "--set", "log.every=1",
                     # One thread: two OpenMP threads on two cores shared with other work spin
                     # against it (steps many times slower); the reference runs the same way.
                     "--set", "run.threads=1"]

    def eval_at(self, step):
        return step % self.eval_every == 0 or step == self.steps

    def save_at(self, step):
        return step % self.ckpt_every == 0 or step == self.steps

    def saves_after(self, step):
        """Saves a process resumed at `step` makes before the run ends."""
        return sum(1 for s in range(step + 1, self.steps + 1) if self.save_at(s))

    def evals_after(self, step):
        return sum(1 for s in range(step + 1, self.steps + 1) if self.eval_at(s))


def start(cmd, run_dir, job, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    args = ["train", *job.args, "--run-dir", run_dir] if cmd == "train" else ["resume", run_dir]
    # Line-buffered stdout: the last line printed before a kill is the phase it interrupted.
    return subprocess.Popen(["stdbuf", "-oL", DUS, *args], cwd=SRC, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def phase_of(lines, job):
    """What the process was doing when the signal came, from the last line it had printed."""
    for line in reversed(lines):
        m = re.match(r"fault point (\w+):", line)
        if m:
            return m.group(1)
    last = lines[-1] if lines else ""
    m = re.match(r"step\s+(\d+)/", last)
    if m:
        n = int(m.group(1))
        if job.eval_at(n):
            return "eval"
        return "save" if job.save_at(n) else "step"
    m = re.match(r"eval\s+step (\d+)", last)
    if m:
        return "save" if job.save_at(int(m.group(1))) else "step"
    m = re.match(r"checkpoint \S+step_(\d+)", last)
    if m:
        return "other" if int(m.group(1)) == job.steps else "step"
    if last.startswith("batch "):  # the last start-up line: step 1 is running
        return "step"
    return "other" if any(l.startswith("final model") for l in lines) else "start-up"


class Output:
    """A process's stdout read as it comes, each line with the time it arrived."""

    def __init__(self, proc):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def before(self, t):
        return [l for tl, l in self.lines if tl <= t]

    def text(self):
        self.thread.join()
        return "\n".join(l for _, l in self.lines)


def safetensors_complete(path):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            return False
        (n,) = struct.unpack("<Q", head)
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return 8 + n + end == os.path.getsize(path)


def check_checkpoints(run_dir):
    """Every checkpoints/step_* directory complete; returns (their steps, problems)."""
    root = os.path.join(run_dir, "checkpoints")
    steps, problems = [], []
    if not os.path.isdir(root):
        return steps, problems
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if re.fullmatch(r"step_\d{8}\.tmp", name) or name.startswith("latest"):
            continue  # a killed save's leftover (the next save cleans it), the `latest` pointer
        if not re.fullmatch(r"step_\d{8}", name):
            problems.append(f"unexpected entry {path}")
            continue
        missing = [f for f in CHECKPOINT_FILES if not os.path.exists(os.path.join(path, f))]
        if missing:
            problems.append(f"half-written {path}: no {', '.join(missing)}")
            continue
        try:
            with open(os.path.join(path, "state.json")) as f:
                state = json.load(f)
            if state["step"] != int(name[5:]):
                problems.append(f"{path}/state.json: step {state['step']}")
            for t in ("model.safetensors", "optimizer.safetensors"):
                if not safetensors_complete(os.path.join(path, t)):
                    problems.append(f"{path}/{t}: truncated")
        except (ValueError, KeyError, OSError) as e:
            problems.append(f"{path}: {e}")
            continue
        steps.append(int(name[5:]))
    return steps, problems


def train_view(run_dir):
    """The loss view compared: every train record, in file order."""
    return [(r["step"], r["tokens"], r["loss"], r["lr"], r["grad_norm"])
            for r in read_metrics(run_dir) if r["kind"] == "train"]


def eval_view(run_dir):
    return [r for r in read_metrics(run_dir) if r["kind"] == "eval"]


def weights(run_dir):
    from safetensors.numpy import load_file
    return load_file(os.path.join(run_dir, "final", "model.safetensors"))


def compare(run_dir, ref, job):
    """Mismatches between a completed run and the reference (empty: bitwise equal)."""
    out = []
    train = train_view(run_dir)
    steps = [t[0] for t in train]
    if steps != list(range(1, job.steps + 1)):
        dup = sorted(s for s, c in collections.Counter(steps).items() if c > 1)
        out.append(f"train steps are not 1..{job.steps} once each (repeated: {dup[:10]})")
    for a, b in zip(ref["train"], train):
        if a != b:
            out.append(f"step {a[0]}: reference {a} vs {b}")
    if ref["eval"] != eval_view(run_dir):
        out.append("eval records differ")
    w = weights(run_dir)
    if sorted(w) != sorted(ref["weights"]):
        out.append("final tensor names differ")
    else:
        for k, v in ref["weights"].items():
            if v.dtype != w[k].dtype or v.shape != w[k].shape or v.tobytes() != w[k].tobytes():
                out.append(f"final weight {k} differs")
    return out


def run_campaign(args, job, ref, work):
    rng = random.Random(args.seed)
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
    stats = dict(kills=0, resumes=0, restarts=0, runs=0, max_lost=0, mismatches=0, failures=[],
                 phases=collections.Counter(), targeted=collections.Counter(), term_before_handler=0)
    t_startup, t_step = ref["startup_s"], ref["step_s"]
    run_dir, cmd, round_no = None, "train", 0

    def fail(msg):
        stats["failures"].append(msg)
        print("FAIL " + msg, flush=True)

    while stats["kills"] < args.kills or run_dir is not None:
        if run_dir is None:
            round_no += 1
            run_dir = os.path.join(work, f"run{round_no:02d}")
            cmd, first_in_round = "train", True
        ck_steps, _ = check_checkpoints(run_dir)
        resumed_at = max(ck_steps, default=0)
        env, target = {}, None
        want_kill = stats["kills"] < args.kills
        if want_kill and rng.random() < args.targeted:
            kind = rng.choice(["save", "rename", "eval"])
            count = job.evals_after(resumed_at) if kind == "eval" else job.saves_after(resumed_at)
            if count:
                # One of the next few: the run moves on slowly, so a run sees many kills.
                target = f"{kind}:{rng.randint(1, min(count, 3))}"
                env = {"DUS_TEST_KILL_AT": target, "DUS_TEST_KILL_SIGNAL": args.signal}
        proc = start(cmd, run_dir, job, env)
        output = Output(proc)
        sent, t_kill = False, None
        if want_kill and target is None:
            delay = rng.uniform(0, t_startup + args.window_steps * t_step)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                t_kill = time.monotonic()
                proc.send_signal(sig)
                sent = True
        err = proc.stderr.read()
        proc.wait(timeout=args.timeout)
        out = output.text()
        lines = out.splitlines()
        if target and any(l.startswith("fault point") for l in lines):
            sent = True
        seen = output.before(t_kill) if t_kill is not None else lines
        if cmd == "resume":
            stats["resumes"] += 1
            m = re.search(r"resuming from \S+ \(step (\d+)\)", out)
            if m and int(m.group(1)) != resumed_at:
                fail(f"{run_dir}: resumed from step {m.group(1)}, the newest complete checkpoint is {resumed_at}")
        elif not first_in_round:
            stats["restarts"] += 1
        first_in_round = False
        completed = proc.returncode == 0 and os.path.exists(os.path.join(run_dir, "final", "model.safetensors"))

        if sent:
            stats["kills"] += 1
            phase = phase_of(seen, job)
            stats["phases"][phase] += 1
            if target:
                stats["targeted"][target.split(":")[0]] += 1
            steps_after, problems = check_checkpoints(run_dir)
            for p in problems:
                fail(f"after kill {stats['kills']} ({phase}): {p}")
            reached = max([t[0] for t in train_view(run_dir)] or [0]) if os.path.exists(
                os.path.join(run_dir, "metrics.jsonl")) else 0
            newest = max(steps_after, default=0)
            lost = max(0, reached - newest)
            stats["max_lost"] = max(stats["max_lost"], lost)
            detail = f"kill {stats['kills']:3d} {args.signal} {target or 'random':9s} {phase:8s} rc {proc.returncode:3d} " \
                     f"reached {reached:3d} newest ckpt {newest:3d} lost {lost}"
            print(detail, flush=True)
            if lost > job.ckpt_every:
                fail(f"{detail}: lost more than the steps since the previous checkpoint")
            if sig == signal.SIGKILL and proc.returncode not in (-9, 0):
                fail(f"{detail}: exit {proc.returncode}\n{err[-2000:]}")
            if sig == signal.SIGTERM and proc.returncode == -signal.SIGTERM and not seen and not lines:
                # Before Trainer::run installs its handler (loading the libraries, reading the
                # recipe): the default action ends the process before it has written anything.
                stats["term_before_handler"] += 1
            elif sig == signal.SIGTERM:
                if proc.returncode != 0:
                    fail(f"{detail}: SIGTERM gave exit {proc.returncode}, not 0\n{err[-2000:]}")
                m = re.search(r"stopped by SIGTERM at step (\d+)", out)
                if m and int(m.group(1)) != newest:
                    fail(f"{detail}: stopped at step {m.group(1)} but the newest checkpoint is {newest}")
                if proc.returncode == 0 and not m and not completed:
                    fail(f"{detail}: exit 0 without 'stopped by SIGTERM' and without a final model")
                if m and lost:
                    fail(f"{detail}: SIGTERM lost {lost} steps")
        elif proc.returncode != 0:
            fail(f"{run_dir}: dus {cmd} failed without a kill (exit {proc.returncode})\n{err[-3000:]}")
            return stats

        if completed:
            stats["runs"] += 1
            mism = compare(run_dir, ref, job)
            root = os.path.join(run_dir, "checkpoints")
            left = [n for n in os.listdir(root) if n.endswith(".tmp")]
            if left:
                mism.append(f"leftovers of killed saves remain: {left}")
            # `latest` is advisory (resume takes the newest complete step_N): a kill between the
            # last rename and its update leaves it one checkpoint behind, never dangling.
            with open(os.path.join(root, "latest")) as f:
                if not os.path.exists(os.path.join(root, f.read().strip(), "state.json")):
                    mism.append("checkpoints/latest names no complete checkpoint")
            stats["mismatches"] += len(mism)
            for m in mism:
                fail(f"{run_dir}: {m}")
            print(f"run {run_dir} complete: {'bitwise equal to the reference' if not mism else 'MISMATCH'}",
                  flush=True)
            run_dir = None
        else:
            has_ck = bool(check_checkpoints(run_dir)[0])
            cmd = "resume" if has_ck else "train"
    return stats


def reference(job, work):
    run_dir = os.path.join(work, "reference")
    t0 = time.monotonic()
    proc = start("train", run_dir, job)
    first_step = None
    for line in proc.stdout:
        if first_step is None and line.startswith("step "):
            first_step = time.monotonic() - t0
    err = proc.stderr.read()
    if proc.wait() != 0:
        sys.exit(f"reference run failed:\n{err}")
    total = time.monotonic() - t0
    ref = dict(train=train_view(run_dir), eval=eval_view(run_dir), weights=weights(run_dir),
               startup_s=first_step, step_s=(total - first_step) / job.steps, wall_s=total)
    print(f"reference: {job.steps} steps in {total:.1f} s (start-up {first_step:.1f} s, "
          f"{ref['step_s'] * 1000:.0f} ms per step with its saves and evals)", flush=True)
    return ref


def print_table(args, stats, seconds):
    print(f"\nkill campaign, signal {args.signal}, seed {args.seed}: {seconds:.0f} s")
    print(f"  {'kills sent':24s} {stats['kills']}")
    for p in PHASES:
        extra = f"  ({stats['targeted'][p]} at the named kill point)" if stats["targeted"][p] else ""
        print(f"    {p:22s} {stats['phases'][p]}{extra}")
    if args.signal == "TERM":
        print(f"  {'TERM before the handler':24s} {stats['term_before_handler']}  (exit by the signal, nothing written yet)")
    print(f"  {'resumes':24s} {stats['resumes']}")
    print(f"  {'restarts (no checkpoint)':24s} {stats['restarts']}")
    print(f"  {'runs completed':24s} {stats['runs']}")
    print(f"  {'max steps lost per kill':24s} {stats['max_lost']}")
    print(f"  {'mismatches':24s} {stats['mismatches']}")
    print(f"  {'failures':24s} {len(stats['failures'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60, help="steps of one run")
    ap.add_argument("--checkpoint-every", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--targeted", type=float, default=0.4, help="share of kills at a named kill point")
    ap.add_argument("--window-steps", type=float, default=30, help="random delays span start-up + this many steps")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one process may take")
    ap.add_argument("--work", help="work directory (default: a temporary one, removed)")
    args = ap.parse_args()
    t0 = time.monotonic()
    work = args.work or tempfile.mkdtemp(prefix="dus-kill-")
    os.makedirs(work, exist_ok=True)
    try:
        data_dir = os.path.join(work, "data")
        os.makedirs(data_dir, exist_ok=True)
        job = Job(args.steps, args.checkpoint_every, args.eval_every, make_kjv_dataset(data_dir, "Gen 1:1-Gen 50:26", "genesis"))
        ref = reference(job, work)
        stats = run_campaign(args, job, ref, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print_table(args, stats, time.monotonic() - t0)
    if stats["failures"] or stats["kills"] < args.kills:
        sys.exit(1)


if __name__ == "__main__":
    main()
