#include "data/task_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"
#include "data/unicode_text.h"

namespace dus {

namespace {

TaskItem parse_item(std::string_view line, const std::string& where, int64_t line_number) {
  const size_t bad = find_invalid_utf8(line);
  if (bad != std::string_view::npos && bad < line.size())
    throw Error(where, fmt::format("invalid UTF-8 at byte {} of the line", bad),
                "task files are UTF-8 text");
  json::Value v;
  try {
    v = json::parse(line, where);
  } catch (const Error& e) {
    throw Error(where, "not valid JSON: " + e.problem(),
                "one JSON object per line: {\"context\": ..., \"choices\": [...], \"gold\": k}");
  }
  if (!v.is_object())
    throw Error(where, std::string("expected a JSON object, got ") + v.type_name(),
                "one JSON object per line: {\"context\": ..., \"choices\": [...], \"gold\": k}");
  for (const auto& [key, value] : v.as_object()) {
    (void)value;
    if (key != "context" && key != "choices" && key != "gold" && key != "id")
      throw Error(where, "unknown key '" + key + "'", "the keys are context, choices, gold and id");
  }
  for (const char* key : {"context", "choices", "gold"})
    if (!v.contains(key)) throw Error(where, std::string("missing key '") + key + "'");
  TaskItem item;
  const json::Value& context = *v.find("context");
  if (!context.is_string())
    throw Error(where, std::string("'context' must be a string, got ") + context.type_name());
  item.context = context.as_string();
  const json::Value& choices = *v.find("choices");
  if (!choices.is_array() || choices.as_array().empty())
    throw Error(where, "'choices' must be a non-empty list of strings");
  for (const json::Value& c : choices.as_array()) {
    if (!c.is_string())
      throw Error(where, std::string("'choices' must be a non-empty list of strings, found a ") +
                             c.type_name());
    if (c.as_string().empty()) throw Error(where, "'choices' holds an empty string");
    item.choices.push_back(c.as_string());
  }
  const json::Value& gold = *v.find("gold");
  if (!gold.is_int())
    throw Error(where, std::string("'gold' must be an integer, got ") + gold.type_name());
  item.gold = gold.as_int();
  if (item.gold < 0 || item.gold >= static_cast<int64_t>(item.choices.size()))
    throw Error(where, fmt::format("'gold' {} is outside [0, {})", item.gold, item.choices.size()));
  if (const json::Value* id = v.find("id")) {
    if (id->is_string())
      item.id = id->as_string();
    else if (id->is_int())
      item.id = std::to_string(id->as_int());
    else
      throw Error(where,
                  std::string("'id' must be a string or an integer, got ") + id->type_name());
  } else {
    item.id = std::to_string(line_number);
  }
  return item;
}

}  // namespace

std::vector<TaskItem> parse_task_text(std::string_view text, const std::string& source) {
  std::vector<TaskItem> items;
  size_t pos = 0;
  int64_t line_number = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    items.push_back(parse_item(line, fmt::format("{}:{}", source, line_number), line_number));
  }
  if (items.empty())
    throw Error(source, "the task file holds no items",
                "one JSON object per line: {\"context\": ..., \"choices\": [...], \"gold\": k}");
  return items;
}

std::vector<TaskItem> load_task_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open the task file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_task_text(buffer.str(), path);
}

std::string task_name(const std::string& path) {
  return std::filesystem::path(path).stem().string();
}

void check_task_names(const std::vector<TaskSource>& sources, const std::string& where) {
  for (size_t i = 0; i < sources.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (task_name(sources[j].path) == task_name(sources[i].path))
        throw Error(where,
                    sources[j].path + " and " + sources[i].path + " have the same name \"" +
                        task_name(sources[i].path) + "\"",
                    "a task is reported under its file's stem: rename one file");
}

std::vector<TaskItem> load_task(const TaskSource& source) {
  std::vector<TaskItem> items = load_task_file(source.path);
  if (source.limit > 0 && static_cast<int64_t>(items.size()) > source.limit)
    items.resize(static_cast<size_t>(source.limit));
  return items;
}

}  // namespace dus
