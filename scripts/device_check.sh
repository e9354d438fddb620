#!/usr/bin/env bash
# The GPU check, run from the repository root on a machine with a CUDA device and no network:
#   facts   kernel compile check, device facts (meanwhile the CUDA kernels compile for the
#           device and, for the stages below, the codec's numba kernels compile)
#   tests   the GPU test-suite (pytest -m gpu)
#   bench   the gather benchmark                      -> bench/results/gpu-<card>-<date>.json
#   train   configs/gpu_scaled.yaml (bag-of-words)    -> bench/results/train-<card>-<date>.json
#   loader  sampler (CPU and CUDA) and loader epochs  -> bench/results/loader-<card>-<date>.txt
#   pca     configs/gpu_scaled_pca.yaml (dense)       -> bench/results/train-pca-<card>-<date>.json
#   profile the decode kernel under Nsight Compute    -> bench/results/profile-<card>-<date>.txt
#           (only when named: about a minute more)
# then a short table. Usage: scripts/device_check.sh [STAGE ...]. The default, facts tests
# bench, is the GPU check itself (meant to finish in under 5 minutes); name the other stages to
# add them (all of them: facts tests bench train loader pca profile).
# Each stage has its own time limit, so a stage that hangs cannot hold the machine. Datasets
# come from $IBP_GNN_DATA, else .data/ (see scripts/stage_device_data.sh), else
# ../shared/datasets. Results and the log (bench/results/device-check-<card>-<date>.log) are
# copied to $OUT after every stage when it is set. RUN_TAG=x names a second run's files
# <card>-<date>-x instead; GPU_TESTS="tests/test_gpu.py::test_side_stream ..." runs only those
# GPU tests.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -z "${IBP_GNN_DATA:-}" ] && [ -d .data/normalized ]; then export IBP_GNN_DATA="$PWD/.data"; fi
stages=${*:-facts tests bench}
mkdir -p bench/results
card=$($PY -c "import torch, re; print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name()).strip('-').lower())" 2>/dev/null || echo unknown)
day=$(date +%Y%m%d)${RUN_TAG:+-$RUN_TAG}
log="bench/results/device-check-$card-$day.log"
exec > >(tee "$log") 2>&1
echo "\$ scripts/device_check.sh $stages    # $(date -u +%FT%TZ)"
status=0
bench_json="bench/results/gpu-$card-$day.json"
train_json="bench/results/train-$card-$day.json"
pca_json="bench/results/train-pca-$card-$day.json"
loader_txt="bench/results/loader-$card-$day.txt"
profile_txt="bench/results/profile-$card-$day.txt"
start=$SECONDS

