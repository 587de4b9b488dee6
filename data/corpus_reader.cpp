#include "data/corpus_reader.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"
#include "data/byte_source.h"
#include "data/unicode_text.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

enum class FileKind { Unknown, Text, Jsonl };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

FileKind kind_of(std::string name) {
  if (is_gzip_name(name))
    name.resize(name.size() - 3);
  else if (is_zstd_name(name))
    name.resize(name.size() - 4);
  if (ends_with(name, ".txt") || ends_with(name, ".text")) return FileKind::Text;
  if (ends_with(name, ".jsonl")) return FileKind::Jsonl;
  return FileKind::Unknown;
}

const char* kSupported = ".txt, .jsonl (each also .gz or .zst)";

bool all_space(const std::string& s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') return false;
  return true;
}

}  // namespace

Utf8Policy parse_utf8_policy(const std::string& text) {
  if (text == "replace") return Utf8Policy::Replace;
  if (text == "skip") return Utf8Policy::Skip;
  if (text == "error") return Utf8Policy::Error;
  throw Error("--invalid-utf8", "unknown policy '" + text + "'", "use replace, skip or error");
}

const char* utf8_policy_name(Utf8Policy policy) {
  switch (policy) {
    case Utf8Policy::Replace:
      return "replace";
    case Utf8Policy::Skip:
      return "skip";
    case Utf8Policy::Error:
      return "error";
  }
  return "?";
}

bool is_valid_utf8(const std::string& text) {
  return find_invalid_utf8(text) == std::string_view::npos;
}

int64_t repair_utf8(std::string* text) {
  if (is_valid_utf8(*text)) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(text->data());
  const size_t n = text->size();
  std::string out;
  out.reserve(n + 16);
  int64_t replaced = 0;
  for (size_t i = 0; i < n;) {
    size_t len = utf8_sequence_length(p + i, n - i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++replaced;
      ++i;
    } else {
      out.append(text->data() + i, len);
      i += len;
    }
  }
  text->swap(out);
  return replaced;
}

std::vector<std::string> list_corpus_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    auto status = fs::status(input, ec);
    if (ec || !fs::exists(status))
      throw Error(input, "input does not exist",
                  "give a file or a directory of " + std::string(kSupported) + " files");
    if (fs::is_directory(status)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(
               input, fs::directory_options::follow_directory_symlink);
           it != fs::recursive_directory_iterator(); ++it) {
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {  // hidden files and folders (.git) are not corpus
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file() && kind_of(name) != FileKind::Unknown)
          found.push_back(it->path().string());
      }
      // Byte order of the full path: the same on every machine and locale.
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      if (kind_of(input) == FileKind::Unknown)
        throw Error(input, "unknown corpus file type", std::string("name it ") + kSupported);
      files.push_back(input);
    }
  }
  if (files.empty())
    throw Error("corpus", "no " + std::string(kSupported) + " files found in the inputs");
  return files;
}

// ---------------------------------------------------------------------------------------------

struct CorpusReader::OpenFile {
  std::unique_ptr<ByteSource> source;
  std::string path;
  FileKind kind = FileKind::Unknown;
  std::string buffer;
  size_t pos = 0;
  bool eof = false;
  uint64_t line = 0;  // lines consumed so far
  int64_t documents = 0;
  bool whole_done = false;

  // Refills the buffer; false when nothing more can be read.
  bool fill() {
    if (eof) return false;
    if (pos > 0) {
      buffer.erase(0, pos);
      pos = 0;
    }
    size_t old = buffer.size();
    buffer.resize(old + (1 << 20));
    size_t n = source->read(&buffer[old], 1 << 20);
    buffer.resize(old + n);
    if (n == 0) eof = true;
    return n > 0;
  }
  // The next line without its '\n' (and '\r'); false at end of file.
  bool read_line(std::string* out) {
    for (;;) {
      size_t nl = buffer.find('\n', pos);
      if (nl != std::string::npos) {
        size_t end = nl;
        if (end > pos && buffer[end - 1] == '\r') --end;
        out->assign(buffer, pos, end - pos);
        pos = nl + 1;
        ++line;
        return true;
      }
      if (!fill()) {
        if (pos >= buffer.size()) return false;
        size_t end = buffer.size();
        if (end > pos && buffer[end - 1] == '\r') --end;
        out->assign(buffer, pos, end - pos);
        pos = buffer.size();
        ++line;
        return true;
      }
    }
  }
  std::string read_all() {
    while (fill()) {
    }
    return buffer.substr(pos);
  }
};

