"""Writes the Megatron indexed-dataset fixtures of the C++ tests (tests/test_data_megatron.cpp)
with megatron-core's own IndexedDatasetBuilder, so the tests read real builder output. Run with
the venv's Python from this directory; the bytes are deterministic. tests/python/
test_megatron_data.py rebuilds them and checks the committed files are what the builder writes.

Documents (ids below 64; eos id 2 ends each document in the "eod" fixture):
  0: sequences [5, 6, 7] and [8, 9]            (add_item twice, end_document)
  1: empty                                      (end_document with no item)
  2: [10] and [11, 12, 13]                      (add_document with lengths [1, 3])
  3: [40, 41, 42, 43, 44, 45, 63]               (one add_item)
"""

import os
import sys

import numpy
import torch
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

DOCS = [[[5, 6, 7], [8, 9]], [], [[10], [11, 12, 13]], [[40, 41, 42, 43, 44, 45, 63]]]


def write(prefix, dtype, eod=None):
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for d, doc in enumerate(DOCS):
        seqs = [list(s) for s in doc]
        if eod is not None:
            if seqs:
                seqs[-1].append(eod)
            else:
                seqs = [[eod]]
        if d == 2:
            flat = [t for s in seqs for t in s]
            builder.add_document(torch.tensor(flat), [len(s) for s in seqs])
        else:
            for s in seqs:
                builder.add_item(torch.tensor(s))
            builder.end_document()
    builder.finalize(prefix + ".idx")


def write_all(out_dir):
    write(os.path.join(out_dir, "tiny_u16"), numpy.uint16)
    write(os.path.join(out_dir, "tiny_i32"), numpy.int32)
    write(os.path.join(out_dir, "tiny_u16_eod"), numpy.uint16, eod=2)


if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
