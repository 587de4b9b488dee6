#include "cli/commands.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "core/error.h"
#include "core/suggestion.h"

namespace dus {

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands = {
      train_command(),
      resume_command(),
      launch_command(),
      sweep_command(),
      plan_command(),
      report_command(),
      export_command(),
      eval_command(),
      recipe_check_command(),
      recipe_keys_command(),
      inspect_command(),
      forward_command(),
      convert_command(),
      bench_forward_command(),
      scale_command(),
      prepare_command(),
      tokenizer_train_command(),
      tokenizer_encode_command(),
      bench_data_command(),
      bench_train_command(),
  };
  return commands;
}

namespace {
void print_overview() {
  fmt::print("usage: dus COMMAND [options]   (dus COMMAND --help for a command's options)\n\n");
  fmt::print(
      "DUS Trainer: depth up-scaling and continued pretraining of "
      "Mistral-architecture\nmodels.\n\ncommands:\n");
  for (const auto& c : all_commands()) {
    ArgParser p = c.parser();
    std::string usage = p.usage();
    // The summary is the third line of usage (after "usage:" and a blank line).
    auto first = usage.find("\n\n");
    auto second = usage.find('\n', first + 2);
    fmt::print("  {:<16} {}\n", c.name, usage.substr(first + 2, second - first - 2));
  }
}
}  // namespace

int run_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_overview();
    return args.empty() ? 2 : 0;
  }
  // Longest match first: "bench forward" before "bench".
  const Command* chosen = nullptr;
  size_t words = 0;
  for (const auto& c : all_commands()) {
    size_t space = c.name.find(' ');
    if (space == std::string::npos) {
      if (args[0] == c.name && words < 1) {
        chosen = &c;
        words = 1;
      }
    } else if (args.size() >= 2 && args[0] == c.name.substr(0, space) &&
               args[1] == c.name.substr(space + 1)) {
      chosen = &c;
      words = 2;
    }
  }
  if (!chosen) {
    std::vector<std::string> names;
    for (const auto& c : all_commands()) names.push_back(c.name);
    std::string joined = args.size() >= 2 ? args[0] + " " + args[1] : args[0];
    std::string guess = nearest(joined, names);
    if (guess.empty()) guess = nearest(args[0], names);
    fmt::print(stderr, "error: unknown command '{}'{}\n", args[0],
               guess.empty() ? "" : (" (did you mean '" + guess + "'?)"));
    print_overview();
    return 2;
  }
  std::vector<std::string> rest(args.begin() + static_cast<long>(words), args.end());
  try {
    ArgParser parser = chosen->parser();
    ParsedArgs parsed = parser.parse(rest);
    if (parsed.has("help")) {
      fmt::print("{}", parser.usage());
      return 0;
    }
    return chosen->run(parsed);
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  } catch (const c10::Error& e) {
    fmt::print(stderr, "error (torch): {}\n", e.what_without_backtrace());
    return 3;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 3;
  }
}

}  // namespace dus
