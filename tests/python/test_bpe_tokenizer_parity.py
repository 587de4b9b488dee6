"""Byte-level BPE tokenizers of `dus` give exactly the reference libraries' ids.

For each real tokenizer file built by tokenizer_fixtures.py (llama.cpp's GGUF vocabularies of
Llama-3, Qwen2, GPT-2, DeepSeek-LLM converted by transformers, plus variants carrying
ignore_merges, NFC and NFC+NFKC normalizers, ByteLevel add_prefix_space) `dus tokenizer encode --jsonl` must equal
`tokenizers.Tokenizer.from_file(...).encode(text, add_special_tokens=False).ids`, and for
mistral-common's tekken_240718.json (Mistral-Nemo) `Tekkenizer.encode(text, bos=False,
eos=False)`, on every text of llama.cpp's .inp test vectors plus a varied set (scripts,
emoji, code, whitespace runs, digits, contractions, special-token strings, combining marks,
fullwidth forms, a 200 KB document). decode(encode(x)) == x is checked where the tokenizer
keeps the text (no normalizer or prefix space).
Invalid UTF-8 in a corpus under each --invalid-utf8 policy (replace, skip, error).
Also: special ids (Llama-3 bos 128000 / eos 128001) and `dus prepare` on a tokenizer.json.
Run by ctest with DUS_BIN set; skips when the fixtures cannot be built.
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tokenizer_fixtures  # noqa: E402

DUS = os.environ.get("DUS_BIN", "dus")
MARKER = "\n__ggml_vocab_test__\n"


def varied_texts():
    texts = [
        "",
        " ",
        "Hello world",
        "Chinese: 你好，世界！我们今天去北京。 Japanese: 日本語のテキストです。カタカナ ひらがな",
        "Arabic: مرحبا بالعالم ١٢٣ — Hindi: नमस्ते दुनिया, यह एक परीक्षण है। Russian: Привет, мир! Ёжик",
        "Greek: Γειά σου Κόσμε ΆΈΉ άέή. Korean: 안녕하세요 세계 한국어 문장입니다.",
        "Emoji: 🙂🚀 👩‍👩‍👧‍👦 👍🏽👍🏿 🏳️‍🌈 🇫🇷🇯🇵 ❤️‍🔥 🧑🏻‍💻 and a lone 🦄.",
        "def f(x):\n\treturn x  # tab\n\n\n    \t  \n" + " " * 50 + "end\r\nline2\r\n\r\n\tif (a<<2) {}\n",
        "digits: 1 12 123 1234 12345 123456 1234567 12345678901234567890 3.14159 1,000,000 0x1F",
        "I'M They'LL DON'T we'Re you'VE it's IT'S she'd He'S o'Neil 'ſ 'K",
        "Special strings: a<|begin_of_text|>b <|end_of_text|> <|endoftext|>x<|im_start|>user\n"
        "<s> </s> [INST] <unk> <|eot_id|><|start_header_id|>",
        "Combining: e\u0301 a\u0308 A\u030a n\u0303 \u1e9b\u0323 \u212b \u2126 ﬁ ﬃ ² ½ ㎏ ｶ ① Ⅻ",
        "Fullwidth: ＡＢＣ ａｂｃ １２３ ！？ （括弧） ＂quoted＂",
        "Whitespace: a\u00a0b\u3000c\u2028d\u2029e\u0085f\u200bg\u2009h\u202fi \u1680 j\x0b\x0ck",
        "Mixed\x00control\x01chars\x7f and ø ö in text (DeepSeek adds them as tokens)",
        "   leading spaces and trailing   ",
        "\n\n\n",
        "Ünïcödé Çàsè ÀÉÎÕÜ ßẞ ǅǈ İı",
        "URLs https://example.com/a/b?c=1&d=2#frag and emails me@x.org, paths C:\\dir\\file.txt",
    ]
    words = ("The quick brown fox jumps over the lazy dog. 你好世界 🦙 1234567 "
             "It's DON'T \t\t  \n\n Привет مرحبا ")
    long_doc = (words * (200_000 // len(words) + 1))[:200_000]
    texts.append(long_doc)
    texts.append("x" * 5000 + " " * 5000 + "\n" * 100 + "9" * 3000)
    return texts


def inp_texts(cache):
    texts = []
    for inp in sorted((cache / "gguf-vocab").glob("ggml-vocab-*.gguf.inp")):
        texts.extend(inp.read_text(encoding="utf-8").split(MARKER))
    return sorted(set(texts))


# decode(encode(x)) == x holds where neither a normalizer rewrites the text nor an added token
# is written in characters the ByteLevel decoder reads as bytes (DeepSeek's "ø").
ROUND_TRIP = {"llama-bpe", "llama-bpe-ignore-merges", "qwen2", "gpt-2", "tekken"}


def dus_encode(tokenizer, texts, tmp, check_decode=True):
    f = tmp / "texts.jsonl"
    f.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    p = subprocess.run([DUS, "tokenizer", "encode", "--tokenizer", str(tokenizer), "--jsonl",
                        "--input", str(f)] + (["--check-decode"] if check_decode else []),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"dus tokenizer encode failed ({tokenizer}):\n{p.stderr}")
    return [json.loads(line) for line in p.stdout.splitlines()]


def dus_info(tokenizer):
    p = subprocess.run([DUS, "tokenizer", "encode", "--tokenizer", str(tokenizer), "--info"],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


class BpeTokenizerParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.paths = tokenizer_fixtures.build()
        except Exception as e:  # noqa: BLE001 - a missing reference tool is a skip, not a failure
            raise unittest.SkipTest(f"tokenizer fixtures unavailable: {e}")
        cls.texts = inp_texts(tokenizer_fixtures.CACHE) + varied_texts()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tmpdir = pathlib.Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def compare(self, name, ours, reference):
        self.assertEqual(len(ours), len(self.texts))
        bad = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
        if bad:
            i = bad[0]
            self.fail(f"{name}: {len(bad)} of {len(self.texts)} texts differ; first {self.texts[i][:200]!r}\n"
                      f"dus: {ours[i][:60]}\nref: {reference[i][:60]}")
        print(f"{name}: {len(self.texts)} texts, {sum(map(len, ours))} tokens, all equal")

    def test_tokenizer_json(self):
        import tokenizers
        names = [n for n in self.paths if n != "tekken"]
        self.assertGreaterEqual(len(names), 4, names)
        for name in names:
            with self.subTest(name):
                path = self.paths[name] / "tokenizer.json"
                ref = tokenizers.Tokenizer.from_file(str(path))
                expected = [ref.encode(t, add_special_tokens=False).ids for t in self.texts]
                self.compare(name, dus_encode(path, self.texts, self.tmpdir, name in ROUND_TRIP), expected)

    def test_tekken(self):
        if "tekken" not in self.paths:
            self.skipTest("mistral-common's tekken_240718.json is not installed")
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer
        ref = Tekkenizer.from_file(str(self.paths["tekken"]))
        expected = [ref.encode(t, bos=False, eos=False) for t in self.texts]
        self.compare("tekken_240718", dus_encode(self.paths["tekken"], self.texts, self.tmpdir), expected)
        info = dus_info(self.paths["tekken"])
        self.assertEqual((info["bos_id"], info["eos_id"], info["vocab_size"]),
                         (ref.bos_id, ref.eos_id, ref.n_words))

    def test_special_ids(self):
        info = dus_info(self.paths["llama-bpe"])  # the directory: picks tokenizer.json
        self.assertEqual((info["bos_id"], info["eos_id"]), (128000, 128001))
        self.assertTrue(info["path"].endswith("tokenizer.json"))
        qwen = dus_info(self.paths["qwen2"] / "tokenizer.json")
        self.assertEqual((qwen["bos_id"], qwen["eos_id"], qwen["vocab_size"]), (151643, 151643, 151936))

    def test_prepare_uses_tokenizer_json(self):
        import numpy as np
        import tokenizers
        path = self.paths["llama-bpe"] / "tokenizer.json"
        ref = tokenizers.Tokenizer.from_file(str(path))
        # Whitespace-only documents are dropped by the corpus reader; keep real text.
        docs = [t for t in varied_texts() if t.strip()][:12] * 3
        corpus = self.tmpdir / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                          encoding="utf-8")
        out = self.tmpdir / "prepared"
        # The model directory is given: dus picks its tokenizer.json and records that file.
        p = subprocess.run([DUS, "prepare", "--tokenizer", str(path.parent), "--input", str(corpus),
                            "--out", str(out), "--val-fraction", "0", "--threads", "2"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        index = json.loads((out / "index.json").read_text())
        self.assertEqual(index["dtype"], "uint32")  # vocab 128257 > 65535
        dtype = np.uint32
        got = []
        for shard in index["splits"]["train"]["shards"]:
            tokens = np.fromfile(out / shard["file"], dtype=dtype)
            ends = np.fromfile(out / shard["index"], dtype=np.uint64)
            start = 0
            for end in ends:
                got.append(tokens[start:int(end)].astype(np.int64).tolist())
                start = int(end)
        self.assertEqual(len(got), len(docs))
        # dus prepare stores each document's encode() (BOS/EOS are added by the loader).
        for d, ids in zip(docs, got):
            self.assertEqual(ids, ref.encode(d, add_special_tokens=False).ids)
        recorded = index["tokenizer"]
        self.assertEqual((recorded["bos_id"], recorded["eos_id"], recorded["vocab_size"]),
                         (128000, 128001, 128257))
        self.assertEqual(recorded["path"], str(path))
        self.assertEqual(recorded["sha256"], hashlib.sha256(path.read_bytes()).hexdigest())

    def test_invalid_utf8_policies(self):
        import numpy as np
        import tokenizers
        path = self.paths["llama-bpe"] / "tokenizer.json"
        ref = tokenizers.Tokenizer.from_file(str(path))
        # Invalid bytes and, written by hand, the text `replace` must give: one U+FFFD per
        # offending byte (a lone continuation byte, 0xff, an overlong '/', a truncated
        # 3-byte sequence, a UTF-16 surrogate encoded in UTF-8).
        cases = [
            (b"caf\x80 ok", "caf\ufffd ok"),
            (b"\xff\xfeBOM-ish \xe4\xbd\xa0\xe5\xa5\xbd", "\ufffd\ufffdBOM-ish \u4f60\u597d"),
            (b"over\xc0\xaflong", "over\ufffd\ufffdlong"),
            (b"cut \xe4\xbd end", "cut \ufffd\ufffd end"),
            (b"sur\xed\xa0\x80rogate", "sur\ufffd\ufffd\ufffdrogate"),
        ]
        valid = ["A valid line before.", "And one after, \u4f60\u597d."]
        corpus = self.tmpdir / "invalid.txt"
        corpus.write_bytes(valid[0].encode() + b"\n" + b"\n".join(c for c, _ in cases) + b"\n" +
                           valid[1].encode() + b"\n")

        def prepare(policy):
            out = self.tmpdir / f"invalid-{policy}"
            p = subprocess.run([DUS, "prepare", "--tokenizer", str(path), "--input", str(corpus), "--lines",
                                "--out", str(out), "--val-fraction", "0", "--invalid-utf8", policy, "--force",
                                "--quiet"], capture_output=True, text=True)
            if p.returncode != 0:
                return p, None
            index = json.loads((out / "index.json").read_text())
            docs = []
            for shard in index["splits"]["train"]["shards"]:
                tokens = np.fromfile(out / shard["file"], dtype=np.uint32)
                start = 0
                for end in np.fromfile(out / shard["index"], dtype=np.uint64):
                    docs.append(tokens[start:int(end)].astype(np.int64).tolist())
                    start = int(end)
            return p, docs

        encode = lambda t: ref.encode(t, add_special_tokens=False).ids  # noqa: E731
        _, docs = prepare("replace")
        self.assertEqual(docs, [encode(valid[0])] + [encode(r) for _, r in cases] + [encode(valid[1])])
        _, docs = prepare("skip")
        self.assertEqual(docs, [encode(valid[0]), encode(valid[1])])
        p, docs = prepare("error")
        self.assertIsNone(docs)
        self.assertIn("invalid.txt:2", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
