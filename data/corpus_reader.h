// Reading a text corpus as a stream of documents: `.txt` (one document per file, or one per line
// with `lines`), `.jsonl` (one JSON object per line, the text in a configurable field) and the
// `.gz` (zlib) and `.zst` (zstd, as RedPajama and Dolma ship) form of each; a truncated or corrupt
// compressed file is an error naming it (data/byte_source.h). Directories are walked recursively in sorted byte order, so a corpus reads
// the same on every machine. Text is validated as UTF-8 under a stated policy, because
// sentencepiece silently mangles invalid bytes and a tokenizer should see what we count.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dus {

/// What to do with a document that is not valid UTF-8.
enum class Utf8Policy {
  Replace,  ///< replace each invalid byte by U+FFFD and keep the document (counted)
  Skip,     ///< drop the whole document (counted)
  Error,    ///< stop with an error naming file and line
};
Utf8Policy parse_utf8_policy(const std::string& text);
const char* utf8_policy_name(Utf8Policy policy);

struct CorpusOptions {
  /// .txt files: one document per line instead of one per file. Blank lines are skipped.
  bool lines = false;
  /// .jsonl files: the string field holding the document text.
  std::string jsonl_field = "text";
  /// Invalid UTF-8 handling (default: replace and count).
  Utf8Policy utf8 = Utf8Policy::Replace;
  /// .jsonl lines that are not a JSON object with the string field: false (default) stops
  /// with file:line; true skips them and counts them.
  bool skip_bad_json = false;
};

/// Counters a reader keeps; reported by `dus prepare` and stored in index.json.
struct CorpusStats {
  int64_t files = 0;
  int64_t documents = 0;               ///< documents returned
  int64_t text_bytes = 0;              ///< UTF-8 bytes of the documents returned
  int64_t empty_files = 0;             ///< files with no document in them (skipped)
  int64_t empty_documents = 0;         ///< blank lines / empty text fields (skipped)
  int64_t invalid_utf8_documents = 0;  ///< documents that held invalid UTF-8
  int64_t invalid_utf8_bytes = 0;      ///< bytes replaced by U+FFFD (policy replace)
  int64_t skipped_invalid_utf8 = 0;    ///< documents dropped (policy skip)
  int64_t skipped_bad_json = 0;        ///< .jsonl lines dropped (skip_bad_json)
};

struct Document {
  std::string text;
  uint32_t file = 0;  ///< index into CorpusReader::files()
  uint64_t line = 0;  ///< 1-based first line of the document in its file
};

/// Expands files and directories into the sorted list of corpus files. Throws dus::Error for a
/// missing path, an explicit file of unknown type, or when nothing is found.
std::vector<std::string> list_corpus_files(const std::vector<std::string>& inputs);

/// Replaces invalid UTF-8 (overlong forms, surrogates, > U+10FFFF, truncated sequences) by
/// U+FFFD, one per offending byte; returns how many bytes were replaced (0: text was valid).
int64_t repair_utf8(std::string* text);
/// True when the bytes are valid UTF-8.
bool is_valid_utf8(const std::string& text);

class CorpusReader {
 public:
  CorpusReader(std::vector<std::string> files, CorpusOptions options);
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  /// The next document in corpus order; false at the end. Throws dus::Error (file:line) for bad
  /// input under the error policies.
  bool next(Document* doc);

  const std::vector<std::string>& files() const { return files_; }
  const CorpusStats& stats() const { return stats_; }
  /// Bytes of the input files (compressed bytes for .gz/.zst) consumed so far; may be read from
  /// another thread for a progress display.
  int64_t disk_bytes_done() const { return disk_bytes_done_.load(std::memory_order_relaxed); }
  /// Total size of the input files on disk.
  int64_t disk_bytes_total() const { return disk_bytes_total_; }

 private:
  struct OpenFile;
  bool open_next_file();
  bool accept(Document* doc, std::string text, uint64_t line);

  std::vector<std::string> files_;
  CorpusOptions options_;
  CorpusStats stats_;
  std::unique_ptr<OpenFile> current_;
  size_t next_file_ = 0;
  int64_t disk_bytes_total_ = 0, disk_bytes_closed_ = 0;
  std::atomic<int64_t> disk_bytes_done_{0};
};

}  // namespace dus
