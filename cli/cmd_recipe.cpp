// dus recipe check / dus recipe keys: validate a recipe without running it, and the reference
// of every recipe key (README's table is this command's output, checked by a test).
#include <cstdio>

#include <fmt/format.h>

#include "cli/commands.h"
#include "train/recipe.h"

namespace dus {

namespace {

int run_recipe_check(const ParsedArgs& args) {
  Recipe r = load_recipe(args.positionals()[0], args.all("set"));
  fmt::print(
      "# {}: valid (sha256 {})\n# global batch {} sequences x {} tokens = {} tokens per step\n{}",
      r.source, r.sha256.substr(0, 12), r.train.global_batch, r.data.seq_len,
      r.train.global_batch * r.data.seq_len, r.to_yaml());
  return 0;
}

int run_recipe_keys(const ParsedArgs&) {
  fmt::print("| key | type | default | meaning |\n|---|---|---|---|\n");
  for (const auto& line : recipe_reference()) {
    // "section.key\ttype\tdefault\tdescription"
    std::string cells[4];
    size_t start = 0;
    for (int i = 0; i < 4; ++i) {
      size_t tab = i < 3 ? line.find('\t', start) : std::string::npos;
      cells[i] = line.substr(start, tab == std::string::npos ? std::string::npos : tab - start);
      start = tab + 1;
    }
    std::string type = cells[1];
    for (size_t p = type.find('|'); p != std::string::npos; p = type.find('|', p + 2)) type.replace(p, 1, "\\|");
    fmt::print("| `{}` | {} | {} | {} |\n", cells[0], type, cells[2], cells[3]);
  }
  return 0;
}

}  // namespace

Command recipe_check_command() {
  return {"recipe check",
          [] {
            return ArgParser("recipe check", "Validate a recipe (extends, --set, every key) and print it resolved, without running it.")
                .positional("RECIPE", "a recipe file")
                .option("set", "SECTION.KEY=VALUE", "override a recipe key", std::nullopt, /*repeatable=*/true);
          },
          run_recipe_check};
}

Command recipe_keys_command() {
  return {"recipe keys",
          [] {
            return ArgParser("recipe keys", "Print every recipe key with its type, default and meaning (markdown).")
                .positional("", "", 0);
          },
          run_recipe_keys};
}

}  // namespace dus
