#include "data/prepare.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "data/dataset_writer.h"
#include "data/sample_order.h"
#include "data/tokenizer.h"

namespace dus {

namespace fs = std::filesystem;

uint64_t document_hash(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool is_validation_document(const std::string& text, double val_fraction) {
  if (val_fraction <= 0) return false;
  // FNV-1a alone mixes the top bits of short, similar texts poorly; the splitmix64 finaliser
  // spreads them. Top 53 bits as a double in [0, 1): exact, so the split is the same on every
  // machine.
  const double u =
      static_cast<double>(mix64(document_hash(text)) >> 11) * (1.0 / 9007199254740992.0);
  return u < val_fraction;
}

namespace {

using Clock = std::chrono::steady_clock;

// A run of consecutive documents, tokenized by one worker and written in sequence order.
struct Chunk {
  uint64_t seq = 0;
  std::vector<Document> documents;
  std::vector<int32_t> ids;         // all documents' tokens back to back
  std::vector<size_t> ends;         // end offset of each document in ids
  std::vector<uint8_t> validation;  // 1 when the document is held out
};

constexpr size_t kChunkBytes = 1 << 20;  // text per chunk: small enough to balance threads
constexpr size_t kChunkDocs = 4096;

// Removes OUT.tmp-PID directories left by prepares that were killed (their PID is gone).
void remove_stale_tmp_dirs(const std::string& out_dir) {
  fs::path out(out_dir);
  fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  const std::string prefix = out.filename().string() + ".tmp-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string suffix = name.substr(prefix.size());
    if (suffix.empty() || suffix.find_first_not_of("0123456789") != std::string::npos) continue;
    long pid = std::atol(suffix.c_str());
    if (pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM)) continue;  // alive
    fmt::print(stderr, "prepare: removing {} left by an interrupted prepare\n",
               entry.path().string());
    try {
      remove_tree(entry.path().string());
    } catch (const Error& e) {
      fmt::print(stderr, "prepare: warning: {}\n", e.what());
    }
  }
}

}  // namespace

