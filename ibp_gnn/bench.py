"""Codec benchmark: compression and CPU decode-gather, each beside a baseline from the same run."""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from .codec import compress
from .matrix_io import read_matrix


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_codec(path, *, key: str | None = None, repeats: int = 5, batch_rows: int = 20000,
                seed: int = 0, extended: bool = True) -> dict:
    """Compress and gather one matrix (``extended=False``: in the basic format); medians over
    ``repeats``.

    Baselines: a plain copy of the whole matrix (for compression) and a raw-row gather
    (``torch.index_select``) of the same index batches (for decoding). Index batches are
    ``batch_rows`` distinct random rows, the shape of a sampled GNN mini-batch's node set.
    """
    x = read_matrix(path, key)
    if np.ndim(x) < 1:
        raise ValueError(f"{path}: expected an array of shape [N, ...], got a scalar")
    xt = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    raw_bytes = xt.numel() * xt.element_size()
    compress(xt[:64], extended=extended)  # compile the kernels outside the timed region
    cm = compress(xt, extended=extended)
    compress_s = _median_seconds(lambda: compress(xt, extended=extended), repeats)
    copy_s = _median_seconds(lambda: xt.clone(), repeats)

    rng = np.random.default_rng(seed)
    n = cm.num_rows
    batches = [torch.from_numpy(rng.choice(n, size=min(n, batch_rows), replace=False))
               for _ in range(repeats)]
    cm.decode(batches[0])
    it = iter(batches * 2)
    decode_s = _median_seconds(lambda: cm.decode(next(it)), repeats)
    it = iter(batches * 2)
    gather_s = _median_seconds(lambda: torch.index_select(xt, 0, next(it)), repeats)
    gathered = len(batches[0]) * cm.row_bytes
    return {
        "path": str(path), "rows": n, "row_bytes": cm.row_bytes, "dtype": cm.dtype,
        "raw_bytes": raw_bytes, "host_bytes": cm.host_bytes, "ratio": cm.ratio,
        "chunk_bits": cm.chunk_bits, "format": "extended" if extended else "basic",
        "compress_MBps": raw_bytes / compress_s / 1e6,
        "copy_MBps": raw_bytes / copy_s / 1e6,
        "compress_vs_copy": copy_s / compress_s,
        "batch_rows": len(batches[0]),
        "decode_gather_MBps": gathered / decode_s / 1e6,
        "raw_gather_MBps": gathered / gather_s / 1e6,
        "decode_vs_raw_gather": gather_s / decode_s,
        "repeats": repeats,
    }


def format_table(rows: list[dict]) -> str:
    head = (f"{'matrix':34s} {'format':8s} {'ratio':>7s} {'compress MB/s':>13s} {'x copy':>7s} "
            f"{'decode MB/s':>11s} {'raw gather MB/s':>15s} {'x gather':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        name = str(r["path"]).rsplit("/", 1)[-1]
        lines.append(f"{name:34s} {r['format']:8s} {r['ratio']:7.2f} {r['compress_MBps']:13.0f} "
                     f"{r['compress_vs_copy']:7.3f} {r['decode_gather_MBps']:11.0f} "
                     f"{r['raw_gather_MBps']:15.0f} {r['decode_vs_raw_gather']:8.3f}")
    return "\n".join(lines)
