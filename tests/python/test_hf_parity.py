"""Parity of `dus` with Hugging Face transformers on the same weights.

Tiny random MistralForCausalLM / LlamaForCausalLM models are built with transformers (fixed
seed), saved, and then run by `dus forward`; transformers is the judge. Also: a model that `dus`
loaded and saved loads in transformers with identical logits, and saving twice gives identical
bytes. Run by ctest with DUS_BIN pointing at the executable.
"""

import filecmp
import os
import subprocess
import sys
import tempfile
import unittest

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

DUS = os.environ.get("DUS_BIN", "dus")

# Each case exercises one thing transformers and we must agree on.
CASES = {
    # grouped-query heads, head_dim given explicitly (not hidden/heads), rope_theta != 10000,
    # a sliding window shorter than the sequence, untied embeddings.
    "mistral_gqa_window": lambda: MistralForCausalLM(
        MistralConfig(vocab_size=211, hidden_size=48, intermediate_size=112, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      sliding_window=7, rope_theta=50000.0, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, max_position_embeddings=256)),
    # no window, multi-head (kv == heads), tied embeddings.
    "mistral_mha_tied": lambda: MistralForCausalLM(
        MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, sliding_window=None,
                      tie_word_embeddings=True, max_position_embeddings=256)),
    # Llama: grouped-query heads, tied embeddings, rope_theta 500000.
    "llama_gqa_tied": lambda: LlamaForCausalLM(
        LlamaConfig(vocab_size=150, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, rope_theta=500000.0,
                    tie_word_embeddings=True, max_position_embeddings=256)),
    # Llama untied, head_dim explicit.
    "llama_untied_headdim": lambda: LlamaForCausalLM(
        LlamaConfig(vocab_size=97, hidden_size=40, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=24,
                    tie_word_embeddings=False, max_position_embeddings=256)),
}

SEQ_LEN = 19  # longer than the sliding window of 7, odd on purpose


def build(name, directory):
    torch.manual_seed(1234)
    model = CASES[name]().eval()
    # Norm weights start at 1 in transformers; perturb them so a wrong norm cannot hide.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    return model


