#!/usr/bin/env bash
# Training speed of `dus bench train` against Hugging Face transformers on the same model
# (config.json), batch, sequence length, precision, thread count, AdamW settings and torch build
# (the set-up venv), in ONE invocation: runs alternate dus / transformers (RUNS of each, each
# run with its own warm-up steps), then the medians, peak memories and `ratio X.XX` (dus over
# transformers) per case. The machines are shared: only figures from one invocation compare.
#
# Usage: scripts/bench_vs_transformers.sh [demo] [100m]      (default: both)
# Env:   RUNS (3), THREADS (2), DUS_BIN (build/dus, or $DUS_BUILD_DIR/dus),
#        PRECISIONS ("fp32", plus "bf16" where the CPU has native bf16: avx512_bf16 / amx_bf16),
#        DEMO_STEPS/DEMO_WARMUP (10/2), BIG_STEPS/BIG_WARMUP (2/3: the 100M heap keeps growing,
#        with page faults, for about 3 steps before it settles),
#        DUS_BIN_BEFORE: a second dus binary (an older build) that joins the alternation, for a
#        before/after table from the same invocation.
# Cost on a 2-core CPU: the demo model ~1 minute per precision; the 100M config ~3 s a step in
# fp32 on AMX Xeons, ~15 s on AVX2 EPYCs: several minutes per precision.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer/venv"
PY="$VENV/bin/python"
DUS="${DUS_BIN:-${DUS_BUILD_DIR:-build}/dus}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
[ -x "$DUS" ] || { echo "error: $DUS not built (scripts/build.sh, or set DUS_BIN)" >&2; exit 2; }
if [ -z "${PRECISIONS:-}" ]; then
  PRECISIONS="fp32"
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then PRECISIONS="fp32 bf16"; fi
fi
MODELS=("$@")
[ "${#MODELS[@]}" -gt 0 ] || MODELS=(demo 100m)

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/^result .* $1=\([^ ]*\).*/\1/p;s/^result $1=\([^ ]*\).*/\1/p"; }

echo "bench_vs_transformers: $(date -u +%FT%TZ), $(nproc) cores, $THREADS threads, $RUNS runs each"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "torch $("$PY" -c 'import torch; print(torch.__version__)'), transformers $("$PY" -c 'import transformers; print(transformers.__version__)')"
echo "load at start: $(uptime | sed 's/.*load average/load average/')"

