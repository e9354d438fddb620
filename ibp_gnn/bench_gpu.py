"""GPU feature-gather benchmark: link roof, raw zero-copy gather, IBP gather + decode.

    python -m ibp_gnn.bench_gpu --out bench/results/gpu-<card>-<date>.json

Numbers (GB/s = 1e9 bytes/s, medians over repeats timed with CUDA events):
- ``link``: contiguous pinned -> device copy (the bus roof).
- ``raw_rows``: zero-copy gather of random rows from pinned memory, per row size.
- per dataset (rows tiled up to ``--tile-bytes`` of raw features so reads really cross the
  bus and miss the caches): IBP gather+decode logical GB/s (decoded bytes delivered) and
  physical GB/s (compressed bytes read), from pinned and from device memory; raw zero-copy gather
  of the uncompressed rows and of rows of the compressed rows' average size; torch CPU
  ``index_select`` + ``.to(cuda)``; each with unsorted and sorted indices. For the IBP
  gather and the raw gather of compressed-size rows, also the host's launch cost per call and
  the time per call of calls queued back to back (``host_seconds``, ``pipelined_seconds``),
  and both again on batches of ``--train-batch-rows`` rows, the size of a training batch's
  sampled neighbourhood, where the batches above are smaller (``train_batch``). And the IBP
  gather of rows of an all-zero matrix of the same shape, on both batches (``zero_rows``):
  the fill alone, the most the decoder writes for rows of that size. The decode variants
  (``DeviceCompressedMatrix`` settings) are timed on the first batch, and those that move the
  clearing of rows elsewhere (``CLEARING_VARIANTS``) on both.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import gpu
from .codec import CompressedMatrix, compress, tile_rows
from .datasets import data_root

GB = 1e9
#: Blocks of ``gpu.DECODE_THREADS`` per SM the register-capped decode variant asks for (the
#: default compile, at 64 registers a thread, fits four).
CAPPED_BLOCKS_PER_SM = 5
#: Calls per median of the raw gather of each row size, per call of the other medians.
RAW_ROWS_REPEAT_FACTOR = 3
#: Rows of the all-zero matrix whose gather measures the decoder's write ceiling.
ZERO_ROWS = 1024
#: The physical target: IBP physical GB/s at least this share of the raw gather's GB/s of rows
#: of the compressed rows' average size.
PHYSICAL_TARGET = 0.8
#: The decode variants that move the clearing of rows of all-zero bit values away from each
#: row's warp (``clear_rows``): result key -> settings. Timed on the training-sized batch as
#: well, where the decoder falls furthest short of the device's write bandwidth.
CLEARING_VARIANTS = {
    "clear_output": {"clear_rows": "output"},
    "clear_by_block": {"clear_rows": "block"},
}
#: The decode variants the benchmark times that are compiled apart from the default kernel:
#: result key -> ``DeviceCompressedMatrix`` settings (the device check compiles them up front).
COMPILED_DECODE_VARIANTS = {
    f"blocks_per_sm{CAPPED_BLOCKS_PER_SM}": {"blocks_per_sm": CAPPED_BLOCKS_PER_SM},
    "full_scans": {"scan_shortcuts": False},
    "clear_by_block": CLEARING_VARIANTS["clear_by_block"],
}


def _time_cuda(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` on the current stream, CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return float(np.median(times))


def _time_cuda_pipelined(fn, repeats: int, calls: int = 8) -> float:
    """Median seconds per call of ``calls`` back-to-back ``fn()`` between two CUDA events, the
    first event queued behind one more call: the time per call of a loop that runs ahead of
    the device, where each call's host-side launch overlaps the device work before it. It is
    the larger of the device time and the host time per call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        fn()
        a.record()
        for _ in range(calls):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / calls)
    return float(np.median(times))


