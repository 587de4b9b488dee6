// dus tokenizer train: a sentencepiece BPE model (byte fallback) from a corpus, for users (and
// the demo) without a tokenizer.model.
#include <chrono>

#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "core/text_format.h"
#include "data/tokenizer.h"

namespace dus {

namespace {

int run_tokenizer_train(const ParsedArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> inputs = args.all("input");
  if (inputs.empty()) throw Error("dus tokenizer train", "missing --input PATH (give one or more)");
  CorpusOptions corpus;
  corpus.lines = args.flag("lines");
  corpus.jsonl_field = args.get("jsonl-field");
  corpus.utf8 = parse_utf8_policy(args.get("invalid-utf8"));
  TokenizerTrainOptions o;
  o.vocab_size = static_cast<int32_t>(args.get_int("vocab-size"));
  o.model_type = args.get("model-type");
  o.byte_fallback = !args.flag("no-byte-fallback");
  o.character_coverage = args.get_double("character-coverage");
  o.max_sentences = args.get_int("max-sentences");
  o.threads = args.has("threads")
                  ? static_cast<int>(args.get_int("threads"))
                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  TokenizerTrainResult r = train_tokenizer(inputs, corpus, args.get("out"), o);
  Tokenizer t = Tokenizer::load(r.model_path);
  const double seconds = seconds_since(start);
  fmt::print("wrote {}: {} {} pieces (byte fallback {}; unk {}, bos {}, eos {}), sha256 {}\n",
             r.model_path, with_commas(t.vocab_size()), o.model_type,
             o.byte_fallback ? "on" : "off", t.unk_id(), t.bos_id(), t.eos_id(), t.sha256());
  fmt::print("  trained on {} lines of {} documents ({}) in {:.1f} s\n", with_commas(r.sentences),
             with_commas(r.corpus.documents), human_bytes(static_cast<double>(r.corpus.text_bytes)),
             seconds);
  return 0;
}

// --jsonl: each line of the input is one document as a JSON string; prints one JSON list of
// ids per line. With --check-decode, also fails unless decode(encode(text)) == text.
int run_tokenizer_encode_jsonl(const Tokenizer& t, const ParsedArgs& args) {
  const std::string input = args.get("input");
  const std::string all = read_file(input);
  const bool check = args.flag("check-decode");
  std::string out;
  std::vector<int32_t> ids;
  size_t pos = 0, line = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) nl = all.size();
    std::string_view row(all.data() + pos, nl - pos);
    pos = nl + 1;
    ++line;
    if (row.empty()) continue;
    const std::string where = fmt::format("{}:{}", input, line);
    json::Value v = json::parse(row, where);
    const std::string& text = v.as_string(where);
    t.encode(text, &ids);
    if (check && t.decode(ids) != text)
      throw Error(where, "decode(encode(text)) differs from the text");
    out += '[';
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int run_tokenizer_encode(const ParsedArgs& args) {
  Tokenizer t = Tokenizer::load(args.get("tokenizer"));
  if (args.flag("info")) {
    fmt::print(
        "{{\"path\": {}, \"vocab_size\": {}, \"bos_id\": {}, \"eos_id\": {}, \"unk_id\": {}, "
        "\"pad_id\": {}, \"sha256\": \"{}\"}}\n",
        json::dump(json::Value(t.path())), t.vocab_size(), t.bos_id(), t.eos_id(), t.unk_id(),
        t.pad_id(), t.sha256());
    return 0;
  }
  if (args.flag("jsonl")) return run_tokenizer_encode_jsonl(t, args);
  // The whole file is one document: one encode call, as dus prepare does.
  std::string text = read_file(args.get("input"));
  std::vector<int32_t> ids = t.encode(text);
  std::string out;
  out.reserve(ids.size() * 6);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  fmt::print("{}\n", out);
  return 0;
}

}  // namespace

Command tokenizer_train_command() {
  return {"tokenizer train",
          [] {
            return ArgParser("tokenizer train",
                             "Train a sentencepiece BPE tokenizer (byte fallback) on a corpus.")
                .positional("", "", 0)
                .option("input", "PATH", "a .txt/.jsonl (.gz/.zst) file or a directory; repeatable",
                        std::nullopt, true)
                .required("vocab-size", "N", "pieces in the model, special tokens included")
                .required("out", "DIR", "writes DIR/tokenizer.model and DIR/tokenizer.vocab")
                .option("model-type", "TYPE", "bpe or unigram", std::string("bpe"))
                .flag("no-byte-fallback", "unknown characters become <unk> instead of byte pieces")
                .option("character-coverage", "F", "share of characters the pieces must cover",
                        std::string("0.9995"))
                .option("max-sentences", "N", "training lines sampled at most (0: all)",
                        std::string("2000000"))
                .option("threads", "N", "trainer threads [default: all cores]")
                .flag("lines", ".txt inputs: one document per line")
                .option("jsonl-field", "NAME", ".jsonl inputs: the text field", std::string("text"))
                .option("invalid-utf8", "POLICY", "replace, skip or error", std::string("replace"));
          },
          run_tokenizer_train};
}

Command tokenizer_encode_command() {
  return {"tokenizer encode",
          [] {
            return ArgParser("tokenizer encode",
                             "Print the token ids of a text file (encoded as one document).")
                .positional("", "", 0)
                .required("tokenizer", "PATH",
                          "tokenizer.model, tokenizer.json, tekken.json, or a model directory")
                .option("input", "FILE", "text file (UTF-8), encoded whole in one call")
                .flag("jsonl",
                      "FILE has one document per line as a JSON string; prints one "
                      "JSON list of ids per line")
                .flag("check-decode", "with --jsonl: fail unless decode(encode(text)) == text")
                .flag("info", "print the tokenizer's file, vocab size and special ids as JSON");
          },
          run_tokenizer_encode};
}

}  // namespace dus
