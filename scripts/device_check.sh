#!/usr/bin/env bash
# The GPU check, run from the repository root on a machine with a CUDA device and no network:
#   1. kernel compile check and device facts
#   2. the GPU test-suite (pytest -m gpu)
#   3. the gather benchmark -> bench/results/gpu-<card>-<date>.json
#   4. the scaled-up GraphSAGE comparison (configs/gpu_scaled.yaml)
#                                   -> bench/results/train-<card>-<date>.json
# then a short table of both. Each stage has its own time limit; the whole run stays under
# 9 minutes (150 + 150 + 220 s plus start-up). Datasets come from $IBP_GNN_DATA, else .data/ (see
# scripts/stage_device_data.sh), else ../shared/datasets. Results (and the log) are also copied
# to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -z "${IBP_GNN_DATA:-}" ] && [ -d .data/normalized ]; then export IBP_GNN_DATA="$PWD/.data"; fi
mkdir -p bench/results
log=bench/results/device-check.log
exec > >(tee "$log") 2>&1
status=0
card=$($PY -c "import torch, re; print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name()).strip('-').lower())" 2>/dev/null || echo unknown)
day=$(date +%Y%m%d)
echo "== device ($(date -u +%FT%TZ)) data=${IBP_GNN_DATA:-default}"
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
timeout 150 $PY -m pytest -q -m gpu --maxfail=20 -p no:cacheprovider \
    tests/test_gpu.py tests/test_pyg_stores.py tests/test_pyg_loader.py tests/test_sampler.py \
    || status=1

echo "== gather benchmark"
bench_json="bench/results/gpu-$card-$day.json"
timeout 150 $PY -m ibp_gnn.bench_gpu --out "$bench_json" \
    --tile-bytes 1e9 --pool-bytes 1e9 --link-bytes 1073741824 --repeats 7 --max-seconds 110 \
    || status=1

echo "== scaled-up GraphSAGE"
train_json="bench/results/train-$card-$day.json"
timeout 220 $PY examples/train_graphsage.py --config configs/gpu_scaled.yaml \
    --out "$train_json" --plot "bench/results/train-$card-$day.png" || status=1

echo "== summary"
$PY - "$bench_json" "$train_json" <<'PY' || true
import json, sys
from ibp_gnn.bench_gpu import _table
bench, train = sys.argv[1:]
try:
    print(_table(json.load(open(bench))))
except (OSError, KeyError, ValueError) as e:
    print(f"{bench}: {e}")
try:
    r = json.load(open(train))
    for name, s in r["stores"].items():
        print(f"train {name:5s} median epoch {s['median_epoch_s']:.3f} s  vs cpu "
              f"{s.get('speedup_vs_cpu') or float('nan'):.2f}x  vs uva "
              f"{s.get('speedup_vs_uva') or float('nan'):.2f}x  ratio {s.get('ratio', 1):.1f}")
    print("features identical across stores:", r.get("features_identical"))
except (OSError, KeyError, ValueError) as e:
    print(f"{train}: {e}")
PY
if [ -n "${OUT:-}" ]; then cp bench/results/*"$day"* "$log" "$OUT"/ 2>/dev/null || true; fi
exit $status
