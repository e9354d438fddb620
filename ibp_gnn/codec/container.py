"""The condensed IBP container: rows back to back in one buffer, compact offsets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import dtypes

WORD_DTYPES = {16: np.dtype(np.uint16), 32: np.dtype(np.uint32), 64: np.dtype(np.uint64)}
PAYLOAD_ALIGNMENT = 256


KIND_BITS = (0, 1, 2, 4, 8, 16, 32)


def split_offsets(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Absolute word offsets int64 ``[N + 1]`` -> ``(offset_lo, block_base, offset_shift)``.

    The smallest tables among uint8, uint16 and uint32 relative offsets, each with the largest
    block (``offset_shift <= 16``) whose relative offsets it holds: short rows (a few words
    each) take one byte per row, where two bytes would cost them a tenth of their size.
    """
    n = len(offsets)
    best = None
    for dtype in (np.uint8, np.uint16, np.uint32):
        shift = _largest_block_shift(offsets, np.iinfo(dtype).max)
        if shift is None:
            continue
        size = n * np.dtype(dtype).itemsize + 8 * (-(-n // (1 << shift)))
        if best is None or size < best[0]:
            best = (size, dtype, shift)
    if best is None:
        raise ValueError("a row is too long for 32-bit relative offsets")
    _, dtype, shift = best
    base = offsets[::1 << shift]
    lo = offsets - base[np.arange(n) >> shift]
    return lo.astype(dtype), base.astype(np.uint64), shift


def _largest_block_shift(offsets: np.ndarray, limit: int) -> int | None:
    """The largest ``shift <= 16`` for which every offset minus the first offset of its block
    of ``2**shift`` rows is at most ``limit`` (None when even single rows exceed it). The
    offsets never decrease, so a block's largest relative offset is its last one."""
    n = len(offsets)
    if n == 0:
        return 16
    for shift in range(16, -1, -1):
        size = 1 << shift
        starts = offsets[::size]
        ends = offsets[size - 1::size]
        widest = int((ends - starts[:len(ends)]).max(initial=0))
        widest = max(widest, int(offsets[-1] - starts[-1]))
        if widest <= limit:
            return shift
    return None


def pack_kinds(ids: np.ndarray, kind_bits: int) -> np.ndarray:
    """Column kind ids ``[C]`` -> uint32 words, ``kind_bits`` bits each, least significant first."""
    if kind_bits == 0:
        return np.zeros(0, np.uint32)
    per_word = 32 // kind_bits
    padded = np.zeros(-(-len(ids) // per_word) * per_word, np.uint64)
    padded[:len(ids)] = ids
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(kind_bits))
    return (padded.reshape(-1, per_word) << shifts).sum(1, dtype=np.uint64).astype(np.uint32)


def unpack_kinds(words: np.ndarray, kind_bits: int, num_columns: int) -> np.ndarray:
    """Inverse of :func:`pack_kinds`: uint32 ids ``[num_columns]``."""
    if kind_bits == 0:
        return np.zeros(num_columns, np.uint32)
    per_word = 32 // kind_bits
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(kind_bits)
    ids = (words.astype(np.uint64)[:, None] >> shifts) & np.uint64((1 << kind_bits) - 1)
    return ids.reshape(-1)[:num_columns].astype(np.uint32)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True)`` for a 2-D integer array, through one
    lexsort (numpy's version compares the rows as opaque byte strings, far slower)."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.ones(len(rows), bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    ids = np.empty(len(rows), np.int64)
    ids[order] = np.cumsum(new) - 1
    return ordered[new], ids


def column_kinds(mask: np.ndarray, bitval: np.ndarray, select_bits=None, alt_masks=None,
                 alt_bitvals=None):
    """Distinct column patterns: ``(kind_masks, kind_bitvals, packed ids, kind_bits,
    kind_select_bits, alt_masks, alt_bitvals)``.

    Per column ``j``: base pattern ``(mask[j], bitval[j])``, ``select_bits[j]`` and alternative
    patterns ``alt_masks/alt_bitvals[j, :2**select_bits[j]]`` (``[C, S]``; default: no selector
    bits and one alternative, the empty mask). The alternatives of the kinds come out flat,
    kind by kind.
    """
    c = len(mask)
    if select_bits is None:
        select_bits = np.zeros(c, np.uint8)
        alt_masks = np.zeros((c, 1), mask.dtype)
        alt_bitvals = np.zeros((c, 1), mask.dtype)
    if c == 0:
        return (mask[:0], bitval[:0], np.zeros(0, np.uint32), 0, np.zeros(0, np.uint8),
                mask[:0], bitval[:0])
    slots = 1 << np.asarray(select_bits, np.int64)
    used = np.arange(alt_masks.shape[1])[None, :] < slots[:, None]
    rows = np.concatenate([mask[:, None].astype(np.uint64), bitval[:, None].astype(np.uint64),
                           np.asarray(select_bits, np.uint64)[:, None],
                           np.where(used, alt_masks, 0).astype(np.uint64),
                           np.where(used, alt_bitvals, 0).astype(np.uint64)], axis=1)
    table, ids = _unique_rows(rows)
    kind_bits = next(b for b in KIND_BITS if (1 << b) >= len(table))
    width = alt_masks.shape[1]
    kind_sel = table[:, 2].astype(np.uint8)
    keep = np.arange(width)[None, :] < (1 << kind_sel.astype(np.int64))[:, None]
    wd = mask.dtype
    return (np.ascontiguousarray(table[:, 0].astype(wd)),
            np.ascontiguousarray(table[:, 1].astype(wd)), pack_kinds(ids, kind_bits), kind_bits,
            kind_sel, np.ascontiguousarray(table[:, 3:3 + width][keep].astype(wd)),
            np.ascontiguousarray(table[:, 3 + width:][keep].astype(wd)))


def as_index(index, num_rows: int) -> np.ndarray:
    """Validate a row index (any integer dtype, tensor, array, list, slice or None) -> int64."""
    if index is None:
        return np.arange(num_rows, dtype=np.int64)
    if isinstance(index, slice):
        return np.arange(num_rows, dtype=np.int64)[index]
    if isinstance(index, torch.Tensor):
        if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
            raise TypeError(f"row index must be an integer tensor, got {index.dtype}")
        idx = index.detach().cpu().reshape(-1).to(torch.int64).numpy()
    else:
        arr = np.asarray(index)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"row index must be integers, got dtype {arr.dtype}")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise IndexError(f"row index {arr.max()} out of range for {num_rows} rows")
        idx = arr.reshape(-1).astype(np.int64, copy=False)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0:
            raise IndexError(f"negative row index {lo}: indices must be in [0, {num_rows})")
        if hi >= num_rows:
            raise IndexError(f"row index {hi} out of range for {num_rows} rows")
    return idx


def _default_allocator(nbytes: int) -> np.ndarray:
    buf = np.empty(nbytes + PAYLOAD_ALIGNMENT, dtype=np.uint8)
    start = (-buf.ctypes.data) % PAYLOAD_ALIGNMENT
    return buf[start:start + nbytes]


@dataclass(eq=False)
class CompressedMatrix:
    """An ``[N, *row_shape]`` matrix, IBP-compressed row by row (see ``docs/format.md``).

    Attributes:
        shape: ``(N, *row_shape)`` of the original matrix.
        dtype: dtype name (``"float32"``, ``"bfloat16"``, ...).
        chunk_bits: chunk width ``W`` (16, 32 or 64).
        kind_masks, kind_bitvals: ``[K]`` words of width ``W``: the base pattern (invariant
            bits, their value) of each distinct column kind.
        column_kinds: uint32 words packing each column's kind id in ``kind_bits`` bits.
        payload: ``[total_words]`` words of width ``W``: the rows back to back.
        offset_lo: uint8/uint16/uint32 ``[N + 1]``; block_base: uint64
            ``[(N >> offset_shift) + 1]``:
            row ``i`` starts at word ``block_base[i >> offset_shift] + offset_lo[i]``.
        threshold: the invariance threshold the masks were chosen with (information only).
        raw_layout: every row is stored raw and the offsets are implicit (row ``i`` is words
            ``[i * C, (i + 1) * C)``; ``offset_lo`` and ``block_base`` are empty): what the
            encoder keeps when compression would not pay for the whole matrix.
        kind_select_bits: uint8 ``[K]``, selector bits ``s`` of each kind (default all 0).
        alt_masks, alt_bitvals: ``[sum(2**s)]`` words: the alternative patterns of the kinds,
            kind by kind (default: one empty mask per kind, i.e. the chunk is stored whole).
        list_header: rows list their non-base chunks instead of a bitmap header.
        num_groups: row groups ``G``; each encoded row starts with its group id and is coded
            against its group's column kinds (``column_kinds`` then packs ``G * C`` ids,
            group-major).
    """

    shape: tuple
    dtype: str
    chunk_bits: int
    kind_masks: np.ndarray
    kind_bitvals: np.ndarray
    column_kinds: np.ndarray
    kind_bits: int
    payload: np.ndarray
    offset_lo: np.ndarray
    block_base: np.ndarray
    offset_shift: int
    threshold: float = 1.0
    raw_layout: bool = False
    compress_seconds: float = field(default=0.0, compare=False)
    kind_select_bits: np.ndarray | None = None
    alt_masks: np.ndarray | None = None
    alt_bitvals: np.ndarray | None = None
    list_header: bool = False
    num_groups: int = 1

    def __post_init__(self):
        if self.kind_select_bits is None:
            k = self.kind_masks.shape[0]
            self.kind_select_bits = np.zeros(k, np.uint8)
            self.alt_masks = np.zeros(k, self.kind_masks.dtype)
            self.alt_bitvals = np.zeros(k, self.kind_masks.dtype)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return int(self.shape[0])

    @property
    def row_shape(self) -> tuple:
        return tuple(self.shape[1:])

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * dtypes.itemsize(self.dtype)

    @property
    def chunk_bytes(self) -> int:
        return self.chunk_bits // 8

    @property
    def num_chunks(self) -> int:
        return -(-self.row_bytes // self.chunk_bytes)

    @property
    def header_words(self) -> int:
        """Bitmap header words of an encoded row (0 with a list header)."""
        return 0 if self.list_header else -(-self.num_chunks // self.chunk_bits)

    @property
    def extended(self) -> bool:
        """Whether the matrix uses options beyond the basic format (selectors, list header,
        row groups)."""
        return bool(self.list_header or self.num_groups > 1 or np.any(self.kind_select_bits)
                    or np.any(self.alt_masks))

    @property
    def group_bits(self) -> int:
        """Bits of the group id at the start of every encoded row's stream."""
        return (self.num_groups - 1).bit_length()

    @property
    def num_kinds(self) -> int:
        return int(self.kind_masks.shape[0])

    def column_kind_ids(self) -> np.ndarray:
        """Kind id of every column of every row group, uint32 ``[G * C]`` (group-major)."""
        return unpack_kinds(self.column_kinds, self.kind_bits, self.num_groups * self.num_chunks)

    @property
    def mask(self) -> np.ndarray:
        """Per-column base masks ``[G * C]`` (expanded from the kinds on every access)."""
        return self.kind_masks[self.column_kind_ids()]

    @property
    def bitval(self) -> np.ndarray:
        """Per-column base values ``[G * C]`` (expanded on every access)."""
        return self.kind_bitvals[self.column_kind_ids()]

    @property
    def torch_dtype(self) -> torch.dtype:
        return dtypes.torch_dtype(self.dtype)

    # -- sizes ------------------------------------------------------------------------------
    @property
    def raw_bytes(self) -> int:
        return self.num_rows * self.row_bytes

    @property
    def payload_bytes(self) -> int:
        return int(self.payload.nbytes)

    @property
    def index_bytes(self) -> int:
        return int(self.offset_lo.nbytes + self.block_base.nbytes)

    @property
    def column_bytes(self) -> int:
        return int(self.kind_masks.nbytes + self.kind_bitvals.nbytes + self.column_kinds.nbytes
                   + self.kind_select_bits.nbytes + self.alt_masks.nbytes
                   + self.alt_bitvals.nbytes)

    @property
    def host_bytes(self) -> int:
        return self.payload_bytes + self.index_bytes + self.column_bytes

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.host_bytes if self.raw_bytes else 1.0

    def row_offsets(self, index=None) -> tuple[np.ndarray, np.ndarray]:
        """Word range ``[start, end)`` of each requested row in ``payload`` (int64 arrays)."""
        idx = as_index(index, self.num_rows)
        return self._offsets(idx), self._offsets(idx + 1)

    def offset_tables(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(offset_lo, block_base, offset_shift)``, built for a raw layout (for decoders that
        always read offsets, such as the GPU kernel; the arrays are not kept)."""
        if not self.raw_layout:
            return self.offset_lo, self.block_base, self.offset_shift
        return split_offsets(np.arange(self.num_rows + 1, dtype=np.int64) * self.num_chunks)

    def _offsets(self, idx: np.ndarray) -> np.ndarray:
        if self.raw_layout:
            return idx.astype(np.int64) * self.num_chunks
        return (self.block_base[idx >> self.offset_shift].astype(np.int64)
                + self.offset_lo[idx].astype(np.int64))

    @property
    def row_words(self) -> np.ndarray:
        """Stored length of every row in words, int64 ``[N]``."""
        off = self._offsets(np.arange(self.num_rows + 1, dtype=np.int64))
        return np.diff(off)

    @property
    def raw_flags(self) -> np.ndarray:
        """bool ``[N]``: rows stored raw (exactly the rows of ``num_chunks`` words)."""
        return self.row_words == self.num_chunks

    @property
    def rows_raw(self) -> int:
        return int(self.raw_flags.sum())

    # -- patterns ---------------------------------------------------------------------------
    def plan(self):
        """The per-column plan this matrix was encoded with (``compress(x, plan=cm.plan())``
        encodes another matrix of the same row layout the same way)."""
        from .plan import Plan
        kinds = self.column_kind_ids()
        _, _, _, sel, alt_start = self.patterns()
        slots = int(1 << sel.max(initial=0))
        alt_masks = np.zeros((len(kinds), slots), self.kind_masks.dtype)
        alt_bitvals = np.zeros_like(alt_masks)
        for v in range(slots):
            has = v < (1 << sel[kinds])
            where = alt_start[kinds[has]] + v
            alt_masks[has, v] = self.alt_masks[where]
            alt_bitvals[has, v] = self.alt_bitvals[where]
        return Plan(self.chunk_bits, self.mask, self.bitval, self.threshold,
                    select_bits=self.kind_select_bits[kinds].astype(np.uint8),
                    alt_masks=alt_masks, alt_bitvals=alt_bitvals, list_header=self.list_header,
                    num_groups=self.num_groups)

    def patterns(self):
        """The pattern table the kernels use, cached: ``(mask, bitval, free, select_bits,
        alt_start)``. Patterns ``[0, K)`` are the kinds' base patterns, kind ``k``'s
        alternative ``v`` is pattern ``K + alt_start[k] + v``; all uint64/int64."""
        table = self.__dict__.get("_patterns")
        if table is None:
            from .plan import popcount
            mask = np.concatenate([self.kind_masks, self.alt_masks]).astype(np.uint64)
            bitval = np.concatenate([self.kind_bitvals, self.alt_bitvals]).astype(np.uint64)
            free = self.chunk_bits - popcount(mask)
            sel = self.kind_select_bits.astype(np.int64)
            alt_start = np.concatenate([[0], np.cumsum(1 << sel)[:-1]]).astype(np.int64)
            table = self.__dict__["_patterns"] = (mask, bitval, free, sel, alt_start)
        return table

    @property
    def alt_slots(self):
        """Every kind's alternatives as rows of ``[K, S]`` tables (``S``: the most slots of any
        kind), cached: ``(mask, bitval, free)``, uint64/uint64/int64; slots past a kind's
        ``2**select_bits`` are never read. The encoder's inner loop scans a kind's slots
        contiguously instead of chasing pattern indices."""
        slots = self.__dict__.get("_alt_slots")
        if slots is None:
            from ._kernels import NO_MATCH
            mask, bitval, free, sel, alt_start = self.patterns()
            k = len(sel)
            per_kind = 1 << sel
            width = int(per_kind.max(initial=1))
            kind = np.repeat(np.arange(k), per_kind)
            slot = np.arange(int(per_kind.sum())) - np.repeat(alt_start[:k], per_kind)
            table_mask = np.zeros((k, width), np.uint64)
            table_bitval = np.zeros((k, width), np.uint64)
            table_free = np.full((k, width), NO_MATCH, np.int64)
            table_mask[kind, slot] = mask[k:]
            table_bitval[kind, slot] = bitval[k:]
            table_free[kind, slot] = free[k:]
            slots = self.__dict__["_alt_slots"] = (table_mask, table_bitval, table_free)
        return slots

    @property
    def pattern_runs(self):
        """``(start, length, count)`` runs of free bits per pattern (``plan.free_bit_runs``)."""
        runs = self.__dict__.get("_pattern_runs")
        if runs is None:
            from .plan import free_bit_runs
            runs = self.__dict__["_pattern_runs"] = free_bit_runs(self.patterns()[0],
                                                                  self.chunk_bits)
        return runs

    @property
    def decode_tables(self):
        """What the CPU decoder needs besides the patterns, cached (it runs once per batch):
        ``(kinds, segment_free, bitval_row)``: the column kind ids ``[G * C]``; per row group
        and segment of 32 chunks, bit ``b`` set when chunk ``b``'s base pattern has free bits
        (uint64 ``[G, S]``); per row group, the row every chunk decodes to when it matches a
        base pattern without free bits (uint8 ``[G, row_bytes]``)."""
        tables = self.__dict__.get("_decode_tables")
        if tables is None:
            from ._kernels import SEGMENT
            kinds = self.column_kind_ids()
            pat_free = self.patterns()[2]
            g, c = self.num_groups, self.num_chunks
            segments = -(-c // SEGMENT)
            has_free = np.zeros((g, segments * SEGMENT), np.uint64)
            has_free[:, :c] = (pat_free[kinds] > 0).reshape(g, c)
            weights = np.uint64(1) << np.arange(SEGMENT, dtype=np.uint64)
            segment_free = (has_free.reshape(g, segments, SEGMENT) * weights).sum(
                2, dtype=np.uint64)
            bitval_row = np.zeros((g, c * self.chunk_bytes), np.uint8)
            bitval_row.view(self.payload.dtype)[:] = self.kind_bitvals[kinds].reshape(g, c)
            tables = self.__dict__["_decode_tables"] = (
                kinds, segment_free, np.ascontiguousarray(bitval_row[:, :self.row_bytes]))
        return tables

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, index=None) -> torch.Tensor:
        """Rows ``index`` (``[B]`` of any integer dtype, a slice, or None for all rows), bit-exact,
        in the caller's order, as a CPU tensor ``[B, *row_shape]`` of the original dtype."""
        from .decode import decode_rows
        idx = as_index(index, self.num_rows)
        shape = (len(idx),) + self.row_shape
        if not len(idx) or not self.row_bytes:
            return torch.zeros(shape, dtype=self.torch_dtype)
        rows = decode_rows(self, idx)
        return torch.from_numpy(rows).view(self.torch_dtype).reshape(shape)

    def save(self, path) -> None:
        from .io import save
        save(self, path)

    @classmethod
    def load(cls, path, *, mmap: bool = True) -> "CompressedMatrix":
        from .io import load
        return load(path, mmap=mmap)

    def summary(self) -> dict:
        return {
            "rows": self.num_rows,
            "dim": int(np.prod(self.row_shape, dtype=np.int64)),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "raw_bytes": self.raw_bytes,
            "payload_bytes": self.payload_bytes,
            "offset_bytes": self.index_bytes,
            "offset_bits": 0 if self.raw_layout else self.offset_lo.itemsize * 8,
            "pattern_bytes": self.column_bytes,
            "host_bytes": self.host_bytes,
            "ratio": self.ratio,
            "chunk_bits": self.chunk_bits,
            "column_kinds": self.num_kinds,
            "threshold": self.threshold,
            "raw_layout": self.raw_layout,
            "header": "list" if self.list_header else "bitmap",
            "max_select_bits": int(self.kind_select_bits.max(initial=0)),
            "row_groups": self.num_groups,
            "rows_raw": self.rows_raw,
            "compress_seconds": self.compress_seconds,
        }


Allocator = Callable[[int], np.ndarray]
