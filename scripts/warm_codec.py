"""Compile the codec's numba kernels into numba's on-disk cache.

The kernels are compiled at first use, which costs tens of seconds each on a slow core.
scripts/device_check.sh runs these jobs in parallel before the GPU tests, so the tests and
benchmarks that follow load the compiled kernels instead:

- ``planner``: the extended planner's kernels (alternative patterns, row groups, bit counts),
  which are the same for every chunk width;
- ``16``, ``32``, ``64``: the encoder, the decoder and the basic planner for one width, then
  the extended format for it. The basic format comes first: by the time these jobs reach
  the extended planner, the ``planner`` job has compiled it and they load it instead.

"auto" would find nothing more to compile: its kernels are those of the three widths.

Usage: python scripts/warm_codec.py {planner,16,32,64}
"""
import sys
import time

import numpy as np

from ibp_gnn import compress
from ibp_gnn.codec.dtypes import as_byte_rows, itemsize
from ibp_gnn.codec.plan import DIRECT_COUNT_ROWS, bit_counts, plan_rows


def matrices() -> list:
    rng = np.random.default_rng(0)
    sparse = (rng.random((2000, 300)) < 0.05).astype(np.float32)   # list headers
    dense = rng.standard_normal((2000, 40)).astype(np.float32)     # bitmap headers, free bits
    mixed = np.vstack([sparse[:, :40] * 3, dense])                  # row groups
    # rows of 37, 74 and 116 bytes: the decoder writes 1-, 2- and 4-byte units
    odd = [(rng.random((2000, 37)) < 0.2).astype(np.int8), dense[:, :37].astype(np.int16),
           dense[:, :29]]
    return [sparse, dense, mixed, *odd]


def main(job: str) -> None:
    t0 = time.perf_counter()
    if job == "planner":
        for x in matrices():
            byte_rows, name, _ = as_byte_rows(x)    # the planner's input, as compress makes it
            plan_rows(byte_rows, chunk_bits=32, element_bytes=itemsize(name))
        # bit counts of more rows than are counted directly: through a byte histogram
        tall = np.random.default_rng(2).random((DIRECT_COUNT_ROWS + 1, 16)) < 0.1
        bit_counts(as_byte_rows(tall.astype(np.float32))[0])
    else:
        chunk_bits = int(job)
        index = np.random.default_rng(1).integers(0, 2000, 500)
        for extended in (False, True):
            for x in matrices():
                compress(x, chunk_bits=chunk_bits, extended=extended).decode(index)
    print(f"codec kernels, {job}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("planner", "16", "32", "64"):
        sys.exit(__doc__)
    main(sys.argv[1])
