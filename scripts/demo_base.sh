#!/usr/bin/env bash
# Rebuilds the demo's shipped base model, recipes/demo/trained-base/, from nothing and checks it
# against recipes/demo/trained-base/SHA256SUMS, bit for bit.
#
#   scripts/demo_base.sh [OUT_DIR]      (default demo-out/trained-base-rebuild; ~10 min on 2 cores)
#
# It is the crossover study's base of 4.19M tokens (scripts/crossover_study.sh, base s512), made
# by the study's own commands: the crossover corpus (scripts/crossover_corpus.py), a 2048-piece
# BPE tokenizer trained on its sample, token shards of its pretraining part, and
# recipes/crossover/base.yaml for 512 steps x 8,192 tokens (its own decayed cosine schedule).
# Every stage is skipped when its output exists; an interrupted training run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-out/trained-base-rebuild}
DUS=build/dus
PY=${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv/bin/python
SHIPPED=recipes/demo/trained-base
start=$(date +%s)
stage() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

stage "set-up and build"
scripts/setup.sh
scripts/build.sh >/dev/null

stage "corpus (scripts/crossover_corpus.py)"
[ -s "$OUT/corpus/pretrain.jsonl" ] || "$PY" scripts/crossover_corpus.py --out "$OUT/corpus"

stage "tokenizer: 2048-piece BPE on every 40th line of every source"
[ -f "$OUT/tokenizer/tokenizer.model" ] ||
  "$DUS" tokenizer train --input "$OUT/corpus/tokenizer_sample.txt" --lines --vocab-size 2048 \
    --out "$OUT/tokenizer"

stage "token shards: pretraining part, 0.5% of documents held out by text hash"
[ -f "$OUT/data-pretrain/index.json" ] ||
  "$DUS" prepare --tokenizer "$OUT/tokenizer/tokenizer.model" --input "$OUT/corpus/pretrain.jsonl" \
    --val-fraction 0.005 --out "$OUT/data-pretrain" --quiet

stage "base: 512 steps x 8,192 tokens (recipes/crossover/base.yaml)"
run=$OUT/run
if [ -f "$run/final/config.json" ]; then
  echo "done already: $run"
elif [ -n "$(ls "$run/checkpoints" 2>/dev/null | grep '^step_' || true)" ]; then
  "$DUS" resume "$run"
else
  "$DUS" train recipes/crossover/base.yaml --set train.steps=512 --set eval.every=32 \
    --set run.name=base-s512 --set run.dir="$run" --set "data.train=[$OUT/data-pretrain]" \
    --set data.tokenizer="$OUT/tokenizer/tokenizer.model"
fi

stage "compare with $SHIPPED"
# tokenizer.model records the folder it was written to and the trainer's thread count, so the
# tokenizer is compared by its pieces and scores; the weights and config byte for byte.
grep -E ' (config\.json|model\.safetensors)$' "$SHIPPED/SHA256SUMS" |
  (cd "$run/final" && sha256sum -c -) &&
  "$PY" - "$SHIPPED/tokenizer.model" "$run/final/tokenizer.model" <<'PYEOF' || {
import sys
import sentencepiece as spm
a, b = (spm.SentencePieceProcessor(model_file=f) for f in sys.argv[1:3])
same = a.get_piece_size() == b.get_piece_size() and all(
    (a.id_to_piece(i), a.get_score(i)) == (b.id_to_piece(i), b.get_score(i))
    for i in range(a.get_piece_size()))
print(f"tokenizer.model: {'same pieces and scores' if same else 'DIFFERENT pieces or scores'}")
sys.exit(0 if same else 1)
PYEOF
  echo "the rebuilt base differs from $SHIPPED (see above)" >&2
  exit 1
}
echo "rebuilt bit for bit: $run/final"
