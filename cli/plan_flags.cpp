#include "cli/plan_flags.h"

#include "core/error.h"

namespace dus {

ArgParser& add_plan_flags(ArgParser& parser) {
  return parser.option("m", "M", "dus(n, m): copy 1 = layers [0, n-m), copy 2 = [m, n)")
      .option("slices", "LIST", "half-open base-layer ranges to stack, e.g. 0:24,8:32")
      .option("method", "NAME", "dus | slices | block_expansion [default: from the flags]")
      .option("every", "K", "block_expansion: insert an identity copy after every K-th layer")
      .flag("allow-shallower", "allow dus with m >= n/2 (a model no deeper than the base)");
}

std::optional<PlanRequest> plan_request_from_args(const ParsedArgs& args,
                                                  const std::string& command) {
  const bool m = args.has("m"), slices = args.has("slices"), every = args.has("every");
  if (!m && !slices && !every) {
    if (args.has("method"))
      throw Error(command, "--method needs --m M, --slices LIST or --every K");
    return std::nullopt;
  }
  if (m + slices + every != 1)
    throw Error(command,
                "give only one of --m M, --slices LIST, --method block_expansion --every K");
  PlanRequest r;
  r.method = args.has("method") ? args.get("method")
             : slices           ? "slices"
             : every            ? "block_expansion"
                                : "dus";
  if (m) r.m = args.get_int("m");
  if (slices) r.slices = args.get("slices");
  if (every) r.every = args.get_int("every");
  r.allow_shallower = args.flag("allow-shallower");
  const char* needed = r.method == "dus" && !m                   ? "--m M"
                       : r.method == "slices" && !slices         ? "--slices LIST"
                       : r.method == "block_expansion" && !every ? "--every K"
                                                                 : nullptr;
  if (needed) throw Error(command, "--method " + r.method + " needs " + needed);
  return r;
}

}  // namespace dus
