#!/usr/bin/env python3
"""The crossover study's corpus: public-domain and permissively licensed text from Debian and
PyPI packages installed on the machine (no web download), as one JSONL file of documents.

    crossover_corpus.py --out DIR [--install]
    crossover_corpus.py --out DIR --count-tokens TOKENIZER.model   (adds token counts)

Writes DIR/pretrain.jsonl and DIR/continue.jsonl (one {"text", "source"} object per document;
a document goes to continue.jsonl when the sha256 of its text, read as a fraction, is below
CONTINUE_FRACTION, so that the continued-pretraining runs of the study train on text no base
model has seen), DIR/tokenizer_sample.txt
(every k-th line of every source, so a tokenizer trained on its first lines sees all sources)
and DIR/manifest.json (per source: the package and version it came from, its license as the
package states it, files, documents and bytes; token counts are added by crossover_study.sh
after `dus prepare`). Deterministic: sorted file lists, fixed chunking; the held-out split is
made later by `dus prepare` from each document's text hash.

Sources (prose first, then Python source code):
  kjv         King James Bible (Debian bible-kjv): public domain
  pydoc       Python 3.11 documentation, reStructuredText sources (Debian python3.11-doc): PSF-2.0
  wordnet     WordNet 3.0 glosses and examples (Debian wordnet-base): WordNet 3.0 license (BSD-like)
  devil       The Devil's Dictionary, A. Bierce (Debian dict-devil): public domain
  jargon      The Jargon File 4.4.7 (Debian dict-jargon): public domain
  stdlib      Python 3.11 standard library source (Debian libpython3.11-stdlib): PSF-2.0
  torch       PyTorch 2.11 Python source (PyPI torch): BSD-3-Clause
  transformers  Hugging Face transformers 5.24 Python source (PyPI): Apache-2.0
"""

import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

DOC_CHARS = 6000  # a document is at most this many characters of consecutive paragraphs
SAMPLE_EVERY = 40  # tokenizer_sample.txt: every 40th non-empty line of each source
CONTINUE_FRACTION = 0.16  # share of documents kept for continued pretraining (~7.7M tokens)

DEBIAN = ["bible-kjv", "python3.11-doc", "wordnet-base", "dict-devil", "dict-jargon"]


def site_packages():
    import sysconfig
    return sysconfig.get_paths()["purelib"]


def deb_version(pkg):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def pip_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def chunks(text):
    """Consecutive blank-line-separated paragraphs packed into documents of <= DOC_CHARS."""
    out, cur, size = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if cur and size + len(para) > DOC_CHARS:
            out.append("\n\n".join(cur))
            cur, size = [], 0
        # A paragraph longer than a document (a long code block) is cut at line ends.
        while len(para) > DOC_CHARS:
            cut = para.rfind("\n", 0, DOC_CHARS)
            cut = cut if cut > 0 else DOC_CHARS
            out.append(para[:cut])
            para = para[cut:].lstrip("\n")
        cur.append(para)
        size += len(para) + 2
    if cur:
        out.append("\n\n".join(cur))
    return out


def kjv():
    text = subprocess.run(["bible", "Gen 1:1-Rev 22:21"], capture_output=True, text=True,
                          check=True).stdout
    # `bible` prints "Genesis 1" headings and indented, numbered verses wrapped at 80 columns:
    # one document per chapter, verse numbers kept.
    docs, cur = [], []
    for line in text.splitlines():
        if re.match(r"^\S.* \d+$", line) and cur:
            docs.append("\n".join(cur).strip())
            cur = []
        cur.append(line.rstrip())
    if cur:
        docs.append("\n".join(cur).strip())
    return docs, 1


def files_text(paths):
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as f:
            yield p, f.read()


def from_files(paths):
    docs = []
    for _, text in files_text(paths):
        docs.extend(chunks(text))
    return docs, len(paths)


def pydoc():
    paths = sorted(glob.glob("/usr/share/doc/python3.11/html/_sources/**/*.rst.txt", recursive=True))
    return from_files(paths)


