// dus prepare and the corpus reader: input forms (.txt whole/lines, .jsonl, .gz, sorted
// directory walk), UTF-8 policy, bad JSONL with file:line, empty inputs, byte-identical shards
// for any thread count, a stable validation split, and that a killed prepare leaves nothing
// that looks complete.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/file_util.h"
#include "data/corpus_reader.h"
#include "data/prepare.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "test_data_util.h"

using namespace dus;
using dus::testing::TempDir;
using dus::testing::write_text;
namespace fs = std::filesystem;

namespace {

void write_gz(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

std::vector<Document> read_all(const std::vector<std::string>& inputs, CorpusOptions o = {},
                               CorpusStats* stats = nullptr) {
  CorpusReader r(list_corpus_files(inputs), o);
  std::vector<Document> docs;
  Document d;
  while (r.next(&d)) docs.push_back(d);
  if (stats) *stats = r.stats();
  return docs;
}

std::string lines_text(int n, unsigned seed) {
  std::string t;
  for (const auto& l : dus::testing::corpus_lines(n, seed)) t += l + "\n";
  return t;
}

}  // namespace

TEST_CASE("corpus reader: txt, lines, jsonl, gz and a sorted directory walk", "[unit]") {
  TempDir dir;
  fs::create_directories(dir.file("c/sub"));
  fs::create_directories(dir.file("c/.hidden"));
  write_text(dir.file("c/b.txt"), "second file\nstill second\n");
  write_text(dir.file("c/a.txt"), "first file");
  write_gz(dir.file("c/sub/c.jsonl.gz"),
           "{\"text\": \"from jsonl\", \"id\": 1}\n\n{\"text\": \"two\"}\n");
  write_text(dir.file("c/.hidden/x.txt"), "hidden");
  write_text(dir.file("c/notes.md"), "not corpus");

  auto files = list_corpus_files({dir.file("c")});
  REQUIRE(files.size() == 3);
  CHECK(files[0] == dir.file("c/a.txt"));
  CHECK(files[1] == dir.file("c/b.txt"));
  CHECK(files[2] == dir.file("c/sub/c.jsonl.gz"));

  CorpusStats stats;
  auto docs = read_all({dir.file("c")}, {}, &stats);
  REQUIRE(docs.size() == 4);
  CHECK(docs[0].text == "first file");
  CHECK(docs[1].text == "second file\nstill second\n");
  CHECK(docs[2].text == "from jsonl");
  CHECK(docs[3].text == "two");
  CHECK(docs[3].line == 3);
  CHECK(stats.empty_documents == 1);  // the blank JSONL line

  CorpusOptions lines;
  lines.lines = true;
  auto by_line = read_all({dir.file("c/b.txt")}, lines);
  REQUIRE(by_line.size() == 2);
  CHECK(by_line[1].text == "still second");
  CHECK(by_line[1].line == 2);

  write_text(dir.file("other.csv"), "x");
  CHECK_THROWS_WITH(list_corpus_files({dir.file("other.csv")}),
                    Catch::Contains("unknown corpus file type"));
  CHECK_THROWS_WITH(list_corpus_files({dir.file("missing")}), Catch::Contains("does not exist"));
}

TEST_CASE("invalid UTF-8 is replaced, skipped or an error, and always counted", "[unit]") {
  std::string bad =
      "ok \xC3\x28 and \xED\xA0\x80 and \xF0\x9F\x99";  // bad 2-byte, surrogate, truncated
  CHECK(!is_valid_utf8(bad));
  CHECK(is_valid_utf8("café 你好 🙂"));
  CHECK(!is_valid_utf8("\xC0\xAF"));  // overlong '/'
  std::string fixed = bad;
  CHECK(repair_utf8(&fixed) == 7);
  CHECK(is_valid_utf8(fixed));

  TempDir dir;
  write_text(dir.file("u.txt"), "good line\n" + bad + "\nanother good line\n");
  CorpusOptions o;
  o.lines = true;
  CorpusStats stats;
  auto docs = read_all({dir.file("u.txt")}, o, &stats);
  CHECK(docs.size() == 3);
  CHECK(stats.invalid_utf8_documents == 1);
  CHECK(stats.invalid_utf8_bytes == 7);

  o.utf8 = Utf8Policy::Skip;
  docs = read_all({dir.file("u.txt")}, o, &stats);
  CHECK(docs.size() == 2);
  CHECK(stats.skipped_invalid_utf8 == 1);

  o.utf8 = Utf8Policy::Error;
  CHECK_THROWS_WITH(read_all({dir.file("u.txt")}, o),
                    Catch::Contains(dir.file("u.txt") + ":2") && Catch::Contains("invalid UTF-8"));
}

TEST_CASE("bad JSONL lines name file and line, or are skipped and counted", "[unit]") {
  TempDir dir;
  const std::string path = dir.file("d.jsonl");
  write_text(path, "{\"text\": \"fine\"}\n{\"text\": \"fine too\"}\n{not json}\n");
  CHECK_THROWS_WITH(read_all({path}),
                    Catch::Contains(path + ":3") && Catch::Contains("not valid JSON"));
  write_text(path, "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n");
  CHECK_THROWS_WITH(read_all({path}),
                    Catch::Contains(path + ":2") && Catch::Contains("missing field \"text\""));
  write_text(path, "{\"text\": 5}\n");
  CHECK_THROWS_WITH(read_all({path}),
                    Catch::Contains(path + ":1") && Catch::Contains("expected a string"));
  write_text(path, "[1, 2]\n");
  CHECK_THROWS_WITH(read_all({path}),
                    Catch::Contains(path + ":1") && Catch::Contains("expected a JSON object"));

  write_text(path, "{\"body\": \"custom field\"}\nnope\n{\"body\": \"two\"}\n");
  CorpusOptions o;
  o.jsonl_field = "body";
  o.skip_bad_json = true;
  CorpusStats stats;
  auto docs = read_all({path}, o, &stats);
  CHECK(docs.size() == 2);
  CHECK(stats.skipped_bad_json == 1);
}

TEST_CASE("prepare: shards are byte-identical for any thread count", "[unit]") {
  TempDir dir;
  fs::create_directories(dir.file("in"));
  for (int f = 0; f < 3; ++f)
    write_text(dir.file("in/part" + std::to_string(f) + ".txt"), lines_text(2000, 10 + f));
  write_gz(dir.file("in/part9.txt.gz"), lines_text(500, 99));
  PrepareOptions o;
  o.tokenizer = dus::testing::tiny_tokenizer();
  o.inputs = {dir.file("in")};
  o.corpus.lines = true;
  o.val_fraction = 0.05;
  o.shard_tokens = 20000;  // several shards per split
  o.progress = false;
  std::vector<std::string> outs;
  for (int threads : {1, 2, 3}) {
    o.threads = threads;
    o.out_dir = dir.file("out" + std::to_string(threads));
    PrepareResult r = prepare_dataset(o);
    CHECK(r.train_documents + r.val_documents == 6500);
    CHECK(r.val_documents > 200);
    CHECK(r.val_documents < 500);
    outs.push_back(o.out_dir);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(outs[0]))
    names.push_back(e.path().filename().string());
  CHECK(names.size() > 6);  // index.json + several .bin/.idx pairs
  for (const auto& name : names)
    for (size_t i = 1; i < outs.size(); ++i) {
      INFO(name << " with " << i + 1 << " threads");
      CHECK(read_file(outs[0] + "/" + name) == read_file(outs[i] + "/" + name));
    }

  // The shards hold exactly what the tokenizer gives for each document, in corpus order.
  TokenDataset train = TokenDataset::open(outs[0], "train");
  Tokenizer tok = Tokenizer::load(o.tokenizer);
  auto docs = read_all({dir.file("in")}, o.corpus);
  std::vector<std::string> train_docs;
  for (const auto& d : docs)
    if (!is_validation_document(d.text, o.val_fraction)) train_docs.push_back(d.text);
  REQUIRE(train.num_documents() == static_cast<int64_t>(train_docs.size()));
  for (int64_t i : {int64_t(0), int64_t(1), train.num_documents() / 2, train.num_documents() - 1}) {
    std::vector<int32_t> ids(static_cast<size_t>(train.document_length(i)));
    train.read(i, 0, static_cast<int64_t>(ids.size()), ids.data());
    CHECK(ids == tok.encode(train_docs[static_cast<size_t>(i)]));
  }
  CHECK(train.tokenizer_sha256() == tok.sha256());
  CHECK(train.dtype() == TokenDtype::U16);
  CHECK(train.max_token_id() == train.scan_max_token_id());
}

TEST_CASE("prepare: the validation split is chosen by text hash and is stable", "[unit]") {
  // Same text -> same split, whatever its position; roughly the requested fraction.
  int held = 0;
  for (int i = 0; i < 20000; ++i)
    held += is_validation_document("document " + std::to_string(i), 0.1);
  CHECK(held > 1800);
  CHECK(held < 2200);
  CHECK(is_validation_document("abc", 0.5) == is_validation_document(std::string("abc"), 0.5));
  CHECK(!is_validation_document("anything", 0.0));
  CHECK(document_hash("") == 0xcbf29ce484222325ull);   // FNV-1a 64 offset basis
  CHECK(document_hash("a") == 0xaf63dc4c8601ec8cull);  // published FNV-1a 64 vector
}

TEST_CASE("prepare: empty inputs, existing output and a missing tokenizer are clear", "[unit]") {
  TempDir dir;
  write_text(dir.file("empty.txt"), "");
  write_text(dir.file("blank.txt"), "\n\n  \n");
  PrepareOptions o;
  o.tokenizer = dus::testing::tiny_tokenizer();
  o.inputs = {dir.file("empty.txt"), dir.file("blank.txt")};
  o.out_dir = dir.file("out");
  o.progress = false;
  CHECK_THROWS_WITH(prepare_dataset(o),
                    Catch::Contains("no documents found") && Catch::Contains("2 empty"));
  CHECK(!fs::exists(dir.file("out")));

  write_text(dir.file("one.txt"), "a document with some words in it");
  o.inputs = {dir.file("empty.txt"), dir.file("one.txt")};
  o.val_fraction = 0;
  PrepareResult r = prepare_dataset(o);
  CHECK(r.corpus.empty_files == 1);
  CHECK(r.train_documents == 1);
  CHECK_THROWS_WITH(prepare_dataset(o),
                    Catch::Contains("already exists") && Catch::Contains("--force"));
  o.force = true;
  CHECK_NOTHROW(prepare_dataset(o));

  o.tokenizer = dir.file("missing.model");
  CHECK_THROWS_WITH(prepare_dataset(o),
                    Catch::Contains("missing.model") && Catch::Contains("not found"));
  CHECK_THROWS_WITH(TokenDataset::open(dir.file("nothing")), Catch::Contains("does not exist"));
}

TEST_CASE("prepare: a killed prepare leaves nothing that looks complete", "[unit]") {
  TempDir dir;
  std::string big;
  for (int i = 0; i < 40; ++i) big += lines_text(2000, static_cast<unsigned>(i));
  write_text(dir.file("big.txt"), big);
  const std::string out = dir.file("out");
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(DUS_BIN, DUS_BIN, "prepare", "--tokenizer", dus::testing::tiny_tokenizer().c_str(),
            "--input", dir.file("big.txt").c_str(), "--lines", "--out", out.c_str(), "--threads",
            "1", "--shard-tokens", "50000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  REQUIRE(pid > 0);
  // Wait until it has started writing shards, then kill -9.
  const std::string tmp = out + ".tmp-" + std::to_string(pid);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!fs::exists(tmp + "/train-00001.bin") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));  // it was killed mid-way, not finished
  CHECK(fs::exists(tmp));
  CHECK(!fs::exists(out));
  CHECK(!fs::exists(tmp + "/index.json"));
  CHECK_THROWS_WITH(TokenDataset::open(out), Catch::Contains("interrupted"));

  // The next prepare removes the stale partial directory and completes.
  PrepareOptions o;
  o.tokenizer = dus::testing::tiny_tokenizer();
  o.inputs = {dir.file("big.txt")};
  o.corpus.lines = true;
  o.out_dir = out;
  o.progress = false;
  prepare_dataset(o);
  CHECK(!fs::exists(tmp));
  CHECK(fs::exists(out + "/index.json"));
}
