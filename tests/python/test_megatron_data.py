"""Megatron indexed datasets (.bin/.idx) as training data, written by megatron-core's own
IndexedDatasetBuilder from a real corpus (Leviticus-Numbers of the King James Bible, tokenized by
the sentencepiece model `dus tokenizer train` made on Genesis-Exodus; one chapter per document,
one verse per sequence, so documents span several sequences and several 64-token windows):

- the committed C++ test fixtures (tests/data/megatron) are what the builder writes today;
- `dus bench data --no-shuffle --dump` on a uint16 pair made with EOD appended (eos: data) and
  an int32 pair without (eos: add; half its documents written by add_document) returns exactly
  the packed stream built here from megatron's own IndexedDataset: [BOS] document [EOS];
- a tiny model trained on a mixture of a `dus prepare` dataset and a Megatron pair: killed at
  step 8 and resumed gives the losses of a straight run bit for bit, and 2 data-parallel ranks
  give those of 1 (relative 1e-5: the all-reduce sums in another order).
"""

import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy

from dus_testlib import SRC, make_kjv_dataset, read_metrics, run

SEQ_LEN = 64


def megatron():
    """megatron-core's indexed dataset module (slow to import: tens of seconds)."""
    from megatron.core.datasets import indexed_dataset
    return indexed_dataset


