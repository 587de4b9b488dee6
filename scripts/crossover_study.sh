#!/usr/bin/env bash
# When does depth up-scaling pay? The whole crossover study as one resumable command.
#
#   scripts/crossover_study.sh [STUDY_DIR]        (default /work/crossover-study; the recipes
#                                                  under recipes/crossover/ name that path)
#
#   1. corpus: scripts/crossover_corpus.py (public-domain and permissively licensed text from
#      Debian and PyPI packages on this machine), split by text hash into pretrain.jsonl and
#      continue.jsonl (16%, text no base trains on)
#   2. a 2048-piece BPE tokenizer (dus tokenizer train) and token shards of both parts, 0.5% of
#      documents held out by text hash (dus prepare); per-source token counts in manifest.json
#   3. four bases, 4 layers x hidden 64 (recipes/crossover/base.yaml), each pretrained with its
#      own decayed cosine schedule for 128, 512, 2048 and 4096 steps x 8,192 tokens
#      (1.05M, 4.19M, 16.8M, 33.6M tokens: under-trained to ~180 tokens per non-embedding
#      parameter)
#   4. from every base, at 4,194,304 continued tokens (recipes/crossover/continue.yaml):
#      `dus sweep --m 0,1 --baselines base` (the base continued, DUS to 8 and to 6 layers) and
#      `dus sweep --method block_expansion --every 2 --baselines none` (6 layers); seed 1234,
#      and a second seed (1235) from the most trained base
#   5. the base continued for the FLOPs of the 6- and 8-layer runs (steps x FLOPs ratio), so
#      equal compute is also compared at the end of a decayed schedule
#
# Two lanes run side by side, one process each with 1 thread (tiny models use one core better
# than two): lane A trains the longest base and its sweeps, lane B the other three. Every stage
# is skipped when its output exists; an interrupted training run resumes from its checkpoint and
# a sweep continues where it stopped. Run every process at low priority: nice -n 19.
# Progress: STUDY_DIR/study.log (this script), STUDY_DIR/lane-A.log, STUDY_DIR/lane-B.log.
# Then: scripts/crossover_analysis.py STUDY_DIR (table, figure, results/ in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${1:-/work/crossover-study}
DUS=${DUS:-build/dus}
PY=${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv/bin/python
STEP_TOKENS=8192
CONT_STEPS=512
CONT_TOKENS=$((CONT_STEPS * STEP_TOKENS))
start=$(date +%s)
say() { printf '[%s %5ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - start ))" "$*"; }

[ -x "$DUS" ] || { echo "no $DUS: build it first (scripts/build.sh)"; exit 1; }
if [ "$STUDY" != /work/crossover-study ]; then
  echo "the recipes under recipes/crossover/ name /work/crossover-study; pass the same path" >&2
  echo "or edit them" >&2
  exit 1
fi
mkdir -p "$STUDY"

say "corpus (scripts/crossover_corpus.py)"
if [ ! -s "$STUDY/corpus/continue.jsonl" ]; then
  nice -n 19 "$PY" scripts/crossover_corpus.py --out "$STUDY/corpus" --install
fi

say "tokenizer: 2048-piece BPE on every 40th line of every source"
[ -f "$STUDY/tokenizer/tokenizer.model" ] ||
  nice -n 19 "$DUS" tokenizer train --input "$STUDY/corpus/tokenizer_sample.txt" --lines \
    --vocab-size 2048 --out "$STUDY/tokenizer"

for part in pretrain continue; do
  say "token shards: $part (0.5% of documents held out by text hash)"
  [ -f "$STUDY/data-$part/index.json" ] ||
    nice -n 19 "$DUS" prepare --tokenizer "$STUDY/tokenizer/tokenizer.model" \
      --input "$STUDY/corpus/$part.jsonl" --val-fraction 0.005 --out "$STUDY/data-$part" --quiet
done
if ! grep -q '"tokens_prose"' "$STUDY/corpus/manifest.json"; then
  say "per-source token counts"
  nice -n 19 "$PY" scripts/crossover_corpus.py --out "$STUDY/corpus" \
    --count-tokens "$STUDY/tokenizer/tokenizer.model"
fi
mkdir -p recipes/crossover/results
cp "$STUDY/corpus/manifest.json" recipes/crossover/results/corpus_manifest.json

# One training run in DIR ($2): skipped when finished, resumed from its newest checkpoint when
# interrupted, else trained from recipe $3 with the remaining arguments. $1 labels the log.
run_once() {
  local label=$1 dir=$2 recipe=$3
  shift 3
  if [ -f "$dir/final/config.json" ] && [ -f "$dir/recovery.json" ]; then
    say "$label: done already"
    return
  fi
  if [ -n "$(ls "$dir/checkpoints" 2>/dev/null | grep '^step_' || true)" ]; then
    nice -n 19 "$DUS" resume "$dir"
  else
    nice -n 19 "$DUS" train "$recipe" --set run.dir="$dir" "$@"
  fi
  say "$label: finished"
}

# A base: pretrained for $1 steps with its own schedule.
base() {
  local steps=$1
  say "base s$steps: $(( steps * STEP_TOKENS )) tokens"
  run_once "base s$steps" "$STUDY/runs/base-s$steps" recipes/crossover/base.yaml \
    --set train.steps="$steps" --set eval.every=$(( steps / 16 > 32 ? steps / 16 : 32 )) \
    --set run.name="base-s$steps"
}

# The sweeps from base $1 with data-order seed $2.
sweeps() {
  local steps=$1 seed=$2 out="$STUDY/sweeps/base-s$1-seed$2"
  local sets=(--set model.init_from="$STUDY/runs/base-s$steps/final" --set run.seed="$seed")
  say "sweep base-s$steps seed $seed: base continued, dus m=0,1"
  nice -n 19 "$DUS" sweep recipes/crossover/continue.yaml --m 0,1 --baselines base \
    --budget-tokens "$CONT_TOKENS" "${sets[@]}" --sweep-dir "$out/dus"
  say "sweep base-s$steps seed $seed: block expansion every 2"
  nice -n 19 "$DUS" sweep recipes/crossover/continue.yaml --method block_expansion --every 2 \
    --baselines none --budget-tokens "$CONT_TOKENS" "${sets[@]}" --sweep-dir "$out/blockexp"
  say "sweep base-s$steps seed $seed: finished"
}

# The base continued from base $1 for as many FLOPs as the $2-layer runs spent on the budget:
# CONT_STEPS x (their FLOPs per token / the base's), rounded to whole steps.
flops_matched() {
  local steps=$1 layers=$2 seed=1234
  local sweep="$STUDY/sweeps/base-s$steps-seed$seed/dus/sweep.json"
  local ratio waited=0
  # Lane A may get here before lane B has finished that base's sweep: wait for it (at most 4 h).
  until [ -f "$sweep" ] && grep -q '"complete": true' "$sweep"; do
    [ $waited -eq 0 ] && say "flops-matched base-s$steps: waiting for $sweep"
    sleep 60
    waited=$((waited + 60))
    [ $waited -lt 14400 ] || { say "flops-matched base-s$steps: gave up waiting"; return 1; }
  done
  ratio=$("$PY" -c "
import json, sys
s = json.load(open('$sweep'))
f = {v['layers']: v['flops_per_token'] for v in s['variants']}
print(round($CONT_STEPS * f[$layers] / f[4]))")
  say "flops-matched base-s$steps for $layers layers: $ratio steps"
  run_once "flops-matched base-s$steps for $layers layers" \
    "$STUDY/sweeps/base-s$steps-seed$seed/flops-matched/base-for-$layers-layers" \
    recipes/crossover/continue.yaml --set scaling.method=none \
    --set model.init_from="$STUDY/runs/base-s$steps/final" --set run.seed=$seed \
    --set train.steps="$ratio" --set run.name="flops-matched-$layers"
}

# The matched runs for 6 layers (DUS m = 1 and block expansion) come before those for 8, so a
# study cut short still has one equal-FLOPs run per base.
lane_a() {
  base 4096
  sweeps 4096 1234
  sweeps 4096 1235
  flops_matched 4096 6
  flops_matched 512 6
  flops_matched 4096 8
  flops_matched 2048 8
}
lane_b() {  # the small bases' sweeps first: the first results come early
  base 128
  base 512
  sweeps 128 1234
  sweeps 512 1234
  base 2048
  sweeps 2048 1234
  flops_matched 128 6
  flops_matched 2048 6
  flops_matched 128 8
  flops_matched 512 8
}

say "lanes A and B start (logs: $STUDY/lane-A.log, $STUDY/lane-B.log)"
lane_a > >(tee -a "$STUDY/lane-A.log" | grep --line-buffered -E '^\[|FAILED|error' | sed -u 's/^/A /') 2>&1 &
pid_a=$!
lane_b > >(tee -a "$STUDY/lane-B.log" | grep --line-buffered -E '^\[|FAILED|error' | sed -u 's/^/B /') 2>&1 &
pid_b=$!
rc=0
wait $pid_a || rc=$?
wait $pid_b || rc=$?
[ $rc -eq 0 ] || { say "a lane failed (exit $rc): see the lane logs; rerun this script to continue"; exit $rc; }
say "study finished; next: $PY scripts/crossover_analysis.py $STUDY"
