"""Shared by the Python end-to-end tests: how they call `dus`, read a run's metrics, and make
their corpus (a part of the King James Bible from Debian's bible-kjv, tokenized by `dus`)."""

import json
import os
import subprocess

DUS = os.environ.get("DUS_BIN", "dus")
SRC = os.environ.get("DUS_SOURCE_DIR", os.getcwd())


def run(*args, env=None, check=True, timeout=600):
    """Runs `dus ARGS` in the source tree; raises with its output when check and it fails."""
    e = dict(os.environ)
    if env:
        e.update(env)
    proc = subprocess.run([DUS, *args], capture_output=True, text=True, cwd=SRC, env=e, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"dus {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_metrics(run_dir):
    """Every record of RUN/metrics.jsonl."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def make_kjv_dataset(tmp, passage, name):
    """Writes the passage to TMP/NAME.txt, trains a 512-piece tokenizer on it and prepares it
    (one verse per document, 2% held out). Returns the --set arguments pointing a recipe at it."""
    corpus = os.path.join(tmp, name + ".txt")
    text = subprocess.run(["bible", passage], capture_output=True, text=True, check=True).stdout
    with open(corpus, "w") as f:
        f.write(text)
    tokenizer = os.path.join(tmp, "tokenizer", "tokenizer.model")
    run("tokenizer", "train", "--input", corpus, "--lines", "--vocab-size", "512", "--out", os.path.dirname(tokenizer))
    data = os.path.join(tmp, "prepared")
    run("prepare", "--tokenizer", tokenizer, "--input", corpus, "--lines", "--out", data, "--val-fraction", "0.02",
        "--quiet")
    return ["--set", f"data.train=[{data}]", "--set", f"data.tokenizer={tokenizer}"]
