"""Real byte-level BPE tokenizer files for the parity tests, built once into a cache.

Sources (no network): llama.cpp's vocab-only GGUF files that scripts/setup.sh put into
~/.cache/dus-trainer/gguf-vocab/, converted by transformers (`AutoTokenizer.from_pretrained(dir,
gguf_file=...)` then `save_pretrained`) into tokenizer.json + tokenizer_config.json, plus
variants made by editing the JSON to carry what the published files carry (Llama-3's
`ignore_merges: true`, Qwen2's NFC normalizer), an NFKC one and GPT-2 with
ByteLevel's add_prefix_space. Tekken: mistral-common's
`tekken_240718.json` (Mistral-Nemo).

Usage: python tokenizer_fixtures.py [CACHE_DIR]  -> prints one JSON line {name: path}.
Each fixture is regenerated only when its tokenizer.json is missing (~13 s per conversion).
"""
import json
import os
import pathlib
import shutil
import sys

CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "dus-trainer"
GGUF_DIR = CACHE / "gguf-vocab"
BASES = ["llama-bpe", "qwen2", "gpt-2", "deepseek-llm"]


def convert(name, out):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(GGUF_DIR), gguf_file=f"ggml-vocab-{name}.gguf")
    tmp = out.with_name(out.name + ".tmp")
    tok.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def variant(base, out, edit):
    """Copies base's files into out and rewrites tokenizer.json with edit(json)."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(base, tmp)
    j = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))
    edit(j)
    (tmp / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def set_ignore_merges(j):
    j["model"]["ignore_merges"] = True


def set_normalizer(kind):
    def edit(j):
        j["normalizer"] = {"type": kind}
    return edit


def set_sequence_nfkc(j):
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKC"}]}


def set_prefix_space(j):
    j["pre_tokenizer"]["add_prefix_space"] = True


VARIANTS = {
    "gpt-2-prefix-space": ("gpt-2", set_prefix_space),
    "llama-bpe-ignore-merges": ("llama-bpe", set_ignore_merges),
    "qwen2-nfc": ("qwen2", set_normalizer("NFC")),
    "gpt-2-nfkc": ("gpt-2", set_sequence_nfkc),
}


def tekken_path():
    import mistral_common
    return pathlib.Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"


def build(root=None):
    root = pathlib.Path(root) if root else CACHE / "tokenizers"
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in BASES:
        out = root / name
        if not (out / "tokenizer.json").exists():
            if not (GGUF_DIR / f"ggml-vocab-{name}.gguf").exists():
                continue
            convert(name, out)
        paths[name] = out
    for name, (base, edit) in VARIANTS.items():
        out = root / name
        if base in paths and not (out / "tokenizer.json").exists():
            variant(paths[base], out, edit)
        if (out / "tokenizer.json").exists():
            paths[name] = out
    try:
        t = tekken_path()
        if t.exists():
            paths["tekken"] = t
    except ImportError:
        pass
    return paths


if __name__ == "__main__":
    print(json.dumps({k: str(v) for k, v in build(sys.argv[1] if len(sys.argv) > 1 else None).items()}))
