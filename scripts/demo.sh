#!/usr/bin/env bash
# The demo on the embedded default: depth up-scaling on 2 CPU cores, end to end.
#   1. set-up and build (cached: fast on a second run)
#   2. corpus: the King James Bible (public domain) from Debian's bible-kjv package
#   3. a 4096-piece BPE tokenizer trained on it (dus tokenizer train)
#   4. token shards with a 2% held-out split (dus prepare), and a multiple-choice task built
#      from the held-out lines only (scripts/make_verse_task.py: 200 lines, pick their last 3
#      words among 4 held-out line endings; chance 0.25)
#   5. a 4-layer base model pretrained from scratch (recipes/demo/base.yaml)
#   6. DUS to 6 layers, base_loss / scaled_loss_0, continued pretraining until eval_loss is
#      below base_loss (recipes/demo/dus.yaml), Hugging Face export
#   7. the recovery summary and plot (dus report)
# Part 2, does up-scaling pay? From a small trained base the repository ships
# (recipes/demo/trained-base, rebuilt by scripts/demo_base.sh):
#   8. the crossover study's corpus (scripts/crossover_corpus.py: public-domain and permissively
#      licensed text from Debian and PyPI packages) and its token shards
#   9. the base continued and DUS to 6 layers, for the same 2.1M tokens, side by side
#      (dus sweep recipes/demo/pays.yaml --m 1 --baselines base): the table shows the
#      difference at equal tokens and at equal FLOPs
# Every stage is skipped when its output exists; an interrupted training stage resumes from its
# last checkpoint. Outputs go to demo-out/ (DUS_DEMO_DIR is not supported: the recipes name it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stage() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

stage "set-up and build"
scripts/setup.sh
scripts/build.sh >/dev/null
DUS=build/dus
OUT=demo-out
mkdir -p "$OUT/corpus"

stage "corpus: the King James Bible (bible-kjv, public domain)"
if [ ! -s "$OUT/corpus/kjv.txt" ]; then
  bible "Gen 1:1-Rev 22:21" > "$OUT/corpus/kjv.txt.tmp"
  mv "$OUT/corpus/kjv.txt.tmp" "$OUT/corpus/kjv.txt"
fi
echo "$(wc -l < "$OUT/corpus/kjv.txt") verses, $(du -h "$OUT/corpus/kjv.txt" | cut -f1)"

stage "tokenizer: 4096-piece BPE with byte fallback"
[ -f "$OUT/tokenizer/tokenizer.model" ] ||
  "$DUS" tokenizer train --input "$OUT/corpus/kjv.txt" --lines --vocab-size 4096 --out "$OUT/tokenizer"

stage "token shards, 2% of verses held out"
[ -f "$OUT/data/index.json" ] ||
  "$DUS" prepare --tokenizer "$OUT/tokenizer/tokenizer.model" --input "$OUT/corpus/kjv.txt" --lines \
    --val-fraction 0.02 --out "$OUT/data" --quiet

stage "held-out task: verse completion, 4 choices (scripts/make_verse_task.py)"
[ -f "$OUT/tasks/verse_completion.jsonl" ] ||
  "${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv/bin/python" scripts/make_verse_task.py \
    --data "$OUT/data" --out "$OUT/tasks/verse_completion.jsonl"

# Train, resume an interrupted run, or skip a finished one.
train_stage() {
  local recipe=$1 dir=$2
  if [ -f "$dir/final/config.json" ] && [ -f "$dir/recovery.json" ]; then
    echo "done already: $dir"
  elif [ -d "$dir/checkpoints" ] && [ -n "$(ls "$dir/checkpoints" | grep '^step_' || true)" ]; then
    "$DUS" resume "$dir"
  else
    "$DUS" train "$recipe"
  fi
}

stage "base model from scratch (recipes/demo/base.yaml)"
train_stage recipes/demo/base.yaml "$OUT/runs/demo-base"

stage "depth up-scaling and healing (recipes/demo/dus.yaml)"
train_stage recipes/demo/dus.yaml "$OUT/runs/demo-dus"

stage "recovery summary and plot"
"$DUS" report "$OUT/runs/demo-dus" --out "$OUT/recovery.png"
echo "Hugging Face model: $OUT/runs/demo-dus/final (tokenizer.model included)"

BASE=recipes/demo/trained-base
stage "part 2: does up-scaling pay? the shipped base ($BASE), checked against its SHA256SUMS"
(cd "$BASE" && sha256sum --quiet -c SHA256SUMS) && echo "$BASE: sha256 ok"

stage "the crossover corpus (scripts/crossover_corpus.py) and its token shards"
[ -s "$OUT/crossover/corpus/continue.jsonl" ] ||
  "${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv/bin/python" scripts/crossover_corpus.py \
    --out "$OUT/crossover/corpus"
for part in pretrain continue; do
  [ -f "$OUT/crossover/data-$part/index.json" ] ||
    "$DUS" prepare --tokenizer "$BASE/tokenizer.model" --input "$OUT/crossover/corpus/$part.jsonl" \
      --val-fraction 0.005 --out "$OUT/crossover/data-$part" --quiet
done

stage "the base continued and DUS to 6 layers, 2.1M tokens each, side by side (recipes/demo/pays.yaml)"
"$DUS" sweep recipes/demo/pays.yaml --m 1 --baselines base --jobs 2 --sweep-dir "$OUT/sweep-pays"
stage "demo finished"
