// dus train / dus resume: the training job (train/train_loop.h) from a recipe or a run dir.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "train/recipe.h"
#include "train/train_loop.h"

namespace dus {

namespace {

int run_train(const ParsedArgs& args) {
  std::vector<std::string> sets = args.all("set");
  if (args.has("run-dir")) sets.push_back("run.dir=" + args.get("run-dir"));
  Recipe recipe = load_recipe(args.positionals()[0], sets);
  TrainJob job{recipe, false};
  if (!recipe.resume.empty()) {
    // `resume: DIR` in a recipe means: continue that run with its own recipe.
    job.recipe = load_recipe(recipe.resume + "/recipe.yaml", {"run.dir=" + recipe.resume});
    job.resume = true;
  }
  return run_training(job);
}

int run_resume(const ParsedArgs& args) {
  const std::string dir = args.positionals()[0];
  if (!std::filesystem::exists(dir + "/recipe.yaml"))
    throw Error(dir, "not a run directory (no recipe.yaml)", "pass the --run-dir of a dus train run");
  std::vector<std::string> sets = args.all("set");
  sets.push_back("run.dir=" + dir);  // the run may have moved since
  TrainJob job{load_recipe(dir + "/recipe.yaml", sets), true};
  return run_training(job);
}

}  // namespace

Command train_command() {
  return {"train",
          [] {
            return ArgParser("train", "Train from a YAML recipe: load (and scale) or build the model, then continued pretraining with recovery tracking.")
                .positional("RECIPE", "a recipe file (see recipes/)")
                .option("set", "SECTION.KEY=VALUE", "override a recipe key", std::nullopt, /*repeatable=*/true)
                .option("run-dir", "DIR", "run directory (default: run.dir, else runs/<run.name>)");
          },
          run_train};
}

Command resume_command() {
  return {"resume",
          [] {
            return ArgParser("resume", "Continue a run from its newest complete checkpoint, exactly where it stopped.")
                .positional("RUN_DIR", "the run directory of a dus train run")
                .option("set", "SECTION.KEY=VALUE", "override a key that does not change the run (log.*)",
                        std::nullopt, /*repeatable=*/true);
          },
          run_resume};
}

}  // namespace dus