PrepareResult prepare_dataset(const PrepareOptions& options) {
  const auto start = Clock::now();
  if (options.threads < 1) throw Error("--threads", "must be at least 1");
  if (!(options.val_fraction >= 0 && options.val_fraction < 1))
    throw Error("--val-fraction", fmt::format("must be in [0, 1), got {:f}", options.val_fraction));
  if (options.out_dir.empty()) throw Error("--out", "empty output directory");
  const Tokenizer tokenizer = Tokenizer::load(options.tokenizer);
  std::vector<std::string> files = list_corpus_files(options.inputs);

  std::string out_dir = options.out_dir;
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  if (fs::exists(out_dir) && !options.force)
    throw Error(out_dir, "output directory already exists", "pass --force to replace it");
  if (fs::path(out_dir).has_parent_path()) fs::create_directories(fs::path(out_dir).parent_path());
  remove_stale_tmp_dirs(out_dir);
  const std::string tmp_dir = out_dir + ".tmp-" + std::to_string(::getpid());
  remove_tree(tmp_dir);
  fs::create_directories(tmp_dir);

  PrepareResult result;
  result.threads = options.threads;
  try {
    CorpusReader reader(files, options.corpus);
    DatasetWriter writer(tmp_dir, dtype_for_vocab(tokenizer.vocab_size()), options.shard_tokens);

    // Pipeline: a worker takes the next chunk from the reader (under read_mu, so chunks are cut
    // in corpus order), tokenizes it unlocked, and hands it to the ordered writer. A chunk is
    // written only when all earlier chunks are; workers that run ahead wait, bounding memory.
    std::mutex read_mu, write_mu;
    std::condition_variable write_cv;
    uint64_t next_seq = 0, next_write = 0;
    std::map<uint64_t, Chunk> finished;
    const uint64_t max_ahead = 2 * static_cast<uint64_t>(options.threads);
    bool reader_done = false;
    std::exception_ptr failure;
    std::atomic<bool> abort{false};
    std::atomic<int64_t> tokens_written{0}, text_bytes_read{0};
    std::atomic<int64_t> encode_nanos{0};

    auto write_ready = [&]() {  // under write_mu
      for (auto it = finished.find(next_write); it != finished.end();
           it = finished.find(next_write)) {
        Chunk& c = it->second;
        size_t begin = 0;
        for (size_t i = 0; i < c.documents.size(); ++i) {
          const Split split = c.validation[i] ? Split::Val : Split::Train;
          writer.add(split, c.ids.data() + begin, c.ends[i] - begin);
          if (split == Split::Val) {
            ++result.val_documents;
            result.val_tokens += static_cast<int64_t>(c.ends[i] - begin);
          } else {
            ++result.train_documents;
            result.train_tokens += static_cast<int64_t>(c.ends[i] - begin);
          }
          begin = c.ends[i];
        }
        tokens_written += static_cast<int64_t>(c.ids.size());
        finished.erase(it);
        ++next_write;
      }
    };

    auto worker = [&]() {
      std::vector<int32_t> doc_ids;
      try {
        for (;;) {
          Chunk chunk;
          {
            std::lock_guard<std::mutex> lock(read_mu);
            if (reader_done || abort) return;
            size_t bytes = 0;
            Document doc;
            while (bytes < kChunkBytes && chunk.documents.size() < kChunkDocs) {
              if (!reader.next(&doc)) {
                reader_done = true;
                break;
              }
              bytes += doc.text.size();
              chunk.documents.push_back(std::move(doc));
            }
            text_bytes_read += static_cast<int64_t>(bytes);
            if (chunk.documents.empty()) return;
            chunk.seq = next_seq++;
          }
          auto t0 = Clock::now();
          for (const Document& d : chunk.documents) {
            tokenizer.encode(d.text, &doc_ids);
            chunk.ids.insert(chunk.ids.end(), doc_ids.begin(), doc_ids.end());
            chunk.ends.push_back(chunk.ids.size());
            chunk.validation.push_back(is_validation_document(d.text, options.val_fraction) ? 1
                                                                                            : 0);
          }
          encode_nanos +=
              std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
          for (auto& d : chunk.documents) std::string().swap(d.text);
          std::unique_lock<std::mutex> lock(write_mu);
          const uint64_t seq = chunk.seq;
          write_cv.wait(lock, [&] { return abort || seq < next_write + max_ahead; });
          if (abort) return;
          finished.emplace(seq, std::move(chunk));
          write_ready();
          write_cv.notify_all();
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(write_mu);
        if (!failure) failure = std::current_exception();
        abort = true;
        write_cv.notify_all();
      }
    };

    std::vector<std::thread> pool;
    for (int i = 0; i < options.threads; ++i) pool.emplace_back(worker);

    // Progress on stderr while the workers run: a rewritten line on a terminal, a line every
    // 10 s in a log.
    const bool tty = ::isatty(2);
    std::atomic<bool> workers_done{false};
    std::thread progress;
    if (options.progress) {
      progress = std::thread([&] {
        auto last_print = Clock::now();
        while (!workers_done) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          if (workers_done) break;
          if (seconds_since(last_print) < (tty ? 0.5 : 10.0)) continue;
          last_print = Clock::now();
          const double elapsed = seconds_since(start);
          const double done = static_cast<double>(reader.disk_bytes_done());
          const double total = static_cast<double>(reader.disk_bytes_total());
          const double frac = total > 0 ? std::min(1.0, done / total) : 0;
          const double mbps = text_bytes_read.load() / 1e6 / std::max(elapsed, 1e-9);
          fmt::print(stderr, "{}prepare {:5.1f}%  {:7.2f} MB/s  {} tokens  ETA {}{}",
                     tty ? "\r" : "", 100 * frac, mbps, tokens_written.load(),
                     fmt_eta(frac > 0 ? elapsed * (1 - frac) / frac : -1), tty ? "   " : "\n");
          std::fflush(stderr);
        }
        if (tty) fmt::print(stderr, "\r{:>70}\r", "");
      });
    }
    for (auto& t : pool) t.join();
    workers_done = true;
    if (progress.joinable()) progress.join();
    if (failure) std::rethrow_exception(failure);

    result.corpus = reader.stats();
    if (result.train_documents + result.val_documents == 0)
      throw Error(options.inputs.size() == 1 ? options.inputs[0] : "corpus",
                  fmt::format("no documents found ({} files, {} empty, {} empty documents)",
                              result.corpus.files, result.corpus.empty_files,
                              result.corpus.empty_documents),
                  "check the inputs and --lines / --jsonl-field");
    if (result.train_documents == 0)
      throw Error("--val-fraction", "every document went to the validation split",
                  "lower --val-fraction or give more documents");

    json::Value splits = writer.finish();
    json::Array sources;
    for (const auto& f : files)
      sources.push_back(
          json::Object{{"path", f}, {"bytes", static_cast<int64_t>(fs::file_size(f))}});
    const CorpusStats& s = result.corpus;
    json::Value index = json::Object{
        {"format", "dus-token-dataset"},
        {"version", 1},
        {"dtype", dtype_name(dtype_for_vocab(tokenizer.vocab_size()))},
        {"vocab_size", static_cast<int64_t>(tokenizer.vocab_size())},
        {"documents", result.train_documents + result.val_documents},
        {"tokens", result.train_tokens + result.val_tokens},
        {"tokenizer", json::Object{{"path", tokenizer.path()},
                                   {"sha256", tokenizer.sha256()},
                                   {"vocab_size", static_cast<int64_t>(tokenizer.vocab_size())},
                                   {"bos_id", static_cast<int64_t>(tokenizer.bos_id())},
                                   {"eos_id", static_cast<int64_t>(tokenizer.eos_id())},
                                   {"unk_id", static_cast<int64_t>(tokenizer.unk_id())}}},
        {"val_fraction", options.val_fraction},
        {"split_rule", "splitmix64(fnv1a64(text)) / 2^64 < val_fraction"},
        {"corpus", json::Object{{"files", s.files},
                                {"text_bytes", s.text_bytes},
                                {"lines_mode", options.corpus.lines},
                                {"jsonl_field", options.corpus.jsonl_field},
                                {"empty_files", s.empty_files},
                                {"empty_documents", s.empty_documents},
                                {"invalid_utf8_policy", utf8_policy_name(options.corpus.utf8)},
                                {"invalid_utf8_documents", s.invalid_utf8_documents},
                                {"invalid_utf8_bytes_replaced", s.invalid_utf8_bytes},
                                {"skipped_invalid_utf8", s.skipped_invalid_utf8},
                                {"skipped_bad_json", s.skipped_bad_json}}},
        {"sources", std::move(sources)},
        {"splits", std::move(splits)},
    };
    // index.json last: its presence is what marks a dataset complete. Then the rename makes
    // the whole directory appear at once.
    write_file_atomic(tmp_dir + "/index.json", json::dump(index, 2) + "\n");
    fsync_path(tmp_dir);
    if (fs::exists(out_dir)) {
      const std::string old = out_dir + ".old-" + std::to_string(::getpid());
      fs::rename(out_dir, old);
      fs::rename(tmp_dir, out_dir);
      remove_tree(old);
    } else {
      fs::rename(tmp_dir, out_dir);
    }
    fsync_path(parent_dir(out_dir));
    result.encode_seconds = encode_nanos.load() / 1e9;
  } catch (...) {
    try {
      remove_tree(tmp_dir);
    } catch (const Error&) {
      // The error being propagated matters more than a leftover the next prepare removes.
    }
    throw;
  }
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace dus
