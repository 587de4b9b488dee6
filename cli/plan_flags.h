// The command-line flags that describe a layer plan, shared by `dus scale` and `dus inspect`
// (and later `dus plan`): --m, --slices, --method, --every, --allow-shallower.
#pragma once

#include <optional>
#include <string>

#include "cli/cli_args.h"
#include "scaling/layer_plan.h"

namespace dus {

/// Declares the plan flags on `parser`.
ArgParser& add_plan_flags(ArgParser& parser);

/// The plan the flags ask for; nullopt when none of --m, --slices, --every is given. Errors
/// (naming `command`) when more than one is given or --method disagrees with them.
std::optional<PlanRequest> plan_request_from_args(const ParsedArgs& args,
                                                  const std::string& command);

}  // namespace dus
