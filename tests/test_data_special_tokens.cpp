// The base model's BOS/EOS (config.json) against a dataset's (index.json): agreement passes,
// a different EOS always fails, a different BOS fails only when the loader inserts BOS, a model
// that states nothing is not checked (and says so), and any id of a Llama-3 style EOS list
// matches. The error names both files and both ids.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "data/special_token_check.h"

using namespace dus;

namespace {

SpecialTokenIds ids(std::vector<int64_t> v, bool as_list = false) {
  SpecialTokenIds t;
  t.ids = std::move(v);
  t.as_list = as_list;
  return t;
}

const char* kIndex = "/data/web/index.json";

}  // namespace

TEST_CASE("special tokens: the dataset must use the model's BOS and EOS", "[unit]") {
  ModelSpecialTokens mistral{"/models/base/config.json", ids({1}), ids({2})};
  SECTION("agree") {
    CHECK_NOTHROW(check_special_tokens(mistral, kIndex, 1, 2, BosPolicy::PerDocument));
    CHECK_NOTHROW(check_special_tokens(mistral, kIndex, 1, 2, BosPolicy::None));
    CHECK(special_tokens_unchecked(mistral, BosPolicy::PerDocument).empty());
  }
  SECTION("different EOS fails naming both files and both ids") {
    CHECK_THROWS_WITH(check_special_tokens(mistral, kIndex, 1, 3, BosPolicy::None),
                      Catch::Contains(kIndex) && Catch::Contains("/models/base/config.json") &&
                          Catch::Contains("eos_id is 3") && Catch::Contains("eos_token_id is 2") &&
                          Catch::Contains("prepare the data with the base model's tokenizer"));
  }
  SECTION("different BOS fails when the loader inserts it, not otherwise") {
    CHECK_THROWS_WITH(check_special_tokens(mistral, kIndex, 0, 2, BosPolicy::PerDocument),
                      Catch::Contains(kIndex) && Catch::Contains("bos_id is 0") &&
                          Catch::Contains("bos_token_id is 1"));
    CHECK_NOTHROW(check_special_tokens(mistral, kIndex, 0, 2, BosPolicy::None));
  }
  SECTION("a model that states no id is not checked for it, with one warning") {
    ModelSpecialTokens silent{"/models/x/config.json", ids({}), ids({})};
    CHECK_NOTHROW(check_special_tokens(silent, kIndex, 7, 9, BosPolicy::PerDocument));
    const std::string w = special_tokens_unchecked(silent, BosPolicy::PerDocument);
    CHECK_THAT(w, Catch::Contains("/models/x/config.json") &&
                      Catch::Contains("bos_token_id nor eos_token_id"));
    ModelSpecialTokens eos_only{"/models/y/config.json", ids({}), ids({2})};
    CHECK_THAT(special_tokens_unchecked(eos_only, BosPolicy::PerDocument),
               Catch::Contains("no bos_token_id"));
    CHECK(special_tokens_unchecked(eos_only, BosPolicy::None).empty());  // BOS never inserted
    CHECK_THROWS_WITH(check_special_tokens(eos_only, kIndex, 7, 9, BosPolicy::PerDocument),
                      Catch::Contains("eos_id is 9"));
  }
  SECTION("any id of an EOS list matches; the message shows the list") {
    ModelSpecialTokens llama3{"/models/l3/config.json", ids({128000}),
                              ids({128001, 128008, 128009}, true)};
    CHECK_NOTHROW(check_special_tokens(llama3, kIndex, 128000, 128001, BosPolicy::PerDocument));
    CHECK_NOTHROW(check_special_tokens(llama3, kIndex, 128000, 128009, BosPolicy::PerDocument));
    CHECK_THROWS_WITH(check_special_tokens(llama3, kIndex, 128000, 2, BosPolicy::PerDocument),
                      Catch::Contains("[128001, 128008, 128009]"));
  }
}
