#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tokenizer_json (tests/fuzz/corpus/fuzz_tokenizer_json/): real
tokenizer files cut down to a few KB, because the real ones (2-17 MB) are far past the fuzzer's
max_len and would make every execution slow.

Hugging Face tokenizer.json: the file's own normalizer, pre_tokenizer, post_processor and
decoder; the lowest N_VOCAB ids of model.vocab and the merges whose two parts and result are
all kept (in the file's order, so ranks keep their relative order); the first N_ADDED
added_tokens renumbered to follow the kept vocab (their real ids, 50k-150k, would make every
execution allocate a 150k-entry table).
Tekken: the file's config.pattern; the first N_TEKKEN_VOCAB vocab entries; N_SPECIAL control tokens
and default_vocab_size / default_num_special_tokens set so the file loads. The shipped files
have no special_tokens list (the loader then uses mistral-common's default names), so a second
seed carries one written the way newer Tekken files do, from mistral-common's own defaults.

Inputs: ~/.cache/dus-trainer/tokenizers/<name>/tokenizer.json (real files fetched by the
tokenizer parity setup) and mistral_common's data/tekken_*.json. Run with the project venv:
  ~/.cache/dus-trainer/venv/bin/python tests/fuzz/make_tokenizer_seeds.py
"""
import base64
import json
import os
import pathlib
import sys

N_VOCAB = 300
N_ADDED = 8
N_SPECIAL = 20
N_TEKKEN_VOCAB = 280  # its entries are longer (base64 + token_str): keeps the files under 16 KB
HF_NAMES = ["llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "qwen2-nfc", "gpt-2-nfkc",
            "llama-bpe-ignore-merges", "gpt-2-prefix-space"]
TEKKEN_NAMES = ["tekken_240718.json"]

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "fuzz_tokenizer_json"
CACHE = pathlib.Path(os.path.expanduser("~/.cache/dus-trainer/tokenizers"))


def dump(obj, path):
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text, encoding="utf-8")
    print(f"{path.name}: {len(text.encode())} bytes")


def cut_hf(src):
    d = json.loads(src.read_text(encoding="utf-8"))
    model = d["model"]
    kept = sorted(model["vocab"].items(), key=lambda kv: kv[1])[:N_VOCAB]
    vocab = dict(kept)
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    next_id = max(vocab.values()) + 1
    # Special tokens first (matched in the raw text), then up to two normalized ones, so both
    # AddedVocabulary paths have seeds.
    added_all = d.get("added_tokens") or []
    special = [a for a in added_all if a.get("special")][:N_ADDED - 2]
    plain = [a for a in added_all if not a.get("special")][:2]
    added = []
    for a in special + plain:
        a = dict(a)
        a["id"] = next_id
        next_id += 1
        added.append(a)
    d["added_tokens"] = added
    model["vocab"] = vocab
    model["merges"] = merges
    return d


def cut_tekken(src):
    d = json.loads(src.read_text(encoding="utf-8"))
    vocab = d["vocab"][:N_TEKKEN_VOCAB]
    # Every byte must be a piece; tekken ranks 0..255 are the bytes.
    assert {base64.b64decode(v["token_bytes"]) for v in vocab} >= {bytes([b]) for b in range(256)}
    out = {"config": dict(d["config"]), "vocab": vocab}
    out["config"]["default_num_special_tokens"] = N_SPECIAL
    out["config"]["default_vocab_size"] = N_SPECIAL + len(vocab)
    out["config"]["num_vocab_tokens"] = len(vocab)
    return out


def with_special_tokens(tekken):
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    out = dict(tekken)
    out["special_tokens"] = [
        {"rank": s["rank"], "token_str": str(s["token_str"].value), "is_control": s["is_control"]}
        for s in Tekkenizer.DEPRECATED_SPECIAL_TOKENS if s["rank"] < N_SPECIAL]
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in HF_NAMES:
        src = CACHE / name / "tokenizer.json"
        if not src.is_file():
            missing.append(str(src))
            continue
        dump(cut_hf(src), OUT / f"hf_{name}.json")
    import mistral_common
    data = pathlib.Path(mistral_common.__file__).parent / "data"
    for name in TEKKEN_NAMES:
        src = data / name
        if not src.is_file():
            missing.append(str(src))
            continue
        tekken = cut_tekken(src)
        dump(tekken, OUT / name)
        dump(with_special_tokens(tekken), OUT / name.replace(".json", "_special_tokens.json"))
    if missing:
        print("missing (skipped): " + ", ".join(missing), file=sys.stderr)


if __name__ == "__main__":
    main()
