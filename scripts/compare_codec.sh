#!/usr/bin/env bash
# CPU codec speed of another commit against the working tree on a noisy machine: runs
# `ibp-gnn bench codec` on the given matrices alternately from a temporary checkout of REV and
# from this tree, ROUNDS times each, so both see the same drift. Run times: the first round of
# REV includes compiling its numba kernels. REPEATS=n times n batches a round (default 5).
# Usage: [REPEATS=n] scripts/compare_codec.sh REV ROUNDS MATRIX.npz ...
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
rev=$1 rounds=$2
shift 2
python=${PYTHON:-$here/.venv/bin/python}
tmp=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$tmp/rev" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/rev" "$rev"
files=()
for f in "$@"; do files+=("$(realpath "$f")"); done
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; $rev ($(git rev-parse --short "$rev")) against the tree at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with changes'), ${REPEATS:-5} repeats"
for round in $(seq "$rounds"); do
  for tree in "$tmp/rev" "$here"; do
    label=$([ "$tree" = "$here" ] && echo "tree" || echo "$rev")
    echo "== $label, round $round"
    # from outside both trees, so that PYTHONPATH picks the package
    (cd "$tmp" && PYTHONPATH=$tree "$python" -c \
      "import sys; from ibp_gnn.cli import main; sys.exit(main(sys.argv[1:]))" \
      bench codec --repeats "${REPEATS:-5}" "${files[@]}")
  done
done
