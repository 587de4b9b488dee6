// The safetensors header rules, one test per defect (each must be an error naming the file and
// what was expected, never a crash).
#include <catch2/catch.hpp>

#include <cstring>

#include "core/error.h"
#include "model/safetensors_header.h"

namespace {

// A file image: 8-byte little-endian length, header text, then `data_bytes` zero bytes.
std::vector<uint8_t> image(const std::string& header, size_t data_bytes, int64_t length_override = -1) {
  std::vector<uint8_t> out(8);
  uint64_t n = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    dus::parse_safetensors_header(bytes.data(), bytes.size(), "bad.safetensors");
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a valid header parses, sorted by offset, with metadata", "[unit]") {
  auto bytes = image(
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      12);
  auto h = dus::parse_safetensors_header(bytes.data(), bytes.size(), "ok.safetensors");
  REQUIRE(h.tensors.size() == 2);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[1].dtype == dus::StDtype::BF16);
  CHECK(h.metadata.at("format") == "pt");
}

TEST_CASE("integer dtypes and empty tensors are read without error", "[unit]") {
  auto bytes = image(
      R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"u":{"dtype":"U16","shape":[2],"data_offsets":[8,12]},)"
      R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[12,12]},"k":{"dtype":"BOOL","shape":[],"data_offsets":[12,13]}})",
      13);
  CHECK(dus::parse_safetensors_header(bytes.data(), bytes.size(), "ok").tensors.size() == 4);
}

TEST_CASE("safetensors header defects are errors naming the file and the problem", "[unit]") {
  const std::string tensor_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SECTION("file shorter than the length field") {
    std::vector<uint8_t> tiny = {1, 2, 3};
    CHECK_THAT(error_of(tiny), Catch::Contains("bad.safetensors") && Catch::Contains("shorter than the 8-byte"));
  }
  SECTION("header length past the end of the file") {
    CHECK_THAT(error_of(image("{}", 0, 1000)), Catch::Contains("header length 1000 runs past the end of the file"));
  }
  SECTION("huge header length") {
    CHECK_THAT(error_of(image("{}", 0, int64_t{1} << 62)), Catch::Contains("runs past the end"));
  }
  SECTION("header is not a JSON object") {
    CHECK_THAT(error_of(image("[1,2]", 0)), Catch::Contains("must be a JSON object, found array"));
  }
  SECTION("header is not JSON at all") {
    CHECK_THAT(error_of(image("{\"a\":", 0)), Catch::Contains("invalid JSON"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", 8)),
               Catch::Contains("tensor 'a'") && Catch::Contains("unknown dtype \"F17\""));
  }
  SECTION("shape times dtype size differs from the byte span") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
               Catch::Contains("shape x dtype size is 12 bytes but data_offsets span 8 bytes"));
  }
  SECTION("shape whose product overflows 64 bits") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8)),
               Catch::Contains("more than 2^64"));
  }
  SECTION("negative or non-integer shape") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
               Catch::Contains("non-negative integers"));
  }
  SECTION("offsets out of range") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)),
               Catch::Contains("run past the end of the data buffer"));
  }
  SECTION("end before begin") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8)),
               Catch::Contains("before begin"));
  }
  SECTION("overlapping tensors") {
    CHECK_THAT(error_of(image("{" + tensor_a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
               Catch::Contains("tensor 'b'") && Catch::Contains("overlap"));
  }
  SECTION("a hole between tensors") {
    CHECK_THAT(error_of(image("{" + tensor_a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16)),
               Catch::Contains("hole") && Catch::Contains("[8, 12)"));
  }
  SECTION("trailing bytes no tensor covers") {
    CHECK_THAT(error_of(image("{" + tensor_a + "}", 20)), Catch::Contains("cover 8 bytes of the data buffer but it holds 20"));
  }
  SECTION("duplicate tensor names") {
    CHECK_THAT(error_of(image("{" + tensor_a + "," + tensor_a + "}", 8)), Catch::Contains("duplicate key \"a\""));
  }
  SECTION("malformed entry") {
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[2]}})", 8)), Catch::Contains("needs the keys"));
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8)),
               Catch::Contains("unexpected key \"x\""));
    CHECK_THAT(error_of(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
               Catch::Contains("data_offsets must be [begin, end]"));
  }
  SECTION("metadata that is not a string map") {
    CHECK_THAT(error_of(image(R"({"__metadata__":{"k":1}})", 0)), Catch::Contains("must be a string"));
  }
}