def wordnet():
    # data.POS lines: "offset lexfile pos n word lexid ... | gloss; "example"". License header
    # lines start with two spaces.
    docs = []
    nfiles = 0
    for pos, name in [("noun", "noun"), ("verb", "verb"), ("adj", "adjective"), ("adv", "adverb")]:
        path = f"/usr/share/wordnet/data.{pos}"
        nfiles += 1
        lines = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                count = int(fields[3], 16)
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
                words = [re.sub(r"\(.*\)$", "", w) for w in words]
                lines.append(f"{', '.join(words)} ({name}): {gloss.strip()}")
        for i in range(0, len(lines), 40):
            docs.append("\n".join(lines[i:i + 40]))
    return docs, nfiles


def dictd(name):
    path = f"/usr/share/dictd/{name}.dict.dz"
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    return chunks(text), 1


def python_tree(root, skip=()):
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and d != "__pycache__")
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return from_files(sorted(paths))


SOURCES = [
    # name, kind, package, version function, license, builder
    ("kjv", "prose", "bible-kjv (Debian)", lambda: deb_version("bible-kjv-text"),
     "public domain (King James Version, 1611/1769)", kjv),
    ("pydoc", "prose", "python3.11-doc (Debian)", lambda: deb_version("python3.11-doc"),
     "PSF-2.0 (Python Software Foundation License)", pydoc),
    ("wordnet", "prose", "wordnet-base (Debian)", lambda: deb_version("wordnet-base"),
     "WordNet 3.0 license (permissive, BSD-like; Princeton University)", wordnet),
    ("devil", "prose", "dict-devil (Debian)", lambda: deb_version("dict-devil"),
     "public domain (The Devil's Dictionary, 1911)", lambda: dictd("devil")),
    ("jargon", "prose", "dict-jargon (Debian)", lambda: deb_version("dict-jargon"),
     "public domain (The Jargon File 4.4.7)", lambda: dictd("jargon")),
    ("stdlib", "code", "libpython3.11-stdlib (Debian)", lambda: deb_version("libpython3.11-stdlib"),
     "PSF-2.0", lambda: python_tree("/usr/lib/python3.11",
                                    skip=("test", "tests", "idlelib", "site-packages",
                                          "dist-packages", "lib2to3"))),
    ("torch", "code", "torch (PyPI)", lambda: pip_version("torch"), "BSD-3-Clause",
     lambda: python_tree(os.path.join(site_packages(), "torch"))),
    ("transformers", "code", "transformers (PyPI)", lambda: pip_version("transformers"),
     "Apache-2.0", lambda: python_tree(os.path.join(site_packages(), "transformers"))),
]


