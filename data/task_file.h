// Multiple-choice task files for `dus eval`: JSONL, one item per line, in the shape of
// lm-evaluation-harness's multiple_choice tasks:
//   {"context": "...", "choices": ["...", ...], "gold": k}        (optional "id")
// Each choice is the continuation scored after the context; the target delimiter (usually a
// space) is already inside the choice. Blank lines are skipped. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dus {

struct TaskItem {
  std::string id;                    ///< "id" when given, else the 1-based line number
  std::string context;               ///< conditioning text (may be empty)
  std::vector<std::string> choices;  ///< continuations, at least one
  int64_t gold = 0;                  ///< index of the correct choice
};

/// Parses JSONL text; `source` names the file in errors (dus::Error "FILE:LINE" with what was
/// expected: an object, the keys context/choices/gold (and id), a non-empty list of strings,
/// gold an integer in range, valid UTF-8, at least one item).
std::vector<TaskItem> parse_task_text(std::string_view text, const std::string& source);
/// Reads and parses a task file.
std::vector<TaskItem> load_task_file(const std::string& path);

/// A task to score: its file and how many of its first items (0: all).
struct TaskSource {
  std::string path;
  int64_t limit = 0;
};

/// The name a task is reported under: its file's stem ("arc_easy" for "tasks/arc_easy.jsonl").
std::string task_name(const std::string& path);

/// Throws dus::Error naming `where` when two sources have the same task_name (their scores
/// would be reported under one name).
void check_task_names(const std::vector<TaskSource>& sources, const std::string& where);

/// load_task_file, cut to the source's first `limit` items.
std::vector<TaskItem> load_task(const TaskSource& source);

}  // namespace dus
