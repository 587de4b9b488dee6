// libFuzzer target: recipe parsing, YAML text -> tree (parse_yaml, yaml-cpp) -> typed Recipe
// (recipe_from_tree: types, ranges, unknown keys, cross-field rules). Every input must give a
// Recipe or a dus::Error; YAML bombs (aliases), deep nesting and huge scalars must be refused
// with an error, not expanded. An accepted recipe's resolved tree must write back to YAML
// (to_yaml, as the run directory and every checkpoint store it) and read back equal.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/json.h"
#include "train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  dus::json::Value tree;
  try {
    tree = dus::parse_yaml(text, "fuzz.yaml");
  } catch (const dus::Error&) {
    return 0;
  }
  // Whatever parsed must also emit and re-parse to the same tree (the saved recipe).
  std::string yaml;
  try {
    yaml = dus::to_yaml(tree);
  } catch (const dus::Error&) {
    __builtin_trap();
  }
  dus::json::Value back;
  try {
    back = dus::parse_yaml(yaml, "fuzz.yaml (written back)");
  } catch (const dus::Error&) {
    __builtin_trap();
  }
  if (dus::json::dump(back) != dus::json::dump(tree)) __builtin_trap();
  try {
    const dus::Recipe r = dus::recipe_from_tree(tree, "fuzz.yaml");
    if (r.sha256.size() != 64) __builtin_trap();
  } catch (const dus::Error&) {
  }
  return 0;
}
