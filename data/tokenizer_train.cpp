// Training a sentencepiece tokenizer on a corpus (dus tokenizer train); declared in
// data/tokenizer.h.
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <regex>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "data/tokenizer.h"

namespace dus {

namespace {

// Feeds the corpus to the sentencepiece trainer line by line (its unit of training).
class CorpusSentences : public sentencepiece::SentenceIterator {
 public:
  CorpusSentences(CorpusReader* reader, int64_t max_sentences)
      : reader_(reader), max_(max_sentences) {
    Next();
  }
  bool done() const override { return done_; }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }
  void Next() override {
    for (;;) {
      if (max_ > 0 && count_ >= max_) {
        done_ = true;
        return;
      }
      if (pos_ >= doc_.text.size()) {
        if (!reader_->next(&doc_)) {
          done_ = true;
          return;
        }
        pos_ = 0;
      }
      size_t nl = doc_.text.find('\n', pos_);
      if (nl == std::string::npos) nl = doc_.text.size();
      value_.assign(doc_.text, pos_, nl - pos_);
      pos_ = nl + 1;
      if (!value_.empty()) {
        ++count_;
        return;
      }
    }
  }
  int64_t count() const { return count_; }

 private:
  CorpusReader* reader_;
  int64_t max_, count_ = 0;
  Document doc_;
  size_t pos_ = 0;
  std::string value_;
  bool done_ = false;
};

}  // namespace

std::string vocab_size_hint(const std::string& message) {
  // sentencepiece states both limits with the number in its message: "... smaller than
  // required_chars. 100 vs 298." and "Vocabulary size too high (20000). Please set it to a
  // value <= 594."
  std::smatch m;
  if (std::regex_search(message, m, std::regex(R"(smaller than required_chars\. *\d+ vs (\d+))")))
    return "raise --vocab-size to at least " + m[1].str() +
           " (every character of the text, and the byte pieces, needs a piece), or lower "
           "--character-coverage";
  if (std::regex_search(message, m,
                        std::regex(R"(too high \(\d+\)\. Please set it to a value <= (\d+))")))
    return "lower --vocab-size to at most " + m[1].str() + ", or give more text";
  return "";
}

TokenizerTrainResult train_tokenizer(const std::vector<std::string>& inputs,
                                     const CorpusOptions& corpus, const std::string& out_dir,
                                     const TokenizerTrainOptions& options) {
  if (options.vocab_size < 16)
    throw Error("--vocab-size", fmt::format("must be at least 16, got {}", options.vocab_size));
  if (options.model_type != "bpe" && options.model_type != "unigram")
    throw Error("--model-type", "unknown type '" + options.model_type + "'", "use bpe or unigram");
  std::filesystem::create_directories(out_dir);
  CorpusReader reader(list_corpus_files(inputs), corpus);
  CorpusSentences sentences(&reader, options.max_sentences);
  const std::string prefix = out_dir + "/tokenizer";
  std::unordered_map<std::string, std::string> kwargs = {
      {"model_prefix", prefix},
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", options.byte_fallback ? "true" : "false"},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"num_threads", std::to_string(options.threads)},
      {"unk_id", std::to_string(options.unk_id)},
      {"bos_id", std::to_string(options.bos_id)},
      {"eos_id", std::to_string(options.eos_id)},
      {"pad_id", std::to_string(options.pad_id)},
      // Llama/Mistral conventions: digits split, whitespace kept as pieces, no NFKC rewrite
      // of the text, so decode(encode(x)) == x.
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"remove_extra_whitespaces", "false"},
      {"normalization_rule_name", "identity"},
      {"max_sentence_length", "16384"},
      {"minloglevel", "1"},
  };
  auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &sentences);
  if (!status.ok())
    throw Error("dus tokenizer train", "sentencepiece training failed: " + status.ToString(),
                vocab_size_hint(status.ToString()));
  TokenizerTrainResult result;
  result.model_path = prefix + ".model";
  result.sentences = sentences.count();
  result.corpus = reader.stats();
  return result;
}

}  // namespace dus
