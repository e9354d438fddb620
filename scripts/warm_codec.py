"""Compile the codec's numba kernels for one chunk width into numba's on-disk cache.

The kernels are compiled per word type at first use, which costs tens of seconds per width on
a slow core. scripts/device_check.sh runs one of these per width in parallel before the GPU
tests, so the tests and benchmarks that follow load the compiled kernels instead.

Usage: python scripts/warm_codec.py {16,32,64,auto}
"""
import sys
import time

import numpy as np

from ibp_gnn import compress


def main(width: str) -> None:
    t0 = time.perf_counter()
    chunk_bits = width if width == "auto" else int(width)
    rng = np.random.default_rng(0)
    sparse = (rng.random((2000, 300)) < 0.05).astype(np.float32)   # list headers
    dense = rng.standard_normal((2000, 40)).astype(np.float32)     # bitmap headers, free bits
    mixed = np.vstack([sparse[:, :40] * 3, dense])                  # row groups
    # rows of 37, 74 and 116 bytes: the decoder writes 1-, 2- and 4-byte units
    odd = [(rng.random((2000, 37)) < 0.2).astype(np.int8), dense[:, :37].astype(np.int16),
           dense[:, :29]]
    index = rng.integers(0, 2000, 500)
    for x in (sparse, dense, mixed, *odd):
        for extended in (True, False):
            cm = compress(x, chunk_bits=chunk_bits, extended=extended)
            cm.decode(index)
    print(f"codec kernels for chunk_bits={width}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "auto")
