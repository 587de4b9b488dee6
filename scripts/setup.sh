#!/usr/bin/env bash
# Idempotent set-up: Debian packages for the build, and a Python venv outside the clone holding
# the official torch wheel (LibTorch for CMake) plus the test-only reference packages.
# A second run with nothing changed takes about a second.
set -euo pipefail

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/dus-trainer"
VENV="$CACHE_ROOT/venv"
mkdir -p "$CACHE_ROOT"

# Debian packages. fmt comes from the copy inside the torch wheel (its headers shadow Debian's
# older libfmt; see the top-level CMakeLists.txt); the wheel carries MKL, so no system BLAS is
# needed. The last line is the text of the demo's and the crossover study's corpus
# (scripts/crossover_corpus.py).
APT_PACKAGES=(libyaml-cpp-dev libsentencepiece-dev catch2 ccache libgloo-dev
  python3-venv zlib1g-dev libzstd-dev libpcre2-dev libutf8proc-dev
  bible-kjv python3.11-doc wordnet-base dict-devil dict-jargon)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv. The stamp holds the requirement list; a change of the list reinstalls.
PY_REQUIREMENTS=(
  "torch==2.11.*"
  "transformers>=5,<6"
  "safetensors"
  "numpy"
  "sentencepiece"
  "mistral-common"
  "tensorboard"
  "matplotlib"
  "mergekit"
  "tokenizers"
  "gguf"
  "megatron-core"
  "lm-eval"
)
stamp="$VENV/.dus-requirements"
want="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating Python venv at $VENV (torch wheel, ~2 minutes the first time)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${PY_REQUIREMENTS[@]}"
  printf '%s' "$want" >"$stamp"
fi
# Real tokenizer files without a model hub (test-only): llama.cpp's vocab-only GGUF files and
# their Hugging Face test vectors, from the llama-cpp-python source distribution on PyPI.
VOCAB_DIR="$CACHE_ROOT/gguf-vocab"
if [ ! -f "$VOCAB_DIR/.complete" ]; then
  echo "setup: fetching llama.cpp's vocab files (llama-cpp-python sdist, 77 MB, ~1 minute)"
  tmp="$(mktemp -d)"
  "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==0.3.36" -d "$tmp"
  mkdir -p "$VOCAB_DIR"
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$VOCAB_DIR" --strip-components=4 \
    --wildcards '*/vendor/llama.cpp/models/ggml-vocab-*'
  rm -rf -- "$tmp"
  touch "$VOCAB_DIR/.complete"
fi

echo "setup: ok ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
