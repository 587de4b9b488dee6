// The strict JSON reader/writer: round trips, and hostile input rejected with a clear error.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/json.h"

using dus::json::parse;
using dus::json::Value;

static std::string error_of(const std::string& text) {
  try {
    parse(text, "test.json");
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("json parses and round-trips every value type", "[unit]") {
  std::string text =
      R"({"a":1,"b":-2.5,"c":"x\"y\\z\n\u00e9\ud83d\ude00","d":[true,false,null],"e":{},"f":[],"g":1e-05,"h":10000.0})";
  Value v = parse(text, "t");
  CHECK(v.find("a")->as_int() == 1);
  CHECK(v.find("b")->as_double() == -2.5);
  CHECK(v.find("c")->as_string() == "x\"y\\z\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("d")->as_array().size() == 3);
  CHECK(v.find("g")->as_double() == 1e-05);
  // Key order is kept, floats stay floats, and dump(parse(x)) is stable.
  std::string once = dus::json::dump(v);
  CHECK(once.find("\"h\":10000.0") != std::string::npos);
  CHECK(once.find("\"g\":1e-05") != std::string::npos);
  CHECK(dus::json::dump(parse(once, "t")) == once);
  CHECK(once.find("\"a\"") < once.find("\"b\""));
}

TEST_CASE("json integers beyond int64 become doubles, 4096.0 reads as an int", "[unit]") {
  CHECK(parse("123456789012345678901234", "t").is_number());
  CHECK(parse("4096.0", "t").as_int() == 4096);
  CHECK_THROWS_AS(parse("0.5", "t").as_int("key"), dus::Error);
}

TEST_CASE("json rejects malformed and hostile documents with a located error", "[unit]") {
  CHECK_THAT(error_of("{\"a\":1,\"a\":2}"), Catch::Contains("duplicate key \"a\""));
  CHECK_THAT(error_of("{\"a\":1} x"), Catch::Contains("trailing"));
  CHECK_THAT(error_of("[1,2"), Catch::Contains("test.json"));
  CHECK_THAT(error_of("\"abc"), Catch::Contains("unterminated string"));
  CHECK_THAT(error_of("\"\\q\""), Catch::Contains("invalid escape"));
  CHECK_THAT(error_of("\"\\ud800\""), Catch::Contains("surrogate"));
  CHECK_THAT(error_of("01"), Catch::Contains("trailing"));
  CHECK_THAT(error_of("-"), Catch::Contains("invalid number"));
  CHECK_THAT(error_of("1.e5"), Catch::Contains("digit expected"));
  CHECK_THAT(error_of("nul"), Catch::Contains("expected 'null'"));
  CHECK_THAT(error_of(""), Catch::Contains("unexpected end"));
  CHECK_THAT(error_of("\"a\tb\""), Catch::Contains("control character"));
  // Nesting bomb: rejected by the depth bound instead of overflowing the stack.
  CHECK_THAT(error_of(std::string(100000, '[')), Catch::Contains("nesting deeper than 64"));
}

TEST_CASE("json accessors name the key on a type mismatch", "[unit]") {
  Value v = parse(R"({"n":"x"})", "t");
  try {
    v.find("n")->as_int("config.json: key \"n\"");
    FAIL("no error");
  } catch (const dus::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("key \"n\"") && Catch::Contains("expected an integer, found string"));
  }
}

TEST_CASE("json set keeps position and erase removes", "[unit]") {
  Value v = parse(R"({"a":1,"b":2})", "t");
  Value copy = v;
  v.set("a", Value(5));
  v.set("c", Value("z"));
  v.erase("b");
  CHECK(dus::json::dump(v) == R"({"a":5,"c":"z"})");
  CHECK(dus::json::dump(copy) == R"({"a":1,"b":2})");  // copies are independent
}
