"""The encoder: a plan, then every row into one condensed buffer."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time

import numpy as np

from . import _kernels, dtypes
from .container import (WORD_DTYPES, Allocator, CompressedMatrix, _default_allocator,
                        column_kinds, split_offsets)
from .plan import (DEFAULT_BLOCK_BYTES, DEFAULT_SAMPLE_ROWS, Plan, list_header_fits,
                   plan_rows, reused_padding, row_blocks)


def compress(x, *, chunk_bits="auto", thresholds=None,
             sample_rows: int | None = DEFAULT_SAMPLE_ROWS, plan: Plan | None = None,
             allocator: Allocator | None = None,
             block_bytes: int = DEFAULT_BLOCK_BYTES, extended: bool = True) -> CompressedMatrix:
    """Compress ``x`` (``[N, *row_shape]``, torch tensor or array-like) losslessly.

    Args:
        chunk_bits: 16, 32, 64 or ``"auto"`` (the width giving the smallest exact size; 16
            is tried only for elements of at most two bytes).
        thresholds: invariance thresholds to score (default: a coarse grid refined around its
            best); the one giving the smallest size wins.
        sample_rows: plan from this many random rows when ``N`` is larger (``None``: all rows).
        plan: reuse a plan (e.g. from another matrix of the same row layout) instead.
        allocator: ``allocator(nbytes) -> writable uint8 array``; the payload is written into
            it directly (e.g. pinned host memory).
        block_bytes: rows are processed in blocks of about this size, bounding extra memory.
        extended: also consider per-column patterns, selectors and list headers (the
            extended format, see ``docs/format.md``); ``False`` keeps the basic format.

    ``x`` is never modified.
    """
    t0 = time.perf_counter()
    with reused_padding(), reused_tables():
        cm = _compress_rows(x, chunk_bits, thresholds, sample_rows, plan, allocator,
                            block_bytes, extended)
    cm.compress_seconds = time.perf_counter() - t0
    return cm


def _compress_rows(x, chunk_bits, thresholds, sample_rows, plan, allocator, block_bytes,
                   extended) -> CompressedMatrix:
    byte_rows, name, row_shape = dtypes.as_byte_rows(x)
    n, rb = byte_rows.shape
    lengths = groups = None
    if plan is None:
        plan, lengths, groups = plan_rows(byte_rows, chunk_bits=chunk_bits,
                                          thresholds=thresholds, sample_rows=sample_rows,
                                          block_bytes=block_bytes, extended=extended,
                                          element_bytes=dtypes.itemsize(name))
    w = plan.chunk_bits
    wd = WORD_DTYPES[w]
    c = -(-rb // (w // 8))
    if plan.num_chunks != c:
        raise ValueError(f"plan has {plan.num_chunks} chunks per row, the rows need {c}")
    proto = pattern_tables(plan, byte_rows.shape)  # (the one the planner scored with, if any)
    kinds = proto.column_kind_ids()
    pat_mask, pat_bitval, pat_free, sel, alt_start = proto.patterns()

    if lengths is None:  # (the planner hands them over when it scored every row)
        lengths, groups = stored_row_words(byte_rows, proto, block_bytes)
    if n and lengths.min() < 0:
        bad = int(np.argmax(lengths < 0))
        raise ValueError(f"row {bad} has a chunk that none of the plan's patterns matches "
                         f"(a plan needs an empty-mask alternative for every column)")
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    raw = raw_layout_pays(offsets, c, wd.itemsize)
    if raw:  # every row "encodes" to its raw words: the encoder below copies them
        offsets = np.arange(n + 1, dtype=np.int64) * c
    payload = allocate_payload(allocator, int(offsets[-1]), wd)
    cm = build_matrix(plan, (n,) + row_shape, name, payload, offsets, raw_layout=raw)
    if not raw:
        run_start, run_len, run_count = proto.pattern_runs
        for lo, block in row_blocks(byte_rows, block_bytes, w // 8):
            _kernels.encode_rows(block.view(wd), c, w, kinds, sel, alt_start, *proto.alt_slots,
                                 pat_mask, pat_bitval, pat_free, run_start, run_len, run_count,
                                 plan.list_header, plan.num_groups, groups[lo:lo + len(block)],
                                 offsets[lo:lo + len(block) + 1], payload)
    else:
        for lo, block in row_blocks(byte_rows, block_bytes, w // 8):
            payload[lo * c:(lo + len(block)) * c] = block.view(wd)[:, :c].reshape(-1)
    return cm


def stored_row_words(byte_rows: np.ndarray, proto: CompressedMatrix,
                     block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Stored length in words of every row (``[N, row_bytes]`` uint8) under the patterns of
    ``proto``, int64 ``[N]`` (-1 for a row that no pattern set can encode), and the row group
    each row is coded in, int64 ``[N]`` (the one storing it in the fewest words)."""
    w = proto.chunk_bits
    kinds = proto.column_kind_ids()
    pat_mask, pat_bitval, pat_free, sel, _ = proto.patterns()
    lengths = np.empty(len(byte_rows), np.int64)
    groups = np.empty(len(byte_rows), np.int64)
    for lo, block in row_blocks(byte_rows, block_bytes, w // 8):
        _kernels.row_words(block.view(WORD_DTYPES[w]), proto.num_chunks, w, kinds, sel,
                           *proto.alt_slots, pat_mask, pat_bitval, pat_free,
                           proto.list_header, proto.num_groups, lengths[lo:lo + len(block)],
                           groups[lo:lo + len(block)])
    return lengths, groups


def allocate_payload(allocator: Allocator | None, words: int, word_dtype) -> np.ndarray:
    """``words`` words of ``word_dtype`` from ``allocator`` (default: aligned host memory)."""
    nbytes = words * np.dtype(word_dtype).itemsize
    buf = (allocator or _default_allocator)(nbytes)
    if (not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.nbytes < nbytes
            or not buf.flags.writeable):
        raise ValueError(f"allocator must return a writable uint8 array of at least {nbytes} "
                         f"bytes")
    return buf[:nbytes].view(word_dtype)


def tile_rows(cm: CompressedMatrix, num_rows: int, *,
              allocator: Allocator | None = None) -> CompressedMatrix:
    """A matrix of ``num_rows`` rows whose row ``i`` is row ``i % N`` of ``cm``.

    A row's encoding depends only on the row and the plan, so this is exactly what compressing
    the tiled raw matrix under ``cm``'s plan gives, without ever building the raw matrix: the
    way to scale a real feature set over a large generated graph.
    """
    n = cm.num_rows
    if num_rows < 0 or (n == 0 and num_rows):
        raise ValueError(f"cannot tile {n} rows into {num_rows}")
    offsets = cm._offsets(np.arange(n + 1, dtype=np.int64))
    total = int(offsets[-1])
    reps, rest = divmod(num_rows, max(n, 1))
    payload = allocate_payload(allocator, reps * total + int(offsets[rest]), cm.payload.dtype)
    source = np.asarray(cm.payload)
    for k in range(reps):
        payload[k * total:(k + 1) * total] = source
    payload[reps * total:] = source[:offsets[rest]]
    if cm.raw_layout:
        return dataclasses.replace(cm, shape=(num_rows,) + cm.row_shape, payload=payload,
                                   compress_seconds=0.0)
    rows = np.arange(num_rows + 1, dtype=np.int64)
    tiled = (rows // max(n, 1)) * total + offsets[rows % max(n, 1)]
    offset_lo, block_base, shift = split_offsets(tiled)
    return dataclasses.replace(cm, shape=(num_rows,) + cm.row_shape, payload=payload,
                               offset_lo=offset_lo, block_base=block_base, offset_shift=shift,
                               compress_seconds=0.0)


def raw_layout_pays(offsets: np.ndarray, num_chunks: int, word_bytes: int) -> bool:
    """Whether rows encoded at these absolute word offsets ``[N + 1]``, with their offset
    tables, would take at least as much memory as all rows raw with implicit offsets."""
    n = len(offsets) - 1
    if n <= 0:
        return False
    lo, base, _ = split_offsets(offsets)
    return int(offsets[-1]) * word_bytes + lo.nbytes + base.nbytes >= n * num_chunks * word_bytes


_TABLES = contextvars.ContextVar("ibp_gnn_pattern_tables", default=None)


@contextlib.contextmanager
def reused_tables():
    """Within this block :func:`pattern_tables` builds the tables of a plan once: the planner
    scores rows under a plan, prices its tables and hands it to the encoder, and each build
    sorts the column patterns into kinds again (a sizeable share of compressing a small
    matrix). Each entry keeps its plan, so no other plan can take its ``id`` meanwhile."""
    token = _TABLES.set({})
    try:
        yield
    finally:
        _TABLES.reset(token)


def pattern_tables(plan: Plan, shape: tuple, dtype: str = "uint8") -> CompressedMatrix:
    """A container with ``plan``'s pattern tables and no rows: what the kernels read the
    patterns from, and what the tables cost (``column_bytes``). Built once per plan, shape and
    dtype within :func:`reused_tables`; the container is then shared, and nothing writes to
    it."""
    cache = _TABLES.get()
    key = (id(plan), tuple(shape), dtype)
    if cache is not None and key in cache and cache[key][0] is plan:
        return cache[key][1]
    proto = build_matrix(plan, shape, dtype, np.zeros(0, WORD_DTYPES[plan.chunk_bits]),
                         np.zeros(1, np.int64))
    if cache is not None:
        cache[key] = (plan, proto)
    return proto


def build_matrix(plan: Plan, shape: tuple, dtype: str, payload: np.ndarray,
                 offsets: np.ndarray, compress_seconds: float = 0.0, *,
                 raw_layout: bool = False) -> CompressedMatrix:
    """The container for rows encoded under ``plan``: ``payload`` words and absolute int64 row
    offsets ``[N + 1]`` (for encoders other than :func:`compress`, e.g. on a GPU). With
    ``raw_layout`` the payload holds every row raw and no offset tables are kept."""
    mask, bitval = plan.mask, plan.bitval
    alts = (plan.select_bits, plan.alt_masks, plan.alt_bitvals)
    list_header = plan.list_header
    if list_header and not list_header_fits(plan.num_chunks, plan.chunk_bits):
        raise ValueError(f"a list header cannot count {plan.num_chunks} chunks in one "
                         f"{plan.chunk_bits}-bit word: use a bitmap header or wider chunks")
    num_groups = plan.num_groups
    if raw_layout:  # no chunk is decoded through a pattern: keep one empty kind
        c = plan.num_chunks
        mask, bitval = np.zeros_like(mask[:c]), np.zeros_like(bitval[:c])
        alts, list_header, num_groups = (None, None, None), False, 1
        offset_lo, block_base, shift = np.zeros(0, np.uint16), np.zeros(0, np.uint64), 0
    else:
        offset_lo, block_base, shift = split_offsets(offsets)
    kind_masks, kind_bitvals, packed_kinds, kind_bits, sel, alt_masks, alt_bitvals = \
        column_kinds(mask, bitval, *alts)
    return CompressedMatrix(
        shape=tuple(shape), dtype=dtype, chunk_bits=plan.chunk_bits, kind_masks=kind_masks,
        kind_bitvals=kind_bitvals, column_kinds=packed_kinds, kind_bits=kind_bits,
        payload=payload, offset_lo=offset_lo, block_base=block_base, offset_shift=shift,
        threshold=plan.threshold, raw_layout=raw_layout, compress_seconds=compress_seconds,
        kind_select_bits=sel, alt_masks=alt_masks, alt_bitvals=alt_bitvals,
        list_header=list_header, num_groups=num_groups)
