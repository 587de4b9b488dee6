"""`dus scale` against the reference tools.

A tiny random MistralForCausalLM is built with transformers (fixed seed) and up-scaled by
`dus scale`; mergekit's `passthrough` merge with the same slices is the judge of the layer stack
(tensor by tensor, bit for bit), transformers the judge of the saved checkpoint (it loads, and
its logits equal `dus forward` on the same directory). Also: block expansion preserves the
function in transformers, provenance is in config.json and every shard's metadata, tokenizer
files are copied, CLI validation errors, the parameter count from a config alone, and the
peak-memory bound while scaling a few-hundred-MB bf16 model. Run by ctest (DUS_BIN set).
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import MistralConfig, MistralForCausalLM

DUS = os.environ.get("DUS_BIN", "dus")
N_LAYERS = 6
SEQ_LEN = 13

MISTRAL_7B_CONFIG = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000,
}

TOKENIZER_FILES = {
    "tokenizer.model": b"\x0a\x0bnot-a-real-sentencepiece-model\x00\xff",
    "tokenizer_config.json": b'{"bos_token": "<s>", "eos_token": "</s>"}\n',
    "special_tokens_map.json": b'{"bos_token": "<s>"}\n',
}


def run_dus(*args, check=True):
    proc = subprocess.run([DUS, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dus {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def load_dir(directory):
    """All tensors of a model directory (single file or shards)."""
    tensors = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.safetensors"))):
        tensors.update(load_file(path))
    return tensors


def mergekit_passthrough(base_dir, slices, out_dir):
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = MergeConfiguration.model_validate({
        "slices": [{"sources": [{"model": base_dir, "layer_range": list(r)}]} for r in slices],
        "merge_method": "passthrough",
        "dtype": "float32",
    })
    run_merge(config, out_dir, options=MergeOptions(copy_tokenizer=False, write_model_card=False,
                                                    quiet=True, lazy_unpickle=False))


def hf_logits(model_dir, tokens):
    model = MistralForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens])).logits[0].float()


class ScaleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.base = os.path.join(cls.tmp.name, "base")
        torch.manual_seed(1234)
        model = MistralForCausalLM(MistralConfig(
            vocab_size=211, hidden_size=48, intermediate_size=112, num_hidden_layers=N_LAYERS,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=None,
            rope_theta=50000.0, tie_word_embeddings=False, max_position_embeddings=256)).eval()
        with torch.no_grad():  # norms start at 1: perturb so a misplaced norm cannot hide
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(cls.base)
        for name, data in TOKENIZER_FILES.items():
            with open(os.path.join(cls.base, name), "wb") as f:
                f.write(data)
        g = torch.Generator().manual_seed(7)
        cls.tokens = torch.randint(0, 211, (SEQ_LEN,), generator=g).tolist()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def out(self, name):
        return os.path.join(self.tmp.name, name)

    def assert_same_tensors(self, ours_dir, ref_dir):
        ours, ref = load_dir(ours_dir), load_dir(ref_dir)
        self.assertEqual(sorted(ours), sorted(ref))
        for name in ref:
            self.assertEqual(ours[name].dtype, ref[name].dtype, name)
            self.assertTrue(torch.equal(ours[name], ref[name]), f"{name} differs from mergekit")
        return len(ref)

    def test_dus_equals_mergekit_passthrough(self):
        for flags, slices in [(["--m", "2"], [(0, 4), (2, 6)]),
                              (["--slices", "0:3,1:6,4:6"], [(0, 3), (1, 6), (4, 6)])]:
            with self.subTest(flags=flags):
                tag = "_".join(flags).replace("-", "").replace(":", "").replace(",", "")
                ours, ref = self.out("ours" + tag), self.out("mergekit" + tag)
                run_dus("scale", "--base", self.base, "--out", ours, *flags, "--shard-size", "40kB")
                mergekit_passthrough(self.base, slices, ref)
                n = self.assert_same_tensors(ours, ref)
                layers = sum(e - b for b, e in slices)
                with open(os.path.join(ours, "config.json")) as f:
                    ours_cfg = json.load(f)
                with open(os.path.join(ref, "config.json")) as f:
                    ref_cfg = json.load(f)
                self.assertEqual(ours_cfg["num_hidden_layers"], layers)
                self.assertEqual(ref_cfg["num_hidden_layers"], layers)
                print(f"{flags}: {n} tensors equal to mergekit's passthrough, {layers} layers")

    def test_provenance_tokenizer_and_sharding(self):
        ours = self.out("prov")
        proc = run_dus("scale", "--base", self.base, "--out", ours, "--m", "2", "--shard-size", "40kB")
        self.assertIn("seam           3|4: copy 1 layer 3 -> copy 2 layer 2", proc.stdout)
        files = sorted(os.listdir(ours))
        self.assertIn("model.safetensors.index.json", files)
        shards = [f for f in files if f.endswith(".safetensors")]
        self.assertGreater(len(shards), 1)
        with open(os.path.join(ours, "config.json")) as f:
            dus_block = json.load(f)["dus"]
        self.assertEqual(dus_block["method"], "dus")
        self.assertEqual(dus_block["m"], 2)
        self.assertEqual(dus_block["slices"], [[0, 4], [2, 6]])
        self.assertEqual(dus_block["layers"][3], {"copy": 1, "base_layer": 3})
        self.assertEqual(dus_block["layers"][4], {"copy": 2, "base_layer": 2})
        self.assertEqual([s["name"] for s in dus_block["seams"]],
                         ["3|4: copy 1 layer 3 -> copy 2 layer 2"])
        for shard in shards:
            with safe_open(os.path.join(ours, shard), framework="pt") as st:
                self.assertEqual(json.loads(st.metadata()["dus"]), dus_block, shard)
        for name, data in TOKENIZER_FILES.items():
            with open(os.path.join(ours, name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        inspect = run_dus("inspect", ours).stdout
        self.assertIn("up-scaled      dus(n=6, m=2): [0, 4) + [2, 6) -> 8 layers", inspect)
        self.assertIn("seam 3|4: copy 1 layer 3 -> copy 2 layer 2", inspect)
        # The scaled model loads back into dus and re-saves with its provenance intact.
        again = self.out("prov_again")
        run_dus("convert", "--model", ours, "--out", again)
        with open(os.path.join(again, "config.json")) as f:
            self.assertEqual(json.load(f)["dus"], dus_block)

    def test_transformers_loads_scaled_model_like_dus_forward(self):
        ours = self.out("fwd")
        run_dus("scale", "--base", self.base, "--out", ours, "--m", "1", "--shard-size", "40kB")
        ref = hf_logits(ours, self.tokens)
        logits_path = self.out("fwd_logits.safetensors")
        run_dus("forward", "--model", ours, "--tokens", ",".join(map(str, self.tokens)),
                "--dtype", "f32", "--out", logits_path)
        logits = load_file(logits_path)["logits"]
        err = (logits - ref).abs().max().item()
        print(f"dus(6, 1) -> 10 layers: max |dus forward - transformers| {err:.3e}")
        self.assertEqual(tuple(logits.shape), (SEQ_LEN, 211))
        self.assertLess(err, 1e-4)
        # Scaling changed the function (the seam), unlike block expansion below.
        self.assertGreater((ref - hf_logits(self.base, self.tokens)).abs().max().item(), 1e-3)

    def test_block_expansion_preserves_function_in_transformers(self):
        base_logits = hf_logits(self.base, self.tokens)
        for every in (1, 3):
            with self.subTest(every=every):
                ours = self.out(f"block{every}")
                run_dus("scale", "--base", self.base, "--out", ours, "--method", "block_expansion",
                        "--every", str(every))
                with open(os.path.join(ours, "config.json")) as f:
                    cfg = json.load(f)
                self.assertEqual(cfg["num_hidden_layers"], N_LAYERS + N_LAYERS // every)
                logits = hf_logits(ours, self.tokens)
                err = (logits - base_logits).abs().max().item()
                print(f"block expansion every {every}: max |expanded - base| {err:.3e}")
                self.assertEqual(err, 0.0)
                tensors = load_dir(ours)
                inserted = every  # the first inserted copy follows base layer every-1
                self.assertEqual(tensors[f"model.layers.{inserted}.self_attn.o_proj.weight"].abs().max(), 0)
                self.assertEqual(tensors[f"model.layers.{inserted}.mlp.down_proj.weight"].abs().max(), 0)

    def test_cli_validation_errors(self):
        def error_of(*flags):
            proc = run_dus("scale", "--base", self.base, "--out", self.out("bad"), *flags, check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            return proc.stderr

        self.assertIn("m = 3 >= n/2 = 6/2 gives 6 layers, not deeper than the base's 6",
                      error_of("--m", "3"))
        self.assertIn("--allow-shallower", error_of("--m", "3"))
        self.assertIn("m = -1 is negative", error_of("--m", "-1"))
        self.assertIn("slice 2 [4, 7) is outside the base model's layers [0, 6)",
                      error_of("--slices", "0:4,4:7"))
        self.assertIn("slice 1 [3, 3) is empty", error_of("--slices", "3:3"))
        self.assertIn("'0-4' is not a slice BEGIN:END", error_of("--slices", "0-4"))
        self.assertIn("every = 0 is outside [1, 6]", error_of("--every", "0"))
        self.assertIn("give only one of", error_of("--m", "1", "--slices", "0:2"))
        self.assertIn("no plan given", error_of())
        self.assertFalse(os.path.exists(self.out("bad")))
        run_dus("scale", "--base", self.base, "--out", self.out("shallow"), "--m", "3",
                "--allow-shallower")
        with open(os.path.join(self.out("shallow"), "config.json")) as f:
            self.assertEqual(json.load(f)["num_hidden_layers"], 6)

    def test_inspect_counts_solar_from_config_alone(self):
        cfg_dir = self.out("mistral7b_config")
        os.makedirs(cfg_dir, exist_ok=True)
        with open(os.path.join(cfg_dir, "config.json"), "w") as f:
            json.dump(MISTRAL_7B_CONFIG, f)
        out = run_dus("inspect", cfg_dir, "--m", "8").stdout
        self.assertIn("parameters     7,241,732,096 -> 10,731,524,096 after scaling", out)
        self.assertIn("weights        none (config only)", out)

    def test_bf16_peak_memory_within_base_plus_scaled(self):
        # ~337 MB of bf16 weights; dus(8, 2) gives 12 layers, ~440 MB.
        cfg = MistralConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                            num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                            tie_word_embeddings=False, dtype="bfloat16")
        bdir, odir = self.out("bf16_base"), self.out("bf16_scaled")
        os.makedirs(bdir, exist_ok=True)
        cfg.save_pretrained(bdir)
        d, f, v = 1024, 2816, 32000
        shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,),
                  "lm_head.weight": (v, d)}
        for i in range(8):
            p = f"model.layers.{i}."
            shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (d, d),
                           p + "self_attn.v_proj.weight": (d, d), p + "self_attn.o_proj.weight": (d, d),
                           p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                           p + "mlp.down_proj.weight": (d, f), p + "input_layernorm.weight": (d,),
                           p + "post_attention_layernorm.weight": (d,)})
        g = torch.Generator().manual_seed(0)
        save_file({k: torch.randn(s, generator=g).to(torch.bfloat16) for k, s in shapes.items()},
                  os.path.join(bdir, "model.safetensors"), metadata={"format": "pt"})
        t0 = time.time()
        out = run_dus("scale", "--base", bdir, "--out", odir, "--m", "2").stdout
        elapsed = time.time() - t0
        line = next(l for l in out.splitlines() if l.startswith("memory_bytes"))
        fields = dict(kv.split("=") for kv in line.split()[1:])
        peak, total, base, scaled = (int(fields[k]) for k in
                                     ("peak_above_start", "peak_total_above_start", "base", "scaled"))
        ratio = peak / (base + scaled)
        print(f"bf16 dus(8, 2): base {base / 1e6:.1f} MB + scaled {scaled / 1e6:.1f} MB = "
              f"{(base + scaled) / 1e6:.1f} MB; peak RSS above start {peak / 1e6:.1f} MB "
              f"(ratio {ratio:.3f}; whole command incl. save {total / 1e6:.1f} MB); "
              f"dus scale took {elapsed:.1f} s")
        self.assertEqual(base, 2 * (2 * v * d + d + 8 * (4 * d * d + 3 * d * f + 2 * d)))
        self.assertLessEqual(ratio, 1.10)
        self.assertLessEqual(total / (base + scaled), 1.10)
        # The output is the right model: copy 2 layer 0 is base layer 2.
        with safe_open(os.path.join(bdir, "model.safetensors"), framework="pt") as st:
            want = st.get_tensor("model.layers.2.mlp.up_proj.weight")
        got = load_dir(odir)["model.layers.6.mlp.up_proj.weight"]
        self.assertTrue(torch.equal(got, want))


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=sys.argv[:1])