def train_losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def chapters(passage, tokenizer):
    """Token ids of each verse, grouped by chapter: [[verse ids, ...], ...]."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer)
    text = subprocess.run(["bible", passage], capture_output=True, text=True, check=True).stdout
    out, current = [], None
    for line in text.splitlines():
        ref, _, verse = line.partition(" ")
        if ":" not in ref or not verse.strip():
            continue
        chapter = ref.rsplit(":", 1)[0]
        if chapter != current:
            out.append([])
            current = chapter
        out[-1].append(sp.encode(verse.strip()))
    return out


def megatron_documents(prefix):
    """Every document of a pair as megatron-core reads it: the concatenation of its sequences."""
    ds = megatron().IndexedDataset(prefix)
    di = ds.document_indices
    return [numpy.concatenate([ds[s] for s in range(di[d], di[d + 1])] or [numpy.zeros(0, numpy.int64)])
            .astype(numpy.int64).tolist() for d in range(len(di) - 1)]


class MegatronData(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dus-megatron-")
        make_kjv_dataset(cls.tmp, "Gen 1:1-Exo 40:38", "genesis-exodus")
        cls.tokenizer = os.path.join(cls.tmp, "tokenizer", "tokenizer.model")
        cls.prepared = os.path.join(cls.tmp, "prepared")
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=cls.tokenizer)
        cls.bos, cls.eos = sp.bos_id(), sp.eos_id()
        verses = chapters("Lev 1:1-Num 36:13", cls.tokenizer)
        idx = megatron()
        import torch
        # uint16, EOD appended to each document's last sequence (preprocess_data --append-eod).
        cls.u16 = os.path.join(cls.tmp, "lev-num_text_document")
        b = idx.IndexedDatasetBuilder(cls.u16 + ".bin", dtype=numpy.uint16)
        for chapter in verses:
            for i, ids in enumerate(chapter):
                b.add_item(torch.tensor(ids + ([cls.eos] if i == len(chapter) - 1 else [])))
            b.end_document()
        b.finalize(cls.u16 + ".idx")
        # int32, no EOD; every other document written whole by add_document.
        cls.i32 = os.path.join(cls.tmp, "lev-num-i32")
        b = idx.IndexedDatasetBuilder(cls.i32 + ".bin", dtype=numpy.int32)
        for c, chapter in enumerate(verses):
            if c % 2:
                b.add_document(torch.tensor([t for ids in chapter for t in ids]), [len(ids) for ids in chapter])
            else:
                for ids in chapter:
                    b.add_item(torch.tensor(ids))
                b.end_document()
        b.finalize(cls.i32 + ".idx")
        cls.chapters = [[t for ids in chapter for t in ids] for chapter in verses]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_committed_fixtures_are_builder_output(self):
        out = os.path.join(self.tmp, "fixtures")
        os.makedirs(out)
        fixtures = os.path.join(SRC, "tests", "data", "megatron")
        subprocess.run([sys.executable, os.path.join(fixtures, "make_fixtures.py"), out], check=True,
                       capture_output=True)
        names = sorted(os.listdir(out))
        self.assertEqual(len(names), 6, names)
        for name in names:
            self.assertTrue(filecmp.cmp(os.path.join(out, name), os.path.join(fixtures, name), shallow=False), name)

    def dump(self, prefix, eos, batches):
        """Rows of `dus bench data --no-shuffle` over one source: stream windows 0, 1, ..."""
        path = os.path.join(self.tmp, os.path.basename(prefix) + "-" + eos + ".dump")
        run("bench", "data", "--data", prefix, "--tokenizer", self.tokenizer, "--eos", eos, "--seq-len",
            str(SEQ_LEN), "--batch", "4", "--steps", str(batches - 1), "--no-shuffle", "--dump", path, "--no-cpu",
            "--params", "1e6")
        return numpy.fromfile(path, dtype="<i4").reshape(-1, SEQ_LEN + 1)

    def test_reader_sees_what_megatron_sees(self):
        for prefix, eos, path_form in [(self.u16, "data", self.u16 + ".bin"), (self.i32, "add", self.i32)]:
            with self.subTest(prefix=os.path.basename(prefix), eos=eos):
                docs = megatron_documents(prefix)
                # The documents are the chapters, split into sequences and joined again.
                self.assertEqual(len(docs), len(self.chapters))
                for doc, chapter in zip(docs, self.chapters):
                    self.assertEqual(doc, chapter + ([self.eos] if eos == "data" else []))
                stream = []
                for doc in docs:
                    stream += [self.bos] + doc + ([self.eos] if eos == "add" else [])
                windows = (len(stream) - 1) // SEQ_LEN
                rows = self.dump(path_form, eos, batches=60)  # 240 rows: wraps into a second pass
                self.assertGreater(len(rows), windows)
                for i, row in enumerate(rows):
                    k = i % windows
                    self.assertEqual(row.tolist(), stream[k * SEQ_LEN:k * SEQ_LEN + SEQ_LEN + 1], f"row {i}")

    def test_eos_data_refuses_documents_without_eod(self):
        proc = run("bench", "data", "--data", self.i32, "--tokenizer", self.tokenizer, "--eos", "data", "--seq-len",
                   str(SEQ_LEN), "--steps", "1", "--no-cpu", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("eos: data, but document 0 ends with token", proc.stderr)

    def recipe(self, name, *extra):
        path = os.path.join(self.tmp, name + ".yaml")
        with open(path, "w") as f:
            f.write(f"extends: {os.path.join(SRC, 'recipes', 'tests', 'base.yaml')}\n"
                    f"data:\n  train:\n    - {{path: {self.prepared}, weight: 1}}\n"
                    f"    - {{path: {self.u16}.idx, weight: 2, eos: data}}\n"
                    f"  tokenizer: {self.tokenizer}\n"
                    f"run:\n  threads: 1\n")
        return path

    def test_mixture_resumes_bitwise_and_matches_two_ranks(self):
        recipe = self.recipe("mixture")
        straight = os.path.join(self.tmp, "straight")
        proc = run("train", recipe, "--run-dir", straight)
        self.assertIn("step", proc.stdout)
        killed = os.path.join(self.tmp, "killed")
        proc = run("train", recipe, "--run-dir", killed, env={"DUS_TEST_KILL_AT_STEP": "8"}, check=False)
        self.assertEqual(proc.returncode, -9, proc.stdout + proc.stderr)
        run("resume", killed)
        a, b = train_losses(straight), train_losses(killed)
        self.assertEqual([s for s, _ in a], list(range(1, 13)))
        self.assertEqual(a, b, "losses differ between the straight and the killed+resumed run")
        with open(os.path.join(killed, "checkpoints", "step_00000012", "state.json")) as f:
            loader = json.load(f)["loader"]
        self.assertEqual(len(loader["source_samples"]), 2)
        self.assertGreater(loader["source_samples"][1], loader["source_samples"][0])  # weight 2 vs 1
        # Two data-parallel ranks see the same global batches.
        two = os.path.join(self.tmp, "two-ranks")
        run("launch", "--nproc", "2", "--", "train", recipe, "--run-dir", two)
        worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, train_losses(two)))
        self.assertEqual([s for s, _ in train_losses(two)], list(range(1, 13)))
        self.assertLess(worst, 1e-5)

    def test_megatron_source_without_tokenizer_stops_before_work(self):
        recipe = self.recipe("no-tokenizer")
        run_dir = os.path.join(self.tmp, "no-tokenizer")
        proc = run("train", recipe, "--run-dir", run_dir, "--set", "data.tokenizer=", check=False)
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn(self.u16 + ".idx is a Megatron dataset", proc.stderr)
        self.assertIn("data.tokenizer", proc.stderr)
        self.assertFalse(os.path.exists(run_dir))


if __name__ == "__main__":
    unittest.main(verbosity=2)
