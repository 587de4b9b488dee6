#!/usr/bin/env bash
# Run HERE (a development machine with network): gathers what the GPU machine lacks for a build
# into .gpu-bundle/ (ignored through .git/info/exclude, and carried to the GPU machine with
# `carry: [".gpu-bundle"]`). That machine has python3 + torch 2.11 (cu130), cmake, ninja and
# nvcc, but none of the Debian -dev packages and no network.
#   debs/   .deb files from `apt-get download` (headers, .so and .pc files; unpacked there with
#           dpkg -x into a private prefix, never into /)
#   MANIFEST the package list and versions, for the log
# Cost: a few seconds and about 5 MB. Re-running replaces the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu-bundle

# The build's needs (top CMakeLists.txt, tests/, data/): yaml-cpp, sentencepiece, libzstd
# (.zst corpora), PCRE2 (pre-tokenizer regexes) and utf8proc (NFC/NFKC) through pkg-config with
# their runtime libraries, Catch2 v2's single header, zlib headers, gloo headers (c10d's Gloo
# backend), and pkg-config itself in case the image has none. Keep in step with setup.sh's
# APT_PACKAGES.
PACKAGES=(libyaml-cpp-dev libyaml-cpp0.7 libsentencepiece-dev libsentencepiece0 catch2
  zlib1g-dev zlib1g libzstd-dev libzstd1 libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2
  libgloo-dev pkgconf pkgconf-bin libpkgconf3)

# git's own path for it: in a worktree .git is a file, and the exclude list is the common one.
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qxF "/$BUNDLE/" "$EXCLUDE" 2>/dev/null || echo "/$BUNDLE/" >>"$EXCLUDE"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/debs"
# The GPU machine is x86-64; ask for amd64 packages whatever this machine is.
(cd "$BUNDLE/debs" && apt-get download -o APT::Architecture=amd64 "${PACKAGES[@]}")
for deb in "$BUNDLE"/debs/*.deb; do
  dpkg-deb -f "$deb" Package Version Architecture | paste -sd' ' -
done >"$BUNDLE/MANIFEST"
cp scripts/gpu_run.sh "$BUNDLE/"  # the bundle documents what will unpack it
echo "gpu_bundle: $(ls "$BUNDLE"/debs | wc -l) packages, $(du -sh "$BUNDLE" | cut -f1) in $BUNDLE"
cat "$BUNDLE/MANIFEST"
