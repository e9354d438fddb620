"""Preprocessing: choose the chunk width and the per-column masks by exact compressed size."""
from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass

import numpy as np

from . import _kernels
from .container import WORD_DTYPES
from .dtypes import read_only

#: Invariance thresholds tried first: a bit joins the mask when at least this fraction of rows
#: agree on its value. 1.0 keeps only truly invariant bits; 0.5 makes every bit "invariant".
#: The best one is then refined on a 0.01 grid between its neighbours.
DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)
REFINE_STEP = 0.01
CHUNK_WIDTHS = (16, 32, 64)
DEFAULT_SAMPLE_ROWS = 1 << 18
DEFAULT_BLOCK_BYTES = 64 << 20
#: Up to this many rows, bits are counted one by one instead of through a byte histogram.
DIRECT_COUNT_ROWS = 4096
#: Most row groups a matrix may have (the group id of a row is at most 8 bits).
MAX_GROUPS = 256

# bits set in each byte value, [256, 8]: _BYTE_BITS[v, b] = (v >> b) & 1
_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.int64)


@dataclass(frozen=True)
class Plan:
    """How rows are chunked and which patterns each column's chunks are coded against.

    ``mask``/``bitval`` are ``[G * C]`` arrays of the chunk's word dtype: the base pattern of
    each column in each of the ``num_groups`` row groups (group-major: column ``c`` of group
    ``g`` is entry ``g * C + c``; one group unless rows were clustered). ``select_bits`` (uint8
    ``[G * C]``) and ``alt_masks``/``alt_bitvals`` (``[G * C, S]``, ``S >= 2**select_bits``)
    give the alternatives a non-base chunk selects from; by default one empty mask (the chunk
    is stored whole). ``list_header``: rows list their non-base chunks instead of a bitmap.
    """

    chunk_bits: int
    mask: np.ndarray
    bitval: np.ndarray
    threshold: float
    select_bits: np.ndarray | None = None
    alt_masks: np.ndarray | None = None
    alt_bitvals: np.ndarray | None = None
    list_header: bool = False
    num_groups: int = 1

    def __post_init__(self):
        c = self.mask.shape[0]
        if self.select_bits is None:
            object.__setattr__(self, "select_bits", np.zeros(c, np.uint8))
            object.__setattr__(self, "alt_masks", np.zeros((c, 1), self.mask.dtype))
            object.__setattr__(self, "alt_bitvals", np.zeros((c, 1), self.mask.dtype))
        if not 1 <= self.num_groups <= MAX_GROUPS or c % self.num_groups:
            raise ValueError(f"num_groups must be in [1, {MAX_GROUPS}] and divide the "
                             f"{c} column patterns, got {self.num_groups}")

    @property
    def num_chunks(self) -> int:
        return int(self.mask.shape[0]) // self.num_groups

    @property
    def free_bits(self) -> np.ndarray:
        return self.chunk_bits - popcount(self.mask)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each word, int64."""
    words = np.ascontiguousarray(words)
    per_byte = _BYTE_BITS.sum(1)[words.reshape(-1).view(np.uint8)]
    return per_byte.reshape(words.shape + (words.dtype.itemsize,)).sum(-1)


def free_bit_runs(mask: np.ndarray, chunk_bits: int):
    """``start[C, R]``, ``length[C, R]``, ``count[C]``: maximal runs of zero bits of each mask,
    from the most significant bit down. ``R`` is the largest run count over the columns."""
    c = mask.shape[0]
    start = np.zeros((c, chunk_bits // 2 + 1), np.int64)  # (at most every other bit is free)
    length = np.zeros_like(start)
    count = np.zeros(c, np.int64)
    _kernels.zero_bit_runs(np.ascontiguousarray(mask, np.uint64), chunk_bits, start, length,
                           count)
    r = max(1, int(count.max()) if c else 1)
    return np.ascontiguousarray(start[:, :r]), np.ascontiguousarray(length[:, :r]), count


_PADDED = contextvars.ContextVar("ibp_gnn_padded_rows", default=None)


@contextlib.contextmanager
def reused_padding():
    """Within this block :func:`padded_words` pads each array once: the planner and the
    encoder pass over the same rows a dozen times, and rows whose byte count is not a multiple
    of 8 would otherwise be copied on every pass. At most :data:`DEFAULT_BLOCK_BYTES` of
    copies are kept, each with the array it came from (so that memory cannot be reused for
    another array meanwhile)."""
    token = _PADDED.set({})
    try:
        yield
    finally:
        _PADDED.reset(token)


def padded_words(byte_rows: np.ndarray, pad_to: int = 8) -> np.ndarray:
    """``[n, row_bytes]`` uint8 -> ``[n, ceil(row_bytes / pad_to) * pad_to]`` uint8 with zero
    padding, C-contiguous and ``pad_to``-byte aligned so it views as words of ``pad_to`` bytes
    (2, 4 or 8) or fewer. Views the input when no padding is needed and it is aligned.
    Read-only use: inside :func:`reused_padding` the same copy may be handed out again."""
    n, rb = byte_rows.shape
    width = -(-rb // pad_to) * pad_to
    if width == rb and byte_rows.flags.c_contiguous and byte_rows.ctypes.data % pad_to == 0:
        return read_only(byte_rows)
    cache = _PADDED.get()
    key = (byte_rows.ctypes.data, byte_rows.shape, byte_rows.strides, pad_to)
    if cache is not None and key in cache:
        return cache[key][1]
    out = np.zeros((n, width), np.uint8)
    out[:, :rb] = byte_rows
    out.flags.writeable = False
    if (cache is not None and sum(kept.nbytes for _, kept in cache.values()) + out.nbytes
            <= DEFAULT_BLOCK_BYTES):
        cache[key] = (byte_rows, out)
    return out


def row_blocks(byte_rows: np.ndarray, block_bytes: int = DEFAULT_BLOCK_BYTES,
               pad_to: int = 8):
    """Yield ``(first_row, padded block)`` covering the rows in bounded memory, each block
    from :func:`padded_words` (rows padded to ``pad_to`` bytes: a pass that reads 32-bit words
    pads rows of 4k bytes not at all, where padding to 8 would copy every row)."""
    n, rb = byte_rows.shape
    step = max(1, block_bytes // max(rb, 1))
    for lo in range(0, n, step):
        yield lo, padded_words(byte_rows[lo:lo + step], pad_to)


def bit_counts(byte_rows: np.ndarray, block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """Rows with bit ``b`` of byte ``p`` set, for every bit position of the 8-byte-padded row:
    int64 ``[row_bytes_padded * 8]``, bit ``8 * p + b``. One streaming pass in row blocks."""
    n, rb = byte_rows.shape
    width = -(-rb // 8) * 8
    if n <= DIRECT_COUNT_ROWS:
        direct = np.zeros(width * 8, np.int64)
        _kernels.set_bit_counts(padded_words(byte_rows).view(np.uint64), direct)
        return direct
    hist = np.zeros((256, width), np.int64)
    for _, block in row_blocks(byte_rows, block_bytes):
        _kernels.byte_histogram(block.view(np.uint64), hist)
    counts = np.zeros(width * 8, np.int64)
    _kernels.histogram_bit_counts(hist, counts)
    return counts


def entropy_bound_bits(counts: np.ndarray, n: int) -> float:
    """The bit-entropy bound of ``n`` rows with these per-bit-position set counts: the sum of
    the binary entropies of every bit position, in bits (what a code treating every bit of
    every column independently could reach)."""
    if n == 0:
        return 0.0
    return float(binary_entropy(counts[(counts > 0) & (counts < n)] / n).sum() * n)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Bits of entropy of a bit set with probability ``p`` (elementwise, ``0 < p < 1``)."""
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def entropy_bound_bytes(x, block_rows: int = 1 << 16) -> float:
    """The bit-entropy bound of a matrix (anything :func:`compress` takes, or a
    ``CompressedMatrix``, decoded block by block) in bytes. Padding bits count nothing: they
    are constant."""
    from .container import CompressedMatrix
    from .dtypes import as_byte_rows
    if isinstance(x, CompressedMatrix):
        counts, n = None, x.num_rows
        for lo in range(0, n, block_rows):
            block, _, _ = as_byte_rows(x.decode(slice(lo, lo + block_rows)))
            part = bit_counts(block)
            counts = part if counts is None else counts + part
        return entropy_bound_bits(counts, n) / 8 if counts is not None else 0.0
    byte_rows, _, _ = as_byte_rows(x)
    return entropy_bound_bits(bit_counts(byte_rows), byte_rows.shape[0]) / 8


