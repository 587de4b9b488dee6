"""Parity of `dus eval` with lm-evaluation-harness itself (lm-eval 0.4.13, run offline).

One multiple-choice task is generated deterministically from the King James Bible (Debian's
`bible`): the context is the first part of a verse, the choices are its true remainder and the
remainders of other verses (2 to 5 choices of varying length; half the items end the context
with a space, so the harness's moving of trailing whitespace into the continuation is
exercised, and one item has an empty context). The harness runs it through its own task YAML
(dataset_path json on the same JSONL, output_type multiple_choice, target_delimiter "") on
tiny random models with real tokenizers:
  * MistralForCausalLM with the Mistral-7B sentencepiece model (mistral-common), vocab 32000;
  * LlamaForCausalLM with the Llama-3 tokenizer.json (llama.cpp's vocab converted by
    transformers, with the BOS template Meta's file has), vocab 128256.
Asserted: the same acc and acc_norm, and every per-choice log-likelihood within 1e-4.
Also: `dus eval` on a run directory, on one of its checkpoints (tokenizer from the run's recipe)
and on the model `dus export` wrote from it gives the same log-likelihoods.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_fixtures  # noqa: E402
from dus_testlib import make_kjv_dataset, run  # noqa: E402

DUS = os.environ.get("DUS_BIN", "dus")
TASK = "dus_kjv_mc"
ITEMS = 50


def kjv_verses(passage):
    """Verse texts of a passage, each on one line (bible wraps long verses)."""
    out = subprocess.run(["bible", passage], capture_output=True, text=True, check=True).stdout
    verses = []
    for line in out.splitlines():
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            verses.append(m.group(1).strip())
        elif verses and line.strip() and not re.match(r"^\S.* \d+$", line):
            verses[-1] += " " + line.strip()
    return verses


def make_task(path):
    verses = [v for v in kjv_verses("Prov 10:1-Prov 16:33") if len(v.split()) >= 8]
    items = []
    for i in range(ITEMS):
        words = verses[i].split()
        cut = len(words) // 2 + (i % 3) - 1
        context = " ".join(words[:cut])
        rest = [" ".join(verses[(i + 7 * k) % len(verses)].split()[cut:]) for k in range(1, 6)]
        n = 2 + i % 4
        choices = [" ".join(words[cut:])] + [r for r in rest if r][: n - 1]
        gold = i % len(choices)
        choices[0], choices[gold] = choices[gold], choices[0]
        if i % 2 == 0:
            choices = [" " + c for c in choices]  # the delimiter inside the choice
        else:
            context += " "  # the harness moves this space into each continuation
        if i == 5:
            context = ""
        items.append({"id": f"kjv-{i}", "context": context, "choices": choices, "gold": gold})
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return items


def write_task_yaml(directory, data_file):
    with open(os.path.join(directory, TASK + ".yaml"), "w") as f:
        f.write(f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(data_file)}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""")


def build_mistral(directory):
    from transformers import LlamaTokenizer
    import mistral_common
    sp = os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1")
    torch.manual_seed(7)
    config = MistralConfig(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           sliding_window=None, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                           initializer_range=0.2)
    MistralForCausalLM(config).save_pretrained(directory)
    # As Mistral-7B's hub directory has them: tokenizer.model beside a tokenizer.json whose
    # template prepends <s> (transformers 5 converts the .model without BOS unless told).
    shutil.copy(sp, os.path.join(directory, "tokenizer.model"))
    LlamaTokenizer.from_pretrained(directory, add_bos_token=True).save_pretrained(directory)


def build_llama(directory):
    torch.manual_seed(8)
    config = LlamaConfig(vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=False,
                         rope_theta=500000.0, initializer_range=0.2)
    LlamaForCausalLM(config).save_pretrained(directory)
    source = tokenizer_fixtures.build()["llama-bpe-ignore-merges"]
    shutil.copy(os.path.join(source, "tokenizer_config.json"), directory)
    with open(os.path.join(source, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    # The GGUF conversion appends "<|endoftext|>" (id 128256), which Meta's file lacks; and Meta's
    # file prepends <|begin_of_text|> in its post_processor, which the conversion drops.
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < 128256]
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                 "tokens": ["<|begin_of_text|>"]}},
    }
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


