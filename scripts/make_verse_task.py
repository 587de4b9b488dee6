#!/usr/bin/env python3
"""Builds the demo's multiple-choice task from the held-out split of a prepared dataset.

    make_verse_task.py [--data demo-out/data] [--out demo-out/tasks/verse_completion.jsonl]
                       [--items 200] [--choices 4] [--rest-words 3] [--min-words 8]
                       [--seed 1234] [--tokenizer FILE]

"Verse completion": each item is one held-out document (with `dus prepare --lines` on the
bible-kjv text, one line of a verse as `bible` wraps it at 80 columns) of at least --min-words
words. The context is the line up to its last --rest-words words, verbatim (verse number and
indent included, as the model saw such lines in training); the choices are the true last words
and the last words of other held-out lines, each starting with the space that
lm-evaluation-harness puts between context and continuation (train/task_scoring.h). Every
string comes from the held-out split, so the task measures generalisation to unseen text, not
recall of trained text. --rest-words 0 cuts each line at the word nearest its middle instead:
there the choices' own likelihood (unrelated to the context) drowns the signal at the junction,
and a 5M-parameter model scores near chance (0.265 against 0.34 with 3 words, on the same
model; a word-trigram model of the train split: 0.35 against 0.505).

Held-out texts are read back from the dataset itself, not re-derived: the val shards (format:
data/dataset_writer.h) are decoded with the dataset's tokenizer (its sha256 checked against
index.json), and each decoded text must encode back to exactly the stored ids, so the texts are
the ones `dus prepare` split off by its rule (index.json split_rule). The train shards are
decoded too, to reject a distractor that would turn the context into a training line.

Choosing, all from one seeded random.Random, so a rerun writes the same bytes:
  * items: a sample of the eligible held-out lines, in dataset order;
  * distractors: among the rests of the other eligible held-out lines, the 8 * (choices - 1)
    closest to the gold rest in length (characters), then choices - 1 of them at random.
    Matching lengths keeps acc (summed log-probability, which favours short choices) from
    being won by length;
  * gold positions: balanced (counts differ by at most one), in a shuffled order.
Chance is 1 / choices for both acc and acc_norm. Output: JSONL for `dus eval --tasks`
(data/task_file.h), one {"context", "choices", "gold", "id"} per line, id "val-N" = the
document's index in the val split.
"""

import argparse
import hashlib
import json
import os
import random
import sys

import numpy as np

DTYPES = {"uint16": "<u2", "uint32": "<u4"}
MIN_SIDE_WORDS = 3  # words kept on each side of the cut
NEAREST_PER_DISTRACTOR = 8  # length-matched candidates drawn from, per distractor


def fail(what, hint=None):
    sys.exit(f"make_verse_task: {what}" + (f"\n  hint: {hint}" if hint else ""))


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_index(data_dir):
    path = os.path.join(data_dir, "index.json")
    if not os.path.exists(path):
        fail(f"{path} not found", "pass --data, a directory written by `dus prepare`")
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    if index.get("format") != "dus-token-dataset":
        fail(f"{path}: format is {index.get('format')!r}, expected 'dus-token-dataset'")
    if index.get("dtype") not in DTYPES:
        fail(f"{path}: dtype {index.get('dtype')!r}, expected one of {sorted(DTYPES)}")
    if not index.get("splits", {}).get("val", {}).get("documents"):
        fail(f"{path}: the val split is empty", "prepare the corpus with --val-fraction > 0")
    return index