def _candidate_masks(counts: np.ndarray, n, chunk_bits: int, num_chunks: int,
                     thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Majority bit values ``[..., C]`` and nested masks ``[T, ..., C]`` as uint64 words of
    ``n`` rows whose bit counts are ``counts`` (``[..., >= C * chunk_bits]``; a leading axis
    holds several sets of rows, ``n`` then has one count per set)."""
    counts = np.asarray(counts)
    per_chunk = counts[..., :num_chunks * chunk_bits].reshape(
        counts.shape[:-1] + (num_chunks, chunk_bits))
    n = np.asarray(n, np.int64).reshape(np.shape(n) + (1, 1))
    agreement = np.maximum(per_chunk, n - per_chunk) / np.maximum(n, 1)
    limits = np.asarray(thresholds, np.float64).reshape((-1,) + (1,) * agreement.ndim) - 1e-12
    return _bits_to_words(per_chunk * 2 > n), _bits_to_words(agreement >= limits)


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    """Boolean ``[..., w]`` (bit ``b`` of each word last) -> uint64 ``[...]`` words."""
    w = bits.shape[-1]
    packed = np.ascontiguousarray(np.packbits(bits, axis=-1, bitorder="little"))
    return packed.view(f"<u{w // 8}")[..., 0].astype(np.uint64)


#: Base pattern candidates of the extended search: exact values (0.5: every bit in the mask),
#: then looser masks; the basic search's best threshold is added.
BASE_THRESHOLDS = (0.5, 0.9, 0.99, 1.0)
#: Agreement a bit needs within a group of chunks to join that group's pattern.
GROUP_THRESHOLDS = (1.0, 0.99, 0.95, 0.9)
#: Extended candidates whose estimated size is within this fraction of the smallest estimate
#: get their exact size computed (the estimate prices columns independently).
ESTIMATE_MARGIN = 0.01
DISCOVERY_ROWS = 4096
SPLIT_SAMPLE = 64
#: Row group counts the planner tries (in order, while each pays more than the one before),
#: the bits rows are clustered on, and the fewest planning rows a group needs.
GROUP_COUNTS = (4, 8, 16)
CLUSTER_BITS = 128
MIN_GROUP_ROWS = 16
KMEANS_ROUNDS = 10
#: Rows k-means moves its centres on (every row is then put with its nearest centre).
KMEANS_ROWS = 2048
#: A group count ``k`` must store the sample at least ``MIN_GROUP_GAIN * k / GROUP_COUNTS[0]``
#: smaller than the best count before it (or one group) to be taken, and to go on to the
#: next count: each count costs a clustering and a pattern search, and the encoder scores
#: every row in up to ``k`` groups.
MIN_GROUP_GAIN = 0.01
#: Rows of a matrix planned whole up to which row group counts are compared by their exact
#: size over every row (scoring a few thousand other rows per count and then every row again
#: to confirm costs more).
WHOLE_SCORING_ROWS = 3 * DISCOVERY_ROWS
#: Rows a row-group plan is confirmed on against the single-group plan, when the planning
#: rows are a sample of a larger matrix (the sizes then only decide, the encoder rescores).
CONFIRM_ROWS = 1 << 15


def list_header_fits(num_chunks: int, chunk_bits: int) -> bool:
    """Whether a list header's count and positions fit in one chunk word each (a field is
    read with one word's shift): only 16-bit chunks of rows over 65,535 chunks miss it."""
    return num_chunks.bit_length() <= chunk_bits


def auto_widths(element_bytes: int | None) -> tuple[int, ...]:
    """Chunk widths ``chunk_bits="auto"`` scores: 16-bit chunks only for elements of at most
    two bytes (fp16, bf16, int16, bytes), where a chunk then holds one value instead of a pair;
    for wider elements they would only double the header."""
    return CHUNK_WIDTHS if element_bytes is not None and element_bytes <= 2 else (32, 64)


def choose_plan(byte_rows: np.ndarray, **kwargs) -> Plan:
    """The plan of :func:`plan_rows` (same arguments)."""
    return plan_rows(byte_rows, **kwargs)[0]


def plan_rows(byte_rows: np.ndarray, *, chunk_bits="auto", thresholds=None,
              sample_rows: int | None = DEFAULT_SAMPLE_ROWS, seed: int = 0,
              block_bytes: int = DEFAULT_BLOCK_BYTES, extended: bool = True,
              element_bytes: int | None = None, num_rows: int | None = None):
    """Pick chunk width, patterns and header kind minimising the exact stored size.

    The basic search scores one invariance threshold for all columns (``thresholds``: the
    candidates; by default :data:`DEFAULT_THRESHOLDS`, with the best refined on a
    :data:`REFINE_STEP` grid between its neighbours). With ``extended`` each column then also
    gets its own base pattern and up to 7 alternative patterns found by splitting the chunks
    that miss the base on single bits, and rows may list their non-base chunks instead of a
    bitmap; the smallest exact size wins, so the extended plan is never larger than the basic
    one. Statistics and sizes come from all rows, or from ``sample_rows`` rows drawn at random
    when the matrix is larger (the plan only affects the size, never correctness).
    ``element_bytes`` (the size of one element of the rows) decides the widths ``"auto"``
    tries (:func:`auto_widths`). ``num_rows``: the rows of the whole matrix when
    ``byte_rows`` is already a sample of it (patterns stored once must pay for themselves over
    all rows; default: the rows given). Row groups (:func:`grouped_plan`) are searched for the
    winning width and header kind.

    Returns ``(plan, lengths, groups)``: when every row was scored under the winning plan (no
    sampling), its stored words and row group per row (what the encoder needs next), else
    ``None, None``.
    """
    n, rb = byte_rows.shape
    num_rows = num_rows or n
    widths = auto_widths(element_bytes) if chunk_bits == "auto" else (int(chunk_bits),)
    for w in widths:
        if w not in CHUNK_WIDTHS:
            raise ValueError(f"chunk_bits must be 'auto' or one of {CHUNK_WIDTHS}, got {w!r}")
    refine = thresholds is None
    thresholds = DEFAULT_THRESHOLDS if refine else tuple(sorted(float(t) for t in thresholds))
    if not thresholds or any(not 0.5 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"thresholds must lie in [0.5, 1.0], got {thresholds}")
    if sample_rows is not None and n > sample_rows:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample_rows, replace=False))
        byte_rows = byte_rows[rows]
        n = sample_rows
    counts = bit_counts(byte_rows, block_bytes)

    def stored_bytes(w: int, ts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact stored bytes of the rows for every threshold in ``ts``, plus the masks."""
        c = -(-rb // (w // 8))
        majority, masks = _candidate_masks(counts, n, w, c, ts)
        total = np.zeros(len(ts), np.int64)
        for _, block in row_blocks(byte_rows, block_bytes, w // 8):
            _kernels.candidate_words(block.view(WORD_DTYPES[w]), c, w, majority, masks,
                                     w - popcount(masks), total)
        return total * (w // 8), majority, masks

    def best_of(w, ts):
        size, majority, masks = stored_bytes(w, ts)
        t = int(np.argmin(size))
        wd = WORD_DTYPES[w]
        return size[t], t, Plan(w, masks[t].astype(wd), (majority & masks[t]).astype(wd), ts[t])

    best = []
    estimated = []
    # the rows patterns are discovered from, column by column (every width reads them)
    columns = sample_columns(byte_rows, discovery_rows(n, seed)) if extended and rb else None
    for w in widths:
        size, t, plan = best_of(w, thresholds)
        if refine:  # finer thresholds between the best one's neighbours
            lo, hi = thresholds[max(t - 1, 0)], thresholds[min(t + 1, len(thresholds) - 1)]
            grid = np.round(np.arange(lo, hi, REFINE_STEP), 4)
            extra = tuple(float(v) for v in grid if lo < v < hi and v not in thresholds)
            if extra:
                size2, _, plan2 = best_of(w, extra)
                if size2 < size:
                    size, plan = size2, plan2
        best.append((int(size), plan, None))
        if extended and n and rb:
            estimated += extended_plans(columns, plan.num_chunks, counts, n, w,
                                        plan.threshold, num_rows=num_rows)
    if estimated:
        # exact sizes cost a pass over every row: only for the candidates whose estimate is
        # close to the best one's
        cutoff = min(bits for _, bits in estimated) * (1 + ESTIMATE_MARGIN)
        for plan_x, bits in estimated:
            if bits <= cutoff:
                _, lengths, groups = score_rows(byte_rows, plan_x, block_bytes)
                best.append((int(lengths.sum()) * (plan_x.chunk_bits // 8), plan_x,
                             (lengths, groups)))
    size, plan, scored = min(best, key=lambda r: r[0])
    if extended and GROUP_COUNTS and n >= MIN_GROUP_ROWS * min(GROUP_COUNTS) and rb:
        estimate = next((bits for plan_x, bits in estimated if plan_x is plan), None)
        plan, scored = grouped_plan(byte_rows, counts, plan, size, scored, seed=seed,
                                    num_rows=num_rows, block_bytes=block_bytes,
                                    columns=columns,
                                    single_estimate=estimate)
    if scored is None or n != num_rows:
        return plan, None, None
    return plan, scored[0], scored[1]


def score_rows(byte_rows: np.ndarray, plan: Plan, block_bytes: int = DEFAULT_BLOCK_BYTES):
    """``(proto, lengths, groups)``: an empty container with ``plan``'s tables (for their
    size), and every row's stored words and row group (``encode.stored_row_words``)."""
    from .encode import pattern_tables, stored_row_words  # encode builds on this module
    proto = pattern_tables(plan, byte_rows.shape)
    return (proto, *stored_row_words(byte_rows, proto, block_bytes))


