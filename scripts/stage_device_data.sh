#!/usr/bin/env bash
# Copies the normalized feature matrices into .data/ (git-ignored), for a GPU machine that has
# only this checkout and not ../shared; scripts/device_check.sh uses .data/ when present.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/datasets}
mkdir -p .data/normalized .data/derived
cp "$src"/normalized/*.npz .data/normalized/
cp "$src"/derived/*.npz .data/derived/ 2>/dev/null || true
du -sh .data