CorpusReader::CorpusReader(std::vector<std::string> files, CorpusOptions options)
    : files_(std::move(files)), options_(std::move(options)) {
  for (const auto& f : files_) {
    std::error_code ec;
    auto size = fs::file_size(f, ec);
    if (ec) throw Error(f, "cannot read file size: " + ec.message());
    disk_bytes_total_ += static_cast<int64_t>(size);
  }
}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::open_next_file() {
  if (current_) {
    if (current_->documents == 0) ++stats_.empty_files;
    std::error_code ec;
    disk_bytes_closed_ += static_cast<int64_t>(fs::file_size(current_->path, ec));
    disk_bytes_done_.store(disk_bytes_closed_, std::memory_order_relaxed);
    current_.reset();
  }
  if (next_file_ >= files_.size()) return false;
  auto f = std::make_unique<OpenFile>();
  f->path = files_[next_file_++];
  f->kind = kind_of(f->path);
  f->source = open_byte_source(f->path);
  ++stats_.files;
  current_ = std::move(f);
  return true;
}

bool CorpusReader::accept(Document* doc, std::string text, uint64_t line) {
  if (text.empty() || all_space(text)) {
    ++stats_.empty_documents;
    return false;
  }
  if (!is_valid_utf8(text)) {
    ++stats_.invalid_utf8_documents;
    const std::string where = fmt::format("{}:{}", current_->path, line);
    if (options_.utf8 == Utf8Policy::Error)
      throw Error(where, "invalid UTF-8 in the document text",
                  "fix the file, or pass --invalid-utf8 replace|skip");
    if (options_.utf8 == Utf8Policy::Skip) {
      ++stats_.skipped_invalid_utf8;
      return false;
    }
    stats_.invalid_utf8_bytes += repair_utf8(&text);
  }
  doc->text = std::move(text);
  doc->file = static_cast<uint32_t>(next_file_ - 1);
  doc->line = line;
  ++current_->documents;
  ++stats_.documents;
  stats_.text_bytes += static_cast<int64_t>(doc->text.size());
  return true;
}

bool CorpusReader::next(Document* doc) {
  std::string line;
  for (;;) {
    if (!current_ && !open_next_file()) return false;
    OpenFile& f = *current_;
    if (f.kind == FileKind::Text && !options_.lines) {
      if (f.whole_done || !accept(doc, (f.whole_done = true, f.read_all()), 1)) {
        if (!open_next_file()) return false;
        continue;
      }
      return true;
    }
    if (!f.read_line(&line)) {
      if (!open_next_file()) return false;
      continue;
    }
    if (f.line % 64 == 0)
      disk_bytes_done_.store(disk_bytes_closed_ + f.source->disk_offset(),
                             std::memory_order_relaxed);
    if (f.kind == FileKind::Text) {
      if (accept(doc, std::move(line), f.line)) return true;
      continue;
    }
    // JSONL: blank lines are allowed (counted as empty); anything else must be an object with
    // the text field as a string.
    if (all_space(line)) {
      ++stats_.empty_documents;
      continue;
    }
    const std::string where = f.path + ":" + std::to_string(f.line);
    std::string problem;
    std::string text;
    try {
      json::Value v = json::parse(line, where);
      const json::Value* field = v.is_object() ? v.find(options_.jsonl_field) : nullptr;
      if (!v.is_object())
        problem = std::string("expected a JSON object, got ") + v.type_name();
      else if (!field)
        problem = "missing field \"" + options_.jsonl_field + "\"";
      else if (!field->is_string())
        problem = "field \"" + options_.jsonl_field + "\" is " + field->type_name() +
                  ", expected a string";
      else
        text = field->as_string();
    } catch (const Error& e) {
      problem = std::string("not valid JSON: ") + e.problem();
    }
    if (!problem.empty()) {
      if (options_.skip_bad_json) {
        ++stats_.skipped_bad_json;
        continue;
      }
      throw Error(where, problem,
                  "one JSON object per line with a string field \"" + options_.jsonl_field +
                      "\" (--jsonl-field), or pass --skip-bad-json to skip and count such lines");
    }
    if (accept(doc, std::move(text), f.line)) return true;
  }
}

}  // namespace dus