def discovery_rows(n: int, seed: int) -> np.ndarray:
    """The rows patterns are discovered from: all ``n``, or :data:`DISCOVERY_ROWS` of them
    drawn at random (sorted), from a stream of their own derived from the planner's ``seed``
    (the planning sample draws from ``seed`` itself)."""
    if n <= DISCOVERY_ROWS:
        return np.arange(n)
    return _random_rows(n, DISCOVERY_ROWS, seed + 1).copy()


@functools.lru_cache(maxsize=16)
def _random_rows(n: int, count: int, seed: int) -> np.ndarray:
    """``count`` of ``n`` rows drawn without replacement by ``seed``, sorted (kept: the planner
    asks for the same draw more than once, and it costs more than planning a small matrix's
    row groups)."""
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def sample_columns(byte_rows: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The rows (those numbered ``rows``, default all) column by column, as the 64-bit words
    of the rows padded to 8 bytes: uint64 ``[C64, m]``. The planner's kernels read chunks of
    any width from it (``_kernels._column_chunk``), so one transposition serves them all."""
    n, rb = byte_rows.shape
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    out = np.empty((-(-rb // 8), len(rows)), np.uint64)
    if len(rows) * 4 > n:
        _kernels.column_major(padded_words(byte_rows).view(np.uint64), rows, out, 0)
        return out
    # a few rows of a large matrix: pad only those (padding every row would copy the matrix)
    step = max(1, DEFAULT_BLOCK_BYTES // 8 // max(rb, 1))
    for lo in range(0, len(rows), step):
        block = padded_words(byte_rows[rows[lo:lo + step]]).view(np.uint64)
        _kernels.column_major(block, np.arange(len(block)), out, lo)
    return out


def extended_plans(columns: np.ndarray, num_chunks: int, counts: np.ndarray, n: int, w: int,
                   threshold: float, *, num_rows: int | None = None,
                   members: np.ndarray | None = None) -> list[tuple[Plan, float]]:
    """Per-column base and alternative patterns (see :func:`plan_rows`): ``[(plan, bits)]``,
    the best plan with a bitmap header and the best with a list header by the bits they cost
    on ``num_rows`` rows (default: ``n``) plus the bits their alternative patterns cost, and
    that estimate of their stored bits (columns priced independently).

    ``columns``: the rows the patterns are discovered from, column by column
    (:func:`sample_columns`), or more rows when ``members`` numbers those among them;
    ``num_chunks``: the ``w``-bit chunks of a row;
    ``counts``: the :func:`bit_counts` of ``n`` rows the base patterns are chosen from (the
    same rows or more).
    """
    members = np.arange(columns.shape[1]) if members is None else members
    found = group_extended_plans(columns, num_chunks, counts[None], np.array([n]), w, threshold,
                                 members, np.array([0, len(members)]),
                                 num_rows=np.array([num_rows or n]))
    return [(plan, float(bits[0])) for plan, bits in found]


def group_extended_plans(columns: np.ndarray, num_chunks: int, counts: np.ndarray,
                         n: np.ndarray, w: int, threshold: float, members: np.ndarray,
                         row_start: np.ndarray, *, num_rows: np.ndarray,
                         list_headers=None) -> list[tuple[Plan, np.ndarray]]:
    """:func:`extended_plans` of ``G`` row groups at once: ``[(plan, bits)]``, one plan with
    a row group each per header kind (``list_headers``: the kinds, default both where a list
    header fits), and the estimated bits of each group, float64 ``[G]``.

    Group ``g``'s patterns are discovered from the rows numbered
    ``members[row_start[g]:row_start[g + 1]]`` of ``columns``; its base patterns are chosen
    from the bit counts ``counts[g]`` of ``n[g]`` rows, and its costs are those of
    ``num_rows[g]`` rows.
    """
    c = num_chunks
    num_groups = len(n)
    entries = num_groups * c
    wd = WORD_DTYPES[w]
    ts = tuple(sorted(set(BASE_THRESHOLDS) | {float(threshold)}))
    majority, masks = _candidate_masks(counts, n, w, c, ts)            # [G, C], [B, G, C]
    base_masks = masks.reshape(len(ts), entries)
    base_bitvals = majority.reshape(1, entries) & base_masks
    levels = _kernels.MAX_SELECT_BITS + 1
    # Most columns of a sparse matrix hold one value in a group: nothing to search there. They
    # are those whose threshold-1.0 mask, the last candidate, keeps every bit (every candidate
    # then keeps every bit): no rest, no alternatives, and the first candidate is chosen.
    varying = np.flatnonzero(base_masks[-1] != np.uint64((1 << w) - 1))
    num_varying = len(varying)
    # (every slot is written by the kernel: no clearing)
    alt_m = np.empty((len(ts), num_varying, (1 << levels) - 1), np.uint64)
    alt_b = np.empty_like(alt_m)
    rest_cost = np.empty((len(ts), num_varying, levels), np.int64)
    rest_count = np.empty((len(ts), num_varying), np.int64)
    base_cost = np.empty((len(ts), num_varying), np.int64)
    # C-ordered copies: a column pick is Fortran-ordered, or C-ordered when one column varies,
    # and each layout would be another compile of the kernel
    _kernels.column_alternatives(columns, members, np.asarray(row_start, np.int64), c, w,
                                 np.ascontiguousarray(base_masks[:, varying]),
                                 np.ascontiguousarray(base_bitvals[:, varying]), varying,
                                 np.asarray(GROUP_THRESHOLDS, np.float64), SPLIT_SAMPLE,
                                 alt_m, alt_b, rest_cost, rest_count, base_cost)
    pos_bits = max(1, (c - 1).bit_length())
    # costs are measured on the sample; a column's alternatives are stored once (at worst: when
    # no other column shares them), so they must pay for themselves over all rows
    rows = np.asarray(num_rows)
    scale = np.repeat(rows / np.maximum(np.diff(row_start), 1), c)[varying]
    table = alternative_table_bits(np.arange(levels), w)
    rest_cost = rest_cost * scale[None, :, None] + table[None, None, :]
    base_cost = base_cost * scale
    rest_count = rest_count * scale
    plans = []
    count_bits = c.bit_length()
    if list_headers is None:
        list_headers = (False, True) if list_header_fits(c, w) else (False,)
    cols = np.arange(entries)
    for list_header in list_headers:
        # (a constant column: the first candidate, no selector bits, no alternatives)
        a = np.zeros(entries, np.int64)
        s = np.zeros(entries, np.int64)
        entry_cost = np.full(entries, float(table[0]))
        alt_masks = np.zeros((entries, 1 << (levels - 1)), wd)
        alt_bitvals = np.zeros_like(alt_masks)
        _kernels.pick_alternatives(base_cost, rest_cost,
                                   rest_count * (pos_bits if list_header else 0), alt_m, alt_b,
                                   varying, a, s, entry_cost, alt_masks, alt_bitvals)
        # rows also pay their header and, on average, half a word of padding
        header = count_bits if list_header else -(-c // w) * w
        estimate = entry_cost.reshape(num_groups, c).sum(1) + rows * (header + w / 2)
        plans.append((Plan(w, base_masks[a, cols].astype(wd), base_bitvals[a, cols].astype(wd),
                           float(threshold), select_bits=s.astype(np.uint8),
                           alt_masks=alt_masks, alt_bitvals=alt_bitvals,
                           list_header=list_header, num_groups=num_groups),
                      estimate))
    return plans


def alternative_table_bits(select_bits: np.ndarray, w: int) -> np.ndarray:
    """What an estimate charges a column for its alternative patterns with ``select_bits``
    selector bits (elementwise): a mask and a value of ``w`` bits per slot, as if no other
    column shared them."""
    return 2 * w * np.left_shift(1, np.asarray(select_bits, np.int64))


def table_bits(plan: Plan) -> int:
    """What :func:`extended_plans` charged ``plan``'s alternative patterns in its estimate,
    over every column of every row group."""
    return int(alternative_table_bits(plan.select_bits, plan.chunk_bits).sum())


def cluster_bits(byte_rows: np.ndarray, counts: np.ndarray,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """The :data:`CLUSTER_BITS` bit positions whose values vary most (highest binary entropy
    over all rows of ``byte_rows``, whose :func:`bit_counts` are ``counts``) of every row (of
    those numbered ``rows``, default all): uint8 0/1 ``[n, B]``, ``B`` at most
    :data:`CLUSTER_BITS` (0 when no bit varies)."""
    n = len(byte_rows) if rows is None else len(rows)
    p = counts[:byte_rows.shape[1] * 8] / max(len(byte_rows), 1)
    varying = np.flatnonzero((p > 0) & (p < 1))
    spread = np.minimum(p[varying], 1 - p[varying])  # entropy grows with this
    top = varying[np.argsort(-spread, kind="stable")[:CLUSTER_BITS]]
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    out = np.empty((n, len(top)), np.uint8)
    _kernels.gather_bits(byte_rows, rows, top.astype(np.int64), out)
    return out


def cluster_rows(bits: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Row clusters ``[n]`` (ids below ``k``) of rows given by their :func:`cluster_bits`
    (``[n, B]``): k-means, seeded k-means++ start, :data:`KMEANS_ROUNDS` rounds on
    :data:`KMEANS_ROWS` of the rows at most."""
    n = len(bits)
    if not 1 <= k <= MAX_GROUPS:
        raise ValueError(f"k must be in [1, {MAX_GROUPS}], got {k}")
    if bits.shape[1] == 0 or n < k:
        return np.zeros(n, np.int64)
    fit_rows, first, uniforms = _kmeans_draws(n, KMEANS_ROWS, seed)
    # the rows the centres move on; every row is then put with its nearest
    fit = bits if fit_rows is None else bits[fit_rows]
    m = len(fit)
    # (no BLAS here: its worker threads keep spinning after a product, stalling the parallel
    # kernels that run next on the same cores)
    chosen = np.zeros(k, np.int64)
    chosen = chosen[:_kernels.seed_centers(pack_rows(fit), first, uniforms[:k - 1], chosen)]
    sums = fit[chosen].astype(np.int64)                # centres as sums of rows / row counts
    sizes = np.ones(len(chosen), np.int64)
    labels = np.full(m, -1, np.int64)
    moved = _kernels.lloyd_rounds(fit, sums, sizes, labels, KMEANS_ROUNDS)
    if fit is bits and not moved:  # (the labels are already those of the final centres)
        return labels
    labels = np.full(n, -1, np.int64)
    _kernels.nearest_centers(bits, sums, sizes, labels)
    return labels


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """0/1 rows ``[n, B]`` (uint8) packed 64 bits to a word: uint64 ``[n, ceil(B / 64)]``, bit
    ``b`` of a row in word ``b // 64`` (zero bits past ``B``)."""
    packed = np.packbits(bits, axis=1, bitorder="little")
    pad = -packed.shape[1] % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


@functools.lru_cache(maxsize=16)
def _kmeans_draws(n: int, fit_count: int, seed: int):
    """The random draws :func:`cluster_rows` starts from for ``n`` rows: the ``fit_count``
    rows the centres move on (sorted; None when ``n`` is not larger), the row of the first
    centre among those, and one uniform draw per further centre (``MAX_GROUPS - 1``: ``k``
    centres take the first ``k - 1``, as drawing ``k - 1`` would give). Kept, read-only: the
    planner clusters the same rows for several ``k``, and a generator's set-up and a draw
    without replacement cost more than seeding the centres."""
    rng = np.random.default_rng(seed)
    fit_rows = None
    if n > fit_count:
        fit_rows = read_only(np.sort(rng.choice(n, fit_count, replace=False)))
    first = int(rng.integers(min(n, fit_count)))
    return fit_rows, first, read_only(rng.random(MAX_GROUPS - 1))


def extrapolated_gain(gains: list[float]) -> float | None:
    """The gain the next row group count can be expected to bring when ``gains`` are those of
    the counts before it, each over the best before it: gains shrink as the count doubles, so
    the last gain scaled by how much it shrank from the one before (None without two gains to
    compare, or when the earlier one was none)."""
    if len(gains) < 2 or gains[-2] <= 0:
        return None
    return gains[-1] * gains[-1] / gains[-2]


def row_entropy(counts: np.ndarray, sizes: np.ndarray) -> float:
    """The bit-entropy bound per row, in bits, of row groups of ``sizes[g]`` rows (``[G]``)
    whose bits are set ``counts[g]`` times (``[G, B]``)."""
    sizes = np.asarray(sizes, np.int64)
    varies = (counts > 0) & (counts < sizes[:, None])  # (the other bits cost nothing)
    n = np.broadcast_to(sizes[:, None], counts.shape)[varies]
    return float((binary_entropy(counts[varies] / n) * n).sum()) / max(int(sizes.sum()), 1)


def entropy_scaled_gain(gains: list[float], entropies: list[float]) -> float | None:
    """The gain a row group count just clustered can be expected to bring over the last count
    taken, before its patterns are searched: the last count's gain (``gains[-1]``, over the
    count before it) scaled by how much the clustering shrank the bit-entropy bound this time
    against last time (``entropies``: the :func:`row_entropy` of one group, of each count
    taken, then of the new clustering). The bound ignores what patterns share across bits,
    but how it shrinks tracks how the size does. None without a gain to scale or when the
    bound did not shrink last time."""
    if not gains or len(entropies) < 3:
        return None
    before, last, new = entropies[-3:]
    if last >= before:
        return None
    return gains[-1] * (1 - new / last) / (1 - last / before) if last > 0 else 0.0


def combine_plans(plans: list[Plan]) -> Plan:
    """One plan whose row groups are ``plans`` (same chunk width and header kind)."""
    slots = max(p.alt_masks.shape[1] for p in plans)

    def padded(a):
        out = np.zeros((a.shape[0], slots), a.dtype)
        out[:, :a.shape[1]] = a
        return out

    return Plan(plans[0].chunk_bits, np.concatenate([p.mask for p in plans]),
                np.concatenate([p.bitval for p in plans]), plans[0].threshold,
                select_bits=np.concatenate([p.select_bits for p in plans]),
                alt_masks=np.concatenate([padded(p.alt_masks) for p in plans]),
                alt_bitvals=np.concatenate([padded(p.alt_bitvals) for p in plans]),
                list_header=plans[0].list_header, num_groups=len(plans))


def grouped_plan(byte_rows: np.ndarray, counts: np.ndarray, single: Plan, single_bytes: int,
                 single_scored=None, *, seed: int = 0, num_rows: int | None = None,
                 block_bytes: int = DEFAULT_BLOCK_BYTES, columns: np.ndarray | None = None,
                 single_estimate: float | None = None):
    """``(plan, scored)``: ``single`` or, when it stores the rows in fewer host bytes (payload,
    group ids and pattern tables), a plan with row groups: the rows are clustered
    (:func:`cluster_rows`) and each cluster gets its own per-column patterns
    (:func:`extended_plans`, same width and header kind as ``single``); the encoder then puts
    every row in the group that stores it smallest. The group counts of
    :data:`GROUP_COUNTS` are tried in order while each stores the rows smaller (by
    :data:`MIN_GROUP_GAIN`, scaled with the count) than the best before it, by exact size on
    :data:`DISCOVERY_ROWS` rows other than those the patterns were found on (when there are
    that many); the winner is confirmed against ``single`` by the exact size over every row
    (over :data:`CONFIRM_ROWS` of them when ``byte_rows`` samples a larger matrix). A whole
    matrix of at most :data:`WHOLE_SCORING_ROWS` rows has every count compared by its exact
    size over every row instead. A count whose :func:`extrapolated_gain` falls short of what
    it needs is not tried, and one whose clustering promises too little
    (:func:`entropy_scaled_gain`) is not searched for patterns.
    ``single_bytes``: the payload bytes of ``single``; ``scored``: the ``(lengths, groups)``
    of every row under the returned plan when known (``single_scored`` is passed through),
    else None. ``columns``: the :func:`sample_columns` of the patterns' rows
    (``discovery_rows(n, seed)``) when the caller has them already. ``single_estimate``:
    the :func:`extended_plans` estimate of ``single`` from those rows, when it has one; a
    group count whose estimate (found on the same rows, so if anything too kind to groups)
    does not pay either is then given up without scoring rows."""
    from .encode import pattern_tables  # encode builds on this module
    n = len(byte_rows)
    num_rows = num_rows or n
    w = single.chunk_bits
    c = single.num_chunks
    pick = discovery_rows(n, seed)
    sampled = len(pick) < n
    m = len(pick)
    if columns is None:
        columns = sample_columns(byte_rows, pick)
    # patterns fit the rows they were found on better than others: when there are other rows,
    # the counts are compared on those; but a whole matrix of few rows is scored whole, its
    # exact size being the very thing compared (and the encoder reusing the winner's sizes)
    whole = not sampled or (n == num_rows and n <= WHOLE_SCORING_ROWS)
    scoring = byte_rows
    if not whole:
        rest = np.setdiff1d(np.arange(n), pick, assume_unique=True)
        if len(rest) > m:
            rest = np.sort(np.random.default_rng(seed + 3).choice(rest, m, replace=False))
        scoring = byte_rows[rest]

    def clusters(labels):
        """``(members, row_start, sizes, counts)`` of the clusters with enough rows (their
        discovery rows, cluster by cluster, and their :func:`bit_counts` ``[G, C * w]``), or
        None when fewer than two have."""
        groups = [np.flatnonzero(labels == g) for g in range(int(labels.max(initial=-1)) + 1)]
        groups = [members for members in groups if len(members) >= MIN_GROUP_ROWS]
        if len(groups) < 2:
            return None
        sizes = np.array([len(members) for members in groups], np.int64)
        members = np.concatenate(groups)
        row_start = np.concatenate([[0], np.cumsum(sizes)])
        group_counts = np.zeros((len(groups), c * w), np.int64)
        _kernels.column_bit_counts(columns, members, row_start, c, w, group_counts)
        return members, row_start, sizes, group_counts

    def plan_groups(members, row_start, sizes, group_counts):
        """The plan with a row group per cluster and its estimated bits."""
        [(grouped, estimates)] = group_extended_plans(
            columns, c, group_counts, sizes, w, single.threshold, members, row_start,
            num_rows=np.maximum(1, num_rows * sizes // m), list_headers=(single.list_header,))
        return grouped, (sum(estimates.tolist()) + num_rows * (len(sizes) - 1).bit_length()
                         - table_bits(grouped))

    def host_cost(rows, plan, scored=None):
        """Payload bytes (scaled to ``num_rows``) plus the pattern tables' bytes, and the
        rows' ``(lengths, groups)``."""
        if scored is None:
            proto, lengths, groups = score_rows(rows, plan, block_bytes)
            scored = (lengths, groups)
        else:
            proto = pattern_tables(plan, rows.shape)
        words = int(scored[0].sum())
        return words * (w // 8) * num_rows / len(rows) + proto.column_bytes, scored

    known = single_scored
    if not whole and single_scored is not None:  # (the scoring rows are some of those rows)
        known = (single_scored[0][rest], single_scored[1][rest])
    best_cost, scored = host_cost(scoring, single, known)
    if whole:
        single_scored = scored
    best = None
    # estimates compared without the alternatives' tables: extended_plans charges them per
    # column and group, at worst, where the container shares them between columns and groups
    best_estimate = None if single_estimate is None else single_estimate - table_bits(single)
    bits = cluster_bits(byte_rows, counts, pick if sampled else None)
    gains = []  # estimated gain of each count taken over the best before it
    entropies = []  # bit-entropy bound per row of one group, then of each count taken
    for k in GROUP_COUNTS:
        if m < MIN_GROUP_ROWS * k:
            break
        needed = 1 - MIN_GROUP_GAIN * k / GROUP_COUNTS[0]
        expected = extrapolated_gain(gains)
        if expected is not None and expected < 1 - needed:
            break
        found = clusters(cluster_rows(bits, k, seed))
        if found is None:
            break
        members, row_start, sizes, group_counts = found
        if not entropies:  # (one group of the same rows)
            entropies.append(row_entropy(group_counts.sum(0, keepdims=True),
                                         sizes.sum(keepdims=True)))
        entropies.append(row_entropy(group_counts, sizes))
        expected = entropy_scaled_gain(gains, entropies)
        if expected is not None and expected < 1 - needed:
            break
        grouped, estimate = plan_groups(members, row_start, sizes, group_counts)
        if best_estimate is not None and estimate >= best_estimate * needed:
            break
        cost, scored = host_cost(scoring, grouped)
        if cost >= best_cost * needed:
            break
        best, best_cost, best_scored = grouped, cost, scored
        if best_estimate is not None:
            gains.append(1 - estimate / best_estimate)
        best_estimate = estimate
    if best is None:
        return single, single_scored
    if whole:  # the sizes compared were those of every row: exact
        return best, best_scored
    # the sample said groups pay: confirm by the exact size over every planning row when they
    # are the whole matrix (the encoder reuses their sizes), else over CONFIRM_ROWS of them
    if n == num_rows or n <= CONFIRM_ROWS:
        grouped_cost, scored = host_cost(byte_rows, best)
        single_cost = (single_bytes * num_rows / n
                       + pattern_tables(single, byte_rows.shape).column_bytes)
        return (best, scored) if grouped_cost < single_cost else (single, single_scored)
    rows = byte_rows[np.sort(np.random.default_rng(seed + 4).choice(n, CONFIRM_ROWS,
                                                                    replace=False))]
    grouped_cost, _ = host_cost(rows, best)
    single_cost, _ = host_cost(rows, single)
    return (best, None) if grouped_cost < single_cost else (single, single_scored)