has() { [[ " $stages " == *" $1 "* ]]; }
collect() {    # results so far to $OUT, so a run stopped at its limit still returns them
    if [ -n "${OUT:-}" ]; then cp bench/results/*"-$card-$day"* "$OUT"/ 2>/dev/null || true; fi
}
stage() { echo; echo "== $1 (t=$((SECONDS - start)) s)"; }

# Compiles that take tens of seconds each run in the background while the kernel compile
# check runs, a process each: for the stages after facts the codec's numba kernels, the
# extended planner's in one job and each chunk width's in another (scripts/warm_codec.py),
# and every CUDA module for the device (scripts/warm_kernels.py). The numba jobs, the longest
# (44-53 s in run G), start first: listing the CUDA jobs imports torch (14 s in run G).
warm_pids=()
if has tests || has bench || has train || has pca || has loader || has profile; then
    for job in planner 16 32 64; do $PY scripts/warm_codec.py "$job" & warm_pids+=($!); done
fi
for job in $($PY scripts/warm_kernels.py --jobs); do
    $PY scripts/warm_kernels.py "$job" & warm_pids+=($!)
done

if has facts; then
    stage "device facts"
    nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv 2>/dev/null || true
    $PY - <<'PY' || status=1
import numba, numpy, torch, torch_geometric, cupy
from ibp_gnn import gpu
print("torch", torch.__version__, "cuda", torch.version.cuda, "cupy", cupy.__version__,
      "pyg", torch_geometric.__version__, "numpy", numpy.__version__, "numba", numba.__version__)
print("gpu.is_available():", gpu.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
bad = [r for r in gpu.compile_check(archs=("sm_90",)) if not r[2]]   # sm_80 too in CI
print("compile_check:", "ok" if not bad else bad)
raise SystemExit(1 if bad or not gpu.is_available() else 0)
PY
fi

if [ ${#warm_pids[@]} -gt 0 ]; then
    stage "kernels compiled"
    for pid in "${warm_pids[@]}"; do wait "$pid" || status=1; done
fi

if has tests; then
    stage "GPU tests"
    export IBP_GNN_TEST_TIMES=1    # a line per test as it finishes
    # a test that hangs is stopped with every thread's stack printed (pytest-timeout, if present)
    per_test=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90 --timeout-method=thread")
    # one process, the few store/loader/sampler tests first: in four pytest-xdist processes
    # sharing the device, the same small tests each took about 45 times as long as in one
    # process (device-check-nvidia-h200-20261127-fill.log against ...-20261127.log)
    gpu_tests=${GPU_TESTS:-tests/test_pyg_stores.py tests/test_pyg_loader.py tests/test_sampler.py tests/test_gpu.py}
    timeout 200 $PY -m pytest -q -m gpu --maxfail=20 -p no:cacheprovider --durations=8 $per_test \
        $gpu_tests || status=1
    collect
fi

if has bench; then
    stage "gather benchmark"
    # the datasets that decide the targets first, in case the time limit cuts the list short
    first="normalized/coauthor_cs.npz,normalized/citeseer.npz,derived/*.npz"
    first+=",normalized/amazon_computers.npz,normalized/pygod_reddit.npz,normalized/tolokers.npz"
    timeout 120 $PY -m ibp_gnn.bench_gpu --out "$bench_json" --datasets "$first,normalized/*.npz" \
        --tile-bytes 1e9 --pool-bytes 1e9 --link-bytes 1073741824 --min-batch-rows 16384 \
        --repeats 7 --max-seconds 95 \
        || status=1
    collect
fi

train() {    # train LIMIT_S CONFIG OUT_JSON: the example over every store, plot beside the JSON
    timeout "$1" $PY examples/train_graphsage.py --config "$2" --out "$3" --plot "${3%.json}.png" \
        || status=1
    collect
}

if has train; then
    stage "scaled-up GraphSAGE, bag-of-words"
    train 170 configs/gpu_scaled.yaml "$train_json"
fi

if has loader; then
    stage "sampler and loader epochs"
    data=${IBP_GNN_DATA:-../shared/datasets}
    cmd=(-m ibp_gnn.cli bench loader "$data"/normalized/amazon_computers.npz --device cuda
         --stores cpu,uva,ibp,gpu --repeats 2)
    { echo "# $card $(date -u +%FT%TZ): \$ python ${cmd[*]}"; timeout 40 $PY "${cmd[@]}"; } \
        | tee "$loader_txt" || status=1
    collect
fi

if has pca; then
    stage "scaled-up GraphSAGE, dense PCA"
    train 50 configs/gpu_scaled_pca.yaml "$pca_json"
fi

if has profile; then
    stage "decode kernel profile"
    # one launch per dataset and payload location: a sparse bag-of-words set (list header),
    # a mid-ratio one (bitmap header, row groups) and tf-idf rows; what stalls the warps
    data=${IBP_GNN_DATA:-../shared/datasets}
    ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -n 1)
    if [ -z "$ncu_bin" ]; then
        echo "ncu not found"
        status=1
    else
        sets=("$data"/normalized/{coauthor_cs,amazon_computers,cora_ml}.npz)
        # each with the default kernel and the benchmark's register-capped one
        capped=$($PY -c "from ibp_gnn.bench_gpu import CAPPED_BLOCKS_PER_SM as n; print(n)")
        cmd=("$ncu_bin" --clock-control none -k regex:ibp_decode --launch-count 12
             --section SpeedOfLight --section LaunchStats --section Occupancy
             --section SchedulerStats --section WarpStateStats --section MemoryWorkloadAnalysis
             $PY scripts/profile_decode.py --blocks-per-sm "$capped" "${sets[@]}")
        { echo "# $card $(date -u +%FT%TZ): \$ ${cmd[*]}"; timeout 150 "${cmd[@]}"; } \
            > "$profile_txt" 2>&1 || status=1
        grep -E "^launch|ibp_decode|Duration|Throughput|Warp Cycles Per Issued|Achieved Occupancy|Stall" \
            "$profile_txt" | head -n 160
    fi
    collect
fi

stage "summary"
trains=()
if has train; then trains+=("$train_json"); fi
if has pca; then trains+=("$pca_json"); fi
$PY - "$(has bench && echo "$bench_json")" "${trains[@]}" <<'PY' || true
import json, sys
from ibp_gnn.bench_gpu import _table
bench, *trains = sys.argv[1:]
try:
    if bench:
        print(_table(json.load(open(bench))))
except (OSError, KeyError, ValueError) as e:
    print(f"{bench}: {e}")
for train in trains:
    try:
        r = json.load(open(train))
    except (OSError, ValueError) as e:
        print(f"{train}: {e}")
        continue
    print(train)
    for name, s in r.get("stores", {}).items():
        print(f"  {name:5s} median epoch {s['median_epoch_s']:.3f} s  vs cpu "
              f"{s.get('speedup_vs_cpu') or float('nan'):.2f}x  vs uva "
              f"{s.get('speedup_vs_uva') or float('nan'):.2f}x  ratio {s.get('ratio', 1):.1f}")
    print("  features identical across stores:", r.get("features_identical"))
PY
echo "device check finished in $((SECONDS - start)) s, status $status"
collect
exit $status
