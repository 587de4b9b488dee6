#!/usr/bin/env python3
"""`dus prepare` against the Rust `tokenizers` library, side by side in one invocation.

Both encode the same documents with the same tokenizer.json and the same thread count:
`dus prepare --threads T` (its own wall time from reading the corpus to the renamed dataset,
process start-up excluded, and its tokenizer time summed over threads), and
`tokenizers.Tokenizer.encode_batch` with RAYON_RS_NUM_THREADS=T in a fresh process (encode time
only: reading the corpus is not counted for it). Each measurement is repeated and the median
quoted. The shards `dus` writes must be byte-identical for every thread count; the script checks
that, and that the ids equal the library's for every document.

Usage: scripts/bench_tokenizer.py --tokenizer DIR_OR_TOKENIZER_JSON [--corpus FILE.txt]
       [--copies N] [--threads 1,2] [--repeats 3] [--dus build/dus]
The corpus defaults to the King James Bible from Debian's bible-kjv, one verse per document,
repeated --copies times (default 4: about 17 MB, 4.0 M Llama-3 tokens).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIBRARY_SCRIPT = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
docs = [l.rstrip("\n") for l in open(sys.argv[2], encoding="utf-8")]
docs = [d for d in docs if d.strip()]
t0 = time.perf_counter()
enc = tok.encode_batch(docs, add_special_tokens=False)
dt = time.perf_counter() - t0
n = sum(len(e.ids) for e in enc)
out = {"seconds": dt, "tokens": n}
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:
        for e in enc:
            f.write(json.dumps(e.ids) + "\n")
print(json.dumps(out))
"""


def tokenizer_json(path):
    return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path


def kjv_text():
    return subprocess.run(["bible", "Gen 1:1-Rev 22:21"], capture_output=True, text=True, check=True).stdout


def run_dus(dus, tokenizer, corpus, out, threads):
    proc = subprocess.run([dus, "prepare", "--tokenizer", tokenizer, "--input", corpus, "--lines", "--out", out,
                           "--val-fraction", "0", "--threads", str(threads), "--force", "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"dus prepare failed:\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"([\d,]+) tokens from", proc.stdout)
    s = re.search(r"\(([\d.]+) s wall\).*summed over threads ([\d.]+) s", proc.stdout)
    if not m or not s:
        sys.exit(f"cannot read dus prepare's summary:\n{proc.stdout}")
    return int(m.group(1).replace(",", "")), float(s.group(1)), float(s.group(2))


def run_library(python, tokenizer, corpus, threads, ids_out=None):
    env = dict(os.environ, RAYON_RS_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    args = [python, "-c", LIBRARY_SCRIPT, tokenizer, corpus] + ([ids_out] if ids_out else [])
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"tokenizers failed:\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return r["tokens"], r["seconds"]


def shards_digest(dataset):
    h = hashlib.sha256()
    for name in sorted(os.listdir(dataset)):
        if name.endswith((".bin", ".idx")):
            with open(os.path.join(dataset, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dus", default=os.path.join(ROOT, "build", "dus"))
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    tok_json = tokenizer_json(a.tokenizer)
    tmp = tempfile.mkdtemp(prefix="dus-bench-tok-")
    try:
        corpus = os.path.join(tmp, "corpus.txt")
        text = open(a.corpus, encoding="utf-8").read() if a.corpus else kjv_text()
        with open(corpus, "w", encoding="utf-8") as f:
            for _ in range(a.copies):
                f.write(text if text.endswith("\n") else text + "\n")
        mb = os.path.getsize(corpus) / 1e6
        print(f"corpus {mb:.1f} MB, tokenizer {tok_json}")

        # Same ids as the library, document by document.
        ids_file = os.path.join(tmp, "ids.jsonl")
        run_library(a.python, tok_json, corpus, 1, ids_file)
        check = subprocess.run([a.python, "-c", VERIFY_SCRIPT, a.dus, a.tokenizer, corpus, ids_file, tmp],
                               capture_output=True, text=True)
        print(check.stdout.strip() or check.stderr.strip())
        if check.returncode != 0:
            sys.exit(1)

        rows, digests = [], set()
        for threads in [int(t) for t in a.threads.split(",")]:
            dus_runs, lib_runs = [], []
            for _ in range(a.repeats):
                out = os.path.join(tmp, f"ds-{threads}")
                tokens, wall, encode = run_dus(a.dus, a.tokenizer, corpus, out, threads)
                digests.add(shards_digest(out))
                dus_runs.append((tokens, wall, encode))
                lib_runs.append(run_library(a.python, tok_json, corpus, threads))
            tokens = dus_runs[0][0]
            dus_wall = statistics.median(r[1] for r in dus_runs)
            dus_encode = statistics.median(r[2] for r in dus_runs)
            lib_wall = statistics.median(r[1] for r in lib_runs)
            if lib_runs[0][0] != tokens:
                sys.exit(f"token counts differ: dus {tokens}, tokenizers {lib_runs[0][0]}")
            rows.append((threads, tokens / dus_wall, tokens / dus_encode, tokens / lib_wall, lib_wall / dus_wall))
        print(f"\n{'threads':>7} {'dus prepare tok/s':>18} {'dus encode tok/s/thread':>24} "
              f"{'tokenizers tok/s':>17} {'dus / tokenizers':>17}")
        for t, dw, de, lw, ratio in rows:
            print(f"{t:>7} {dw:>18,.0f} {de:>24,.0f} {lw:>17,.0f} {ratio:>16.2f}x")
        print(f"\n(medians of {a.repeats}; dus: whole prepare wall time, reading and writing included; "
              f"tokenizers: encode_batch time only)")
        print(f"shards byte-identical across thread counts: {'yes' if len(digests) == 1 else 'NO'}")
        if len(digests) != 1:
            sys.exit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Prepares the corpus once and compares each document's ids with the library's.
VERIFY_SCRIPT = r"""
import json, os, subprocess, sys
import numpy as np
dus, tokenizer, corpus, ids_file, tmp = sys.argv[1:6]
out = os.path.join(tmp, "verify")
subprocess.run([dus, "prepare", "--tokenizer", tokenizer, "--input", corpus, "--lines", "--out", out,
                "--val-fraction", "0", "--quiet"], check=True, capture_output=True)
index = json.load(open(os.path.join(out, "index.json")))
split = index["splits"]["train"]
dtype = {"uint16": np.uint16, "uint32": np.uint32}[index["dtype"]]
ours = []
for shard in split["shards"]:
    tokens = np.fromfile(os.path.join(out, shard["file"]), dtype=dtype)
    ends = np.fromfile(os.path.join(out, shard["index"]), dtype=np.uint64)
    start = 0
    for end in ends:
        ours.append(tokens[start:end].tolist())
        start = int(end)
theirs = [json.loads(l) for l in open(ids_file)]
bad = sum(a != b for a, b in zip(ours, theirs))
if len(ours) != len(theirs) or bad:
    sys.exit(f"ids differ: {bad} of {len(theirs)} documents ({len(ours)} prepared)")
print(f"ids equal to tokenizers' for all {len(theirs):,} documents")
"""

if __name__ == "__main__":
    main()