def find_tokenizer(data_dir, index, flag):
    """The tokenizer the dataset was prepared with: --tokenizer, else index.json's path taken
    from the working directory or next to the dataset; its sha256 must match index.json."""
    recorded = index.get("tokenizer", {})
    want = recorded.get("sha256")
    path = recorded.get("path", "")
    candidates = [flag] if flag else [path, os.path.join(os.path.dirname(os.path.abspath(data_dir)), path),
                                      os.path.join(data_dir, path)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            if not candidate.endswith(".model"):
                fail(f"{candidate}: only sentencepiece tokenizer.model files are supported")
            got = sha256_of(candidate)
            if got == want:
                return candidate
            if flag:
                fail(f"{candidate}: sha256 {got} is not the dataset's tokenizer ({want}, index.json)")
    fail(f"the dataset's tokenizer {path!r} (sha256 {want}) was not found",
         "pass --tokenizer with the tokenizer.model the dataset was prepared with")


def decode_split(data_dir, index, split, sp, check_round_trip):
    """Texts of every document of one split, in stored order."""
    dtype = DTYPES[index["dtype"]]
    texts = []
    for shard in index["splits"][split]["shards"]:
        tokens = np.fromfile(os.path.join(data_dir, shard["file"]), dtype=dtype)
        ends = np.fromfile(os.path.join(data_dir, shard["index"]), dtype="<u8")
        if len(ends) != shard["documents"] or (len(ends) and int(ends[-1]) != len(tokens)):
            fail(f"{data_dir}/{shard['file']}: its .idx does not describe it (index.json)")
        start = 0
        for end in ends.tolist():
            ids = tokens[start:end].tolist()
            start = end
            text = sp.decode(ids)
            if check_round_trip and sp.encode(text) != ids:
                fail(f"{data_dir}/{shard['file']}: document {len(texts)} does not decode losslessly "
                     f"({text[:60]!r})", "the tokenizer must be trained with identity normalization")
            texts.append(text)
    if len(texts) != index["splits"][split]["documents"]:
        fail(f"{data_dir}: {len(texts)} {split} documents in the shards, index.json says "
             f"{index['splits'][split]['documents']}")
    return texts


def cut_line(text, rest_words):
    """(context, rest): text cut at a single space, rest starting with that space; the context
    keeps at least MIN_SIDE_WORDS words. rest_words > 0: the space before the last rest_words
    words; 0: the space nearest the middle that leaves MIN_SIDE_WORDS words on each side. None
    when there is no such space."""
    best = None
    for i in range(1, len(text) - 1):
        if text[i] != " " or text[i - 1] == " " or text[i + 1] == " ":
            continue
        before, after = len(text[:i].split()), len(text[i:].split())
        if before < MIN_SIDE_WORDS:
            continue
        if rest_words:
            if after == rest_words:
                best = i
        elif after >= MIN_SIDE_WORDS and (best is None or
                                           abs(i - len(text) / 2) < abs(best - len(text) / 2)):
            best = i
    return None if best is None else (text[:best], text[best:])


def build_items(val_texts, train_texts, items, choices, min_words, rest_words, seed):
    rng = random.Random(seed)
    known = set(val_texts) | set(train_texts)  # a context + distractor must not be real text
    eligible = []  # (val index, context, rest)
    for n, text in enumerate(val_texts):
        if len(text.split()) >= min_words:
            cut = cut_line(text, rest_words)
            if cut:
                eligible.append((n, *cut))
    rests = sorted({rest for _, _, rest in eligible}, key=lambda r: (len(r), r))
    if len(rests) < choices:
        fail(f"only {len(eligible)} held-out lines have {min_words}+ words: too few for {choices} choices",
             "lower --min-words or --choices, or hold out more text (--val-fraction)")
    picked = sorted(rng.sample(range(len(eligible)), min(items, len(eligible))))
    positions = [k % choices for k in range(len(picked))]
    rng.shuffle(positions)
    out = []
    for k, gold in zip(picked, positions):
        n, context, rest = eligible[k]
        candidates = [r for r in rests if r != rest and context + r not in known]
        if len(candidates) < choices - 1:
            fail(f"{len(candidates)} distractors possible for val document {n}, {choices - 1} needed",
                 "lower --choices, or hold out more text (--val-fraction)")
        candidates.sort(key=lambda r: (abs(len(r) - len(rest)), r))
        distractors = rng.sample(candidates[:NEAREST_PER_DISTRACTOR * (choices - 1)], choices - 1)
        options = distractors[:gold] + [rest] + distractors[gold:]
        out.append({"context": context, "choices": options, "gold": gold, "id": f"val-{n}"})
    return out, len(eligible)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="demo-out/data", help="a dataset written by `dus prepare`")
    parser.add_argument("--out", default="demo-out/tasks/verse_completion.jsonl", help="the JSONL to write")
    parser.add_argument("--items", type=int, default=200, help="items to write (at most; default 200)")
    parser.add_argument("--choices", type=int, default=4, help="choices per item (default 4)")
    parser.add_argument("--min-words", type=int, default=8, help="shortest held-out line used, in words")
    parser.add_argument("--rest-words", type=int, default=3,
                        help="words in each choice, the line's last (default 3; 0: cut near the middle)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of every random choice")
    parser.add_argument("--tokenizer", help="the dataset's tokenizer.model (default: index.json's)")
    args = parser.parse_args(argv)
    if args.items < 1 or args.choices < 2 or args.rest_words < 0 or \
            args.min_words < MIN_SIDE_WORDS + max(args.rest_words, MIN_SIDE_WORDS):
        fail(f"need --items >= 1, --choices >= 2, --rest-words >= 0, --min-words >= "
             f"{MIN_SIDE_WORDS} + max(--rest-words, {MIN_SIDE_WORDS})")

    import sentencepiece as spm  # the venv's; imported late so --help works without it

    index = load_index(args.data)
    sp = spm.SentencePieceProcessor(model_file=find_tokenizer(args.data, index, args.tokenizer))
    val_texts = decode_split(args.data, index, "val", sp, check_round_trip=True)
    train_texts = decode_split(args.data, index, "train", sp, check_round_trip=False)
    items, eligible = build_items(val_texts, train_texts, args.items, args.choices, args.min_words,
                                  args.rest_words, args.seed)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)  # a reader never sees half a file
    spread = "/".join(str(sum(i["gold"] == c for i in items)) for c in range(args.choices))
    cut = f"the line's last {args.rest_words} words" if args.rest_words else "lines cut near the middle"
    print(f"make_verse_task: {len(items)} items x {args.choices} choices ({cut}) -> {args.out}\n"
          f"  from {len(val_texts):,} held-out documents of {args.data} ({eligible:,} with "
          f"{args.min_words}+ words); gold positions {spread}\n"
          f"  chance: acc = acc_norm = 1/{args.choices} = {1 / args.choices:.2f}")


if __name__ == "__main__":
    main()
