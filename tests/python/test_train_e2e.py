"""End to end on CPU: `dus train` and `dus resume` on a real corpus (the King James Bible from
Debian's bible-kjv), a tokenizer and shards made by `dus` itself, and tiny Mistral models.

- exact resume: 12 steps straight vs 6 steps, kill -9 in the middle of step 8, resume: the
  loss of every step and the final weights are identical, bit for bit;
- a truncated newest checkpoint makes resume fall back to the previous one, with a warning;
- bad recipes stop before any work, naming the key;
- DUS heals: a base pretrained from scratch, scaled (loss jumps), trained on until eval_loss
  is below base_loss, with milestones, TensorBoard scalars and a final model transformers loads;
- bits per byte: every evaluation's bpb equals its loss in bits over the UTF-8 bytes of the
  held-out text, both recomputed here from the prepared val split with the Python
  sentencepiece; no tokenizer, no bpb.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

import numpy as np
import torch
from safetensors.torch import load_file

from dus_testlib import DUS, SRC, make_kjv_dataset, read_metrics, run


def train_losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def read_split(data_dir, split):
    """The documents (lists of ids) of a prepared split, read from its shards."""
    with open(os.path.join(data_dir, "index.json")) as f:
        index = json.load(f)
    dtype = {"uint16": np.uint16, "uint32": np.uint32}[index["dtype"]]
    docs = []
    for shard in sorted(n for n in os.listdir(data_dir) if n.startswith(split + "-") and n.endswith(".bin")):
        tokens = np.fromfile(os.path.join(data_dir, shard), dtype=dtype)
        ends = np.fromfile(os.path.join(data_dir, shard[:-4] + ".idx"), dtype="<u8")
        start = 0
        for end in ends:
            docs.append([int(t) for t in tokens[start:end]])
            start = int(end)
    return docs


def held_out_text_bytes(sp, docs, seq_len, sequences, bos):
    """(targets, UTF-8 bytes) of the first `sequences` eval windows, the packed stream laid out
    as data/packed_sequences.h documents it: per document [BOS] ids EOS; window k is
    stream[k*T, k*T + T + 1), so the targets are stream[1 : n*T + 1]. Each document's bytes are
    those of sentencepiece's decode of the part of it that is a target."""
    stream, owner = [], []  # owner: (document, position in it) or None for BOS/EOS
    for d, ids in enumerate(docs):
        if bos:
            stream.append(sp.bos_id())
            owner.append(None)
        stream.extend(ids)
        owner.extend((d, i) for i in range(len(ids)))
        stream.append(sp.eos_id())
        owner.append(None)
    n = min(sequences, (len(stream) - 1) // seq_len)
    first, last = 1, n * seq_len  # inclusive target range
    parts = {}
    for k in range(first, last + 1):
        if owner[k] is not None:
            d, i = owner[k]
            lo, hi = parts.get(d, (i, i))
            parts[d] = (min(lo, i), max(hi, i))
    total = 0
    for d, (lo, hi) in parts.items():
        # decode(doc[:hi+1]) minus decode(doc[:lo]): a part that starts inside the document has
        # no dummy-prefix space to drop.
        total += len(sp.decode(docs[d][:hi + 1]).encode()) - len(sp.decode(docs[d][:lo]).encode())
    return n * seq_len, total


class TrainE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-e2e-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Exo 40:38", "genesis-exodus")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def base_run(self, name, *extra, env=None, check=True):
        run_dir = os.path.join(self.tmp, name)
        proc = run("train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, *extra, env=env, check=check)
        return run_dir, proc

    def test_exact_resume_after_kill_9(self):
        straight, _ = self.base_run("straight")
        killed, proc = self.base_run("killed", env={"DUS_TEST_KILL_AT_STEP": "8"}, check=False)
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(killed, "final")))
        run("resume", killed)
        a, b = train_losses(straight), train_losses(killed)
        self.assertEqual([s for s, _ in a], list(range(1, 13)))
        self.assertEqual(a, b, "losses differ between the straight and the killed+resumed run")
        wa = load_file(os.path.join(straight, "final", "model.safetensors"))
        wb = load_file(os.path.join(killed, "final", "model.safetensors"))
        self.assertEqual(sorted(wa), sorted(wb))
        for k in wa:
            self.assertTrue(torch.equal(wa[k], wb[k]), k)
        ea = [r for r in read_metrics(straight) if r["kind"] == "eval"]
        eb = [r for r in read_metrics(killed) if r["kind"] == "eval"]
        self.assertEqual(ea, eb)

    def test_truncated_checkpoint_falls_back(self):
        src, _ = self.base_run("fallback-src")
        broken = os.path.join(self.tmp, "fallback")
        shutil.copytree(src, broken)
        newest = os.path.join(broken, "checkpoints", "step_00000012", "model.safetensors")
        with open(newest, "r+b") as f:
            f.truncate(os.path.getsize(newest) // 2)
        proc = run("resume", broken)
        self.assertIn("warning: skipping checkpoint", proc.stderr)
        self.assertIn("step_00000012", proc.stderr)
        self.assertIn("resuming from", proc.stdout)
        self.assertIn("step_00000006", proc.stdout)
        self.assertEqual(train_losses(src), train_losses(broken))

    def test_resume_refuses_a_changed_recipe(self):
        run_dir, _ = self.base_run("changed", "--set", "train.steps=6")
        proc = run("resume", run_dir, "--set", "train.lr=0.5", check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("written by a different recipe", proc.stderr)
        # Only where the run lives and how it logs may change.
        run("resume", run_dir, "--set", "log.every=3")

    def test_bad_recipes_stop_before_work(self):
        cases = [
            (["--set", "train.lrr=0.1"], "train.lrr", "did you mean train.lr?"),
            (["--set", "train.lr=fast"], "train.lr", "expected a number"),
            (["--set", "train.steps=-3"], "train.steps", "out of range"),
            (["--set", "train.precision=fp8"], "train.precision", "not one of auto|fp32|bf16"),
            (["--set", "trian.lr=0.1"], "trian", "did you mean train?"),
            (["--set", "model.init_from=x", "--set", "model.config=null", "--set", "resume=y"], "",
             "mutually exclusive"),
            (["--set", "train.global_batch_tokens=100"], "global_batch_tokens", "not a multiple of data.seq_len"),
        ]
        for extra, key, message in cases:
            with self.subTest(extra=extra):
                run_dir = os.path.join(self.tmp, "bad")
                proc = run("train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, *extra,
                           check=False)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertIn(key, proc.stderr)
                self.assertIn(message, proc.stderr)
                self.assertFalse(os.path.exists(run_dir), "a bad recipe created the run directory")

    def test_nonfinite_steps_are_skipped_then_stop_the_run(self):
        skipped, _ = self.base_run("nonfinite-skip", env={"DUS_TEST_NONFINITE_STEPS": "3"})
        recs = {r["step"]: r for r in read_metrics(skipped) if r["kind"] == "train"}
        self.assertTrue(recs[3].get("skipped"))
        self.assertFalse(recs[4].get("skipped", False))
        self.assertTrue(os.path.exists(os.path.join(skipped, "final", "config.json")))
        stopped, proc = self.base_run("nonfinite-stop", "--set", "train.max_nonfinite_in_row=2",
                                      env={"DUS_TEST_NONFINITE_STEPS": "4,5"}, check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("2 steps in a row had a non-finite loss or gradient", proc.stderr)
        self.assertTrue(os.path.exists(os.path.join(stopped, "checkpoints", "step_00000005", "state.json")))

    def test_sigterm_checkpoints_and_exits_zero(self):
        run_dir = os.path.join(self.tmp, "sigterm")
        proc = subprocess.Popen([DUS, "train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common,
                                 "--set", "train.steps=3000", "--set", "checkpoint.every=5000",
                                 "--set", "eval.every=5000", "--set", "log.every=1"],
                                cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("step "):
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, out + err)
        self.assertIn("stopped by SIGTERM", out)
        step = int(re.search(r"stopped by SIGTERM at step (\d+)", out).group(1))
        self.assertTrue(os.path.exists(os.path.join(run_dir, "checkpoints", "step_%08d" % step, "state.json")))
        self.assertLess(step, 3000)

    def test_export_and_report(self):
        run_dir, _ = self.base_run("export-src")
        out = os.path.join(self.tmp, "exported")
        run("export", os.path.join(run_dir, "checkpoints", "step_00000006"), "--out", out, "--dtype", "f32")
        from transformers import MistralForCausalLM
        model = MistralForCausalLM.from_pretrained(out).eval()
        tokens = [1, 17, 33, 99, 250, 7, 8, 9]
        logits_path = os.path.join(self.tmp, "exported-logits.safetensors")
        run("forward", "--model", out, "--tokens", ",".join(map(str, tokens)), "--out", logits_path)
        with torch.no_grad():
            ref = model(torch.tensor([tokens])).logits[0]
        self.assertLess((load_file(logits_path)["logits"] - ref).abs().max().item(), 1e-4)
        # The step-6 masters are what the checkpoint holds.
        masters = load_file(os.path.join(run_dir, "checkpoints", "step_00000006", "model.safetensors"))
        exported = load_file(os.path.join(out, "model.safetensors"))
        for k in masters:
            self.assertTrue(torch.equal(masters[k], exported[k]), k)
        png = os.path.join(self.tmp, "report.png")
        proc = run("report", run_dir, "--out", png)
        self.assertIn("final eval_loss", proc.stdout)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_activation_checkpointing_same_losses(self):
        plain, _ = self.base_run("ac-off", "--set", "train.steps=4")
        ac, _ = self.base_run("ac-on", "--set", "train.steps=4", "--set", "train.activation_checkpointing=true")
        la, lb = train_losses(plain), train_losses(ac)
        self.assertEqual(la[0], lb[0])
        for (s1, x), (s2, y) in zip(la, lb):
            self.assertEqual(s1, s2)
            self.assertAlmostEqual(x, y, delta=1e-5 * abs(x))

    def test_dataset_eos_must_match_the_base_model(self):
        # A base model (config.json: bos 1, eos 2, as the dus-trained tokenizer) and a copy of
        # the prepared data; the copy's index.json then claims eos 3, as data prepared with
        # another tokenizer would. Fresh start and resume both refuse it before any step.
        base, _ = self.base_run("eos-base", "--set", "train.steps=2", "--set", "checkpoint.every=2",
                                "--set", "eval.every=2")
        data = os.path.join(self.tmp, "prepared-eos")
        shutil.copytree(os.path.join(self.tmp, "prepared"), data)
        common = [a.replace(os.path.join(self.tmp, "prepared"), data) for a in self.common]
        init = ["--set", f"model.init_from={os.path.join(base, 'final')}", "--set", "train.steps=4",
                "--set", "checkpoint.every=2", "--set", "eval.every=2"]
        ok_dir = os.path.join(self.tmp, "eos-ok")
        proc = run("train", "recipes/tests/dus.yaml", "--run-dir", ok_dir, *common, *init,
                   env={"DUS_TEST_KILL_AT_STEP": "3"}, check=False)
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        self.assertIn("special tokens   bos 1, eos 2", proc.stdout)

        index = os.path.join(data, "index.json")
        with open(index) as f:
            meta = json.load(f)
        self.assertEqual((meta["tokenizer"]["bos_id"], meta["tokenizer"]["eos_id"]), (1, 2))
        meta["tokenizer"]["eos_id"] = 3
        with open(index, "w") as f:
            json.dump(meta, f, indent=2)
        config = os.path.join(base, "final", "config.json")
        for what, args in [("fresh", ["train", "recipes/tests/dus.yaml", "--run-dir",
                                      os.path.join(self.tmp, "eos-bad"), *common, *init]),
                           ("resume", ["resume", ok_dir])]:
            with self.subTest(what):
                proc = run(*args, check=False)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertIn(index, proc.stderr)
                self.assertIn("eos_id is 3", proc.stderr)
                self.assertIn("eos_token_id is 2", proc.stderr)
                self.assertIn("config.json", proc.stderr)
                self.assertIn("prepare the data with the base model's tokenizer", proc.stderr)
                if what == "fresh":
                    self.assertIn(config, proc.stderr)
                run_dir = os.path.join(self.tmp, "eos-bad") if what == "fresh" else ok_dir
                steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"] \
                    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) else []
                self.assertLessEqual(max(steps, default=0), 3, "it trained on the mismatched data")

    def test_dus_heals_below_base_loss(self):
        base, _ = self.base_run("heal-base", "--set", "train.steps=150", "--set", "eval.every=50",
                                "--set", "checkpoint.every=150", "--set", "log.every=50")
        dus_dir = os.path.join(self.tmp, "heal-dus")
        proc = run("train", "recipes/tests/dus.yaml", "--run-dir", dus_dir, *self.common,
                   "--set", f"model.init_from={os.path.join(base, 'final')}", "--set", "train.steps=60",
                   "--set", "log.every=20")
        with open(os.path.join(dus_dir, "recovery.json")) as f:
            summary = json.load(f)
        base_loss, scaled0, final = summary["base_loss"], summary["scaled_loss_0"], summary["final_eval_loss"]
        print(f"base_loss {base_loss:.4f} scaled_loss_0 {scaled0:.4f} final {final:.4f}")
        # Every loss of the summary, base_loss and scaled_loss_0 included, was measured in the
        # training precision, and the summary says which.
        with open(os.path.join(dus_dir, "run_info.json")) as f:
            self.assertEqual(summary["eval_precision"], json.load(f)["precision"])
        self.assertGreater(scaled0, base_loss, "scaling should raise the loss")
        self.assertLess(final, base_loss, "continued pretraining should end below base_loss")
        self.assertIsNotNone(summary["milestones"]["beat_base"])
        self.assertIsNotNone(summary["milestones"]["recovery_0.5"])
        self.assertIn("seam", proc.stdout)
        evals = [r for r in read_metrics(dus_dir) if r["kind"] == "eval"]
        self.assertTrue(all("recovery" in r for r in evals))
        # The final model: 6 layers, provenance kept, loadable by transformers.
        from transformers import MistralForCausalLM
        with open(os.path.join(dus_dir, "final", "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["num_hidden_layers"], 6)
        self.assertIn("dus", cfg)
        model = MistralForCausalLM.from_pretrained(os.path.join(dus_dir, "final"))
        self.assertEqual(len(model.model.layers), 6)
        # TensorBoard finds the scalars.
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(os.path.join(dus_dir, "tensorboard"))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        for tag in ["train/loss", "eval/loss", "eval/recovery"]:
            self.assertIn(tag, tags)
        self.assertEqual(len(acc.Scalars("train/loss")), 60)
        # Bits per byte beside every loss: one factor (the fixed eval set's tokens / (ln 2 x
        # bytes)) turns each loss into its bpb.
        self.assertIn("eval/bpb", tags)
        scale = summary["base_bpb"] / base_loss
        self.assertAlmostEqual(summary["scaled_bpb_0"], scaled0 * scale, places=12)
        self.assertAlmostEqual(summary["final_eval_bpb"], final * scale, places=12)
        for r, h in zip(evals, summary["history"]):
            self.assertAlmostEqual(r["bpb"], r["eval_loss"] * scale, places=12)
            self.assertEqual(h["bpb"], r["bpb"])
        start = [r for r in read_metrics(dus_dir) if r["kind"] == "start"][0]
        self.assertEqual((start["base_bpb"], start["scaled_bpb_0"]), (summary["base_bpb"], summary["scaled_bpb_0"]))

    def test_bits_per_byte_against_the_held_out_text(self):
        import sentencepiece as spm
        data = self.common[1].split("=", 1)[1].strip("[]")  # data.train=[DIR]
        tokenizer = self.common[3].split("=", 1)[1]          # data.tokenizer=FILE
        sp = spm.SentencePieceProcessor(model_file=tokenizer)
        docs = read_split(data, "val")
        for bos in ["document", "none"]:
            with self.subTest(bos=bos):
                run_dir, proc = self.base_run("bpb-" + bos, "--set", "train.steps=4", "--set", "eval.every=2",
                                              "--set", f"data.bos={bos}", "--set", "checkpoint.every=4")
                targets, text_bytes = held_out_text_bytes(sp, docs, 64, 16, bos == "document")
                self.assertEqual(targets, 16 * 64)
                self.assertIn(f"{text_bytes:,} UTF-8 bytes of held-out text", proc.stdout)
                evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
                self.assertEqual([r["step"] for r in evals], [2, 4])
                for r in evals:
                    expected = r["eval_loss"] * targets / (math.log(2) * text_bytes)
                    self.assertAlmostEqual(r["bpb"], expected, delta=1e-12 * expected)
                with open(os.path.join(run_dir, "recovery.json")) as f:
                    summary = json.load(f)
                self.assertEqual(summary["final_eval_bpb"], evals[-1]["bpb"])
                self.assertIsNone(summary["base_bpb"])  # from scratch: no base model
                from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
                acc = EventAccumulator(os.path.join(run_dir, "tensorboard"))
                acc.Reload()
                logged = acc.Scalars("eval/bpb")  # float32 in the event file
                self.assertEqual([e.step for e in logged], [2, 4])
                for e, r in zip(logged, evals):
                    self.assertAlmostEqual(e.value, r["bpb"], delta=1e-6 * r["bpb"])
        # Without data.tokenizer there are no bytes: bpb is absent everywhere, and said so once.
        run_dir, proc = self.base_run("bpb-no-tokenizer", "--set", "train.steps=2", "--set", "eval.every=2",
                                      "--set", "data.tokenizer=")
        self.assertEqual(proc.stdout.count("bpb              not reported: data.tokenizer is not set"), 1)
        evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
        self.assertTrue(evals and all("bpb" not in r for r in evals))
        with open(os.path.join(run_dir, "recovery.json")) as f:
            summary = json.load(f)
        self.assertFalse({"base_bpb", "scaled_bpb_0", "final_eval_bpb"} & set(summary))
        self.assertTrue(all("bpb" not in h for h in summary["history"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
