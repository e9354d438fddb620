"""Compile the CUDA kernels for this device into CuPy's on-disk kernel cache.

Each decode module takes NVRTC tens of seconds, and a process compiles one module at a time.
scripts/device_check.sh runs these jobs in parallel (beside scripts/warm_codec.py's), so the
tests and benchmarks that follow load the compiled kernels instead:

- ``sources``: every kernel source with its default settings;
- each key of ``ibp_gnn.bench_gpu.COMPILED_DECODE_VARIANTS``: the decode kernels with those
  settings.

Usage: python scripts/warm_kernels.py {sources,VARIANT}; --jobs prints the job names.
"""
import sys
import time

from ibp_gnn import gpu
from ibp_gnn.bench_gpu import COMPILED_DECODE_VARIANTS


def jobs() -> list[str]:
    return ["sources", *COMPILED_DECODE_VARIANTS]


def main(job: str) -> None:
    if job not in jobs():
        raise SystemExit(f"unknown job {job!r}; one of {', '.join(jobs())}")
    if not gpu.is_available():
        raise SystemExit("no CUDA device usable by torch and CuPy")
    t0 = time.perf_counter()
    if job == "sources":
        gpu.load_kernels()
    else:
        gpu.load_kernels([COMPILED_DECODE_VARIANTS[job]], every_source=False)
    print(f"CUDA kernels, {job}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--jobs"]:
        print(" ".join(jobs()))
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        raise SystemExit(__doc__)
