// `dus prepare`: corpus -> token shards + index.json. Documents are tokenized in parallel but
// written in corpus order, so the output is byte-identical for any thread count. The held-out
// split is chosen by a hash of each document's text (stable across runs, machines and thread
// counts). The dataset is built in OUT.tmp-PID and renamed to OUT only when complete, index.json
// last, so a killed prepare leaves nothing under OUT.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus_reader.h"

namespace dus {

struct PrepareOptions {
  std::string tokenizer;            ///< tokenizer file or model directory (Tokenizer::load)
  std::vector<std::string> inputs;  ///< files and directories
  std::string out_dir;
  CorpusOptions corpus;
  double val_fraction = 0.005;  ///< share of documents held out, by text hash; 0: none
  int threads = 1;              ///< tokenizer threads (the output does not depend on it)
  int64_t shard_tokens = int64_t(1) << 28;  ///< tokens per shard before a new one opens
  bool force = false;                       ///< replace an existing OUT
  bool progress = true;                     ///< progress line on stderr
};

struct PrepareResult {
  CorpusStats corpus;
  int64_t train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  double seconds = 0;
  double encode_seconds = 0;  ///< summed over threads: time inside sentencepiece
  int threads = 1;
  /// Text MB/s: overall (wall) and per thread (bytes / encode seconds of the threads).
  double mb_per_s() const { return seconds > 0 ? corpus.text_bytes / 1e6 / seconds : 0; }
  double mb_per_s_per_thread() const {
    return encode_seconds > 0 ? corpus.text_bytes / 1e6 / encode_seconds : 0;
  }
};

/// FNV-1a 64 of the document text; a document is held out when
/// splitmix64(hash) / 2^64 < val_fraction.
uint64_t document_hash(const std::string& text);
bool is_validation_document(const std::string& text, double val_fraction);

PrepareResult prepare_dataset(const PrepareOptions& options);

}  // namespace dus
