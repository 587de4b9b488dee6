// Layer plans: which base layers the up-scaled model is built from, in which order.
//
// A plan is a list of half-open ranges of base layers, stacked in order; this is exactly the
// meaning of mergekit's `passthrough` merge with `slices` / `layer_range`. Each range is one
// "copy" of (part of) the base model, numbered from 1. SOLAR's depth up-scaling dus(n, m) is
// the two-range plan [0, n-m), [m, n): s = 2(n - m) layers. Block expansion (LLaMA-Pro) is a
// plan too: every base layer once, plus after every k-th base layer a copy of it whose output
// projections are zeroed, so the expanded model computes what the base computed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dus {

/// Base layers [begin, end) (half-open, as mergekit's layer_range).
struct LayerRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const LayerRange& o) const { return begin == o.begin && end == o.end; }
};

/// Where one layer of the scaled model comes from.
struct LayerOrigin {
  int64_t copy = 1;        ///< 1-based copy (slice) number; block expansion: 1 base, 2 inserted
  int64_t base_layer = 0;  ///< index of the base layer it was copied from
  /// Block expansion: o_proj and down_proj zeroed, so the layer starts as the identity.
  bool zero_output = false;
  bool operator==(const LayerOrigin& o) const {
    return copy == o.copy && base_layer == o.base_layer && zero_output == o.zero_output;
  }
};

enum class PlanMethod {
  kDus,             ///< SOLAR depth up-scaling dus(n, m): two slices
  kSlices,          ///< any list of slices (mergekit passthrough)
  kBlockExpansion,  ///< LLaMA-Pro: identity copies inserted after every k-th layer
};
const char* plan_method_name(PlanMethod method);  ///< "dus" | "slices" | "block_expansion"

struct PlanOptions {
  /// dus(n, m) with m >= n/2 gives a model no deeper than the base; allowed only when set.
  bool allow_shallower = false;
};

/// A validated plan for a base model of `base_layers` layers. Build with dus_plan,
/// slices_plan or block_expansion_plan (they validate); the fields are then consistent.
struct LayerPlan {
  PlanMethod method = PlanMethod::kDus;
  int64_t base_layers = 0;          ///< n
  int64_t m = -1;                   ///< dus only: layers dropped from each copy; else -1
  int64_t every = 0;                ///< block expansion only: insert after every k-th layer
  std::vector<LayerRange> slices;   ///< dus / slices: the stacked ranges (empty for blocks)
  std::vector<LayerOrigin> layers;  ///< one per scaled layer, in order

  int64_t scaled_layers() const { return static_cast<int64_t>(layers.size()); }
  /// "dus(n=32, m=8): [0, 24) + [8, 32) -> 48 layers" and the like.
  std::string describe() const;
};

/// dus(n, m): copy 1 takes base layers [0, n-m), copy 2 takes [m, n); s = 2(n - m).
/// Errors: n < 1, m < 0, m >= n/2 without allow_shallower, m >= n (a copy would be empty).
LayerPlan dus_plan(int64_t n, int64_t m, const PlanOptions& options = {});

/// Any list of slices stacked in order. Errors: no slices, a slice empty or outside [0, n).
LayerPlan slices_plan(int64_t n, const std::vector<LayerRange>& slices);

// block_expansion_plan(n, every) lives in scaling/block_expansion.h.

/// Parses "0:24,8:32" (mergekit's [begin, end) pairs). `where` names the flag or key in errors.
std::vector<LayerRange> parse_slices(const std::string& text, const std::string& where);
/// "0:24,8:32".
std::string format_slices(const std::vector<LayerRange>& slices);

/// What a user asked for, as the command line and recipes spell it; make_plan validates it
/// against the base model's depth.
struct PlanRequest {
  std::string method = "dus";  ///< "dus" | "slices" | "block_expansion"
  std::optional<int64_t> m;    ///< dus: layers dropped from each copy (required for dus)
  std::string slices;          ///< slices: "0:24,8:32"
  int64_t every = 0;           ///< block_expansion: k
  bool allow_shallower = false;
};
/// `where` names the source of the request (a flag set, a recipe key) in errors.
LayerPlan make_plan(const PlanRequest& request, int64_t base_layers, const std::string& where);

}  // namespace dus
