// The training data loader: packed sequences from one or several prepared datasets, in an
// order fixed by the seed, identical for every world size, resumable exactly.
//
// Global sample numbering: the run consumes global samples 0, 1, 2, ...; global batch b is
// samples [s_b, s_b + G) where G = global_batch and s_b the count consumed before it. Rank r of
// W takes samples [s_b + r*G/W, s_b + (r+1)*G/W) (G must divide by W), so the ranks of a step
// together see exactly the samples a single process would. Global sample k comes from source
// d = mixture pick (see mixture.h) as that source's j-th sample; source sample j is window
// perm(seed_d, epoch = j / windows_d)(j % windows_d) of its packed stream (sample_order.h).
// Nothing depends on W, so a run can resume on a different number of GPUs.
//
// State = {samples consumed, per-source counts}: saved into the checkpoint, restored exactly.
// No torch in this header: batches are int32 token ids, row-major [rows, seq_len + 1].
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "data/megatron_index.h"
#include "data/mixture.h"
#include "data/packed_sequences.h"
#include "data/special_token_check.h"
#include "data/token_dataset.h"

namespace dus {

struct DataSource {
  /// A `dus prepare` output directory, or a Megatron indexed dataset: PREFIX.bin, PREFIX.idx or
  /// PREFIX (see megatron_prefix in data/megatron_index.h).
  std::string dir;
  std::string split = "train";  ///< train or val (a Megatron pair is read whole either way)
  double weight = 1.0;          ///< relative share of samples in a mixture
  /// add: the packer appends EOS after each document; data: the documents already end with
  /// it (Megatron data made with --append-eod), so none is added.
  EosPolicy eos = EosPolicy::Add;
  bool is_megatron() const { return !megatron_prefix(dir).empty(); }
};

struct LoaderOptions {
  std::vector<DataSource> sources;
  int64_t seq_len = 2048;    ///< tokens per training sequence (a sample holds seq_len + 1)
  int64_t global_batch = 8;  ///< sequences per optimizer step, summed over all ranks
  int rank = 0;              ///< this process's data-parallel rank
  int world_size = 1;        ///< data-parallel ranks; must divide global_batch
  uint64_t seed = 0;         ///< fixes the sample order (with the epoch)
  bool shuffle = true;       ///< false: windows in stream order (evaluation)
  BosPolicy bos = BosPolicy::PerDocument;
  /// When non-empty, every source must have been prepared with this tokenizer (its sha256).
  std::string tokenizer_sha256;
  /// When > 0, every source's largest token id must be below it (the model's vocab_size).
  int64_t model_vocab_size = 0;
  /// When set (continuing from a base model), every source's EOS, and its BOS under
  /// BosPolicy::PerDocument, must be the model's (check_special_tokens).
  std::optional<ModelSpecialTokens> model_tokens;
  /// The tokenizer of Megatron sources (their files name none); vocab_size 0 makes a Megatron
  /// source an error. Its sha256 joins the tokenizer checks like a prepared dataset's.
  MegatronOptions megatron;
};

struct LoaderState {
  uint64_t samples = 0;                  ///< global samples consumed
  std::vector<uint64_t> source_samples;  ///< samples taken from each source
  uint64_t seed = 0;                     ///< checked on restore
  int64_t seq_len = 0;                   ///< checked on restore
  std::vector<int64_t> source_windows;   ///< checked on restore (the data did not change)

  json::Value to_json() const;
  /// `where` names the file (state.json) in errors.
  static LoaderState from_json(const json::Value& value, const std::string& where);
  bool operator==(const LoaderState& o) const {
    return samples == o.samples && source_samples == o.source_samples && seed == o.seed &&
           seq_len == o.seq_len && source_windows == o.source_windows;
  }
};

struct Batch {
  int64_t rows = 0;               ///< this rank's sequences: global_batch / world_size
  int64_t cols = 0;               ///< seq_len + 1
  std::vector<int32_t> tokens;    ///< [rows, cols] row-major; inputs [:, :-1], targets [:, 1:]
  std::vector<uint64_t> samples;  ///< global sample index of each row
};

class PackedLoader {
 public:
  /// Opens and checks every source (tokenizer hash, vocab bound, size); throws dus::Error.
  explicit PackedLoader(LoaderOptions options);

  /// This rank's part of the next global batch; advances the state by global_batch samples.
  void next(Batch* batch);
  Batch next();

  const LoaderState& state() const { return state_; }
  /// Continues exactly where `state` was taken. Throws when it belongs to other data, another
  /// seed or seq_len. global_batch and world_size may differ from the run that saved it.
  void restore(const LoaderState& state);

  size_t num_sources() const { return sources_.size(); }
  int64_t windows(size_t source) const { return sources_[source]->sequences->num_windows(); }
  const TokenDataset& dataset(size_t source) const { return *sources_[source]->dataset; }
  /// Epoch of a source: how many full passes over its windows were consumed.
  uint64_t epoch(size_t source = 0) const {
    return state_.source_samples[source] / windows(source);
  }
  int64_t local_batch() const { return options_.global_batch / options_.world_size; }
  const LoaderOptions& options() const { return options_; }

  /// Tokens of a source's j-th sample (seq_len + 1 values).
  void fill_source_sample(size_t source, uint64_t j, int32_t* out) const;

 private:
  struct Source {
    std::unique_ptr<TokenDataset> dataset;
    std::unique_ptr<PackedSequences> sequences;
    uint64_t seed = 0;
  };
  LoaderOptions options_;
  std::vector<std::unique_ptr<Source>> sources_;
  MixtureSchedule mixture_;
  LoaderState state_;
};

}  // namespace dus