def _host_seconds(fn, repeats: int, calls: int = 8) -> float:
    """Median host seconds per ``fn()`` call, the device not waited for: the launch cost on
    the host alone (validation off, so nothing in ``fn`` waits for the device)."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
        torch.cuda.synchronize()
    return float(np.median(times))


def _launch_costs(fn, repeats: int) -> dict:
    """Seconds per call of ``fn`` back to back and on the host alone (see above)."""
    return {"pipelined_seconds": _time_cuda_pipelined(fn, repeats),
            "host_seconds": _host_seconds(fn, repeats)}


def _time_wall(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def link_roof(nbytes: int, repeats: int) -> dict:
    src = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    src.fill_(1)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    t = _time_cuda(lambda: dst.copy_(src, non_blocking=True), repeats)
    back = _time_cuda(lambda: src.copy_(dst, non_blocking=True), repeats)
    # every decoded byte is written to device memory once: its write bandwidth bounds the
    # logical GB/s of any decoder, and so the physical GB/s at a given ratio
    write = _time_cuda(dst.zero_, repeats)
    return {"bytes": nbytes, "h2d_seconds": t, "h2d_GBps": nbytes / t / GB,
            "d2h_seconds": back, "d2h_GBps": nbytes / back / GB,
            "device_write_seconds": write, "device_write_GBps": nbytes / write / GB}


def _batch_rows(row_bytes: int, batch_bytes: int, min_rows: int = 1024) -> int:
    """Rows per gathered batch: ``batch_bytes`` of raw rows, at least ``min_rows``."""
    return int(max(min_rows, min(batch_bytes // max(row_bytes, 1), 1 << 21)))


def raw_rows(sizes, pool_bytes: int, batch_bytes: int, repeats: int,
             min_rows: int = 1024) -> list[dict]:
    """Raw zero-copy gather GB/s of random rows of each size in ``sizes``, medians of
    ``RAW_ROWS_REPEAT_FACTOR * repeats`` calls."""
    # a call takes 1-8 ms, so a median of 7 can fall to one stall of the host lasting tens
    # of milliseconds (4 KB rows at 0.42x the link, the other sizes of 1 KB and more at
    # 0.86x-0.92x, in gpu-nvidia-h100-80gb-hbm3-20261127-scan.json); three times the calls
    # add under a second
    repeats *= RAW_ROWS_REPEAT_FACTOR
    out = []
    for rb in sizes:
        n = max(1, pool_bytes // rb)
        buf = gpu.pinned_allocator(n * rb)
        buf[::4096] = 1                       # touch: pages resident
        raw = gpu.PinnedRawMatrix(torch.from_numpy(buf).view(n, rb), "cuda")
        b = _batch_rows(rb, batch_bytes, min_rows)
        idx = torch.randint(0, n, (b,), device="cuda")
        rec = {"row_bytes": rb, "rows": n, "batch": b}
        for sort in (False, True):
            t = _time_cuda(lambda: raw.gather(idx, sort=sort, check=False), repeats)
            rec[f"{'sorted' if sort else 'unsorted'}_GBps"] = b * rb / t / GB
        # narrow rows share a warp by default; one row per warp instead, for comparison
        if rb < 512:
            raw.lanes_per_row = 32
            t = _time_cuda(lambda: raw.gather(idx, check=False), repeats)
            rec["unsorted_warp_per_row_GBps"] = b * rb / t / GB
            raw.lanes_per_row = None
        out.append(rec)
        del raw, buf
        gc.collect()
    return out


def decode_kernel_resources() -> dict:
    """Registers and local (spill) bytes per thread of a decode kernel (32-bit chunks, int64
    indices) as loaded on the current device: as compiled by default and for each of
    ``COMPILED_DECODE_VARIANTS``."""
    out = {}
    for key, settings in {"default": {}, **COMPILED_DECODE_VARIANTS}.items():
        k = gpu._kernel("ibp_decode.cu", "ibp_decode_w32_i64_o32", torch.cuda.current_device(),
                        gpu.decode_defines(**settings))
        out[key] = {"num_regs": int(k.num_regs), "local_size_bytes": int(k.local_size_bytes)}
    return out


def tile_compressed(cm: CompressedMatrix, reps: int, allocator) -> CompressedMatrix:
    """``cm`` with its rows repeated ``reps`` times (see :func:`ibp_gnn.codec.tile_rows`)."""
    return tile_rows(cm, cm.num_rows * reps, allocator=allocator)


def bench_dataset(path: Path, tile_bytes: int, batch_bytes: int, repeats: int,
                  check: bool, min_rows: int = 1024, train_rows: int = 0) -> dict:
    """One dataset's record (see the module docstring). With ``train_rows`` above the batch's
    rows, the IBP gather and the raw gather of compressed-size rows are also timed on a batch
    of ``train_rows`` random rows (``rec["train_batch"]``): the size of a GraphSAGE
    mini-batch's sampled neighbourhood, where fixed costs per call weigh less."""
    x = np.ascontiguousarray(np.load(path)["x"])
    t0 = time.perf_counter()
    cm0 = compress(x)
    compress_s = time.perf_counter() - t0
    n0, rb = cm0.num_rows, cm0.row_bytes
    reps = max(1, tile_bytes // max(1, n0 * rb))
    cm = tile_compressed(cm0, reps, gpu.pinned_allocator)
    n = cm.num_rows
    rec = {"dataset": f"{path.parent.name}/{path.stem}", "rows": n0, "tiles": reps,
           "tiled_rows": n, "row_bytes": rb, "dtype": cm.dtype, "chunk_bits": cm.chunk_bits,
           "raw_bytes": n * rb, "payload_bytes": cm.payload_bytes, "host_bytes": cm.host_bytes,
           "ratio": cm.ratio, "row_groups": cm.num_groups, "list_header": cm.list_header,
           "rows_raw_fraction": cm0.rows_raw / max(n0, 1),
           "cpu_compress_seconds": compress_s}
    b = _batch_rows(rb, batch_bytes, min_rows)
    idx = torch.randint(0, n, (b,), device="cuda")
    s, e = cm.row_offsets(idx.cpu().numpy())
    comp_bytes = int((e - s).sum()) * (cm.chunk_bits // 8)
    rec.update(batch=b, batch_raw_bytes=b * rb, batch_compressed_bytes=comp_bytes)
    ref = cm0.decode((idx[:4096] % n0).cpu().numpy()) if check else None  # tiles repeat rows

    def rates(t: float, stored_bytes: int = comp_bytes, rows: int = b) -> dict:
        return {"seconds": t, "logical_GBps": rows * rb / t / GB,
                "physical_GBps": stored_bytes / t / GB}

    idx_train = None
    if train_rows > b:
        idx_train = torch.randint(0, n, (train_rows,), device="cuda")
        s_t, e_t = cm.row_offsets(idx_train.cpu().numpy())
        train_bytes = int((e_t - s_t).sum()) * (cm.chunk_bits // 8)

    def spot_check(dev) -> None:
        if check:
            got = dev.gather(idx[:4096])
            assert torch.equal(got.cpu().view(torch.uint8), ref.view(torch.uint8)), "mismatch"

    for location in ("pinned", "device"):
        dev = gpu.DeviceCompressedMatrix(cm, "cuda", location)
        spot_check(dev)
        for sort in (False, True):
            t = _time_cuda(lambda: dev.gather(idx, sort=sort, check=False), repeats)
            key = f"ibp_{location}_{'sorted' if sort else 'unsorted'}"
            rec[key] = rates(t)
        if location == "pinned":
            rec["ibp_pinned_unsorted"].update(
                _launch_costs(lambda: dev.gather(idx, check=False), repeats))
            if idx_train is not None:
                t = _time_cuda(lambda: dev.gather(idx_train, check=False), repeats)
                rec["train_batch"] = {"rows": train_rows, "compressed_bytes": train_bytes,
                                      "ibp_pinned_unsorted": rates(t, train_bytes, train_rows)}
            # what filling rows with their base bit values gains over decoding every round;
            # without it, what decoding runs of all-base rounds together gains over one round
            # at a time, and what the all-base rounds' fixed offsets gain over the general way
            rec["filled_groups"] = int(dev._fill_groups.sum())
            rec["fill_eligible_groups"] = int(gpu.fill_groups(cm, max_entry_rounds=1).sum())
            rec["entry_round_share"] = [None if v != v else float(v)
                                        for v in gpu.entry_round_share(cm0)]
            variants = {
                # the decode kernel with its registers capped so that more blocks share an SM;
                # every round's selectors and free bits placed by full warp scans
                **COMPILED_DECODE_VARIANTS,
                # groups whose bit values are all zero filled with them, not cleared with
                # wide stores
                "bitval_fill": {"zero_fill": False},
                # those rows cleared with the whole output first, or by whole blocks
                **CLEARING_VARIANTS,
                "no_fill": {"fill_base": False},
                "round_by_round": {"fill_base": False, "stretch": False},
                "general_rounds": {"fill_base": False, "stretch": False, "fixed_rounds": False}}
            for key, settings in variants.items():
                default = {name: getattr(dev, name) for name in settings}
                for name, value in settings.items():
                    setattr(dev, name, value)
                spot_check(dev)
                t = _time_cuda(lambda: dev.gather(idx, check=False), repeats)
                rec[f"ibp_pinned_unsorted_{key}"] = rates(t)
                if key in CLEARING_VARIANTS and idx_train is not None:
                    t = _time_cuda(lambda: dev.gather(idx_train, check=False), repeats)
                    rec["train_batch"][f"ibp_pinned_unsorted_{key}"] = rates(
                        t, train_bytes, train_rows)
                for name, value in default.items():
                    setattr(dev, name, value)
        del dev
        gc.collect()
    try:  # a diagnostic: its failure keeps the dataset's other numbers
        rec["zero_rows"] = zero_rows(x, cm.chunk_bits, idx, idx_train, repeats)
    except Exception as e:
        rec["zero_rows"] = {"error": f"{type(e).__name__}: {e}"}

    # the basic format (no alternatives, bitmap headers) on the same rows and batch: the
    # extended format's decoding cost shows as physical GB/s against this one
    basic0 = compress(x, extended=False)
    basic = tile_compressed(basic0, reps, gpu.pinned_allocator)
    s_b, e_b = basic.row_offsets(idx.cpu().numpy())
    basic_bytes = int((e_b - s_b).sum()) * (basic.chunk_bits // 8)
    dev = gpu.DeviceCompressedMatrix(basic, "cuda", "pinned")
    spot_check(dev)
    t = _time_cuda(lambda: dev.gather(idx, check=False), repeats)
    rec["format"] = {"header": "list" if cm.list_header else "bitmap",
                     "max_select_bits": int(cm.kind_select_bits.max(initial=0))}
    rec["ibp_basic_pinned_unsorted"] = {**rates(t, basic_bytes), "host_bytes": basic.host_bytes,
                                        "ratio": basic.ratio}
    del dev, basic
    gc.collect()

    # uncompressed rows, tiled the same way, in pinned memory
    raw_buf = gpu.pinned_allocator(n * rb)
    raw_view = raw_buf.reshape(n, rb) if rb else raw_buf.reshape(n, 0)
    xb = x.reshape(n0, -1).view(np.uint8)
    for k in range(reps):
        raw_view[k * n0:(k + 1) * n0] = xb
    xt = torch.from_numpy(raw_buf).view(torch.uint8).view(n, rb).view(cm.torch_dtype)
    raw = gpu.PinnedRawMatrix(xt, "cuda")
    for sort in (False, True):
        t = _time_cuda(lambda: raw.gather(idx, sort=sort, check=False), repeats)
        rec[f"raw_{'sorted' if sort else 'unsorted'}"] = {"seconds": t, "GBps": b * rb / t / GB}
    # torch CPU gather + copy (the PyG default path), from the same host matrix
    idx_cpu = idx.cpu()
    t = _time_wall(lambda: xt.index_select(0, idx_cpu).to("cuda"), max(3, repeats // 3))
    rec["torch_cpu_index_select_to_cuda"] = {"seconds": t, "GBps": b * rb / t / GB}
    del raw, xt, raw_view, raw_buf
    gc.collect()

    # raw zero-copy rows of the compressed rows' average size: is decoding the bottleneck?
    avg = max(4, int(round(comp_bytes / b / 4)) * 4)
    pool = gpu.pinned_allocator(n * avg)
    pool[::4096] = 1
    same = gpu.PinnedRawMatrix(torch.from_numpy(pool).view(n, avg), "cuda")
    for sort in (False, True):
        t = _time_cuda(lambda: same.gather(idx, sort=sort, check=False), repeats)
        rec[f"raw_same_size_{'sorted' if sort else 'unsorted'}"] = {
            "row_bytes": avg, "seconds": t, "GBps": b * avg / t / GB}
    rec["raw_same_size_unsorted"].update(
        _launch_costs(lambda: same.gather(idx, check=False), repeats))
    if idx_train is not None:
        t = _time_cuda(lambda: same.gather(idx_train, check=False), repeats)
        rec["train_batch"]["raw_same_size_unsorted"] = {
            "row_bytes": avg, "seconds": t, "GBps": train_rows * avg / t / GB}
    del same, pool, cm
    gc.collect()
    return rec


def zero_rows(x: np.ndarray, chunk_bits: int, idx: torch.Tensor,
              idx_train: torch.Tensor | None, repeats: int) -> dict:
    """Logical GB/s of the IBP gather of rows of an all-zero matrix shaped and typed like
    ``x`` (``ZERO_ROWS`` rows, ``chunk_bits`` chunks, pinned), batches of ``len(idx)`` and
    ``len(idx_train)`` requests: decoding them is the fill alone, each row cleared with wide
    stores once its index, offsets and few encoded words are read, so this is the most a
    decoder writing rows this way delivers, whatever their contents."""
    zeros = compress(np.zeros((ZERO_ROWS, *x.shape[1:]), x.dtype), chunk_bits=chunk_bits,
                     allocator=gpu.pinned_allocator)
    dev = gpu.DeviceCompressedMatrix(zeros, "cuda", "pinned")
    row_bytes = zeros.row_bytes
    out = {"rows": ZERO_ROWS, "filled_groups": int(dev._fill_groups.sum())}
    for key, requests in (("batch", idx), ("train_batch", idx_train)):
        if requests is None:
            continue
        requests = requests % ZERO_ROWS
        got = dev.gather(requests[:4096])
        assert not got.view(torch.uint8).any(), "all-zero rows decoded to nonzero bytes"
        t = _time_cuda(lambda: dev.gather(requests, check=False), repeats)
        out[key] = {"seconds": t, "logical_GBps": len(requests) * row_bytes / t / GB}
    del dev, zeros
    gc.collect()
    return out


def _variant_columns() -> tuple:
    """``(result key, column, legend)`` of every decode variant a saved result may hold,
    including those no longer timed (fetch_rows8: each warp fetching the encoded rows of 8
    requests at once, removed after it measured slower on an H200 and an H100; see the
    README), so older results still print in full."""
    capped = CAPPED_BLOCKS_PER_SM
    return (
        ("bitval_fill", "bv fill", "ibp log with rows of all-zero bit values filled with them "
         "instead of cleared by wide stores"),
        ("clear_output", "clr out", "ibp log with the output cleared in one pass before the "
         "decode kernel, which then writes only the other chunks of rows of all-zero bit "
         "values"),
        ("clear_by_block", "clr blk", "ibp log with such rows cleared by each block, its "
         "warps' rows of a round together, before the warps write their other chunks"),
        (f"blocks_per_sm{capped}", f"{capped} blk/SM", "ibp log with the decode kernel's "
         f"registers capped so that {capped} blocks share an SM"),
        ("full_scans", "full scn", "ibp log with every round's selectors and free bits placed "
         "by full warp scans (no shortcuts for equal or zero widths)"),
        ("fetch_rows8", "fetch 8", "ibp log with each warp reading the encoded rows of 8 "
         "requests at once"),
        ("no_fill", "no fill", "ibp log without rows filled with their base bit values first"),
        ("round_by_round", "1-round", "no fill, and runs of all-base rounds decoded one round "
         "at a time"),
        ("general_rounds", "general", "no fill, and every round decoded the general way"))


def _table(res: dict) -> str:
    write = res["link"].get("device_write_GBps", float("nan"))
    lines = [f"card: {res['card']}   link h2d {res['link']['h2d_GBps']:.1f} GB/s   "
             f"device memory write {write:.1f} GB/s",
             "raw zero-copy gather (GB/s, unsorted/sorted[/unsorted, a warp per row]): "
             + ", ".join(f"{r['row_bytes']}B {r['unsorted_GBps']:.1f}/{r['sorted_GBps']:.1f}"
                         + (f"/{r['unsorted_warp_per_row_GBps']:.1f}"
                            if "unsorted_warp_per_row_GBps" in r else "")
                         for r in res["raw_rows"])]
    if "decode_kernels" in res:
        lines.append("decode kernel registers / local bytes per thread: " + ", ".join(
            f"{k} {v['num_regs']} / {v['local_size_bytes']}"
            for k, v in res["decode_kernels"].items()))
    # the decode variants' logical GB/s, those the results hold, in column order
    variants = [(key, col, legend) for key, col, legend in _variant_columns()
                if any(f"ibp_pinned_unsorted_{key}" in d for d in res["datasets"])]
    hdr = (f"{'dataset':32s} {'ratio':>6s} {'ibp log':>8s} {'ibp phys':>8s} {'ibp srt':>8s} "
           f"{'ibp dev':>8s} " + "".join(f"{col:>8s} " for _, col, _ in variants) +
           f"{'raw':>7s} "
           f"{'raw=sz':>7s} {'torch':>6s} {'basic':>6s} {'phys/b':>6s} {'sz/b':>6s} {'roof':>6s}")
    lines.append(hdr)
    for d in res["datasets"]:
        if "error" in d:
            lines.append(f"{d['dataset']:32s} error: {d['error']}")
            continue
        variant_logs = [d.get(f"ibp_pinned_unsorted_{key}", {}).get("logical_GBps", float("nan"))
                        for key, _, _ in variants]
        basic = d["ibp_basic_pinned_unsorted"]["physical_GBps"]
        lines.append(
            f"{d['dataset']:32s} {d['ratio']:6.2f} "
            f"{d['ibp_pinned_unsorted']['logical_GBps']:8.1f} "
            f"{d['ibp_pinned_unsorted']['physical_GBps']:8.1f} "
            f"{d['ibp_pinned_sorted']['logical_GBps']:8.1f} "
            f"{d['ibp_device_unsorted']['logical_GBps']:8.1f} "
            + "".join(f"{v:8.1f} " for v in variant_logs) +
            f"{d['raw_unsorted']['GBps']:7.1f} {d['raw_same_size_unsorted']['GBps']:7.1f} "
            f"{d['torch_cpu_index_select_to_cuda']['GBps']:6.2f} "
            f"{basic:6.1f} {d['ibp_pinned_unsorted']['physical_GBps'] / basic:6.2f} "
            f"{d['raw_same_size_unsorted']['GBps'] / basic:6.2f} "
            f"{write / d['ratio']:6.1f}")
    lines.append("GB/s = 1e9 B/s; ibp log = decoded bytes/s, phys = compressed bytes read/s; "
                 + "".join(f"{col} = {legend}; " for _, col, legend in variants) +
                 "raw = uncompressed zero-copy gather; raw=sz = raw gather of rows of the "
                 "compressed average size; torch = CPU index_select + .to(cuda); basic = "
                 "physical GB/s of the basic format on the same rows, phys/b = extended / basic; "
                 "sz/b = raw=sz / basic, what the bus alone allows phys/b (a gather of rows "
                 "of the extended rows' size against the basic format's physical GB/s); "
                 "roof = device memory write GB/s / ratio, the most physical GB/s any "
                 "decoder writing the decoded rows can reach")
    lines += _launch_table(res)
    lines += _train_batch_table(res)
    lines += _physical_target(res)
    return "\n".join(lines)


def _launch_table(res: dict) -> list[str]:
    """Host launch cost and back-to-back times of the IBP gather and the raw=sz gather."""
    launch = [d for d in res["datasets"]
              if "host_seconds" in d.get("ibp_pinned_unsorted", {})
              and "host_seconds" in d.get("raw_same_size_unsorted", {})]
    if not launch:
        return []
    lines = [f"{'dataset':32s} {'phys/sz':>7s} {'host us':>7s} {'b2b us':>7s} "
             f"{'phys b2b':>8s} {'sz host':>7s} {'sz b2b':>7s} {'sz GB/s':>7s} "
             f"{'phys/sz b2b':>11s}"]
    for d in launch:
        ibp, same = d["ibp_pinned_unsorted"], d["raw_same_size_unsorted"]
        phys_b2b = ibp["physical_GBps"] * ibp["seconds"] / ibp["pipelined_seconds"]
        same_b2b = same["GBps"] * same["seconds"] / same["pipelined_seconds"]
        lines.append(
            f"{d['dataset']:32s} {ibp['physical_GBps'] / same['GBps']:7.2f} "
            f"{ibp['host_seconds'] * 1e6:7.1f} {ibp['pipelined_seconds'] * 1e6:7.1f} "
            f"{phys_b2b:8.1f} {same['host_seconds'] * 1e6:7.1f} "
            f"{same['pipelined_seconds'] * 1e6:7.1f} {same_b2b:7.1f} "
            f"{phys_b2b / same_b2b:11.2f}")
    lines.append("phys/sz = ibp phys / raw=sz, one call at a time on an idle device (the "
                 "table above); host us = host microseconds per call (launch cost, the "
                 "device not waited for); b2b us = microseconds per call of calls queued "
                 "back to back, host launches overlapping device work; phys b2b, sz GB/s "
                 "= physical GB/s of ibp and raw=sz back to back; sz = the raw=sz gather")
    return lines


def _train_batch_table(res: dict) -> list[str]:
    """The IBP gather against the raw=sz gather on training-sized batches, and as shares of
    the device's write bandwidth: its logical GB/s, and, where the results hold them, those
    of the gathers clearing rows elsewhere and that of all-zero rows."""
    rows = [d for d in res["datasets"] if "raw_same_size_unsorted" in d.get("train_batch", {})]
    if not rows:
        return []
    write = res["link"].get("device_write_GBps", float("nan"))
    nan = float("nan")

    def variant(key):
        return lambda d: d["train_batch"].get(f"ibp_pinned_unsorted_{key}", {}).get(
            "logical_GBps", nan)

    shares = [  # (column, logical GB/s of a dataset's record, legend)
        ("out/wr", variant("clear_output"), "the share reached clearing the output first "
         "(clr out)"),
        ("blk/wr", variant("clear_by_block"), "the share reached with rows cleared by blocks "
         "(clr blk)"),
        ("zero/wr", lambda d: d.get("zero_rows", {}).get("train_batch", {})
         .get("logical_GBps", nan),
         "the share reached gathering rows of an all-zero matrix of the same shape (the fill "
         "alone: the most this decoder writes)")]
    shares = [c for c in shares if any(c[1](d) == c[1](d) for d in rows)]  # not all NaN
    lines = [f"{'dataset':32s} {'rows':>8s} {'ibp phys':>8s} {'raw=sz':>7s} {'phys/sz':>7s} "
             f"{'batch rows':>10s} {'phys/sz':>7s} {'need/wr':>7s} {'ibp/wr':>7s}"
             + "".join(f" {col:>7s}" for col, _, _ in shares)]
    for d in rows:
        t = d["train_batch"]
        ibp, same = t["ibp_pinned_unsorted"], t["raw_same_size_unsorted"]
        small = d["ibp_pinned_unsorted"]["physical_GBps"] / d["raw_same_size_unsorted"]["GBps"]
        lines.append(
            f"{d['dataset']:32s} {t['rows']:8d} {ibp['physical_GBps']:8.1f} {same['GBps']:7.1f} "
            f"{ibp['physical_GBps'] / same['GBps']:7.2f} {d['batch']:10d} {small:7.2f} "
            f"{PHYSICAL_TARGET * same['GBps'] * d['ratio'] / write:7.2f} "
            f"{ibp['logical_GBps'] / write:7.2f}"
            + "".join(f" {logical(d) / write:7.2f}" for _, logical, _ in shares))
    lines.append("training-sized batches: rows = random rows per call; ibp phys, raw=sz = "
                 "physical GB/s of the IBP gather and GB/s of the raw gather of rows of the "
                 "compressed average size, one call at a time; phys/sz = their ratio; batch "
                 "rows, phys/sz = the same for the batches of the tables above; need/wr = the "
                 "share of the device's write bandwidth the decoder's logical GB/s needs for "
                 f"phys/sz {PHYSICAL_TARGET} ({PHYSICAL_TARGET} x raw=sz x ratio / write); "
                 "ibp/wr = the share it reaches"
                 + "".join(f"; {col} = {legend}" for col, _, legend in shares))
    return lines


def _physical_target(res: dict) -> list[str]:
    """Which datasets meet the physical target, on the training-sized batch where the results
    hold one (else on the benchmark's batch, which is then the larger), and which cannot: there
    the target's logical GB/s (target x raw=sz GB/s x ratio) passes the device's measured
    write bandwidth, which bounds every decoder that writes the decoded rows."""
    write = res["link"].get("device_write_GBps", float("nan"))
    met, short, beyond = [], [], []
    for d in res["datasets"]:
        if "error" in d or "raw_same_size_unsorted" not in d:
            continue
        t = d.get("train_batch", {})
        rec = t if "raw_same_size_unsorted" in t else d
        sz = rec["raw_same_size_unsorted"]["GBps"]
        name = d["dataset"].split("/")[-1]
        if rec["ibp_pinned_unsorted"]["physical_GBps"] >= PHYSICAL_TARGET * sz:
            met.append(name)
        elif PHYSICAL_TARGET * sz * d["ratio"] > write:      # False while write is NaN
            beyond.append(name)
        else:
            short.append(name)
    if not met and not short and not beyond:
        return []
    n = len(met) + len(short) + len(beyond)
    reach = (f"out of reach on {len(beyond)} ({', '.join(beyond) or '-'}): their target needs "
             f"more than the device's write bandwidth" if write == write else
             "the device's write bandwidth was not measured, so none is judged out of reach")
    return [f"physical target (phys/sz >= {PHYSICAL_TARGET} at the training-sized batch, else "
            f"at the batch): met on {len(met)} of {n} sets ({', '.join(met) or '-'}); not met "
            f"on {len(short)} ({', '.join(short) or '-'}); {reach}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ibp_gnn.bench_gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON output path ({card} and {date} are substituted)")
    ap.add_argument("--data", default=None,
                    help="datasets folder (default: $IBP_GNN_DATA, else ../shared/datasets)")
    ap.add_argument("--datasets", default="normalized/*.npz,derived/*.npz",
                    help="comma-separated globs under --data, measured in this order (a "
                         "file matched twice is measured once)")
    ap.add_argument("--tile-bytes", type=float, default=2e9,
                    help="tile each dataset's rows up to about this many raw bytes")
    ap.add_argument("--batch-bytes", type=float, default=64e6,
                    help="raw bytes per gathered batch")
    ap.add_argument("--min-batch-rows", type=int, default=1024,
                    help="at least this many rows per batch (a training batch's sampled "
                         "neighbourhood is 10^4-10^5 rows; 64 MB of 27 KB rows is 2,351)")
    ap.add_argument("--train-batch-rows", type=int, default=1 << 17,
                    help="also time the IBP gather and the raw gather of compressed-size rows "
                         "on batches of this many rows where the batch above is smaller (a "
                         "GraphSAGE batch of 1,024 seeds with fan-out [25, 10] gathers "
                         "10^5 rows; 0: off)")
    ap.add_argument("--link-bytes", type=float, default=float(1 << 30))
    ap.add_argument("--row-sizes", default="64,128,256,512,1024,2048,4096,8192,16384")
    ap.add_argument("--pool-bytes", type=float, default=2e9,
                    help="pinned pool per row size for the raw row-size sweep")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="skip the remaining datasets once this much time has passed")
    ap.add_argument("--no-check", action="store_true", help="skip the bit-exactness spot check")
    ap.add_argument("--table", metavar="JSON",
                    help="only print the summary table of a saved result (needs no GPU)")
    args = ap.parse_args(argv)
    if args.table:
        print(_table(json.loads(Path(args.table).read_text())))
        return 0

    if not gpu.is_available():
        print("no CUDA device usable by torch and CuPy", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name()
    now = _dt.datetime.now(_dt.timezone.utc)
    res = {"card": card, "date": now.isoformat(timespec="seconds"),
           "command": " ".join([sys.executable, "-m", "ibp_gnn.bench_gpu", *sys.argv[1:]]),
           "host": platform.node(), "torch": torch.__version__,
           "cupy": gpu._cupy().__version__, "cuda_runtime": torch.version.cuda,
           "args": vars(args)}
    out = None
    if args.out:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-").lower()
        out = Path(args.out.format(card=slug, date=now.strftime("%Y%m%d")))
        out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def save() -> None:
        # after each step: a run stopped at a time limit keeps what it measured
        res["seconds"] = time.perf_counter() - t0
        if out:
            out.write_text(json.dumps(res, indent=1))

    res["link"] = link_roof(int(args.link_bytes), args.repeats)
    print(f"link: h2d {res['link']['h2d_GBps']:.1f} GB/s", flush=True)
    res["decode_kernels"] = decode_kernel_resources()
    print(f"decode kernel resources: {res['decode_kernels']}", flush=True)
    sizes = [int(s) for s in args.row_sizes.split(",") if s]
    res["raw_rows"] = raw_rows(sizes, int(args.pool_bytes), int(args.batch_bytes), args.repeats,
                               args.min_batch_rows)
    print("raw rows done", flush=True)
    save()
    data = Path(args.data) if args.data else data_root()
    paths = []
    for g in args.datasets.split(","):
        paths += [f for f in sorted(data.glob(g.strip())) if f not in paths]
    res["datasets"] = []
    for p in paths:
        if args.max_seconds and time.perf_counter() - t0 > args.max_seconds:
            res["datasets"].append({"dataset": f"{p.parent.name}/{p.stem}",
                                    "error": "skipped: --max-seconds reached"})
            continue
        try:
            rec = bench_dataset(p, int(args.tile_bytes), int(args.batch_bytes), args.repeats,
                                not args.no_check, args.min_batch_rows, args.train_batch_rows)
        except Exception as e:  # keep the other datasets' numbers
            rec = {"dataset": f"{p.parent.name}/{p.stem}", "error": f"{type(e).__name__}: {e}"}
        res["datasets"].append(rec)
        save()
        print(f"{rec['dataset']}: done", flush=True)
        gc.collect()
    save()
    if out:
        print(f"wrote {out}")
    print(_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
