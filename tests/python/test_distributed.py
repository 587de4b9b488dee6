"""Distributed training on CPU: Gloo process groups, real processes on localhost.

- ddp: `dus launch --nproc 2` gives the losses of one process at the same global batch
  (relative 1e-5; the all-reduce sums in another order), with gradient accumulation on;
- zero1 (started by torchrun --no-python, as on a cluster) equals ddp; its sharded checkpoint
  saved by 2 ranks resumes on 1 and on 3 ranks and the losses continue as uninterrupted;
- a killed rank ends the run with an error naming it, within the configured timeout, both
  under the launcher and with ranks started by hand (torchrun's environment);
- SIGTERM to the launcher: every rank stops at the same step, one checkpoint, exit 0;
- dus plan: SOLAR 10.7B on 8 x 80 GB fits with zero1, not with ddp.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from dus_testlib import DUS, SRC, make_kjv_dataset, run
RTOL = 1e-5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_ranks(args, **env):
    """Ranks 0 and 1 of `dus ARGS` started by hand with torchrun's variables (no launcher), each
    with `env` added; stdout and stderr piped."""
    port = str(free_port())
    return [subprocess.Popen([DUS, *args], cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **env))
            for r in (0, 1)]


def load_json(path):
    with open(path) as f:
        return json.load(f)


def records(run_dir, kind):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, filter(str.strip, f)) if r["kind"] == kind]


def assert_close_curves(test, a, b, key="loss", rtol=RTOL):
    test.assertEqual([r["step"] for r in a], [r["step"] for r in b])
    worst = max(abs(x[key] - y[key]) / abs(x[key]) for x, y in zip(a, b))
    test.assertLess(worst, rtol, f"{key} differs by {worst:.3g} (relative)")
    return worst


class Distributed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-dist-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Exo 40:38", "genesis-exodus") + ["--set", "run.threads=1"]
        cls.report = {}

    @classmethod
    def tearDownClass(cls):
        for k, v in cls.report.items():
            print(f"  {k}: {v}")
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train_args(self, name, *extra):
        run_dir = os.path.join(self.tmp, name)
        return run_dir, ["train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, *extra]

    def test_ddp_two_ranks_equal_one_rank(self):
        # 8 sequences per step: one process runs 4 micro-batches of 2, each of 2 ranks runs 2 (so
        # accumulation micro-steps skip the all-reduce and the last one launches it).
        one, args1 = self.train_args("ddp1", "--set", "train.micro_batch=2")
        run(*args1)
        two, args2 = self.train_args("ddp2", "--set", "train.micro_batch=2", "--set", "distributed.bucket_mb=0.1")
        proc = run("launch", "--nproc", "2", "--", *args2)
        self.assertIn("[rank 0] step", proc.stdout)
        self.assertIn("[rank 1] distributed      rank 1 of 2 (gloo", proc.stdout)
        self.assertNotIn("[rank 1] step", proc.stdout, "only rank 0 logs")
        self.assertIn("optimizer        ddp: ", proc.stdout)
        self.report["ddp 1 vs 2 ranks, max relative loss difference"] = assert_close_curves(
            self, records(one, "train"), records(two, "train"))
        self.report["ddp 1 vs 2 ranks, max relative eval_loss difference"] = assert_close_curves(
            self, records(one, "eval"), records(two, "eval"), key="eval_loss")
        state = load_json(os.path.join(two, "checkpoints", "step_00000012", "state.json"))
        self.assertEqual(state["world_size"], 2)
        self.assertTrue(os.path.exists(os.path.join(two, "final", "model.safetensors")))

    def test_slurm_environment_fallback(self):
        # srun sets SLURM_* (no WORLD_SIZE/RANK): the ranks find each other through them.
        one, args1 = self.train_args("slurm1", "--set", "train.steps=4")
        run(*args1)
        two, args2 = self.train_args("slurm2", "--set", "train.steps=4")
        port = str(free_port())
        procs = []
        for r in (0, 1):
            env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
            env.update(SLURM_NTASKS="2", SLURM_PROCID=str(r), SLURM_LOCALID=str(r),
                       SLURM_LAUNCH_NODE_IPADDR="127.0.0.1", MASTER_PORT=port)
            procs.append(subprocess.Popen([DUS, *args2], cwd=SRC, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, out + err)
        self.assertIn("rank 0 of 2", outs[0][0])
        self.report["SLURM env, 1 vs 2 ranks, max relative loss difference"] = assert_close_curves(
            self, records(one, "train"), records(two, "train"))

    def torchrun(self, nproc, args, env=None):
        torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
        if not os.path.exists(torchrun):
            return run("launch", "--nproc", str(nproc), "--", *args, env=env)
        e = dict(os.environ, **(env or {}))
        cmd = [torchrun, "--no-python", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), DUS, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=SRC, env=e, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def test_zero1_equals_ddp_and_reshards(self):
        # 12 sequences per step: splits into 1, 2 and 3 ranks of whole micro-batches of 2.
        batch = ["--set", "train.global_batch_tokens=768", "--set", "train.micro_batch=2"]
        ref, args = self.train_args("z_ref", *batch)
        run(*args)
        z2, args = self.train_args("z2", *batch, "--set", "distributed.strategy=zero1")
        self.torchrun(2, args)
        self.report["zero1 (2 ranks, torchrun) vs 1 process, max relative loss difference"] = assert_close_curves(
            self, records(ref, "train"), records(z2, "train"))
        ck = os.path.join(z2, "checkpoints", "step_00000006")
        state = load_json(os.path.join(ck, "state.json"))
        self.assertEqual([s[0] for s in state["zero1"]["shards"]],
                         ["zero1_shard_00000.safetensors", "zero1_shard_00001.safetensors"])
        self.assertFalse(os.path.exists(os.path.join(ck, "model.safetensors")))
        for n in (1, 3):
            d = os.path.join(self.tmp, f"z2_resumed_on_{n}")
            shutil.copytree(z2, d)
            shutil.rmtree(os.path.join(d, "checkpoints", "step_00000012"))
            shutil.rmtree(os.path.join(d, "final"))
            with open(os.path.join(d, "checkpoints", "latest"), "w") as f:
                f.write("step_00000006\n")
            if n == 1:
                proc = run("resume", d)
            else:
                proc = run("launch", "--nproc", str(n), "--", "resume", d)
            self.assertIn("resuming from", proc.stdout)
            a, b = records(z2, "train"), records(d, "train")
            self.report[f"zero1 saved on 2 ranks, resumed on {n}: max relative loss difference"] = \
                assert_close_curves(self, a, b)
            if n == 3:
                state = load_json(os.path.join(d, "checkpoints", "step_00000012", "state.json"))
                self.assertEqual(len(state["zero1"]["shards"]), 3)

    def test_zero2_equals_ddp_on_1_2_3_ranks_and_reshards(self):
        # zero2 reduces every micro-batch's gradient buckets to their shard owners (small buckets:
        # many of them, several straddling the shard boundaries) and accumulates in fp32: the
        # same losses as one ddp process on 1, 2 and 3 ranks, and its checkpoint resumes on
        # another world size.
        batch = ["--set", "train.global_batch_tokens=768", "--set", "train.micro_batch=2"]
        ref, args = self.train_args("z2ref", *batch)
        run(*args)
        zero2 = ["--set", "distributed.strategy=zero2", "--set", "distributed.bucket_mb=0.05"]
        runs = {}
        for n in (1, 2, 3):
            d, args = self.train_args(f"zero2_{n}", *batch, *zero2)
            proc = run("launch", "--nproc", str(n), "--", *args)
            self.assertIn("optimizer        zero2: ", proc.stdout)
            comm = re.search(r"communication\s+(.+) of gradient reductions per step", proc.stdout)
            self.assertIsNotNone(comm, proc.stdout)
            self.report[f"zero2 on {n} rank(s): gradient reductions per step per rank"] = comm.group(1)
            self.report[f"zero2 on {n} rank(s) vs 1 ddp process, max relative loss difference"] = \
                assert_close_curves(self, records(ref, "train"), records(d, "train"))
            runs[n] = d
        d = os.path.join(self.tmp, "zero2_2_resumed_on_3")
        shutil.copytree(runs[2], d)
        shutil.rmtree(os.path.join(d, "checkpoints", "step_00000012"))
        shutil.rmtree(os.path.join(d, "final"))
        with open(os.path.join(d, "checkpoints", "latest"), "w") as f:
            f.write("step_00000006\n")
        proc = run("launch", "--nproc", "3", "--", "resume", d)
        self.assertIn("resuming from", proc.stdout)
        self.report["zero2 saved on 2 ranks, resumed on 3: max relative loss difference"] = \
            assert_close_curves(self, records(runs[2], "train"), records(d, "train"))

    def test_killed_rank_is_named_under_launch(self):
        run_dir, args = self.train_args("killed", "--set", "distributed.timeout_s=30")
        t0 = time.monotonic()
        proc = run("launch", "--nproc", "2", "--", *args, check=False,
                   env={"DUS_TEST_KILL_AT_STEP": "3", "DUS_TEST_KILL_RANK": "1"}, timeout=120)
        elapsed = time.monotonic() - t0
        out = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0, out)
        self.assertIn("launch: rank 1", out)
        self.assertIn("killed by signal 9", out)
        self.assertLess(elapsed, 60, out)
        self.report["killed rank under launch: seconds to exit"] = round(elapsed, 1)

    def test_killed_rank_is_named_by_survivor(self):
        # Ranks started by hand with torchrun's variables: no launcher to tell; rank 0 must.
        run_dir, args = self.train_args("killed_raw", "--set", "distributed.timeout_s=20")
        procs = start_two_ranks(args, DUS_TEST_KILL_AT_STEP="3", DUS_TEST_KILL_RANK="1")
        t0 = time.monotonic()
        out0, err0 = procs[0].communicate(timeout=120)
        elapsed = time.monotonic() - t0
        procs[1].communicate(timeout=30)
        self.assertEqual(procs[1].returncode, -9)
        self.assertNotEqual(procs[0].returncode, 0, out0 + err0)
        self.assertIn("rank 1 stopped responding", err0)
        self.assertLess(elapsed, 60)
        self.report["survivor names the killed rank after (s)"] = round(elapsed, 1)

    def test_hung_rank_is_named_by_survivor(self):
        # Rank 1 stays alive but never reaches the next collective: rank 0 must not hang forever.
        run_dir, args = self.train_args("hung", "--set", "distributed.timeout_s=10")
        procs = start_two_ranks(args, DUS_TEST_HANG_AT_STEP="3", DUS_TEST_KILL_RANK="1")
        t0 = time.monotonic()
        try:
            out0, err0 = procs[0].communicate(timeout=120)
        finally:
            procs[1].kill()
            procs[1].communicate()
        elapsed = time.monotonic() - t0
        self.assertNotEqual(procs[0].returncode, 0, out0 + err0)
        self.assertIn("rank 1", err0)
        self.assertLess(elapsed, 90, err0)
        self.report["survivor names the hung rank after (s)"] = round(elapsed, 1)

    def test_sigterm_to_launcher_checkpoints_every_rank(self):
        run_dir, args = self.train_args("sigterm", "--set", "train.steps=400", "--set", "checkpoint.every=1000",
                                        "--set", "eval.every=1000", "--set", "distributed.strategy=zero1")
        proc = subprocess.Popen([DUS, "launch", "--nproc", "2", "--", *args], cwd=SRC, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[rank 0] step     4/"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=120)
        out = "".join(lines) + rest
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("checkpoint", out)
        self.assertIn("(SIGTERM", out)
        ck = [d for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.startswith("step_")]
        self.assertEqual(len(ck), 1, out)
        state = load_json(os.path.join(run_dir, "checkpoints", ck[0], "state.json"))
        self.assertEqual(len(state["zero1"]["shards"]), 2)
        self.assertLess(state["step"], 400)

    def test_plan_solar_zero1_fits_ddp_does_not(self):
        proc = run("plan", "recipes/solar-10.7b.yaml", "--world-size", "8", "--config",
                   "recipes/configs/mistral-7b-v0.1.json")
        out = proc.stdout
        self.assertIn("7,241,732,096", out)
        self.assertIn("10,731,524,096", out)
        ddp, rest = out.split("per device: ddp")[1].split("per device: zero1")
        zero1, zero2 = rest.split("per device: zero2")
        self.assertIn("DOES NOT FIT", ddp)
        # The recipe's zero2, and zero1: under 80 GB at start-up, in a step and at evaluation.
        for block in (zero1, zero2):
            for row in ("peak at start-up", "peak in a training step", "peak at an evaluation step"):
                line = next(l for l in block.splitlines() if row in l)
                self.assertIn("fits", line, block)
            self.assertNotIn("DOES NOT FIT", block)
        self.assertIn("(the recipe's strategy)", zero2)

    def test_plan_matches_peak_rss_on_cpu(self):
        # A small but not trivial model (3.2 M parameters, 2048 tokens per micro-batch, fp32):
        # the plan's total (its runtime line is this process's own RSS with LibTorch loaded)
        # against the training process's peak RSS, measured by a fresh parent.
        cfg = os.path.join(self.tmp, "plan_model.json")
        with open(cfg, "w") as f:
            json.dump({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 512,
                       "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
                       "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 32,
                       "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                       "sliding_window": None, "tie_word_embeddings": False, "bos_token_id": 1,
                       "eos_token_id": 2}, f)
        sets = [*self.common, "--set", f"model.config={cfg}", "--set", "data.seq_len=256", "--set",
                "train.micro_batch=8", "--set", "train.global_batch_tokens=2048", "--set", "train.steps=3",
                "--set", "eval.every=100", "--set", "eval.sequences=2", "--set", "eval.batch=2",
                "--set", "log.tensorboard=false"]
        plan = run("plan", "recipes/tests/base.yaml", "--device", "cpu", "--strategy", "ddp", *sets).stdout
        total = float(re.search(r"total\s+([\d.]+) GB", plan).group(1))
        runtime = float(re.search(r"runtime reserve\s+([\d.]+) GB", plan).group(1))
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe, DUS, "train", "recipes/tests/base.yaml", "--run-dir",
                              os.path.join(self.tmp, "plan_rss"), *sets], capture_output=True, text=True,
                             cwd=SRC, check=True).stdout
        peak = int(out.split()[-1]) * 1024 / 1e9
        self.report["plan vs peak RSS (CPU, 3.2M params, 8x256 tokens)"] = (
            f"plan {total:.3f} GB, measured {peak:.3f} GB ({100 * (peak - total) / total:+.1f}%); beyond the "
            f"{runtime:.3f} GB runtime: plan {total - runtime:.3f}, measured {peak - runtime:.3f}")
        self.assertLess(abs(peak - total) / total, 0.15, plan)

    def test_startup_peak_matches_plan_zero1_two_ranks(self):
        # Start-up of a DUS run on 2 zero1 ranks (fp32 on CPU): a 51M-parameter base loaded,
        # evaluated, scaled to 76M, the strategy built from the host masters, the scaled model
        # evaluated. Each rank's peak RSS before its first step against `dus plan`'s start-up peak.
        cfg = os.path.join(self.tmp, "startup_model.json")
        with open(cfg, "w") as f:
            json.dump({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 512,
                       "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 8,
                       "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 64,
                       "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                       "sliding_window": None, "tie_word_embeddings": False, "bos_token_id": 1,
                       "eos_token_id": 2}, f)
        small = ["--set", "train.steps=1", "--set", "train.warmup_steps=0", "--set", "eval.every=100", "--set", "eval.sequences=4",
                 "--set", "eval.batch=2", "--set", "log.tensorboard=false", "--set", "train.micro_batch=2",
                 "--set", "train.global_batch_tokens=256"]
        base, args = self.train_args("startup_base", *small, "--set", f"model.config={cfg}")
        run(*args)
        sets = [*self.common, *small, "--set", "model.config=null", "--set",
                f"model.init_from={base}/final", "--set", "scaling.method=dus", "--set", "scaling.m=2",
                "--set", "distributed.strategy=zero1"]
        plan = run("plan", "recipes/tests/base.yaml", "--device", "cpu", "--strategy", "zero1",
                   "--world-size", "2", *sets).stdout
        planned = float(re.search(r"peak at start-up\s+([\d.]+) GB", plan).group(1))
        runtime = float(re.search(r"runtime reserve\s+([\d.]+) GB", plan).group(1))
        run_dir = os.path.join(self.tmp, "startup_zero1")
        proc = run("launch", "--nproc", "2", "--", "train", "recipes/tests/base.yaml", "--run-dir", run_dir,
                   *sets, env=dict(os.environ, DUS_LOG_ALL_RANKS="1"))
        peaks = {int(r): int(b) / 1e9 for r, b in
                 re.findall(r"\[rank (\d)\] start-up\s+peak resident memory .*rss_bytes=(\d+)", proc.stdout)}
        self.assertEqual(sorted(peaks), [0, 1], proc.stdout)
        for r, peak in peaks.items():
            self.report[f"start-up peak RSS, zero1 rank {r} (51M -> 76M params, fp32)"] = (
                f"plan {planned:.3f} GB, measured {peak:.3f} GB ({100 * (peak - planned) / planned:+.1f}%); "
                f"beyond the {runtime:.3f} GB runtime: plan {planned - runtime:.3f}, measured {peak - runtime:.3f}")
            self.assertLess(abs(peak - planned) / planned, 0.10, plan)


if __name__ == "__main__":
    unittest.main(verbosity=2)