def run_harness(model_dir, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32",
                                  tasks=[TASK], task_manager=TaskManager(include_path=task_dir),
                                  log_samples=True, batch_size=1, device="cpu")
    metrics = out["results"][TASK]
    lls = {}
    for sample in out["samples"][TASK]:
        lls[sample["doc_id"]] = [float(r[0]) for r in sample["filtered_resps"]]
    return metrics, [lls[i] for i in range(len(lls))]


def run_dus(model_dir, data_file, out, batch, extra=()):
    proc = subprocess.run([DUS, "eval", model_dir, "--tasks", data_file, "--batch", str(batch), "--out", out, *extra],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"dus eval failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    with open(out) as f:
        return json.load(f)["tasks"][0], proc.stdout


class EvalParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-eval-parity-")
        cls.data = os.path.join(cls.tmp, TASK + ".jsonl")
        cls.items = make_task(cls.data)
        cls.task_dir = os.path.join(cls.tmp, "tasks")
        os.makedirs(cls.task_dir)
        write_task_yaml(cls.task_dir, cls.data)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, name, build, batch):
        model_dir = os.path.join(self.tmp, name)
        build(model_dir)
        ref_metrics, ref_lls = run_harness(model_dir, self.task_dir)
        ours, stdout = run_dus(model_dir, self.data, os.path.join(self.tmp, name + ".json"), batch)
        self.assertEqual(ours["items"], len(self.items))
        self.assertEqual(len(ref_lls), len(self.items))
        worst = 0.0
        for item, ref, sample in zip(self.items, ref_lls, ours["samples"]):
            self.assertEqual(sample["id"], item["id"])
            self.assertEqual(len(sample["loglik"]), len(item["choices"]))
            for a, b in zip(sample["loglik"], ref):
                worst = max(worst, abs(a - b))
        print(f"\n{name}: items {ours['items']}  acc {ours['acc']:.4f} (harness {ref_metrics['acc,none']:.4f})  "
              f"acc_norm {ours['acc_norm']:.4f} (harness {ref_metrics['acc_norm,none']:.4f})  "
              f"max |d loglik| {worst:.2e}\n{stdout}", flush=True)
        self.assertLess(worst, 1e-4)
        self.assertAlmostEqual(ours["acc"], ref_metrics["acc,none"], places=12)
        self.assertAlmostEqual(ours["acc_norm"], ref_metrics["acc_norm,none"], places=12)
        self.assertAlmostEqual(ours["acc_stderr"], ref_metrics["acc_stderr,none"], places=9)
        self.assertAlmostEqual(ours["acc_norm_stderr"], ref_metrics["acc_norm_stderr,none"], places=9)

    def test_mistral_sentencepiece(self):
        self.check("mistral", build_mistral, batch=5)

    def test_llama3_bpe(self):
        self.check("llama3", build_llama, batch=3)


    def test_run_directory_checkpoint_and_export_agree(self):
        work = os.path.join(self.tmp, "run-case")
        os.makedirs(work)
        common = make_kjv_dataset(work, "Prov 1:1-Prov 9:18", "proverbs")
        run_dir = os.path.join(work, "run")
        run("train", "recipes/tests/base.yaml", "--run-dir", run_dir, *common, "--set", "train.steps=6",
            "--set", "checkpoint.every=3")
        step3 = os.path.join(run_dir, "checkpoints", "step_00000003")
        exported = os.path.join(work, "exported")
        tokenizer = os.path.join(work, "tokenizer", "tokenizer.model")
        run("export", run_dir, "--out", exported, "--dtype", "f32")
        by_run, _ = run_dus(run_dir, self.data, os.path.join(work, "a.json"), batch=4)
        by_export, _ = run_dus(exported, self.data, os.path.join(work, "b.json"), batch=1, extra=["--tokenizer", tokenizer])
        by_step3, _ = run_dus(step3, self.data, os.path.join(work, "c.json"), batch=4)
        self.assertEqual(by_run["items"], len(self.items))
        for a, b, c in zip(by_run["samples"], by_export["samples"], by_step3["samples"]):
            for x, y in zip(a["loglik"], b["loglik"]):
                self.assertAlmostEqual(x, y, delta=1e-4)
            self.assertNotEqual(a["loglik"], c["loglik"])  # step 3's weights are not step 6's
        self.assertEqual((by_run["acc"], by_run["acc_norm"]), (by_export["acc"], by_export["acc_norm"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