def run_dus(*args):
    proc = subprocess.run([DUS, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"dus {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def dus_forward(model_dir, tokens, dtype, out_path):
    stdout = run_dus("forward", "--model", model_dir, "--tokens", ",".join(map(str, tokens)),
                     "--dtype", dtype, "--out", out_path)
    loss = float(stdout.split("loss ")[1].split()[0])
    return load_file(out_path)["logits"], loss


def hf_forward(model, tokens):
    ids = torch.tensor([tokens])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    return out.logits[0].float(), out.loss.item()


class ParityTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def tokens(self, vocab):
        g = torch.Generator().manual_seed(7)
        return torch.randint(0, vocab, (SEQ_LEN,), generator=g).tolist()

    def test_fp32_logits_and_loss(self):
        for name in CASES:
            with self.subTest(model=name):
                mdir = os.path.join(self.dir, name)
                model = build(name, mdir)
                tokens = self.tokens(model.config.vocab_size)
                ref_logits, ref_loss = hf_forward(model, tokens)
                logits, loss = dus_forward(mdir, tokens, "f32", os.path.join(self.dir, name + ".st"))
                err = (logits - ref_logits).abs().max().item()
                print(f"{name}: fp32 max |logits diff| {err:.3e}, |loss diff| {abs(loss - ref_loss):.3e}")
                self.assertEqual(tuple(logits.shape), (SEQ_LEN, model.config.vocab_size))
                self.assertLess(err, 1e-4)
                self.assertLess(abs(loss - ref_loss), 1e-5)

    def test_config_without_optional_keys_gets_transformers_defaults(self):
        # A config.json with rms_norm_eps and the rotary base left out: transformers fills in its
        # defaults (rms_norm_eps 1e-6 for both architectures), and dus must read the same ones.
        import json
        from transformers import AutoModelForCausalLM
        for name in ["mistral_mha_tied", "llama_untied_headdim"]:
            with self.subTest(model=name):
                mdir = os.path.join(self.dir, name)
                build(name, mdir)
                cfg_path = os.path.join(mdir, "config.json")
                with open(cfg_path) as f:
                    cfg = json.load(f)
                for key in ("rms_norm_eps", "rope_theta", "rope_parameters"):
                    cfg.pop(key, None)
                with open(cfg_path, "w") as f:
                    json.dump(cfg, f)
                model = AutoModelForCausalLM.from_pretrained(mdir).eval()
                self.assertEqual(model.config.rms_norm_eps, 1e-6)
                tokens = self.tokens(model.config.vocab_size)
                ref_logits, _ = hf_forward(model, tokens)
                logits, _ = dus_forward(mdir, tokens, "f32", os.path.join(self.dir, name + ".st"))
                err = (logits - ref_logits).abs().max().item()
                # The check can fail: the same weights with rms_norm_eps 1e-5 written out are
                # further from transformers' default than the parity tolerance.
                cfg["rms_norm_eps"] = 1e-5
                with open(cfg_path, "w") as f:
                    json.dump(cfg, f)
                other, _ = dus_forward(mdir, tokens, "f32", os.path.join(self.dir, name + "-eps.st"))
                err_other = (other - ref_logits).abs().max().item()
                print(f"{name}: keys left out: max |logits diff| {err:.3e} (eps 1e-5: {err_other:.3e})")
                self.assertLess(err, 1e-4)
                self.assertGreater(err_other, 1e-4)

    def test_bf16_logits(self):
        # In bf16 (8 significant bits) every matmul and cast rounds at ~2^-9 relative, and
        # two implementations that order operations differently round differently. So the
        # tolerance is relative to transformers' own bf16 error: our bf16 logits must be no
        # further from the fp32 reference than 2x transformers' bf16 logits are (plus 0.02
        # absolute for ties at this tiny scale).
        for name in ["mistral_gqa_window", "llama_gqa_tied"]:
            with self.subTest(model=name):
                mdir = os.path.join(self.dir, name)
                model = build(name, mdir)
                tokens = self.tokens(model.config.vocab_size)
                ref32, _ = hf_forward(model, tokens)
                ref16, _ = hf_forward(model.to(torch.bfloat16), tokens)
                ours16, _ = dus_forward(mdir, tokens, "bf16", os.path.join(self.dir, name + ".st"))
                err_hf = (ref16 - ref32).abs().max().item()
                err_ours = (ours16 - ref32).abs().max().item()
                err_pair = (ours16 - ref16).abs().max().item()
                print(f"{name}: bf16 max err vs fp32: transformers {err_hf:.3e}, dus {err_ours:.3e};"
                      f" dus vs transformers bf16 {err_pair:.3e}")
                self.assertLess(err_ours, 2 * err_hf + 0.02)

    def test_round_trip_and_deterministic_save(self):
        name = "mistral_gqa_window"
        mdir = os.path.join(self.dir, "orig")
        model = build(name, mdir)
        tokens = self.tokens(model.config.vocab_size)
        ref_logits, _ = hf_forward(model, tokens)
        # Small shards force the sharded writer and the index.
        out1, out2 = os.path.join(self.dir, "rt1"), os.path.join(self.dir, "rt2")
        run_dus("convert", "--model", mdir, "--out", out1, "--shard-size", "40kB")
        run_dus("convert", "--model", mdir, "--out", out2, "--shard-size", "40kB")
        files = sorted(os.listdir(out1))
        self.assertIn("model.safetensors.index.json", files)
        self.assertGreater(sum(f.endswith(".safetensors") for f in files), 1)
        self.assertEqual(files, sorted(os.listdir(out2)))
        for f in files:
            self.assertTrue(filecmp.cmp(os.path.join(out1, f), os.path.join(out2, f), shallow=False),
                            f"{f} differs between two saves")
        for f in files:
            if f.endswith(".safetensors"):
                with safe_open(os.path.join(out1, f), framework="pt") as st:
                    self.assertEqual(st.metadata().get("format"), "pt")
        reloaded = MistralForCausalLM.from_pretrained(out1).eval()
        logits, _ = hf_forward(reloaded, tokens)
        self.assertTrue(torch.equal(logits, ref_logits), "reloaded logits differ")
        # Our own reader on our sharded output agrees too.
        ours, _ = dus_forward(out1, tokens, "f32", os.path.join(self.dir, "rt.st"))
        self.assertLess((ours - ref_logits).abs().max().item(), 1e-4)

    def test_bf16_save_loads_in_transformers(self):
        mdir = os.path.join(self.dir, "orig")
        model = build("llama_gqa_tied", mdir)
        out = os.path.join(self.dir, "bf16")
        run_dus("convert", "--model", mdir, "--out", out, "--dtype", "bf16")
        reloaded = LlamaForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), reloaded.state_dict().items()):
            self.assertEqual(n1, n2)
            self.assertTrue(torch.equal(p1.to(torch.bfloat16), p2), n1)


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=sys.argv[:1])
