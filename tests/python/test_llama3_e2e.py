"""End to end with a Llama-3 base: the real Llama-3 tokenizer.json (llama.cpp's vocab file,
converted by transformers, with ignore_merges as the published file has it), a tiny random LlamaForCausalLM with Llama-3's vocabulary (128,256
ids, so uint32 shards) and its BOS/EOS ids, a corpus prepared with `dus prepare --tokenizer
MODEL_DIR`, depth up-scaled and trained a few steps on CPU, exported, and the exported model's
logits compared with transformers'.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from dus_testlib import read_metrics, run
import tokenizer_fixtures


class Llama3EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-llama3-")
        cls.base = os.path.join(cls.tmp, "base")
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=False,
                             rope_theta=500000.0)
        LlamaForCausalLM(config).save_pretrained(cls.base)
        # A model directory as a hub download has it: weights, config and tokenizer files. The
        # GGUF conversion appends an "<|endoftext|>" (id 128256) that Meta's file does not have;
        # dropped, so the vocabulary is Llama-3's 128,256 ids.
        source = tokenizer_fixtures.build()["llama-bpe-ignore-merges"]
        shutil.copy(os.path.join(source, "tokenizer_config.json"), cls.base)
        with open(os.path.join(source, "tokenizer.json"), encoding="utf-8") as f:
            tok = json.load(f)
        tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < 128256]
        with open(os.path.join(cls.base, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
        cls.corpus = os.path.join(cls.tmp, "corpus.txt")
        text = subprocess.run(["bible", "Gen 1:1-Gen 20:18"], capture_output=True, text=True, check=True).stdout
        with open(cls.corpus, "w") as f:
            f.write(text)
        cls.data = os.path.join(cls.tmp, "prepared")
        run("prepare", "--tokenizer", cls.base, "--input", cls.corpus, "--lines", "--out", cls.data,
            "--val-fraction", "0.05", "--quiet")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_dataset_has_llama3_ids(self):
        with open(os.path.join(self.data, "index.json")) as f:
            index = json.load(f)
        self.assertEqual(index["dtype"], "uint32")
        self.assertEqual(index["tokenizer"]["bos_id"], 128000)
        self.assertEqual(index["tokenizer"]["eos_id"], 128001)
        self.assertEqual(index["tokenizer"]["vocab_size"], 128256)
        # The shard holds the library's ids for every training document, in corpus order.
        reference = Tokenizer.from_file(os.path.join(self.base, "tokenizer.json"))
        shard = index["splits"]["train"]["shards"][0]
        tokens = np.fromfile(os.path.join(self.data, shard["file"]), dtype=np.uint32)
        ends = np.fromfile(os.path.join(self.data, shard["index"]), dtype=np.uint64)
        with open(self.corpus) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
        expected = [reference.encode(l, add_special_tokens=False).ids for l in lines]
        ours, start = [], 0
        for end in ends:
            ours.append(tokens[start:end].tolist())
            start = int(end)
        self.assertGreater(len(ours), 400)
        # Held-out documents are missing from the train split; the rest come in order.
        it = iter(expected)
        for doc in ours:
            self.assertIn(doc, it)

    def test_scale_train_export_matches_transformers(self):
        run_dir = os.path.join(self.tmp, "dus")
        run("train", "recipes/tests/dus.yaml", "--run-dir", run_dir, "--set", f"model.init_from={self.base}",
            "--set", f"data.train=[{self.data}]", "--set", f"data.tokenizer={self.base}", "--set", "train.steps=4",
            "--set", "eval.every=2", "--set", "checkpoint.every=4", "--set", "log.every=1")
        losses = [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]
        self.assertEqual(len(losses), 4)
        self.assertTrue(all(np.isfinite(losses)))
        out = os.path.join(self.tmp, "exported")
        run("export", os.path.join(run_dir, "checkpoints", "step_00000004"), "--out", out, "--dtype", "f32",
            "--tokenizer", self.base)
        with open(os.path.join(out, "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["num_hidden_layers"], 6)
        self.assertEqual(cfg["vocab_size"], 128256)
        self.assertEqual((cfg["bos_token_id"], cfg["eos_token_id"]), (128000, 128001))
        # The tokenizer travels as the Hugging Face files, and reads back with the same ids.
        self.assertTrue(os.path.exists(os.path.join(out, "tokenizer.json")))
        self.assertTrue(os.path.exists(os.path.join(out, "tokenizer_config.json")))
        self.assertTrue(os.path.exists(os.path.join(run_dir, "final", "tokenizer.json")))
        ids = Tokenizer.from_file(os.path.join(self.base, "tokenizer.json")).encode(
            "In the beginning God created the heaven and the earth.", add_special_tokens=False).ids
        tokens = [128000] + ids
        logits_path = os.path.join(self.tmp, "logits.safetensors")
        run("forward", "--model", out, "--tokens", ",".join(map(str, tokens)), "--out", logits_path)
        model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32)
        with torch.no_grad():
            ref = model(torch.tensor([tokens])).logits[0]
        self.assertLess((load_file(logits_path)["logits"] - ref).abs().max().item(), 1e-4)


if __name__ == "__main__":
    unittest.main()
