// The tokenizer the data pipeline uses, whatever the model ships: a sentencepiece
// tokenizer.model (data/sentencepiece_tokenizer.h), a Hugging Face tokenizer.json with a
// byte-level BPE model (data/hf_tokenizer_json.h) or a Mistral tekken*.json (data/tekken.h);
// plus training a sentencepiece BPE model with byte fallback for users who have none.
// Encode a document in one call: sentencepiece adds a dummy-prefix space at the start of
// every call, so encoding piece by piece (per line, per chunk) gives different ids.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/corpus_reader.h"

namespace dus {

class TokenizerImpl;

class Tokenizer {
 public:
  /// Loads a tokenizer file or a model directory; throws dus::Error naming the path when it is
  /// missing, unreadable or uses a component that is not supported.
  /// A file is read by its name: *.json is a Hugging Face tokenizer.json (top-level "model") or
  /// a Tekken file (top-level "config" and "vocab"); anything else is a sentencepiece model.
  /// A directory gives the first of: tokenizer.model if it is a valid sentencepiece model
  /// (Mistral-7B and Llama-2 directories ship both, and their datasets were made from the
  /// .model), else tokenizer.json, else tekken.json (or the one tekken*.json there).
  static Tokenizer load(const std::string& path);
  /// The file `load(path)` reads: `path` itself, or the file chosen in a model directory.
  /// Throws dus::Error as load() does when there is none.
  static std::string resolve(const std::string& path);

  /// Token ids of a whole document (no BOS/EOS added). Thread-safe (const).
  std::vector<int32_t> encode(std::string_view text) const;
  void encode(std::string_view text, std::vector<int32_t>* ids) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string id_to_piece(int32_t id) const;
  /// The UTF-8 byte length each id (one entry per id, vocab_size() of them) contributes to the
  /// text decode() gives, for bits per byte: the sum over a document's ids is
  /// decode(ids).size() when the document's first id is counted with at_document_start.
  /// - sentencepiece: the piece with each U+2581 "▁" counted as the one space it decodes to;
  ///   byte-fallback pieces <0xNN> 1; control pieces (BOS, EOS, pad) and UNK 0. At the start
  ///   of a document decode() drops the dummy-prefix space the encoder added, so a piece
  ///   starting with "▁" counts one byte less there (the text never had that space).
  /// - byte-level BPE (tokenizer.json, Tekken): the length of the token's bytes; special
  ///   added tokens and Tekken control tokens 0; non-special added tokens their content.
  /// Exact for ids decoding to valid UTF-8 (any encoded text): decode() replaces the bytes of
  /// an invalid sequence of byte pieces with U+FFFD. Walks the vocabulary once: compute it when
  /// a run starts, not per evaluation.
  std::vector<int32_t> token_byte_lengths(bool at_document_start = false) const;

  int32_t vocab_size() const { return vocab_size_; }
  int32_t bos_id() const { return bos_id_; }  ///< -1 when the model has none
  int32_t eos_id() const { return eos_id_; }  ///< -1 when the model has none
  int32_t unk_id() const { return unk_id_; }
  int32_t pad_id() const { return pad_id_; }  ///< -1 when the model has none
  /// Whether Hugging Face's tokenizer for this file puts BOS first when encoding with its
  /// defaults (add_special_tokens=True): yes for sentencepiece and Tekken; for a tokenizer.json,
  /// what its post_processor says. What lm-evaluation-harness scores with.
  bool adds_bos() const { return adds_bos_; }
  /// The file read (inside the directory when a directory was given).
  const std::string& path() const { return path_; }
  /// SHA-256 of the chosen file's bytes: the fingerprint datasets record.
  const std::string& sha256() const { return sha256_; }

 private:
  std::shared_ptr<const TokenizerImpl> impl_;
  std::string path_, sha256_;
  int32_t vocab_size_ = 0, bos_id_ = -1, eos_id_ = -1, unk_id_ = -1, pad_id_ = -1;
  bool adds_bos_ = true;
};

/// Copies the tokenizer `path` names (a file or a model directory, as Tokenizer::load takes)
/// into the model directory OUT under the name a Hugging Face loader looks for: tokenizer.model
/// (sentencepiece), tokenizer.json (with the tokenizer_config.json and special_tokens_map.json
/// beside it, which hold its BOS/EOS) or the Tekken file's own name.
void copy_tokenizer_files(const std::string& path, const std::string& out_dir);

struct TokenizerTrainOptions {
  int32_t vocab_size = 8000;           ///< pieces in the model, specials included
  std::string model_type = "bpe";      ///< bpe or unigram
  bool byte_fallback = true;           ///< unknown characters become <0xNN> byte pieces
  double character_coverage = 0.9995;  ///< share of characters covered by pieces
  int64_t max_sentences = 2000000;     ///< training lines sampled at most (0: all)
  int threads = 1;                     ///< sentencepiece trainer threads
  /// Special ids, Mistral/Llama layout: unk 0, bos 1, eos 2, no pad.
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};

struct TokenizerTrainResult {
  std::string model_path;  ///< OUT/tokenizer.model
  int64_t sentences = 0;   ///< lines given to the trainer
  CorpusStats corpus;
};

/// The hint for a sentencepiece training failure over the vocabulary size: which way to move
/// --vocab-size and to what, read from the limit sentencepiece states ("" for other failures).
std::string vocab_size_hint(const std::string& sentencepiece_message);

/// Trains on the documents of a corpus (each document split into lines, which is what the
/// sentencepiece trainer expects) and writes OUT/tokenizer.model and OUT/tokenizer.vocab.
TokenizerTrainResult train_tokenizer(const std::vector<std::string>& inputs,
                                     const CorpusOptions& corpus, const std::string& out_dir,
                                     const TokenizerTrainOptions& options);

}  // namespace dus
