#include "data/packed_loader.h"

#include <charconv>

#include <fmt/format.h>

#include "core/error.h"
#include "data/sample_order.h"

namespace dus {

namespace {
std::vector<double> weights_of(const std::vector<DataSource>& sources) {
  std::vector<double> w;
  for (const auto& s : sources) w.push_back(s.weight);
  return w;
}
}  // namespace

json::Value LoaderState::to_json() const {
  json::Array counts, windows;
  for (uint64_t c : source_samples) counts.push_back(c);
  for (int64_t w : source_windows) windows.push_back(w);
  return json::Object{{"samples", samples},
                      {"source_samples", counts},
                      {"seed", std::to_string(seed)},  // a string: uint64 may exceed int64
                      {"seq_len", seq_len},
                      {"source_windows", windows}};
}

LoaderState LoaderState::from_json(const json::Value& value, const std::string& where) {
  if (!value.is_object())
    throw Error(where, std::string("data state: expected an object, found ") + value.type_name());
  auto field = [&](const char* key) -> const json::Value& {
    const json::Value* v = value.find(key);
    if (!v) throw Error(where, std::string("data state: missing key \"") + key + "\"");
    return *v;
  };
  // Counts are written from uint64 but must be >= 0 here: a negative one would wrap to ~2^64.
  auto count = [&](const json::Value& v, const char* key) {
    const int64_t c = v.as_int(where + ": " + key);
    if (c < 0) throw Error(where + ": " + key, fmt::format("expected a count >= 0, found {}", c));
    return c;
  };
  LoaderState s;
  s.samples = static_cast<uint64_t>(count(field("samples"), "samples"));
  for (const auto& c : field("source_samples").as_array(where + ": source_samples"))
    s.source_samples.push_back(static_cast<uint64_t>(count(c, "source_samples")));
  // The seed is a decimal string (a uint64 may exceed int64); std::stoull would also accept
  // "12abc", " 12" or "-1", and throws std::invalid_argument rather than a dus::Error.
  const std::string& seed = field("seed").as_string(where + ": seed");
  const auto [end, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), s.seed);
  if (seed.empty() || ec != std::errc() || end != seed.data() + seed.size())
    throw Error(where + ": seed", "expected a decimal uint64 string, found \"" + seed + "\"");
  s.seq_len = count(field("seq_len"), "seq_len");
  for (const auto& w : field("source_windows").as_array(where + ": source_windows"))
    s.source_windows.push_back(count(w, "source_windows"));
  return s;
}

