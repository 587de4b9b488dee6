#include "scaling/layer_plan.h"

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"
#include "scaling/block_expansion.h"

namespace dus {

namespace {

const char* const kWhere = "layer plan";

std::string range_text(const LayerRange& r) {
  return fmt::format("[{}, {})", r.begin, r.end);
}

// The layers of a slice plan: slice i (0-based) is copy i + 1.
std::vector<LayerOrigin> stack_slices(const std::vector<LayerRange>& slices) {
  std::vector<LayerOrigin> layers;
  for (size_t i = 0; i < slices.size(); ++i)
    for (int64_t b = slices[i].begin; b < slices[i].end; ++b)
      layers.push_back({static_cast<int64_t>(i) + 1, b, false});
  return layers;
}

void check_depth(int64_t n) {
  if (n < 1) throw Error(kWhere, fmt::format("the base model has {} layers (expected >= 1)", n));
}

int64_t parse_int(const std::string& text, const std::string& where, const std::string& item) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0)
    throw Error(where, "'" + item + "' is not a slice BEGIN:END of integer layer indices",
                "write slices as half-open ranges, e.g. 0:24,8:32");
  return v;
}

}  // namespace

const char* plan_method_name(PlanMethod method) {
  switch (method) {
    case PlanMethod::kDus:
      return "dus";
    case PlanMethod::kSlices:
      return "slices";
    case PlanMethod::kBlockExpansion:
      return "block_expansion";
  }
  return "?";
}

std::string LayerPlan::describe() const {
  std::string out;
  if (method == PlanMethod::kBlockExpansion) {
    out = fmt::format("block_expansion(n={}, every={}): {} identity layers inserted", base_layers,
                      every, scaled_layers() - base_layers);
  } else {
    out = method == PlanMethod::kDus ? fmt::format("dus(n={}, m={}): ", base_layers, m)
                                     : fmt::format("slices(n={}): ", base_layers);
    for (size_t i = 0; i < slices.size(); ++i) out += (i ? " + " : "") + range_text(slices[i]);
  }
  return fmt::format("{} -> {} layers", out, scaled_layers());
}

LayerPlan dus_plan(int64_t n, int64_t m, const PlanOptions& options) {
  check_depth(n);
  if (m < 0)
    throw Error(kWhere, fmt::format("m = {} is negative (expected 0 <= m < n/2)", m),
                "m is the number of layers dropped from each copy; SOLAR uses m = 8 for n = 32");
  if (m >= n)
    throw Error(
        kWhere,
        fmt::format("m = {} >= n = {} leaves a copy with no layers (expected 0 <= m < n/2)", m, n));
  if (2 * m >= n && !options.allow_shallower)
    throw Error(kWhere,
                fmt::format("m = {} >= n/2 = {}/2 gives {} layers, not deeper than the base's {} "
                            "(expected 0 <= m < n/2)",
                            m, n, 2 * (n - m), n),
                "pass --allow-shallower if a model no deeper than the base is intended");
  LayerPlan plan;
  plan.method = PlanMethod::kDus;
  plan.base_layers = n;
  plan.m = m;
  plan.slices = {{0, n - m}, {m, n}};
  plan.layers = stack_slices(plan.slices);
  return plan;
}

LayerPlan slices_plan(int64_t n, const std::vector<LayerRange>& slices) {
  check_depth(n);
  if (slices.empty()) throw Error(kWhere, "no slices given (expected at least one BEGIN:END)");
  for (size_t i = 0; i < slices.size(); ++i) {
    const LayerRange& r = slices[i];
    const std::string which = fmt::format("slice {} {}", i + 1, range_text(r));
    if (r.begin >= r.end)
      throw Error(kWhere, which + " is empty (expected BEGIN < END, half-open)");
    if (r.begin < 0 || r.end > n)
      throw Error(kWhere, fmt::format("{} is outside the base model's layers [0, {})", which, n),
                  fmt::format("layer ranges are half-open: [0, {}) is the whole model", n));
  }
  LayerPlan plan;
  plan.method = PlanMethod::kSlices;
  plan.base_layers = n;
  plan.slices = slices;
  plan.layers = stack_slices(slices);
  return plan;
}

std::vector<LayerRange> parse_slices(const std::string& text, const std::string& where) {
  std::vector<LayerRange> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t colon = item.find(':');
    if (colon == std::string::npos)
      throw Error(where, "'" + item + "' is not a slice BEGIN:END",
                  "write slices as half-open ranges, e.g. 0:24,8:32");
    out.push_back({parse_int(item.substr(0, colon), where, item),
                   parse_int(item.substr(colon + 1), where, item)});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::string format_slices(const std::vector<LayerRange>& slices) {
  std::string out;
  for (size_t i = 0; i < slices.size(); ++i)
    out += (i ? "," : "") + std::to_string(slices[i].begin) + ":" + std::to_string(slices[i].end);
  return out;
}

LayerPlan make_plan(const PlanRequest& r, int64_t base_layers, const std::string& where) {
  try {
    if (r.method == "dus") {
      if (!r.m)
        throw Error(where, "method dus needs m (the layers dropped from each copy)",
                    "e.g. --m 8 for SOLAR 10.7B from Mistral-7B");
      return dus_plan(base_layers, *r.m, {r.allow_shallower});
    }
    if (r.method == "slices") return slices_plan(base_layers, parse_slices(r.slices, where));
    if (r.method == "block_expansion") return block_expansion_plan(base_layers, r.every);
  } catch (const Error& e) {
    if (e.where() == where) throw;
    throw Error(where, e.problem(), e.hint());
  }
  throw Error(where, "unknown method '" + r.method + "'",
              "expected dus, slices or block_expansion");
}

}  // namespace dus
