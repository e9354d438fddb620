"""Launches of the decode kernel for a profiler to read: one gather of a random batch per
dataset and payload location, nothing else on the GPU between them.

    ncu -k regex:ibp_decode python scripts/profile_decode.py [--rows 16384]
        [--blocks-per-sm 5] DATASET.npz ...

scripts/device_check.sh runs it under Nsight Compute (stage ``profile``). Each dataset is
compressed with the default options and tiled like the gather benchmark (about
``--tile-bytes`` of raw rows, so the reads miss the caches); the batch is checked bit-exact
against the CPU decoder after its launch. ``--blocks-per-sm`` adds, per dataset and
location, a launch of the register-capped kernel for each value
(``DeviceCompressedMatrix(blocks_per_sm=n)``). Prints one line per launch, in launch order, so
the profiler's kernel records can be matched to datasets.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ibp_gnn import compress, gpu
from ibp_gnn.bench_gpu import tile_compressed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--rows", type=int, default=16384, help="rows per batch")
    ap.add_argument("--tile-bytes", type=float, default=1e9)
    ap.add_argument("--locations", default="pinned,device")
    ap.add_argument("--blocks-per-sm", default="",
                    help="comma-separated values: also launch the kernel capped for them")
    args = ap.parse_args(argv)
    if not gpu.is_available():
        print("needs a CUDA device and CuPy", file=sys.stderr)
        return 2
    locations = args.locations.split(",")
    variants = [None] + [int(v) for v in args.blocks_per_sm.split(",") if v]
    launch = 0
    for path in args.paths:
        cm0 = compress(np.ascontiguousarray(np.load(path)["x"]))
        reps = max(1, int(args.tile_bytes) // max(1, cm0.num_rows * cm0.row_bytes))
        cm = tile_compressed(cm0, reps, gpu.pinned_allocator)
        idx = torch.randint(0, cm.num_rows, (args.rows,), device="cuda",
                            generator=torch.Generator("cuda").manual_seed(0))
        ref = cm0.decode((idx % cm0.num_rows).cpu().numpy())    # tiles repeat the rows
        for location in locations:
            for blocks in variants:
                dev = gpu.DeviceCompressedMatrix(cm, "cuda", location, blocks_per_sm=blocks)
                out = dev.gather(idx, check=False)
                torch.cuda.synchronize()
                same = torch.equal(out.cpu().view(torch.uint8), ref.view(torch.uint8))
                kernel = "default kernel" if blocks is None else f"{blocks} blocks/SM kernel"
                print(f"launch {launch}: {path.parent.name}/{path.stem} {location}, {kernel}, "
                      f"{args.rows} rows of {cm.row_bytes} B, ratio {cm.ratio:.2f}, "
                      f"{'list' if cm.list_header else 'bitmap'} header, {cm.chunk_bits}-bit "
                      f"chunks, {cm.num_groups} row groups, bit-exact: {same}", flush=True)
                launch += 1
                if not same:
                    return 1
                del dev
    return 0


if __name__ == "__main__":
    sys.exit(main())
