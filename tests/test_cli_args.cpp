// The command-line parser: unknown flags suggest the nearest, required flags are enforced, and
// every registered command builds a parser that answers --help.
#include <catch2/catch.hpp>

#include "cli/cli_args.h"
#include "core/suggestion.h"
#include "cli/commands.h"
#include "core/error.h"

namespace {
dus::ArgParser sample() {
  return dus::ArgParser("sample", "A sample command.")
      .positional("", "", 0)
      .required("model", "DIR", "model")
      .option("dtype", "f32|bf16", "dtype", std::string("f32"))
      .option("set", "K=V", "override", std::nullopt, /*repeatable=*/true)
      .flag("verbose", "talk more");
}
std::string error_of(const std::vector<std::string>& args) {
  try {
    sample().parse(args);
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("options, defaults, repeatable values and flags parse", "[unit]") {
  auto a = sample().parse({"--model", "m", "--set", "a=1", "--set=b=2", "--verbose"});
  CHECK(a.get("model") == "m");
  CHECK(a.get("dtype") == "f32");
  CHECK(a.all("set") == std::vector<std::string>{"a=1", "b=2"});
  CHECK(a.flag("verbose"));
}

TEST_CASE("bad command lines are errors that help", "[unit]") {
  CHECK_THAT(error_of({"--model", "m", "--dtyp", "bf16"}), Catch::Contains("unknown option --dtyp") && Catch::Contains("did you mean --dtype?"));
  CHECK_THAT(error_of({}), Catch::Contains("missing required option --model"));
  CHECK_THAT(error_of({"--model"}), Catch::Contains("needs a value"));
  CHECK_THAT(error_of({"--model", "m", "extra"}), Catch::Contains("unexpected argument 'extra'"));
  CHECK_THAT(error_of({"--model", "m", "--verbose=1"}), Catch::Contains("takes no value"));
}

TEST_CASE("nearest suggests only close words", "[unit]") {
  CHECK(dus::nearest("inspct", {"inspect", "forward"}) == "inspect");
  CHECK(dus::nearest("zzzzzz", {"inspect", "forward"}).empty());
}

TEST_CASE("every registered command has a parser that answers --help", "[unit]") {
  for (const auto& c : dus::all_commands()) {
    INFO(c.name);
    auto parser = c.parser();
    CHECK(parser.parse({"--help"}).has("help"));
    CHECK_THAT(parser.usage(), Catch::StartsWith("usage: dus " + c.name));
  }
}