SUMMARY=()
for model in "${MODELS[@]}"; do
  case "$model" in
    demo) recipe=recipes/bench/demo.yaml; config=recipes/demo/model.json; batch=8; seq=256
          steps="${DEMO_STEPS:-10}"; warmup="${DEMO_WARMUP:-2}" ;;
    100m) recipe=recipes/bench/mistral-100m.yaml; config=recipes/bench/mistral-100m.json; batch=4; seq=512
          steps="${BIG_STEPS:-2}"; warmup="${BIG_WARMUP:-3}" ;;
    *) echo "error: unknown model '$model' (demo | 100m)" >&2; exit 2 ;;
  esac
  for precision in $PRECISIONS; do
    echo
    echo "== $model, $precision: batch $batch x $seq, $steps steps after $warmup warm-up per run =="
    dus_tok=(); hf_tok=(); dus_mem=(); hf_mem=(); dus_mfu=(); old_tok=(); old_mem=(); old_mfu=()
    dus_best=(); hf_best=(); old_best=()
    for run in $(seq 1 "$RUNS"); do
      if [ -n "${DUS_BIN_BEFORE:-}" ]; then
        out=$("$DUS_BIN_BEFORE" bench train --recipe "$recipe" --batch "$batch" --seq "$seq" --precision "$precision" \
                --threads "$THREADS" --steps "$steps" --warmup "$warmup" --matmul-seconds 0.5)
        old_tok+=("$(field tokens_per_s <<<"$out")"); old_mem+=("$(field peak_rss_mib <<<"$out")")
        old_mfu+=("$(field mfu_fp32 <<<"$out")"); old_best+=("$(field best_tokens_per_s <<<"$out")")
        printf 'run %d: dus before %8.0f tok/s %7.0f MiB\n' "$run" "${old_tok[-1]}" "${old_mem[-1]}"
      fi
      out=$("$DUS" bench train --recipe "$recipe" --batch "$batch" --seq "$seq" --precision "$precision" \
              --threads "$THREADS" --steps "$steps" --warmup "$warmup" --matmul-seconds 0.5)
      dus_tok+=("$(field tokens_per_s <<<"$out")"); dus_mem+=("$(field peak_rss_mib <<<"$out")")
      dus_mfu+=("$(field mfu_fp32 <<<"$out")"); dus_best+=("$(field best_tokens_per_s <<<"$out")")
      [ "$run" = 1 ] && sed -n '/^| measure/,/^| last loss/p' <<<"$out"
      out=$("$PY" scripts/bench_hf_train.py --config "$config" --batch "$batch" --seq "$seq" \
              --precision "$precision" --threads "$THREADS" --steps "$steps" --warmup "$warmup")
      hf_tok+=("$(field tokens_per_s <<<"$out")"); hf_mem+=("$(field peak_rss_mib <<<"$out")")
      hf_best+=("$(field best_tokens_per_s <<<"$out")")
      printf 'run %d: dus %8.0f tok/s %7.0f MiB | transformers %8.0f tok/s %7.0f MiB | load %s\n' "$run" \
        "${dus_tok[-1]}" "${dus_mem[-1]}" "${hf_tok[-1]}" "${hf_mem[-1]}" "$(cut -d' ' -f1 /proc/loadavg)"
    done
    d=$(printf '%s\n' "${dus_tok[@]}" | median); h=$(printf '%s\n' "${hf_tok[@]}" | median)
    dm=$(printf '%s\n' "${dus_mem[@]}" | median); hm=$(printf '%s\n' "${hf_mem[@]}" | median)
    mfu=$(printf '%s\n' "${dus_mfu[@]}" | median)
    db=$(printf '%s\n' "${dus_best[@]}" | median); hb=$(printf '%s\n' "${hf_best[@]}" | median)
    ratio=$(awk -v a="$d" -v b="$h" 'BEGIN {printf "%.2f", a / b}')
    line=$(printf '| %-5s | %-4s | %8.0f | %8.0f | %s | %5.0f | %5.0f | %5.1f%% |' "$model" "$precision" "$d" "$h" \
             "$ratio" "$dm" "$hm" "$(awk -v m="$mfu" 'BEGIN {print 100 * m}')")
    SUMMARY+=("$line")
    if [ -n "${DUS_BIN_BEFORE:-}" ]; then
      o=$(printf '%s\n' "${old_tok[@]}" | median); om=$(printf '%s\n' "${old_mem[@]}" | median)
      omfu=$(printf '%s\n' "${old_mfu[@]}" | median)
      SUMMARY+=("$(printf '| %-5s | %-4s | %8.0f (before) | %8.0f | %s | %5.0f | %5.0f | %5.1f%% |' "$model" "$precision" \
                   "$o" "$h" "$(awk -v a="$o" -v b="$h" 'BEGIN {printf "%.2f", a / b}')" "$om" "$hm" \
                   "$(awk -v m="$omfu" 'BEGIN {print 100 * m}')")")
      echo "median: dus before $o tok/s, $om MiB"
    fi
    echo "median: dus $d tok/s, transformers $h tok/s; peak memory dus $dm MiB, transformers $hm MiB"
    echo "fastest step (median over runs): dus $db tok/s, transformers $hb tok/s," \
      "ratio $(awk -v a="$db" -v b="$hb" 'BEGIN {printf "%.2f", a / b}')"
    [ -n "${DUS_BIN_BEFORE:-}" ] && echo "fastest step, dus before: $(printf '%s\n' "${old_best[@]}" | median) tok/s"
    echo "ratio $ratio"
  done
done

echo
echo "load at end: $(uptime | sed 's/.*load average/load average/')"
echo "| model | prec | dus tok/s | HF tok/s | ratio | dus MiB | HF MiB | dus MFU (fp32 matmul) |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
