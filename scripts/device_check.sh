#!/usr/bin/env bash
# GPU checks, run from the repository root on a machine with a CUDA device (no network needed):
# kernel compile check, the GPU test-suite, then the gather benchmark written to
# bench/results/gpu-<card>-<date>.json. Budgeted to finish in under 5 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
status=0

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv 2>/dev/null || true
$PY - <<'PY' || status=1
import torch, cupy
from ibp_gnn import gpu
print("torch", torch.__version__, "cuda", torch.version.cuda, "cupy", cupy.__version__)
print("gpu.is_available():", gpu.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
bad = [r for r in gpu.compile_check(archs=("sm_80", "sm_90")) if not r[2]]
print("compile_check:", "ok" if not bad else bad)
raise SystemExit(1 if bad or not gpu.is_available() else 0)
PY

echo "== GPU tests"
timeout 170 $PY -m pytest -q -m gpu --maxfail=20 -p no:cacheprovider tests/test_gpu.py || status=1

echo "== benchmark"
mkdir -p bench/results
timeout 200 $PY -m ibp_gnn.bench_gpu --out 'bench/results/gpu-{card}-{date}.json' \
    --tile-bytes 1e9 --pool-bytes 1e9 --link-bytes 1073741824 --repeats 7 --max-seconds 150 \
    || status=1
exit $status
