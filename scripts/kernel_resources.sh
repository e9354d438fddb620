#!/usr/bin/env bash
# Registers and local-memory spills of the decode kernels (ptxas, no GPU needed), as compiled by
# default, as DeviceCompressedMatrix(blocks_per_sm=N) compiles them (256 threads a block), as
# DeviceCompressedMatrix(scan_shortcuts=False) does, and as clear_rows="block" does.
# Usage: scripts/kernel_resources.sh [ARCH [N ...]]   (default: sm_90 5); needs nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-sm_90}
shift || true
caps=("${@:-5}")
command -v nvcc >/dev/null || { echo "nvcc not found (CUDA toolkit)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report() {    # report LABEL NVCC_FLAGS...: one line per kernel
    local label=$1
    shift
    nvcc -std=c++17 -arch="$arch" -cubin -Icuda -Xptxas -v "$@" cuda/ibp_decode.cu \
        -o "$tmp/k.cubin" 2>&1 | awk -v label="$label" '
        /Compiling entry function/ { gsub(/\047/, "", $7); name = $7 }
        /spill stores/ { spill = $5 " B spill stores, " $9 " B spill loads" }
        /Used [0-9]+ registers/ { printf "%-10s %-26s %3d registers, %s\n", label, name, $5, spill }' \
        | sort
}
echo "# nvcc $(nvcc --version | grep -o "release [0-9.]*"), $arch"
report default
for n in "${caps[@]}"; do
    report "$n blk/SM" -DIBP_DECODE_THREADS=256 -DIBP_DECODE_MIN_BLOCKS="$n"
done
report "full scn" -DIBP_DECODE_SCAN_SHORTCUTS=0
report "clr blk" -DIBP_DECODE_CLEAR_BY_BLOCK=1