def count_tokens(out_dir, tokenizer):
    """Adds per-source token counts (no BOS/EOS) of both files to DIR/manifest.json."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    path = os.path.join(out_dir, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    counts = {}
    for split in ("pretrain", "continue"):
        with open(os.path.join(out_dir, split + ".jsonl"), encoding="utf-8") as f:
            batch = []
            for line in f:
                d = json.loads(line)
                batch.append(d)
                if len(batch) == 512:
                    for doc, ids in zip(batch, sp.encode([b["text"] for b in batch])):
                        counts[(doc["source"], split)] = counts.get((doc["source"], split), 0) + len(ids)
                    batch = []
            for doc, ids in zip(batch, sp.encode([b["text"] for b in batch])):
                counts[(doc["source"], split)] = counts.get((doc["source"], split), 0) + len(ids)
    for s in manifest["sources"]:
        s["tokens_pretrain"] = counts.get((s["name"], "pretrain"), 0)
        s["tokens_continue"] = counts.get((s["name"], "continue"), 0)
        s["tokens"] = s["tokens_pretrain"] + s["tokens_continue"]
        s["bytes_per_token"] = round(s["bytes"] / max(1, s["tokens"]), 3)
        print(f"{s['name']:13s} {s['tokens']:11,d} tokens ({s['bytes_per_token']} bytes/token)")
    manifest["tokenizer"] = os.path.abspath(tokenizer)
    manifest["tokens"] = sum(s["tokens"] for s in manifest["sources"])
    manifest["tokens_prose"] = sum(s["tokens"] for s in manifest["sources"] if s["kind"] == "prose")
    print(f"total {manifest['tokens']:,d} tokens, prose {manifest['tokens_prose']:,d}")
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count-tokens", metavar="TOKENIZER",
                    help="add per-source token counts to an existing DIR/manifest.json")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install the Debian packages that are missing")
    args = ap.parse_args()
    if args.count_tokens:
        return count_tokens(args.out, args.count_tokens)
    missing = [p for p in DEBIAN if not deb_version(p)]
    if missing:
        if not args.install:
            sys.exit("crossover_corpus: missing Debian packages " + " ".join(missing) +
                     " (pass --install, or apt-get install them)")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing,
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    os.makedirs(args.out, exist_ok=True)
    pre_tmp = os.path.join(args.out, "pretrain.jsonl.tmp")
    cont_tmp = os.path.join(args.out, "continue.jsonl.tmp")
    sample_tmp = os.path.join(args.out, "tokenizer_sample.txt.tmp")
    manifest = {"doc_chars": DOC_CHARS, "sample_every": SAMPLE_EVERY,
                "continue_fraction": CONTINUE_FRACTION, "sources": []}
    digest = hashlib.sha256()
    with open(pre_tmp, "w", encoding="utf-8") as pre, \
            open(cont_tmp, "w", encoding="utf-8") as cont, \
            open(sample_tmp, "w", encoding="utf-8") as sample:
        for name, kind, package, version, license_, build in SOURCES:
            docs, nfiles = build()
            nbytes, ncont, nline = 0, 0, 0
            for d in docs:
                line = json.dumps({"text": d, "source": name}, ensure_ascii=False) + "\n"
                raw = d.encode("utf-8")
                h = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") / 2.0**64
                (cont if h < CONTINUE_FRACTION else pre).write(line)
                ncont += h < CONTINUE_FRACTION
                digest.update(line.encode("utf-8"))
                nbytes += len(raw)
                for l in d.splitlines():
                    if l.strip():
                        if nline % SAMPLE_EVERY == 0:
                            sample.write(l + "\n")
                        nline += 1
            manifest["sources"].append({
                "name": name, "kind": kind, "package": package, "version": version(),
                "license": license_, "files": nfiles, "documents": len(docs),
                "documents_continue": ncont, "bytes": nbytes})
            print(f"{name:13s} {kind:5s} {nfiles:6d} files {len(docs):8d} docs "
                  f"{nbytes / 1e6:8.1f} MB  {license_}", flush=True)
    manifest["corpus_sha256"] = digest.hexdigest()
    manifest["bytes"] = sum(s["bytes"] for s in manifest["sources"])
    manifest["documents"] = sum(s["documents"] for s in manifest["sources"])
    os.replace(sample_tmp, os.path.join(args.out, "tokenizer_sample.txt"))
    os.replace(cont_tmp, os.path.join(args.out, "continue.jsonl"))
    os.replace(pre_tmp, os.path.join(args.out, "pretrain.jsonl"))
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"total: {manifest['documents']} documents, {manifest['bytes'] / 1e6:.1f} MB, "
          f"sha256 {manifest['corpus_sha256'][:16]}")
    # The corpus is what the installed packages hold: other versions give other text, and
    # other numbers than README's (which come from the study's corpus).
    study = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "crossover",
                         "results", "corpus_manifest.json")
    if os.path.exists(study):
        with open(study) as f:
            if json.load(f).get("corpus_sha256") != manifest["corpus_sha256"]:
                print("note: this corpus differs from the study's (recipes/crossover/results/"
                      "corpus_manifest.json lists the package versions it came from); results "
                      "will differ from README's")


if __name__ == "__main__":
    main()
