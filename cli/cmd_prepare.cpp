// dus prepare: tokenize a corpus into token shards + index.json (see data/prepare.h).
#include <cstdio>

#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text_format.h"
#include "data/prepare.h"

namespace dus {

namespace {

int run_prepare(const ParsedArgs& args) {
  PrepareOptions o;
  o.tokenizer = args.get("tokenizer");
  o.inputs = args.all("input");
  if (o.inputs.empty()) throw Error("dus prepare", "missing --input PATH (give one or more)");
  o.out_dir = args.get("out");
  o.val_fraction = args.get_double("val-fraction");
  o.threads = args.has("threads")
                  ? static_cast<int>(args.get_int("threads"))
                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.shard_tokens = args.get_int("shard-tokens");
  o.force = args.flag("force");
  o.progress = !args.flag("quiet");
  o.corpus.lines = args.flag("lines");
  o.corpus.jsonl_field = args.get("jsonl-field");
  o.corpus.utf8 = parse_utf8_policy(args.get("invalid-utf8"));
  o.corpus.skip_bad_json = args.flag("skip-bad-json");

  PrepareResult r = prepare_dataset(o);
  const CorpusStats& s = r.corpus;
  fmt::print("prepared {}: {} documents, {} tokens from {} file(s) ({} of text)\n", o.out_dir,
             with_commas(r.train_documents + r.val_documents),
             with_commas(r.train_tokens + r.val_tokens), s.files,
             human_bytes(static_cast<double>(s.text_bytes)));
  fmt::print("  train  {} documents, {} tokens\n", with_commas(r.train_documents),
             with_commas(r.train_tokens));
  fmt::print("  val    {} documents, {} tokens (fraction {:g} by text hash)\n",
             with_commas(r.val_documents), with_commas(r.val_tokens), o.val_fraction);
  fmt::print("  skipped: {} empty files, {} empty documents, {} bad JSON lines\n", s.empty_files,
             s.empty_documents, s.skipped_bad_json);
  fmt::print(
      "  invalid UTF-8: {} documents (policy {}: {} bytes replaced by U+FFFD, {} documents "
      "skipped)\n",
      s.invalid_utf8_documents, utf8_policy_name(o.corpus.utf8), s.invalid_utf8_bytes,
      s.skipped_invalid_utf8);
  fmt::print(
      "  speed  {:.2f} MB/s overall ({:.2f} s wall), {:.2f} MB/s per thread ({} threads; tokenizer "
      "time summed over threads {:.2f} s)\n",
      r.mb_per_s(), r.seconds, r.mb_per_s_per_thread(), r.threads, r.encode_seconds);
  return 0;
}

}  // namespace

Command prepare_command() {
  return {"prepare",
          [] {
            return ArgParser("prepare",
                             "Tokenize a text corpus into token shards + index.json for training.")
                .positional("", "", 0)
                .required("tokenizer", "PATH",
                          "tokenizer.model, tokenizer.json, tekken.json, or a model directory")
                .option("input", "PATH",
                        "a .txt/.jsonl (.gz/.zst) file or a directory (sorted walk); repeatable",
                        std::nullopt, true)
                .required("out", "DIR", "output dataset directory (must not exist unless --force)")
                .option("val-fraction", "F",
                        "share of documents held out for validation, by text hash",
                        std::string("0.005"))
                .option("threads", "N",
                        "tokenizer threads [default: all cores]; output is identical for any N")
                .flag("lines", ".txt inputs: one document per line (default: one per file)")
                .option("jsonl-field", "NAME", ".jsonl inputs: the text field", std::string("text"))
                .option("invalid-utf8", "POLICY",
                        "replace (U+FFFD, counted), skip (document, counted) or error",
                        std::string("replace"))
                .flag("skip-bad-json",
                      "skip and count .jsonl lines that are not an object with the field "
                      "(default: stop naming file:line)")
                .option("shard-tokens", "N", "tokens per shard", std::to_string(int64_t(1) << 28))
                .flag("force", "replace an existing --out directory")
                .flag("quiet", "no progress line");
          },
          run_prepare};
}

}  // namespace dus
