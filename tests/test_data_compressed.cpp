// Compressed corpora: the same corpus as .txt, .txt.gz, .txt.zst and .jsonl.zst gives the same
// documents, line numbers and stats; a .zst of several frames (the zstd tool's output cat'ed,
// with a skippable frame between) reads as one stream, as `zstd -dc` reads it; a truncated,
// corrupt or empty .zst and a truncated .gz are errors naming the file; `dus prepare` on a
// .jsonl.zst writes the shards it writes for the .jsonl. The .zst files are written by the zstd
// tool, so the reader is checked against the real format rather than against itself.
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "data/corpus_reader.h"
#include "test_data_util.h"

using namespace dus;
using dus::testing::TempDir;
using dus::testing::write_text;
namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& s) {
  return "'" + s + "'";
}

void run_ok(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// Compresses `text` into `path` with the zstd command-line tool.
void write_zst(const std::string& path, const std::string& text, int level = 3) {
  write_text(path + ".plain", text);
  run_ok("zstd -q -f -" + std::to_string(level) + " " + shell_quote(path + ".plain") + " -o " +
         shell_quote(path));
  fs::remove(path + ".plain");
}

void write_gz(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

struct ReadResult {
  std::vector<Document> docs;
  CorpusStats stats;
  int64_t done = 0, total = 0;
  bool saw_partial_progress = false;  // 0 < disk_bytes_done < total at some document
};

ReadResult read_all(const std::vector<std::string>& inputs, CorpusOptions o = {}) {
  CorpusReader r(list_corpus_files(inputs), o);
  ReadResult out;
  Document d;
  while (r.next(&d)) {
    out.docs.push_back(d);
    int64_t done = r.disk_bytes_done();
    if (done > 0 && done < r.disk_bytes_total()) out.saw_partial_progress = true;
  }
  out.stats = r.stats();
  out.done = r.disk_bytes_done();
  out.total = r.disk_bytes_total();
  return out;
}

void check_same(const ReadResult& a, const ReadResult& b) {
  REQUIRE(a.docs.size() == b.docs.size());
  for (size_t i = 0; i < a.docs.size(); ++i) {
    INFO("document " << i);
    CHECK(a.docs[i].text == b.docs[i].text);
    CHECK(a.docs[i].line == b.docs[i].line);
  }
  CHECK(a.stats.files == b.stats.files);
  CHECK(a.stats.documents == b.stats.documents);
  CHECK(a.stats.text_bytes == b.stats.text_bytes);
  CHECK(a.stats.empty_documents == b.stats.empty_documents);
  CHECK(a.stats.invalid_utf8_documents == b.stats.invalid_utf8_documents);
  CHECK(a.stats.invalid_utf8_bytes == b.stats.invalid_utf8_bytes);
}

// The corpus used in several cases: varied lines, a blank line, a CRLF line and (optionally)
// a line with invalid UTF-8.
std::vector<std::string> sample_lines(bool invalid_utf8) {
  auto lines = dus::testing::corpus_lines(30000, 7);
  lines[10] = "";
  lines[11] = "a windows line\r";
  if (invalid_utf8) lines[20] = "bad \xC3\x28 byte";
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string t;
  for (const auto& l : lines) t += l + "\n";
  return t;
}

std::string as_jsonl(const std::vector<std::string>& lines) {
  std::string t;
  for (auto l : lines) {
    if (!l.empty() && l.back() == '\r') l.pop_back();  // a JSONL line holds the text without it
    t += l.empty() ? "\n" : json::dump(json::Object{{"text", l}}) + "\n";
  }
  return t;
}

}  // namespace

TEST_CASE("compressed corpora: .txt, .txt.gz, .txt.zst and .jsonl.zst read the same", "[unit]") {
  TempDir dir;
  const std::string text = join_lines(sample_lines(true));
  write_text(dir.file("c.txt"), text);
  write_gz(dir.file("c.txt.gz"), text);
  write_zst(dir.file("c.txt.zst"), text);
  CHECK(list_corpus_files({dir.file("c.txt.zst")}).size() == 1);

  for (bool lines : {true, false}) {
    INFO("lines mode " << lines);
    CorpusOptions o;
    o.lines = lines;
    ReadResult plain = read_all({dir.file("c.txt")}, o);
    ReadResult gz = read_all({dir.file("c.txt.gz")}, o);
    ReadResult zst = read_all({dir.file("c.txt.zst")}, o);
    REQUIRE(plain.docs.size() == (lines ? 29999u : 1u));  // the blank line is no document
    check_same(plain, gz);
    check_same(plain, zst);
    CHECK(zst.stats.invalid_utf8_documents == 1);
    // Progress counts compressed bytes and ends at the file's size on disk.
    CHECK(zst.total == static_cast<int64_t>(fs::file_size(dir.file("c.txt.zst"))));
    CHECK(zst.total < plain.total / 2);
    CHECK(zst.done == zst.total);
    if (lines) CHECK(zst.saw_partial_progress);

    // The UTF-8 policy applies to .zst as to plain text, naming file and line.
    o.utf8 = Utf8Policy::Error;
    if (lines)
      CHECK_THROWS_WITH(
          read_all({dir.file("c.txt.zst")}, o),
          Catch::Contains(dir.file("c.txt.zst") + ":21") && Catch::Contains("invalid UTF-8"));
  }

  // .jsonl.zst: the same documents as the .txt read by lines (a valid-UTF-8 corpus: JSON
  // strings here are written by our own serializer, which escapes nothing invalid).
  const auto valid = sample_lines(false);
  write_text(dir.file("v.txt"), join_lines(valid));
  write_zst(dir.file("v.jsonl.zst"), as_jsonl(valid));
  write_text(dir.file("v.jsonl"), as_jsonl(valid));
  CorpusOptions by_line;
  by_line.lines = true;
  ReadResult txt = read_all({dir.file("v.txt")}, by_line);
  ReadResult jsonl = read_all({dir.file("v.jsonl")});
  ReadResult jsonl_zst = read_all({dir.file("v.jsonl.zst")});
  REQUIRE(txt.docs.size() == 29999u);
  check_same(txt, jsonl_zst);
  check_same(jsonl, jsonl_zst);
  CHECK(jsonl_zst.docs[10].text == "a windows line");  // docs[10]: line 11 is blank
  CHECK(jsonl_zst.docs[10].line == 12);
}

TEST_CASE("compressed corpora: a multi-frame .zst reads as one stream", "[unit]") {
  TempDir dir;
  const std::string part1 = join_lines(dus::testing::corpus_lines(3000, 1));
  const std::string part2 = join_lines(dus::testing::corpus_lines(2000, 2));
  write_zst(dir.file("p1.zst"), part1);
  write_zst(dir.file("p2.zst"), part2, 19);
  // A skippable frame (magic 0x184D2A5?, little-endian size, payload) as zstd's format allows
  // between frames; the tool skips it.
  std::string skippable = "\x50\x2A\x4D\x18";
  skippable += std::string("\x05\x00\x00\x00", 4) + "meta!";
  write_bytes(dir.file("skip.bin"), skippable);
  const std::string joined = dir.file("joined.txt.zst");
  run_ok("cat " + shell_quote(dir.file("p1.zst")) + " " + shell_quote(dir.file("skip.bin")) + " " +
         shell_quote(dir.file("p2.zst")) + " > " + shell_quote(joined));
  // The zstd tool reads the file as the two parts concatenated: the format, not our reader,
  // defines the expected stream.
  run_ok("zstd -q -dc " + shell_quote(joined) + " > " + shell_quote(dir.file("tool.txt")));
  REQUIRE(read_file(dir.file("tool.txt")) == part1 + part2);

  ReadResult whole = read_all({joined});
  REQUIRE(whole.docs.size() == 1);
  CHECK(whole.docs[0].text == part1 + part2);
  CorpusOptions by_line;
  by_line.lines = true;
  ReadResult lines = read_all({joined}, by_line);
  REQUIRE(lines.docs.size() == 5000);
  CHECK(lines.docs[3000].line == 3001);  // numbering runs on across the frame boundary
  CHECK(lines.docs[3000].text == dus::testing::corpus_lines(1, 2)[0]);
  CHECK(lines.done == static_cast<int64_t>(fs::file_size(joined)));
}

TEST_CASE("compressed corpora: truncated, corrupt and empty files are errors naming them",
          "[unit]") {
  TempDir dir;
  const std::string text = join_lines(dus::testing::corpus_lines(20000, 3));
  write_zst(dir.file("full.jsonl.zst"), as_jsonl(dus::testing::corpus_lines(20000, 3)));
  const std::string full = read_file(dir.file("full.jsonl.zst"));
  REQUIRE(full.size() > 1000);
  CorpusOptions by_line;
  by_line.lines = true;

  // Cut in the middle, and cut by only a few bytes (inside the last block's checksum/end).
  for (size_t keep : {full.size() / 2, full.size() - 3}) {
    INFO("kept " << keep << " of " << full.size() << " bytes");
    const std::string cut = dir.file("cut.jsonl.zst");
    write_bytes(cut, full.substr(0, keep));
    CHECK(std::system(("zstd -q -t " + shell_quote(cut) + " 2>/dev/null").c_str()) != 0);
    CHECK_THROWS_WITH(read_all({cut}),
                      Catch::Contains(cut) && Catch::Contains("truncated .zst file"));
  }

  const std::string garbage = dir.file("garbage.txt.zst");
  std::string bytes;
  for (int i = 0; i < 5000; ++i) bytes += static_cast<char>((i * 7919 + 13) % 251);
  write_bytes(garbage, bytes);
  CHECK_THROWS_WITH(read_all({garbage}),
                    Catch::Contains(garbage) && Catch::Contains("corrupt .zst data"));

  // A frame whose content was damaged after the header: the checksum or block decoding fails.
  write_zst(dir.file("good.txt.zst"), text);
  std::string damaged = read_file(dir.file("good.txt.zst"));
  for (size_t i = damaged.size() / 2; i < damaged.size() / 2 + 64; ++i) damaged[i] ^= 0x5A;
  write_bytes(dir.file("damaged.txt.zst"), damaged);
  CHECK_THROWS_WITH(read_all({dir.file("damaged.txt.zst")}, by_line),
                    Catch::Contains(dir.file("damaged.txt.zst")) && Catch::Contains("corrupt"));

  write_bytes(dir.file("empty.txt.zst"), "");
  CHECK_THROWS_WITH(read_all({dir.file("empty.txt.zst")}),
                    Catch::Contains(dir.file("empty.txt.zst")) && Catch::Contains("empty .zst"));

  // .gz: zlib hands back the data up to a cut; the reader turns the cut into an error too.
  write_gz(dir.file("full.txt.gz"), text);
  const std::string gz = read_file(dir.file("full.txt.gz"));
  write_bytes(dir.file("cut.txt.gz"), gz.substr(0, gz.size() / 2));
  CHECK_THROWS_WITH(read_all({dir.file("cut.txt.gz")}, by_line),
                    Catch::Contains(dir.file("cut.txt.gz")) && Catch::Contains("truncated .gz"));
  CHECK_NOTHROW(read_all({dir.file("full.txt.gz")}, by_line));
}

TEST_CASE("dus prepare: a .jsonl.zst gives the shards of the same .jsonl", "[unit]") {
  TempDir dir;
  const auto lines = sample_lines(false);
  fs::create_directories(dir.file("a"));
  fs::create_directories(dir.file("b"));
  write_text(dir.file("a/c.jsonl"), as_jsonl(lines));
  write_zst(dir.file("b/c.jsonl.zst"), as_jsonl(lines));
  for (const char* which : {"a", "b"}) {
    const std::string input =
        std::string(which) == "a" ? dir.file("a/c.jsonl") : dir.file("b/c.jsonl.zst");
    run_ok(std::string(DUS_BIN) + " prepare --quiet --tokenizer " +
           shell_quote(dus::testing::tiny_tokenizer()) + " --input " + shell_quote(input) +
           " --out " + shell_quote(dir.file(std::string("out_") + which)) +
           " --threads 2 --shard-tokens 20000 --val-fraction 0.05 > /dev/null");
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.file("out_a")))
    names.push_back(e.path().filename().string());
  CHECK(names.size() > 4);  // index.json + several shard pairs
  for (const auto& name : names) {
    INFO(name);
    const std::string a = read_file(dir.file("out_a/" + name));
    const std::string b = read_file(dir.file("out_b/" + name));
    if (name != "index.json") {
      CHECK(a == b);
      continue;
    }
    // index.json differs only in the source list (path and size of the input file).
    json::Value ia = json::parse(a, name), ib = json::parse(b, name);
    CHECK(ia.find("sources")->as_array().at(0).find("path")->as_string() == dir.file("a/c.jsonl"));
    CHECK(ib.find("sources")->as_array().at(0).find("path")->as_string() ==
          dir.file("b/c.jsonl.zst"));
    ia.erase("sources");
    ib.erase("sources");
    CHECK(json::dump(ia, 2) == json::dump(ib, 2));
  }
}