PackedLoader::PackedLoader(LoaderOptions options)
    : options_(std::move(options)), mixture_(weights_of(options_.sources)) {
  const LoaderOptions& o = options_;
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw Error("data loader", fmt::format("rank {} outside world size {}", o.rank, o.world_size));
  if (o.global_batch < 1 || o.global_batch % o.world_size != 0)
    throw Error("data loader",
                fmt::format("global batch {} is not a positive multiple of the world size {}",
                            o.global_batch, o.world_size),
                "choose a global batch divisible by the number of data-parallel ranks");
  for (size_t i = 0; i < o.sources.size(); ++i) {
    const DataSource& spec = o.sources[i];
    auto src = std::make_unique<Source>();
    const bool megatron = spec.is_megatron();
    if (megatron && o.megatron.vocab_size < 1)
      throw Error(spec.dir, "a Megatron dataset does not record its tokenizer",
                  "set data.tokenizer to the tokenizer its ids come from");
    src->dataset =
        std::make_unique<TokenDataset>(megatron ? TokenDataset::open_megatron(spec.dir, o.megatron)
                                                : TokenDataset::open(spec.dir, spec.split));
    const TokenDataset& ds = *src->dataset;
    if (!o.tokenizer_sha256.empty() && ds.tokenizer_sha256() != o.tokenizer_sha256)
      throw Error(megatron ? spec.dir : spec.dir + "/index.json: tokenizer.sha256",
                  "the dataset was tokenized with a different tokenizer (sha256 " +
                      ds.tokenizer_sha256().substr(0, 12) + "..., expected " +
                      o.tokenizer_sha256.substr(0, 12) + "...)",
                  "re-run dus prepare with the model's tokenizer (file or model directory)");
    if (i > 0 && ds.tokenizer_sha256() != sources_[0]->dataset->tokenizer_sha256())
      throw Error(spec.dir, "tokenizer differs from the first source's (" + o.sources[0].dir + ")",
                  "every source of a mixture must be prepared with the same tokenizer");
    if (o.model_vocab_size > 0 &&
        (ds.max_token_id() >= o.model_vocab_size || ds.eos_id() >= o.model_vocab_size ||
         ds.bos_id() >= o.model_vocab_size))
      throw Error(
          spec.dir + " (" + spec.split + ")",
          fmt::format("token ids up to {} but the model's vocabulary has {} entries",
                      std::max<int64_t>(ds.max_token_id(), std::max(ds.eos_id(), ds.bos_id())),
                      o.model_vocab_size),
          "prepare the data with the model's tokenizer");
    if (o.model_tokens)
      check_special_tokens(
          *o.model_tokens,
          megatron ? spec.dir + " (ids of data.tokenizer)" : spec.dir + "/index.json", ds.bos_id(),
          ds.eos_id(), o.bos);
    src->sequences =
        std::make_unique<PackedSequences>(src->dataset.get(), o.seq_len, o.bos, spec.eos);
    src->seed = mix64(o.seed ^ mix64(0xda7a0000ull + i));
    sources_.push_back(std::move(src));
  }
  state_.source_samples.assign(sources_.size(), 0);
  state_.seed = o.seed;
  state_.seq_len = o.seq_len;
  for (const auto& s : sources_) state_.source_windows.push_back(s->sequences->num_windows());
}

void PackedLoader::fill_source_sample(size_t source, uint64_t j, int32_t* out) const {
  const Source& s = *sources_[source];
  const uint64_t n = static_cast<uint64_t>(s.sequences->num_windows());
  SamplePermutation perm(n, s.seed, j / n, options_.shuffle);
  s.sequences->fill(static_cast<int64_t>(perm(j % n)), out);
}

void PackedLoader::next(Batch* batch) {
  const int64_t local = local_batch();
  const int64_t cols = options_.seq_len + 1;
  batch->rows = local;
  batch->cols = cols;
  batch->tokens.resize(static_cast<size_t>(local * cols));
  batch->samples.resize(static_cast<size_t>(local));
  // Every rank walks the whole global batch's mixture picks (cheap), so the per-source
  // counts advance identically everywhere; only its own rows are read.
  const int64_t first = options_.rank * local;
  for (int64_t i = 0; i < options_.global_batch; ++i) {
    const size_t d = mixture_.pick(state_.source_samples);
    const uint64_t j = state_.source_samples[d]++;
    if (i >= first && i < first + local) {
      fill_source_sample(d, j, batch->tokens.data() + (i - first) * cols);
      batch->samples[static_cast<size_t>(i - first)] = state_.samples + static_cast<uint64_t>(i);
    }
  }
  state_.samples += static_cast<uint64_t>(options_.global_batch);
}

Batch PackedLoader::next() {
  Batch b;
  next(&b);
  return b;
}

void PackedLoader::restore(const LoaderState& state) {
  if (state.source_samples.size() != sources_.size())
    throw Error("data state", fmt::format("saved for {} sources, the loader has {}",
                                          state.source_samples.size(), sources_.size()));
  if (state.seed != options_.seed || state.seq_len != options_.seq_len)
    throw Error(
        "data state",
        fmt::format("saved with seed {} and seq_len {}, the run uses seed {} and seq_len {}",
                    state.seed, state.seq_len, options_.seed, options_.seq_len),
        "resume with the same data.seed and seq_len, or start a new run");
  if (state.source_windows != state_.source_windows)
    throw Error("data state",
                "the datasets changed since the state was saved (window counts differ)",
                "resume with the same prepared datasets");
  uint64_t sum = 0;
  for (uint64_t c : state.source_samples) sum += c;
  if (sum != state.samples) throw Error("data state", "per-source counts do not add up to samples");
  state_ = state;
}

}  // namespace dus
