"""Space and compression time of the basic and the extended format, one line per matrix.

    python scripts/space_table.py [--repeats N] [--dtype float16] [--widths 16,32]
                                  [--rows N] PATH...

Sizes are everything held in host memory (payload, offsets, pattern tables) as % of the raw
bytes, next to the bit-entropy bound computed from the same matrix. Compression times are the
median of N runs of each format, measured in the same process after one warm-up run, the two
formats taking turns; "time x" is the median of the N extended / basic ratios of those pairs (a
shared machine's load then weighs on both sides of each ratio alike).
``--dtype`` casts each matrix first (e.g. float16: the fp16 features some large graphs ship);
``--widths`` adds the extended format's size with each of these chunk widths forced.
``--rows N`` repeats each matrix's rows up to ``N`` rows (how compression time behaves when the
planner's fixed cost is spread over a large matrix). "offsets" is the share of the extended
size's row offset tables, in % of the raw bytes. ``--no-groups`` plans without row groups (what
the row-group search gains, and costs).
"""
import argparse
import statistics

import numpy as np
import torch

from ibp_gnn import compress
from ibp_gnn.codec import entropy_bound_bytes, plan
from ibp_gnn.matrix_io import read_matrix


def timed(x, repeats):
    """``(basic, extended, basic seconds, extended seconds, median ratio)``."""
    for extended in (False, True):  # one-time kernel loading, not part of the timing
        compress(x[:64], extended=extended)
    basic = extended = None
    seconds = ([], [])
    for _ in range(repeats):
        b, e = compress(x, extended=False), compress(x, extended=True)
        basic, extended = basic or b, extended or e
        seconds[0].append(b.compress_seconds)
        seconds[1].append(e.compress_seconds)
    ratio = statistics.median(te / tb for tb, te in zip(*seconds))
    return basic, extended, statistics.median(seconds[0]), statistics.median(seconds[1]), ratio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--widths", default="", help="e.g. 16,32")
    ap.add_argument("--rows", type=int, help="tile every matrix to this many rows")
    ap.add_argument("--no-groups", action="store_true", help="plan without row groups")
    args = ap.parse_args()
    if args.no_groups:
        plan.GROUP_COUNTS = ()
    widths = [int(w) for w in args.widths.split(",") if w]
    print(f"{'matrix':30s} {'bound':>7s} {'basic':>7s} {'extended':>8s} {'offsets':>7s}"
          f"   W  header  sel "
          f"groups  kinds {'basic s':>8s} {'ext s':>7s} {'time x':>6s}"
          + "".join(f" {f'W={w}':>7s}" for w in widths))
    for path in args.paths:
        x = read_matrix(path)
        if args.rows:
            x = np.resize(x, (args.rows,) + x.shape[1:])
        if args.dtype:
            x = torch.as_tensor(x).to(getattr(torch, args.dtype))
        basic, ext, t_basic, t_ext, ratio = timed(x, args.repeats)
        raw = ext.raw_bytes
        name = path.rsplit("/", 1)[-1]
        print(f"{name:30s} {100 * entropy_bound_bytes(x) / raw:6.2f}% "
              f"{100 * basic.host_bytes / raw:6.2f}% {100 * ext.host_bytes / raw:7.2f}% "
              f"{100 * ext.index_bytes / raw:6.2f}% "
              f"{ext.chunk_bits:3d}  {'list' if ext.list_header else 'bitmap':6s} "
              f"{int(ext.kind_select_bits.max()):4d} {ext.num_groups:6d} "
              f"{ext.num_kinds:6d} {t_basic:8.3f} {t_ext:7.3f} {ratio:6.2f}"
              + "".join(f" {100 * compress(x, chunk_bits=w).host_bytes / raw:6.2f}%"
                        for w in widths), flush=True)


if __name__ == "__main__":
    main()
