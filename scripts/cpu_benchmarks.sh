#!/usr/bin/env bash
# The CPU numbers quoted in README.md: codec benchmark over the shared datasets, loader
# benchmark, and the main job. Writes bench/results/cpu-<date>.txt (and the main job's JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
data=${IBP_GNN_DATA:-../shared/datasets}
day=$(date +%Y%m%d)
out=bench/results/cpu-$day.txt
mkdir -p bench/results
{
  echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, $(python3 -c 'import torch; print("torch", torch.__version__)')"
  echo "\$ python scripts/space_table.py --repeats 7 $data/normalized/*.npz $data/derived/*.npz"
  python scripts/space_table.py --repeats 7 "$data"/normalized/*.npz "$data"/derived/*.npz
  echo
  echo "\$ python scripts/space_table.py --dtype float16 --widths 16,32 $data/normalized/{cora,amazon_computers,tolokers,pygod_reddit}.npz $data/derived/amazon_computers_pca100.npz"
  python scripts/space_table.py --dtype float16 --widths 16,32 \
      "$data"/normalized/{cora,amazon_computers,tolokers,pygod_reddit}.npz \
      "$data"/derived/amazon_computers_pca100.npz
  echo
  echo "\$ python scripts/space_table.py --no-groups --repeats 3 $data/normalized/{tolokers,pygod_reddit}.npz"
  python scripts/space_table.py --no-groups --repeats 3 "$data"/normalized/{tolokers,pygod_reddit}.npz
  echo
  echo "\$ python scripts/space_table.py --rows 1000000 --repeats 3 $data/normalized/{tolokers,pygod_reddit}.npz $data/derived/amazon_computers_pca100.npz"
  python scripts/space_table.py --rows 1000000 --repeats 3 \
      "$data"/normalized/{tolokers,pygod_reddit}.npz "$data"/derived/amazon_computers_pca100.npz
  echo
  echo "\$ ibp-gnn bench codec $data/normalized/*.npz $data/derived/*.npz"
  ibp-gnn bench codec "$data"/normalized/*.npz "$data"/derived/*.npz
  echo
  echo "\$ ibp-gnn bench codec --basic $data/normalized/{tolokers,pygod_reddit}.npz $data/derived/amazon_computers_pca100.npz"
  ibp-gnn bench codec --basic "$data"/normalized/{tolokers,pygod_reddit}.npz \
      "$data"/derived/amazon_computers_pca100.npz
  echo
  echo "\$ ibp-gnn bench loader amazon_computers coauthor_cs --repeats 5"
  ibp-gnn bench loader amazon_computers coauthor_cs --repeats 5
  echo
  echo "\$ python examples/train_graphsage.py --config configs/default.yaml --out bench/results/cpu-default-$day.json --plot bench/results/cpu-default-$day.png"
  python examples/train_graphsage.py --config configs/default.yaml \
      --out "bench/results/cpu-default-$day.json" --plot "bench/results/cpu-default-$day.png"
} 2>&1 | tee "$out"
