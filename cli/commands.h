// The `dus` subcommands: each has a parser (its flags, for --help, errors and the README check)
// and a function that runs it. One file per command (cmd_*.cpp).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/cli_args.h"

namespace dus {

struct Command {
  std::string name;  ///< one or two words: "inspect", "bench forward"
  std::function<ArgParser()> parser;
  std::function<int(const ParsedArgs&)> run;
};

/// Every command, in the order `dus --help` lists them.
const std::vector<Command>& all_commands();

/// Entry point of the executable: dispatches, prints dus::Error cleanly, returns the exit code.
int run_cli(int argc, char** argv);

// Registered commands (defined in cmd_*.cpp).
Command inspect_command();
Command forward_command();
Command train_command();
Command resume_command();
Command report_command();
Command export_command();
Command recipe_check_command();
Command recipe_keys_command();
Command convert_command();
Command bench_forward_command();
Command scale_command();
Command prepare_command();
Command tokenizer_train_command();
Command tokenizer_encode_command();
Command bench_data_command();
Command launch_command();
Command plan_command();
Command bench_train_command();
Command sweep_command();
Command eval_command();

}  // namespace dus
