"""Numba kernels of the CPU codec: bit statistics, exact sizes, encoder and decoder.

All arithmetic runs on uint64 whatever the chunk width, so one kernel serves 16-, 32- and
64-bit chunks; constants are typed explicitly because mixing signed and unsigned integers makes
Numba fall back to floats.
"""
from __future__ import annotations

import platform
import sys

import numba as nb
import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir as _ir
from numba.core import config as _numba_config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic as _intrinsic

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@nb.njit(inline="always")
def _low(n):
    """Mask of the ``n`` lowest bits, ``0 <= n <= 64`` (a shift by 64 is undefined)."""
    if n >= 64:
        return _ALL
    return (_U1 << np.uint64(n)) - _U1


@nb.njit(inline="always")
def _shl(v, n):
    if n >= 64:
        return _U0
    return v << np.uint64(n)


@nb.njit(inline="always")
def _shr(v, n):
    if n >= 64:
        return _U0
    return v >> np.uint64(n)


def _fast_pdep() -> bool:
    """Whether Numba compiles for a CPU with a fast PDEP (scatter the low bits of a value to the
    set bits of a mask): x86-64 with BMI2, except AMD Zen 1 and 2, which microcode it."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    features = _numba_config.CPU_FEATURES  # "" for NUMBA_CPU_NAME=generic (portable caches)
    if features is None:
        features = get_host_cpu_features()
    name = _numba_config.CPU_NAME or _llvm.get_host_cpu_name()
    return "+bmi2" in features.split(",") and name not in ("znver1", "znver2")


#: The decoder scatters a chunk's free bits with one PDEP instruction where it is fast, and run
#: by run elsewhere (the patterns' runs of free bits, :func:`zero_bit_runs`).
FAST_PDEP = _fast_pdep()


@nb.njit(inline="always")
def pdep_loop(value, mask):
    """PDEP one set bit of ``mask`` at a time, for CPUs without a fast instruction."""
    out = _U0
    while mask:
        low = mask & (~mask + _U1)
        out |= low * (value & _U1)
        value >>= _U1
        mask &= mask - _U1
    return out


@_intrinsic
def _pdep_instruction(typingctx, value, mask):
    def codegen(context, builder, signature, args):
        i64 = _ir.IntType(64)
        fn = builder.module.declare_intrinsic("llvm.x86.bmi.pdep.64",
                                              fnty=_ir.FunctionType(i64, [i64, i64]))
        return builder.call(fn, args)
    return nb.types.uint64(nb.types.uint64, nb.types.uint64), codegen


# (selected here, not by a branch in a kernel: LLVM cannot compile the instruction for other
# CPUs, even where it would never run)
_pdep = _pdep_instruction if FAST_PDEP else pdep_loop


@nb.njit(inline="always")
def pdep(value, mask):
    """The low bits of ``value`` scattered, lowest first, to the set bits of ``mask``."""
    return _pdep(np.uint64(value), np.uint64(mask))


@nb.njit(cache=True, nogil=True)
def byte_histogram(words, hist):
    """Count, per byte position ``p`` of the rows and byte value ``v != 0``, the rows with that
    byte: ``hist[v, p] += 1``. ``words`` is ``[n, C8]`` uint64 (rows padded to 8 bytes).

    Byte-value-major layout keeps the common zero bytes out of the table entirely and the rest
    close together; all-zero words, the bulk of sparse features, cost one comparison.
    """
    n, c8 = words.shape
    for i in range(n):
        for c in range(c8):
            w = words[i, c]
            if w == _U0:
                continue
            for b in range(8):
                v = (w >> np.uint64(8 * b)) & np.uint64(0xFF)
                if v != _U0:
                    hist[v, c * 8 + b] += 1


@nb.njit(cache=True, nogil=True)
def histogram_bit_counts(hist, out):
    """``out[8 * p + b]`` = rows with bit ``b`` of byte ``p`` set, from a :func:`byte_histogram`
    ``hist[256, P]`` (int64)."""
    for v in range(1, 256):
        for p in range(hist.shape[1]):
            h = hist[v, p]
            if h:
                for b in range(8):
                    if (v >> b) & 1:
                        out[8 * p + b] += h


@nb.njit(cache=True, nogil=True, parallel=True)
def gather_bits(byte_rows, rows, positions, out):
    """``out[i, j]`` = bit ``positions[j]`` (``8 * byte + bit``) of row ``rows[i]`` of
    ``byte_rows`` (``[n, row_bytes]`` uint8), as uint8 0/1: a few bits of a few rows without
    copying the rows."""
    for i in nb.prange(rows.shape[0]):
        row = rows[i]
        for j in range(positions.shape[0]):
            p = positions[j]
            out[i, j] = (byte_rows[row, p >> 3] >> (p & 7)) & 1


@nb.njit(cache=True, nogil=True)
def seed_centers(packed, first, uniforms, chosen):
    """k-means++ start: row ``first`` of ``packed`` (0/1 rows packed 64 bits to a word, uint64
    ``[n, words]``: a distance is then a few popcounts), then each further centre drawn with
    probability proportional to the squared distance to the nearest centre so far, by the
    uniform draws ``uniforms[k - 1]`` (the way ``Generator.choice`` with ``p`` maps one draw to
    a row, so a seed picks the same rows). Writes the rows into ``chosen[k]`` and returns how
    many were chosen (fewer when every row sits on a centre)."""
    n = packed.shape[0]
    chosen[0] = first
    far = np.empty(n)  # squared distance to the nearest centre
    for i in range(n):
        far[i] = _packed_distance(packed, i, first)
    count = 1
    for j in range(uniforms.shape[0]):
        total = far.sum()
        if total == 0:
            break
        cdf = np.cumsum(far / total)
        cdf /= cdf[-1]
        row = np.searchsorted(cdf, uniforms[j], side="right")
        chosen[count] = row
        for i in range(n):
            far[i] = min(far[i], _packed_distance(packed, i, row))
        count += 1
    return count


@nb.njit(inline="always")
def _packed_distance(packed, i, row):
    """Bits in which packed rows ``i`` and ``row`` differ."""
    d = 0
    for q in range(packed.shape[1]):
        d += _popcount(packed[i, q] ^ packed[row, q])
    return d


@nb.njit(cache=True, nogil=True, parallel=True)
def nearest_centers(bits, sums, sizes, labels):
    """Put every row of ``bits`` (``[n, B]`` uint8 0/1) in the cluster of its nearest centre
    into ``labels`` (the lowest cluster on ties); returns whether any label changed. Centre
    ``j`` is the mean ``sums[j] / sizes[j]`` (int64 ``[k, B]``, ``[k]``) of its rows. For 0/1
    rows ``N^2 |x - S/N|^2 = N^2 |x| - 2N (x . S) + |S|^2`` is an integer, so the distances are
    exact up to one final division and the labels the same on every machine."""
    k, nbits = sums.shape
    square = _center_squares(sums)
    # (int32 products vectorize twice as wide; a sum of at most n 0/1 rows fits easily)
    sums32 = sums.astype(np.int32)
    changes = 0
    for i in nb.prange(bits.shape[0]):
        ones = 0
        for b in range(nbits):
            ones += bits[i, b]
        best = 0
        best_distance = np.inf
        for j in range(k):
            distance = _center_distance(bits, i, ones, sums32, square[j], sizes[j], j)
            if distance < best_distance:
                best_distance = distance
                best = j
        if labels[i] != best:
            labels[i] = best
            changes += 1
    return changes > 0


@nb.njit(inline="always")
def _center_squares(sums):
    """``|S_j|^2`` of every centre's sum of rows, int64 ``[k]``."""
    k, nbits = sums.shape
    square = np.zeros(k, np.int64)
    for j in range(k):
        for b in range(nbits):
            square[j] += sums[j, b] * sums[j, b]
    return square


@nb.njit(inline="always")
def _center_distance(bits, i, ones, sums32, square, size, j):
    """Squared distance of row ``i`` (``ones`` bits set) to centre ``j`` (see
    :func:`nearest_centers`; ``sums32``: the centre sums as int32), the same in
    :func:`lloyd_rounds`."""
    nbits = bits.shape[1]
    dot = np.int32(0)
    for b in range(nbits):  # (a mask, not a product, and kept in 32 bits: it vectorizes wider)
        dot = np.int32(dot + (sums32[j, b] & -np.int32(bits[i, b])))
    return (ones * size * size - 2 * size * np.int64(dot) + square) / (size * size)


#: Room left for rounding when a bound decides that a row keeps its centre (distances over at
#: most a few hundred bits carry rounding errors near 1e-13).
_BOUND_SLACK = 1e-6


@nb.njit(cache=True, nogil=True, parallel=True)
def lloyd_rounds(bits, sums, sizes, labels, rounds):
    """Up to ``rounds`` k-means rounds from centres ``sums/sizes`` (as in
    :func:`nearest_centers`): each round puts every row of ``bits`` with its nearest centre
    into ``labels``, then, unless no label changed, moves every centre to the mean of its rows
    (a centre left without rows stays where it was). Returns whether the last round changed a
    label. ``labels`` may start with -1 (no cluster) for every row.

    The labels and centres are those of alternating :func:`nearest_centers` and summing every
    cluster's rows again, but a row is measured against a centre only when bounds cannot rule
    it out (Elkan's rule): an upper bound of the row's distance to its own centre and a lower
    bound of its distance to each other one, loosened each round by how far the centres
    moved; and the centres move by the rows that changed cluster. Late rounds, where few rows
    change centre, then cost a fraction of a full pass.
    """
    n, nbits = bits.shape
    k = sums.shape[0]
    upper = np.zeros(n)
    lower = np.zeros((n, k))
    ones = np.zeros(n, np.int64)
    for i in nb.prange(n):
        for b in range(nbits):
            ones[i] += bits[i, b]
    old = np.zeros((k, nbits))
    moved_by = np.zeros(k)
    changed = False
    # the sums of each cluster's rows, kept up to date row by row: late rounds move few rows,
    # and summing every row again each round would cost more than measuring them
    member_sums = np.zeros((k, nbits), np.int64)
    member_sizes = np.zeros(k, np.int64)
    previous = labels.copy()
    for i in range(n):
        if previous[i] >= 0:
            _move_row(bits, i, -1, previous[i], member_sums, member_sizes)
    for r in range(rounds):
        sums32 = sums.astype(np.int32)
        square = _center_squares(sums)
        changes = 0
        for i in nb.prange(n):
            label = labels[i]
            if r == 0:  # no bounds yet: every centre
                best = 0
                best_distance = np.inf
                for j in range(k):
                    distance = _center_distance(bits, i, ones[i], sums32, square[j], sizes[j], j)
                    lower[i, j] = np.sqrt(max(distance, 0.0))
                    if distance < best_distance:
                        best_distance = distance
                        best = j
            else:
                upper[i] += moved_by[label]
                for j in range(k):
                    lower[i, j] -= moved_by[j]
                best = label
                best_distance = -1.0  # not measured yet
                for j in range(k):
                    if j == best or upper[i] + _BOUND_SLACK < lower[i, j]:
                        continue
                    if best_distance < 0:
                        best_distance = _center_distance(bits, i, ones[i], sums32,
                                                         square[best], sizes[best], best)
                        upper[i] = np.sqrt(max(best_distance, 0.0))
                        lower[i, best] = upper[i]
                        if upper[i] + _BOUND_SLACK < lower[i, j]:
                            continue
                    distance = _center_distance(bits, i, ones[i], sums32, square[j], sizes[j], j)
                    lower[i, j] = np.sqrt(max(distance, 0.0))
                    # (the lowest centre on ties, as a full pass in order of centres gives)
                    if distance < best_distance or (distance == best_distance and j < best):
                        best_distance = distance
                        best = j
            if best_distance >= 0:
                upper[i] = np.sqrt(max(best_distance, 0.0))
            if label != best:
                labels[i] = best
                changes += 1
        changed = changes > 0
        if not changed:
            break
        for j in range(k):
            for b in range(nbits):
                old[j, b] = sums[j, b] / sizes[j]
        for i in range(n):
            if labels[i] != previous[i]:
                _move_row(bits, i, previous[i], labels[i], member_sums, member_sizes)
                previous[i] = labels[i]
        for j in range(k):
            if member_sizes[j]:
                sizes[j] = member_sizes[j]
                sums[j] = member_sums[j]
        for j in range(k):
            step = 0.0
            for b in range(nbits):
                d = sums[j, b] / sizes[j] - old[j, b]
                step += d * d
            moved_by[j] = np.sqrt(step)
    return changed


@nb.njit(inline="always")
def _move_row(bits, i, source, target, sums, sizes):
    """Row ``i`` of ``bits`` out of cluster ``source`` (none when negative) into ``target``,
    in the clusters' row sums and sizes."""
    if source >= 0:
        sizes[source] -= 1
        for b in range(bits.shape[1]):
            sums[source, b] -= bits[i, b]
    sizes[target] += 1
    for b in range(bits.shape[1]):
        sums[target, b] += bits[i, b]


@nb.njit(inline="always")
def _count_set_bits(out, first, x, w):
    """``out[first + b] += 1`` for every set bit ``b`` of the ``w``-bit word ``x``."""
    _add_set_bits(out, first, x, w, 1)


@nb.njit(inline="always")
def _add_set_bits(out, first, x, w, weight):
    """``out[first + b] += weight`` for every set bit ``b`` of the ``w``-bit word ``x``: a
    branch-free pass over every bit when at least a quarter are set (it vectorizes), else one
    step per set bit."""
    if _popcount(x) * 4 > w:
        for b in range(w):
            out[first + b] += weight * np.int64((x >> np.uint64(b)) & _U1)
        return
    while x:
        out[first + _lowest_bit(x)] += weight
        x &= x - _U1


@nb.njit(cache=True, nogil=True)
def set_bit_counts(words, out):
    """``out[64 * c + b] += 1`` for every row of ``words`` (``[n, C8]`` uint64) with bit ``b``
    of word ``c`` set: the bit counts of a few rows directly, without the byte histogram's
    table of every byte value (which costs more to clear than a small sample costs to count).
    """
    n, c8 = words.shape
    for i in range(n):
        for c in range(c8):
            _count_set_bits(out, 64 * c, words[i, c], 64)


@nb.njit(cache=True, nogil=True, parallel=True)
def column_major(words, rows, out, first):
    """``out[c, first + j] = words[rows[j], c]`` for the ``C = out.shape[0]`` first columns
    of ``words`` (``[n, >= C]``): the chunks of the chosen rows column by column, in tiles of
    64 rows by 16 columns so both the rows read and the column runs written stay within a few
    cache lines."""
    num_chunks = out.shape[0]
    m = rows.shape[0]
    for block in nb.prange((m + 63) // 64):
        j0 = block * 64
        j1 = min(j0 + 64, m)
        for c0 in range(0, num_chunks, 16):
            for c in range(c0, min(c0 + 16, num_chunks)):
                for j in range(j0, j1):
                    out[c, first + j] = words[rows[j], c]


#: Order of the narrower chunks within a 64-bit word of a row: the first chunk sits in the low
#: bits on a little-endian machine.
_FIRST_CHUNK_LOW = sys.byteorder == "little"


@nb.njit(inline="always")
def _column_chunk(columns, c, j, w):
    """Chunk ``c`` (``w`` bits) of row ``j`` of rows given column by column as 64-bit words
    (``columns``: ``[C64, m]`` uint64, :func:`column_major` of the rows padded to 8 bytes):
    one transposition serves every chunk width."""
    if w == 64:
        return columns[c, j]
    shift = _word_shift(w)
    per_word = 6 - shift  # log2 of the chunks per word (shifts: a division costs far more)
    k = c & ((1 << per_word) - 1)
    if not _FIRST_CHUNK_LOW:
        k = (1 << per_word) - 1 - k
    return (columns[c >> per_word, j] >> np.uint64(k << shift)) & _low(w)


_BYTE_LOWS = np.uint64(0x0101010101010101)


@nb.njit(cache=True, nogil=True, parallel=True)
def column_bit_counts(columns, rows, row_start, num_chunks, chunk_bits, out):
    """``out[g, c * chunk_bits + b] += 1`` for every ``chunk_bits``-bit chunk ``c <
    num_chunks`` with bit ``b`` set of the rows numbered ``rows[row_start[g]:row_start[g + 1]]``
    (``columns``: the rows as in :func:`_column_chunk`; ``out``: ``[G, >= C * chunk_bits]``):
    the :func:`set_bit_counts` of each group of rows, counted from their columns.

    Counts whole 64-bit words eight bits at a time: bit ``k`` of every byte of a word is
    added into byte-wide counters of one accumulator, emptied every 255 rows, so a word
    costs eight shifts and adds however many of its bits are set (dense float columns set
    half of them).
    """
    per_word = 64 // chunk_bits
    num_words = (num_chunks + per_word - 1) // per_word
    num_groups = row_start.shape[0] - 1
    limit = num_chunks * chunk_bits
    entries = num_groups * num_words
    tasks = min(entries, 64)
    for task in nb.prange(tasks):  # (buffers allocated once per task: see column_alternatives)
        acc = np.zeros(8, np.uint64)
        totals = np.zeros(64, np.int64)  # bit p of the 64-bit word
        for e in range(task, entries, tasks):
            g = e // num_words
            c64 = e % num_words
            totals[:] = 0
            filled = 0
            r1 = row_start[g + 1]
            for i in range(row_start[g], r1 + 1):
                if filled == 255 or i == r1:
                    for k in range(8):
                        for lane in range(8):
                            totals[8 * lane + k] += np.int64((acc[k] >> np.uint64(8 * lane))
                                                             & np.uint64(0xFF))
                        acc[k] = _U0
                    filled = 0
                    if i == r1:
                        break
                x = columns[c64, rows[i]]
                filled += 1
                if x == _U0:  # (the bulk of sparse columns)
                    continue
                for k in range(8):
                    acc[k] += (x >> np.uint64(k)) & _BYTE_LOWS
            for p in range(64):
                # bit p of the word is bit p % w of its (p // w)-th chunk in memory order
                j = p // chunk_bits
                if not _FIRST_CHUNK_LOW:
                    j = per_word - 1 - j
                target = (c64 * per_word + j) * chunk_bits + p % chunk_bits
                if target < limit:
                    out[g, target] += totals[p]


@nb.njit(cache=True, nogil=True, parallel=True)
def candidate_words(words, num_chunks, chunk_bits, majority, masks, free_bits, out):
    """Exact stored words of every row under every candidate mask.

    ``words``: ``[n, >= C]`` chunks (uint16, uint32 or uint64); ``majority``: ``[C]`` usual bit
    values; ``masks``: ``[T, C]`` candidate masks, each a subset of the one before (thresholds
    ascending); ``free_bits``: ``[T, C]``. Adds to ``out[T]`` the total stored words (header +
    stream, or ``C`` for rows stored raw).
    """
    n = words.shape[0]
    t_count = masks.shape[0]
    w = chunk_bits
    header = (num_chunks + w - 1) // w
    base_bits = np.zeros(t_count, np.int64)
    for t in range(t_count):
        for c in range(num_chunks):
            base_bits[t] += free_bits[t, c]
    per_row = np.empty((n, t_count), np.int64)
    for i in nb.prange(n):
        for t in range(t_count):  # no allocation inside the parallel loop: it serializes
            per_row[i, t] = base_bits[t]
        for c in range(num_chunks):
            d = np.uint64(words[i, c]) ^ majority[c]
            if d == _U0:
                continue
            # masks shrink as the threshold grows, so a chunk that matches one threshold
            # matches every later one: stop at the first match
            for t in range(t_count):
                if not (d & masks[t, c]):
                    break
                per_row[i, t] += w - free_bits[t, c]
        for t in range(t_count):
            stored = header + (per_row[i, t] + w - 1) // w
            per_row[i, t] = min(stored, num_chunks)
    for i in range(n):
        for t in range(t_count):
            out[t] += per_row[i, t]


SEGMENT = 32  # chunks per segment: one warp round on a GPU


@nb.njit(inline="always")
def _bit_length(v):
    n = 0
    while v > 0:
        n += 1
        v >>= 1
    return n


@nb.njit(inline="always")
def _list_bits(num_chunks):
    """``(count_bits, position_bits)`` of a list header."""
    return _bit_length(num_chunks), max(1, _bit_length(num_chunks - 1))


@nb.njit(inline="always")
def _row_fields(num_chunks, w, list_header, num_groups):
    """``(header, count_bits, pos_bits, group_bits, prefix)`` of an encoded row: its header
    words, a list header's field widths, the group id's bits, and the stream bits before its
    list entries or free bits (group id and list count)."""
    header = 0 if list_header else (num_chunks + w - 1) // w
    count_bits, pos_bits = _list_bits(num_chunks)
    group_bits = _bit_length(num_groups - 1)
    return header, count_bits, pos_bits, group_bits, group_bits + (count_bits if list_header
                                                                    else 0)


#: Free bits of an alternative slot that matches nothing (above any real chunk's bits).
NO_MATCH = 1 << 30


@nb.njit(inline="always")
def _alt_free(x, k, sel_bits, slot_mask, slot_bitval, slot_free):
    """Fewest free bits of an alternative of kind ``k`` that matches ``x`` (:data:`NO_MATCH`
    when none does): a branch-free minimum over the kind's slots, laid out contiguously so the
    loop vectorizes."""
    best = NO_MATCH
    for s in range(1 << sel_bits[k]):
        f = slot_free[k, s] if (x & slot_mask[k, s]) == slot_bitval[k, s] else NO_MATCH
        best = min(best, f)
    return best


#: Slots a kind may have at most (8 selector bits, ``io.MAX_SELECT_BITS``).
_SLOT_LIMIT = 256


@nb.njit(inline="always")
def _pick_alt(x, k, sel_bits, slot_mask, slot_bitval, slot_free):
    """Slot of the alternative of kind ``k`` that matches ``x`` with the fewest free bits (the
    lowest slot on ties), or -1 when none matches: one branch-free pass, a slot's free bits
    and number packed into one key so that a minimum finds both."""
    none = np.int64(NO_MATCH) * _SLOT_LIMIT
    best = none
    for s in range(1 << sel_bits[k]):
        key = (np.int64(slot_free[k, s]) * _SLOT_LIMIT + s
               if (x & slot_mask[k, s]) == slot_bitval[k, s] else none)
        best = min(best, key)
    return -1 if best == none else best % _SLOT_LIMIT


@nb.njit(inline="always")
def _row_bits(words, i, num_chunks, kinds, first, sel_bits, slot_mask, slot_bitval, slot_free,
              pat_mask, pat_bitval, pat_free, list_header, pos_bits, limit):
    """Stream bits of row ``i`` against the column kinds ``kinds[first:first + C]`` (one row
    group), without the group id and list count; -1 when some chunk matches no pattern, -2 as
    soon as the bits exceed ``limit`` (the group cannot beat one already scored)."""
    bits = 0
    for c in range(num_chunks):
        x = np.uint64(words[i, c])
        k = kinds[first + c]
        if (x & pat_mask[k]) == pat_bitval[k]:
            bits += pat_free[k]
            continue
        free = _alt_free(x, k, sel_bits, slot_mask, slot_bitval, slot_free)
        if free == NO_MATCH:
            return -1
        bits += sel_bits[k] + free
        if list_header:
            bits += pos_bits
        if bits > limit:
            return -2
    return bits if bits <= limit else -2


ROW_BLOCK = 64  # rows per parallel task (row_words tries the last row's group first)


@nb.njit(cache=True, nogil=True, parallel=True)
def row_words(words, num_chunks, chunk_bits, kinds, sel_bits, slot_mask, slot_bitval, slot_free,
              pat_mask, pat_bitval, pat_free, list_header, num_groups, out, groups):
    """Stored length in words of each row of ``words`` into ``out[n]`` and its row group into
    ``groups[n]``: the group whose patterns store the row in the fewest words (the lowest on
    ties; 0 for raw rows). ``out[i]`` is -1 when no group can encode the row.

    ``kinds`` is ``[G * C]``: the kind of column ``c`` in group ``g`` is ``kinds[g * C + c]``.
    Patterns ``[0, K)`` are the base patterns of the kinds; ``slot_mask/slot_bitval/slot_free
    [k, v]`` are kind ``k``'s alternative ``v < 2**sel_bits[k]`` (see ``docs/format.md`` and
    ``CompressedMatrix.alt_slots``).
    Neighbouring rows tend to share a group, so each row scores its predecessor's group first
    and stops scoring any other group once it cannot be strictly better.
    """
    n = words.shape[0]
    w = chunk_bits
    header, count_bits, pos_bits, _, prefix = _row_fields(num_chunks, w, list_header,
                                                          num_groups)
    no_limit = (num_chunks * (w + 8 + pos_bits)) + 1
    for task in nb.prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        hint = 0
        for i in range(task * ROW_BLOCK, min(n, (task + 1) * ROW_BLOCK)):
            best = -1
            best_group = 0
            for step in range(num_groups):
                g = (hint + step) % num_groups
                # the bits that still beat the best so far: strictly fewer words, or as few
                # words from a lower group (ties go to the lowest group)
                limit = no_limit
                if best >= 0:
                    limit = (best - header - (0 if g < best_group else 1)) * w - prefix
                if limit < 0:  # (a lower group may still tie: keep going)
                    continue
                bits = _row_bits(words, i, num_chunks, kinds, g * num_chunks, sel_bits,
                                 slot_mask, slot_bitval, slot_free, pat_mask, pat_bitval,
                                 pat_free, list_header, pos_bits, limit)
                if bits < 0:
                    continue
                stored = min(header + (prefix + bits + w - 1) // w, num_chunks)
                if best < 0 or stored < best or (stored == best and g < best_group):
                    best = stored
                    best_group = g
            out[i] = best
            groups[i] = best_group if best < num_chunks else 0
            if best >= 0:
                hint = best_group


@nb.njit(cache=True, nogil=True)
def zero_bit_runs(masks, chunk_bits, start, length, count):
    """The maximal runs of zero bits of each of the ``chunk_bits``-bit ``masks`` (uint64
    ``[P]``), from the most significant bit down: run ``r`` of mask ``p`` covers bits
    ``start[p, r] .. start[p, r] + length[p, r] - 1``; ``count[p]`` runs. ``start``/``length``
    (``[P, R]``) need room for every run; entries past a mask's runs are left as they are."""
    for p in range(masks.shape[0]):
        m = masks[p]
        runs = 0
        run = 0  # length of the run being walked
        for b in range(chunk_bits - 1, -1, -1):
            if (m >> np.uint64(b)) & _U1:
                if run:
                    start[p, runs] = b + 1
                    length[p, runs] = run
                    runs += 1
                    run = 0
            else:
                run += 1
        if run:
            start[p, runs] = 0
            length[p, runs] = run
            runs += 1
        count[p] = runs


@nb.njit(inline="always")
def _word_shift(w):
    """log2 of a chunk width of 16, 32 or 64: stream positions split into word and offset by
    a shift and a mask (a division by a width known only at run time costs far more)."""
    return 4 + (w >> 5)


@nb.njit(inline="always")
def _append(payload, q, acc, held, v, n, w):
    """Append the ``n`` low bits of ``v`` to a stream being written at word ``q``, whose
    ``held`` pending bits sit in the low bits of ``acc`` (words fill from the most significant
    bit). Returns the new ``(q, acc, held)``: every word is stored once, when full, instead of
    being read and or-ed for each field."""
    if held + n < w:  # (the common case: the field fits the pending word)
        return q, _shl(acc, n) | (v & _low(n)), held + n
    while n > 0:
        take = min(n, w - held)
        acc = _shl(acc, take) | (_shr(v, n - take) & _low(take))
        held += take
        n -= take
        if held == w:
            payload[q] = acc
            q += 1
            acc = _U0
            held = 0
    return q, acc, held


@nb.njit(inline="always")
def _or_bits(payload, base, pos, v, n, w):
    """OR the ``n`` low bits of ``v`` (``1 <= n <= w``) into the stream of the row starting at
    word ``base``, at stream bit ``pos`` (most significant first, as :func:`_append` writes).
    The words must be zero there: selectors are written this way, from the row's end."""
    q = base + (pos >> _word_shift(w))
    off = pos & (w - 1)
    if off + n <= w:
        payload[q] = np.uint64(payload[q]) | (v << np.uint64(w - off - n))
    else:
        spill = off + n - w
        payload[q] = np.uint64(payload[q]) | (v >> np.uint64(spill))
        payload[q + 1] = np.uint64(payload[q + 1]) | ((v << np.uint64(w - spill)) & _low(w))


@nb.njit(inline="always")
def _read(payload, base, pos, n, w):
    """The ``n <= w`` stream bits at bit ``pos`` of the row starting at word ``base``.

    The following word is always read and shifted in (its bits land below the field's when
    the field does not straddle into it), clamped to the payload's last word: whether a field
    straddles is data-dependent, and on dense rows a branch on it is mispredicted often."""
    if n == 0:
        return _U0
    q = base + (pos >> _word_shift(w))
    off = pos & (w - 1)
    top = np.uint64(64 - w)
    hi = (np.uint64(payload[q]) << top) << np.uint64(off)
    after = np.uint64(payload[min(q + 1, payload.shape[0] - 1)]) << top
    hi |= (after >> _U1) >> np.uint64(w - 1 - off)  # two shifts: w - off may be 64
    return hi >> np.uint64(64 - n)


@nb.njit(inline="always")
def _read_back(payload, tail, tail_bits, tail_q, n, w):
    """The ``n <= w`` stream bits that end where the last read ended, reading a row's stream
    backward from its last word: ``(bits, tail, tail_bits, tail_q)``. The unread bits are the
    low ``tail_bits`` bits of ``tail`` (the bits above them are zero: it only shifts right),
    then the words from ``payload[tail_q]`` down: start with ``tail = tail_bits = 0`` and
    ``tail_q`` the row's last word. Selectors are a few bits each, so most reads are a shift
    and a mask, where :func:`_read` costs two loads and six shifts."""
    if tail_bits >= n:
        return tail & _low(n), _shr(tail, n), tail_bits - n, tail_q
    word = np.uint64(payload[tail_q])
    need = n - tail_bits
    bits = tail | ((word & _low(need)) << np.uint64(tail_bits))
    return bits, _shr(word, need), w - need, tail_q - 1


@nb.njit(inline="always")
def _extract(x, p, run_start, run_len, run_count):
    """The free bits of ``x`` under pattern ``p``, most significant first."""
    v = _U0
    # at least two runs (a pattern's unused runs have length 0: no-ops), so the loop's length
    # rarely changes from chunk to chunk (dense float alternatives hold one to three runs, and
    # mispredicted loop exits cost more than the no-ops)
    for r in range(max(min(run_len.shape[1], 2), run_count[p])):
        rl = run_len[p, r]
        v = _shl(v, rl) | (_shr(x, run_start[p, r]) & _low(rl))
    return v


@nb.njit(cache=True, nogil=True, parallel=True)
def encode_rows(words, num_chunks, chunk_bits, kinds, sel_bits, alt_start, slot_mask, slot_bitval,
                slot_free, pat_mask, pat_bitval, pat_free, run_start, run_len, run_count,
                list_header, num_groups, groups, offsets, payload):
    """Encode each row of ``words`` into ``payload[offsets[i]:offsets[i + 1]]`` against the
    column kinds of its row group ``groups[i]`` (``kinds`` as in :func:`row_words`).

    A row given exactly ``num_chunks`` words is stored raw. ``run_start/run_len[p, r]`` list the
    runs of free bits of pattern ``p`` from the most significant down, so extracting the free
    bits costs one shift and mask per run instead of one per bit.
    """
    n = words.shape[0]
    w = chunk_bits
    num_kinds = sel_bits.shape[0]
    header, count_bits, pos_bits, group_bits, _ = _row_fields(num_chunks, w, list_header,
                                                              num_groups)
    # groups with a base pattern that leaves bits free: a listed row of any other group only
    # writes its listed chunks (sparse rows: a few of thousands)
    base_free = np.zeros(num_groups, np.bool_)
    for g in range(num_groups):
        for c in range(num_chunks):
            if pat_free[kinds[g * num_chunks + c]]:
                base_free[g] = True
    for task in nb.prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        listed = np.empty(num_chunks if list_header else 0, np.int64)
        for i in range(task * ROW_BLOCK, min(n, (task + 1) * ROW_BLOCK)):
            _encode_row(words, i, num_chunks, w, kinds, num_kinds, sel_bits, alt_start,
                        slot_mask, slot_bitval, slot_free, pat_mask, pat_bitval, pat_free,
                        run_start, run_len, run_count, list_header, header, count_bits, pos_bits,
                        group_bits, groups, offsets, payload, listed, base_free)


@nb.njit(inline="always")
def _encode_row(words, i, num_chunks, w, kinds, num_kinds, sel_bits, alt_start, slot_mask,
                slot_bitval, slot_free, pat_mask, pat_bitval, pat_free, run_start, run_len,
                run_count, list_header, header, count_bits, pos_bits, group_bits, groups, offsets,
                payload, listed, base_free):
    start = offsets[i]
    end = offsets[i + 1]
    if end - start == num_chunks:
        for c in range(num_chunks):
            payload[start + c] = words[i, c]
        return
    # the selectors are ORed in from the row's end, and the stream words the free bits fill
    # are written whole (only the last one, shared with the selectors, is ORed)
    for h in range(start, end):
        payload[h] = 0
    base = start + header
    sel_at = (end - base) * w  # where the last selector written starts: the row's end at first
    first = groups[i] * num_chunks
    q, acc, held = _append(payload, base, _U0, 0, np.uint64(groups[i]), group_bits, w)
    num_listed = 0
    if list_header:
        for c in range(num_chunks):
            k = kinds[first + c]
            listed[num_listed] = c
            num_listed += (np.uint64(words[i, c]) & pat_mask[k]) != pat_bitval[k]
        q, acc, held = _append(payload, q, acc, held, np.uint64(num_listed), count_bits, w)
        for e in range(num_listed):
            q, acc, held = _append(payload, q, acc, held, np.uint64(listed[e]), pos_bits, w)
    # with a list header and a base without free bits, only the listed chunks write anything:
    # visit those alone
    listed_only = list_header and not base_free[groups[i]]
    for e in range(num_listed if listed_only else num_chunks):
        c = listed[e] if listed_only else e
        x = np.uint64(words[i, c])
        k = kinds[first + c]
        p = k
        if (x & pat_mask[k]) == pat_bitval[k]:
            if not list_header:
                payload[start + (c >> _word_shift(w))] |= _U1 << np.uint64(c & (w - 1))
        else:
            p, sel_at = _write_selector(payload, base, sel_at, x, k, num_kinds, sel_bits,
                                        alt_start, slot_mask, slot_bitval, slot_free, w)
        q, acc, held = _write_free(payload, q, acc, held, x, p, pat_free, run_start, run_len,
                                   run_count, w)
    if held:
        payload[q] = np.uint64(payload[q]) | _shl(acc, w - held)


@nb.njit(inline="always")
def _write_selector(payload, base, sel_at, x, k, num_kinds, sel_bits, alt_start, slot_mask,
                    slot_bitval, slot_free, w):
    """``(p, sel_at)``: the pattern ``p`` a non-base chunk ``x`` of kind ``k`` is coded against
    (its alternative with the fewest free bits), after writing its selector to end at stream
    bit ``sel_at``, where the selectors written before it start; ``sel_at`` moves to its start."""
    v = _pick_alt(x, k, sel_bits, slot_mask, slot_bitval, slot_free)
    s = sel_bits[k]
    if s:
        sel_at -= s
        _or_bits(payload, base, sel_at, np.uint64(v), s, w)
    return num_kinds + alt_start[k] + v, sel_at


@nb.njit(inline="always")
def _write_free(payload, q, acc, held, x, p, pat_free, run_start, run_len, run_count, w):
    """Append the free bits of chunk ``x`` under pattern ``p``: ``(q, acc, held)``."""
    if pat_free[p]:
        q, acc, held = _append(payload, q, acc, held,
                               _extract(x, p, run_start, run_len, run_count), pat_free[p], w)
    return q, acc, held


@nb.njit(inline="always")
def _store_chunk(out, i, c, v, pieces, unit_bits):
    """Write chunk ``c`` of row ``i`` as ``pieces`` units of ``out`` (``[B, row_units]``), dropping
    units past the row's end: the output needs no padding and no second copy."""
    if pieces == 1:
        out[i, c] = v
        return
    first = c * pieces
    for p in range(min(pieces, out.shape[1] - first)):
        out[i, first + p] = _shr(v, p * unit_bits) & _low(unit_bits)


_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, np.int64)
for _b in range(64):
    _DEBRUIJN_INDEX[((1 << _b) * 0x03F79D71B4CB0A89 & 0xFFFFFFFFFFFFFFFF) >> 58] = _b


@nb.njit(inline="always")
def _lowest_bit(m):
    """Index of the lowest set bit of ``m != 0``."""
    return _DEBRUIJN_INDEX[((m & (~m + _U1)) * _DEBRUIJN) >> np.uint64(58)]


@nb.njit(inline="always")
def _segment(payload, start, g, num_chunks, w, list_header, listed, listed_done, entries_at,
             pos_bits):
    """Segment ``g`` of an encoded row: its chunks ``[c0, c1)``, ``nonbase`` with bit ``b`` set
    when chunk ``c0 + b`` does not match its base pattern, and how many list entries
    (``entries_at``: the stream bit of the first) have been consumed after it. With 16-bit
    chunks a segment spans two bitmap header words; with wider ones it lies within one."""
    c0 = g * SEGMENT
    c1 = min(c0 + SEGMENT, num_chunks)
    if not list_header:
        word = _U0
        for c in range(c0, c1, w):
            word |= ((np.uint64(payload[start + (c >> _word_shift(w))]) >> np.uint64(c & (w - 1)))
                     << np.uint64(c - c0))
        return c0, c1, ~word & _low(c1 - c0), listed_done
    bits = _U0
    while listed_done < listed:
        c = np.int64(_read(payload, start, entries_at + listed_done * pos_bits, pos_bits, w))
        if c >= c1:
            break
        bits |= _U1 << np.uint64(c - c0)
        listed_done += 1
    return c0, c1, bits, listed_done


@nb.njit(inline="always")
def _stream_start(payload, base, list_header, group_bits, count_bits, pos_bits, w):
    """``(group, listed, pos)`` of an encoded row: its row group, a list header's entry count
    (0 for a bitmap) and the stream bit where the segments begin."""
    group = np.int64(_read(payload, base, 0, group_bits, w))
    if not list_header:
        return group, 0, group_bits
    listed = np.int64(_read(payload, base, group_bits, count_bits, w))
    return group, listed, group_bits + count_bits + listed * pos_bits


@nb.njit(cache=True, nogil=True, parallel=True)
def decode_rows(payload, starts, ends, num_chunks, chunk_bits, kinds, sel_bits, alt_start,
                pat_mask, pat_bitval, pat_free, run_start, run_len, run_count, list_header,
                num_groups, segment_free, bitval_row, use_pdep, out):
    """Decode rows ``[starts[i], ends[i])`` of ``payload`` into ``out[i]``.

    ``out`` is ``[B, row_units]`` of any unsigned width that divides the chunk width; each chunk
    fills ``chunk_bits / unit_bits`` consecutive units (little-endian, as the rows were read).
    Per row group ``r`` (``kinds`` as in :func:`row_words`): ``bitval_row[r]`` is the row every
    chunk decodes to when it matches a base pattern without free bits, in output units;
    ``segment_free[r, g]`` has bit ``b`` set when the base pattern of column ``32 * g + b`` has
    free bits. An encoded row starts as its ``bitval_row`` and only the chunks that read the
    stream are visited: sparse rows cost about one visit per non-base chunk. ``use_pdep``
    scatters free bits with :func:`pdep` (pass :data:`FAST_PDEP`), else run by run.
    """
    b_count = starts.shape[0]
    w = chunk_bits
    num_kinds = sel_bits.shape[0]
    unit_bits = out.itemsize * 8
    pieces = w // unit_bits
    header, count_bits, pos_bits, group_bits, _ = _row_fields(num_chunks, w, list_header,
                                                              num_groups)
    for task in nb.prange((b_count + ROW_BLOCK - 1) // ROW_BLOCK):
        for i in range(task * ROW_BLOCK, min(b_count, (task + 1) * ROW_BLOCK)):
            _decode_row(payload, starts[i], ends[i], num_chunks, w, kinds, sel_bits, num_kinds,
                        alt_start, pat_mask, pat_bitval, pat_free, run_start, run_len,
                        run_count, list_header, header, count_bits, pos_bits, group_bits,
                        segment_free, bitval_row, use_pdep, out, i, pieces, unit_bits)


@nb.njit(inline="always")
def _decode_row(payload, start, end, num_chunks, w, kinds, sel_bits, num_kinds, alt_start,
                pat_mask, pat_bitval, pat_free, run_start, run_len, run_count, list_header,
                header, count_bits, pos_bits, group_bits, segment_free, bitval_row, use_pdep,
                out, i, pieces, unit_bits):
    if end - start == num_chunks:
        for c in range(num_chunks):
            _store_chunk(out, i, c, np.uint64(payload[start + c]), pieces, unit_bits)
        return
    base = start + header
    group, listed, pos = _stream_start(payload, base, list_header, group_bits, count_bits,
                                       pos_bits, w)
    first = group * num_chunks
    for u in range(out.shape[1]):
        out[i, u] = bitval_row[group, u]
    # selectors are read backward from the row's last word, which the stream ends with
    tail = _U0
    tail_bits = 0
    tail_q = end - 1
    listed_done = 0
    for g in range((num_chunks + SEGMENT - 1) // SEGMENT):
        c0, _, nonbase, listed_done = _segment(payload, start, g, num_chunks, w, list_header,
                                               listed, listed_done, group_bits + count_bits,
                                               pos_bits)
        # selectors come from the stream's end and free bits from its front, so each chunk is
        # decoded in one step, in column order
        todo = nonbase | (segment_free[group, g] & ~nonbase)
        while todo:
            b = _lowest_bit(todo)
            todo &= todo - _U1
            k = kinds[first + c0 + b]
            p = k
            if (nonbase >> np.uint64(b)) & _U1:
                v, tail, tail_bits, tail_q = _read_back(payload, tail, tail_bits, tail_q,
                                                        sel_bits[k], w)
                p = num_kinds + alt_start[k] + np.int64(v)
            length = pat_free[p]
            v = _read(payload, base, pos, length, w)
            pos += length
            if use_pdep:
                v = pat_bitval[p] | pdep(v, ~pat_mask[p])
            elif length == w:
                pass
            elif run_count[p] == 1:  # the usual float layout: free bits are the low mantissa
                v = pat_bitval[p] | (v << np.uint64(run_start[p, 0]))
            else:  # several runs: none is 64 bits long, so plain shifts are safe
                x = pat_bitval[p]
                for r in range(run_count[p] - 1, -1, -1):
                    rl = np.uint64(run_len[p, r])
                    x |= (v & ((_U1 << rl) - _U1)) << np.uint64(run_start[p, r])
                    v >>= rl
                v = x
            _store_chunk(out, i, c0 + b, v, pieces, unit_bits)


@nb.njit(cache=True, nogil=True)
def first_inconsistent_row(payload, offsets, num_chunks, chunk_bits, kinds, sel_bits, alt_start,
                           pat_free, list_header, num_groups):
    """Index of the first encoded row whose header and selectors imply a length other than its
    stored one (or a malformed list, or a row group out of range), or -1. Guarantees the
    decoder never reads past a row or its tables."""
    w = chunk_bits
    num_kinds = sel_bits.shape[0]
    header, count_bits, pos_bits, group_bits, prefix = _row_fields(num_chunks, w, list_header,
                                                                   num_groups)
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        length = offsets[i + 1] - start
        if length == num_chunks:
            continue
        if length < header or (length - header) * w < prefix:
            return i
        base = start + header
        avail = (length - header) * w
        group, listed, pos = _stream_start(payload, base, list_header, group_bits, count_bits,
                                           pos_bits, w)
        if group >= num_groups:
            return i
        first = group * num_chunks
        prev = -1
        if list_header:
            if listed > num_chunks or pos > avail:
                return i
            for e in range(listed):
                c = np.int64(_read(payload, base, group_bits + count_bits + e * pos_bits,
                                   pos_bits, w))
                if c <= prev or c >= num_chunks:
                    return i
                prev = c
        listed_done = 0
        sel_done = 0  # selector bits, at the row's end
        for g in range((num_chunks + SEGMENT - 1) // SEGMENT):
            c0, c1, nonbase, listed_done = _segment(payload, start, g, num_chunks, w,
                                                    list_header, listed, listed_done,
                                                    group_bits + count_bits, pos_bits)
            sel_read = sel_done
            for c in range(c0, c1):
                if (nonbase >> np.uint64(c - c0)) & _U1:
                    sel_done += sel_bits[kinds[first + c]]
            if pos + sel_done > avail:
                return i
            for c in range(c0, c1):
                k = kinds[first + c]
                if (nonbase >> np.uint64(c - c0)) & _U1:
                    s = sel_bits[k]
                    sel_read += s
                    p = num_kinds + alt_start[k] + np.int64(_read(payload, base, avail - sel_read,
                                                                  s, w))
                    pos += pat_free[p]
                else:
                    pos += pat_free[k]
            if pos + sel_done > avail:
                return i
        if header + (pos + sel_done + w - 1) // w != length:
            return i
    return -1


@nb.njit(cache=True, nogil=True)
def selectors_to_row_end(payload, offsets, num_chunks, chunk_bits, kinds, sel_bits, alt_start,
                         pat_free, list_header, num_groups, out):
    """Rewrite rows of format versions 2 to 4, which keep each segment's selectors before its
    free bits, into ``out`` (same size, zero-filled) in the current layout: the free bits of
    every chunk in order, the selectors at the row's end (``docs/format.md``). Every row keeps
    its length. Returns the first row whose old layout does not match its stored length (it
    is left unwritten), or -1."""
    w = chunk_bits
    num_kinds = sel_bits.shape[0]
    header, count_bits, pos_bits, group_bits, prefix = _row_fields(num_chunks, w, list_header,
                                                                   num_groups)
    chosen = np.empty(SEGMENT, np.int64)
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        length = offsets[i + 1] - start
        if length == num_chunks:
            for h in range(start, start + length):
                out[h] = payload[h]
            continue
        if length < header or (length - header) * w < prefix:
            return i
        for h in range(start, start + header):
            out[h] = payload[h]
        base = start + header
        avail = (length - header) * w
        group, listed, pos = _stream_start(payload, base, list_header, group_bits, count_bits,
                                           pos_bits, w)
        if group >= num_groups or listed > num_chunks or pos > avail:
            return i
        done = 0  # the group id and list header keep their places
        while done < pos:
            n = min(w, pos - done)
            _or_bits(out, base, done, _read(payload, base, done, n, w), n, w)
            done += n
        to = pos        # where the next free bits go; pos - to selector bits moved so far
        first = group * num_chunks
        listed_done = 0
        for g in range((num_chunks + SEGMENT - 1) // SEGMENT):
            c0, c1, nonbase, listed_done = _segment(payload, start, g, num_chunks, w,
                                                    list_header, listed, listed_done,
                                                    group_bits + count_bits, pos_bits)
            for c in range(c0, c1):
                k = kinds[first + c]
                chosen[c - c0] = k
                if (nonbase >> np.uint64(c - c0)) & _U1:
                    s = sel_bits[k]
                    if pos + s > avail:
                        return i
                    v = _read(payload, base, pos, s, w)
                    pos += s
                    if s:
                        _or_bits(out, base, avail - (pos - to), v, s, w)
                    chosen[c - c0] = num_kinds + alt_start[k] + np.int64(v)
            for c in range(c0, c1):
                f = pat_free[chosen[c - c0]]
                if pos + f > avail:
                    return i
                if f:
                    _or_bits(out, base, to, _read(payload, base, pos, f, w), f, w)
                pos += f
                to += f
        if header + (pos + w - 1) // w != length:
            return i
    return -1


MAX_SELECT_BITS = 3
#: Chunks missing a base pattern above which column_alternatives looks for their alternatives
#: on an evenly spaced sample of this many (and scales their cost up): the split search then
#: costs a dense column about what it costs a sparse one. Alternatives are an estimate's
#: guess either way; the encoder's sizes are exact.
REST_SAMPLE = 256
#: Most distinct values the chunks missing a base may take for column_alternatives to search
#: them as values with counts instead of chunk by chunk.
DISTINCT_VALUES = 16


_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@nb.njit(inline="always")
def _popcount(v):
    """Set bits of ``v`` in a fixed number of steps (the planner's inner loops call this for
    every candidate pattern)."""
    v = v - ((v >> _U1) & _M1)
    v = (v & _M2) + ((v >> np.uint64(2)) & _M2)
    v = (v + (v >> np.uint64(4))) & _M4
    return np.int64((v * _H01) >> np.uint64(56))


@nb.njit(inline="always")
def _best_split(vals, weights, leaf_of, leaf, sample, w, buf, buf_weights):
    """``(gain, bit)`` of the best split of ``leaf`` on one bit, judged on its first
    ``sample`` members (copied into ``buf``, each standing for ``weights`` chunks): the gain
    is the growth of (chunks x bits constant among them)."""
    m = 0
    n = 0
    for i in range(vals.shape[0]):  # (branch-free: the leaves interleave at random)
        member = np.int64(leaf_of[i] == leaf)
        buf[m] = vals[i]
        buf_weights[m] = weights[i]
        n += weights[i] * member
        m += member
        if m == sample:
            break
    best_gain = 0
    best_bit = -1
    if n < 2:
        return best_gain, best_bit
    all_and = _ALL
    all_or = _U0
    for i in range(m):
        all_and &= buf[i]
        all_or |= buf[i]
    varying = (all_and ^ all_or) & _low(w)
    base = n * (w - _popcount(varying))
    todo = varying
    while todo:
        b = _lowest_bit(todo)
        todo &= todo - _U1
        and0 = _ALL
        or0 = _U0
        and1 = _ALL
        or1 = _U0
        n1 = 0
        for i in range(m):  # (branch-free: the bit splits the members at random)
            x = buf[i]
            bit = (x >> np.uint64(b)) & _U1
            ones = _U0 - bit  # all ones where the bit is set
            and1 &= x | ~ones
            or1 |= x & ones
            and0 &= x | ones
            or0 |= x & ~ones
            n1 += np.int64(bit) * buf_weights[i]
        gain = (n1 * (w - _popcount((and1 ^ or1) & _low(w)))
                + (n - n1) * (w - _popcount((and0 ^ or0) & _low(w))) - base)
        if gain > best_gain:
            best_gain = gain
            best_bit = b
    return best_gain, best_bit


@nb.njit(inline="always")
def _leaf_patterns(vals, weights, leaf_of, leaves, w, taus, counts, sizes, matched, out_masks,
                   out_bitvals):
    """The pattern of every leaf: majority bits of its chunks (member ``i`` stands for
    ``weights[i]`` of them), masked to the bits whose agreement reaches the threshold in
    ``taus`` that codes the chunks cheapest (chunks that miss it are priced whole). Two
    passes over the members for all leaves."""
    counts[:leaves, :w] = 0
    sizes[:leaves] = 0
    for i in range(vals.shape[0]):
        leaf = leaf_of[i]
        weight = weights[i]
        sizes[leaf] += weight
        _add_set_bits(counts[leaf], 0, vals[i], w, weight)
    nt = taus.shape[0]
    for leaf in range(leaves):
        n = sizes[leaf]
        majority = _U0
        for b in range(w):
            if 2 * counts[leaf, b] > n:
                majority |= _U1 << np.uint64(b)
        out_bitvals[leaf] = majority
        for t in range(nt):
            mask = _U0
            for b in range(w):
                agree = max(counts[leaf, b], n - counts[leaf, b])
                if agree >= taus[t] * n - 1e-9:
                    mask |= _U1 << np.uint64(b)
            out_masks[leaf * nt + t] = mask
    matched[:leaves * nt] = 0
    for i in range(vals.shape[0]):
        leaf = leaf_of[i]
        d = vals[i] ^ out_bitvals[leaf]
        for t in range(nt):
            matched[leaf * nt + t] += weights[i] * ((d & out_masks[leaf * nt + t]) == _U0)
    for leaf in range(leaves):
        n = sizes[leaf]
        best_cost = -1
        best_mask = _U0
        for t in range(nt):
            mask = out_masks[leaf * nt + t]
            m = matched[leaf * nt + t]
            cost = m * (w - _popcount(mask)) + (n - m) * w
            if best_cost < 0 or cost < best_cost:
                best_cost = cost
                best_mask = mask
        out_masks[leaf] = best_mask  # leaf <= leaf * nt: entries still needed are not lost
        out_bitvals[leaf] &= best_mask


@nb.njit(inline="always")
def _distinct_values(vals, out, weights):
    """``(few, k)``: whether ``vals`` hold at most ``out.shape[0]`` distinct values and, if so,
    how many; they are then ``out[:k]``, in order of first appearance, with their counts in
    ``weights[:k]``. Gives up at the first value past the limit, so columns of many values pay
    for only a few comparisons per value seen."""
    k = 0
    for i in range(vals.shape[0]):
        x = vals[i]
        j = 0
        while j < k and out[j] != x:
            j += 1
        if j == k:
            if k == out.shape[0]:
                return False, 0
            out[k] = x
            weights[k] = 0
            k += 1
        weights[j] += 1
    return True, k


@nb.njit(inline="always")
def _column_alternatives_job(j, a, rest, w, taus, sample, alt_masks, alt_bitvals, rest_cost,
                             all_vals, all_weights, all_leaf_of, distinct, distinct_weights,
                             counts, sizes, matched, leaf_masks, leaf_bitvals, buf, buf_weights,
                             split_gain, split_bit, slot_free):
    """Entry ``j`` (a column of a row group) under base ``a`` for
    :func:`column_alternatives`: the ``rest`` chunks that miss the base are
    ``all_vals[:rest]`` (in row order; overwritten here). Works in the
    caller's buffers (``all_vals``/``all_weights``/``all_leaf_of`` hold one entry per row).
    When the rest takes at most :data:`DISTINCT_VALUES` values (a bag-of-words column: mostly
    the same count), the search runs on those values, each weighted by its chunks; else above
    :data:`REST_SAMPLE` chunks patterns are found on an evenly spaced sample of them and the
    cost of the rest is scaled up from it."""
    few, kept = _distinct_values(all_vals[:rest], distinct, distinct_weights)
    chunks = rest  # the chunks the kept values stand for
    if few:
        all_vals[:kept] = distinct[:kept]
        all_weights[:kept] = distinct_weights[:kept]
    else:
        kept = rest
        if rest > REST_SAMPLE:
            step = (rest + REST_SAMPLE - 1) // REST_SAMPLE
            kept = 0
            for i in range(0, rest, step):
                all_vals[kept] = all_vals[i]
                kept += 1
        all_weights[:kept] = 1
        chunks = kept
    vals = all_vals[:kept]
    weights = all_weights[:kept]
    leaf_of = all_leaf_of[:kept]
    leaf_of[:] = 0
    split_gain[:] = 0
    split_bit[:] = -2
    leaves = 1
    patterned = 0  # how many leaves leaf_masks/leaf_bitvals hold the patterns of
    for s in range(MAX_SELECT_BITS + 1):
        slots = 1 << s
        target = slots - 1
        while leaves < target:
            best_gain = 0
            best_leaf = -1
            for leaf in range(leaves):
                if split_bit[leaf] == -2:  # leaves keep their best split until split
                    split_gain[leaf], split_bit[leaf] = _best_split(
                        vals, weights, leaf_of, leaf, sample, w, buf, buf_weights)
                if split_gain[leaf] > best_gain:
                    best_gain = split_gain[leaf]
                    best_leaf = leaf
            if best_leaf < 0:
                break
            best_bit = split_bit[best_leaf]
            bit = np.uint64(best_bit)
            for i in range(kept):  # (branch-free, as in _best_split)
                moves = (leaf_of[i] == best_leaf) & (((vals[i] >> bit) & _U1) == _U1)
                leaf_of[i] = leaves if moves else leaf_of[i]
            split_bit[best_leaf] = -2
            split_bit[leaves] = -2
            leaves += 1
        level = slots - 1  # the level's first slot (see column_alternatives)
        for v in range(slots):  # (every slot: the caller need not clear them)
            alt_masks[a, j, level + v] = _U0
            alt_bitvals[a, j, level + v] = _U0
        if target and kept:
            if patterned != leaves:  # (no leaf split since the last level: same patterns)
                _leaf_patterns(vals, weights, leaf_of, leaves, w, taus, counts, sizes, matched,
                               leaf_masks, leaf_bitvals)
                patterned = leaves
            for leaf in range(min(leaves, target)):
                alt_masks[a, j, level + leaf] = leaf_masks[leaf]
                alt_bitvals[a, j, level + leaf] = leaf_bitvals[leaf]
        for v in range(slots):
            slot_free[v] = w - _popcount(alt_masks[a, j, level + v])
        total = 0
        for i in range(kept):
            x = vals[i]
            best = w
            for v in range(slots):
                if (x & alt_masks[a, j, level + v]) == alt_bitvals[a, j, level + v]:
                    best = min(best, slot_free[v])
            total += weights[i] * (s + best)
        rest_cost[a, j, s] = total * rest // max(chunks, 1)


@nb.njit(cache=True, nogil=True)
def pick_alternatives(base_cost, rest_cost, rest_extra, alt_masks_found, alt_bitvals_found,
                      entry_ids, base, select_bits, entry_cost, alt_masks, alt_bitvals):
    """Each searched column's cheapest base candidate and selector level from the costs of
    :func:`column_alternatives` (``base_cost[B, V] + rest_cost[B, V, L] + rest_extra[B, V]``,
    the first in candidate-major order on ties), written for entry ``entry_ids[v]``:
    ``base``, ``select_bits``, ``entry_cost`` and the level's alternatives into the first
    ``2**select_bits`` slots of ``alt_masks/alt_bitvals`` (``[E, 2**(L - 1)]``; the other
    slots and entries are left as they are)."""
    num_bases, num_varying, levels = rest_cost.shape
    for v in range(num_varying):
        best = np.inf
        best_base = 0
        best_level = 0
        for b in range(num_bases):
            for level in range(levels):
                cost = base_cost[b, v] + rest_cost[b, v, level] + rest_extra[b, v]
                if cost < best:
                    best = cost
                    best_base = b
                    best_level = level
        e = entry_ids[v]
        base[e] = best_base
        select_bits[e] = best_level
        entry_cost[e] = best
        first = (1 << best_level) - 1  # (level s holds its 2**s slots from 2**s - 1 on)
        for slot in range(1 << best_level):
            alt_masks[e, slot] = alt_masks_found[best_base, v, first + slot]
            alt_bitvals[e, slot] = alt_bitvals_found[best_base, v, first + slot]


@nb.njit(cache=True, nogil=True, parallel=True)
def column_alternatives(words, rows, row_start, num_chunks, chunk_bits, base_masks, base_bitvals,
                        entry_ids, taus, sample, alt_masks, alt_bitvals, rest_cost, rest_count,
                        base_cost):
    """Alternative patterns of every column of every row group for every candidate base
    pattern, and their cost.

    ``words``: some rows column by column as 64-bit words (:func:`_column_chunk`); group ``g``
    is planned from the rows numbered ``rows[row_start[g]:row_start[g + 1]]`` (in that
    order), ``G = row_start.shape[0] - 1`` groups in all. Entry ``j`` of the per-entry arrays
    below is column ``c`` of group ``g`` where ``entry_ids[j] = g * C + c`` (the caller leaves
    out columns a group holds constant: nothing to search there);
    ``base_masks/base_bitvals``: ``[B, E]`` candidate base patterns, the first the exact
    value most chunks hold. For base ``a`` and
    entry ``j`` the chunks that miss the base pattern ("the rest") are split greedily on
    single bits into up to 7 groups, each coded against its own pattern. Outputs:
    ``alt_masks/alt_bitvals[a, j, 2**s - 1 + v]`` alternative ``v < 2**s`` for ``s``
    selector bits (the last one always the empty mask; every slot written here), the levels
    ``s = 0..3`` one after another in 15 slots;
    ``rest_cost[a, j, s]`` the bits the rest costs with them (selectors included);
    ``rest_count[a, j]`` and ``base_cost[a, j]`` (free bits of the chunks matching the base).
    All groups in one call: the columns of small groups then share the threads evenly.
    """
    w = chunk_bits
    num_bases = base_masks.shape[0]
    num_entries = base_masks.shape[1]
    nt = taus.shape[0]
    largest = 0
    for g in range(row_start.shape[0] - 1):
        largest = max(largest, row_start[g + 1] - row_start[g])
    # a candidate equal to the one before it (common: sparse columns have the same mask at
    # several thresholds) copies its results instead of repeating the search
    first = np.empty((num_bases, num_entries), np.int64)
    for j in range(num_entries):
        first[0, j] = 0
        for a in range(1, num_bases):
            same = (base_masks[a, j] == base_masks[a - 1, j]
                    and base_bitvals[a, j] == base_bitvals[a - 1, j])
            first[a, j] = first[a - 1, j] if same else a
    # A chunk that matches a base matches every looser one (the candidates are nested:
    # thresholds ascending, bits in the mask only drop out and keep their values), so the
    # chunks missing base a are found among those missing the tightest base, without another
    # pass over every row; a candidate that does not nest is scanned in full.
    nested = np.ones((num_bases, num_entries), np.bool_)
    for j in range(num_entries):
        for a in range(1, num_bases):
            m0 = base_masks[0, j]
            ma = base_masks[a, j]
            nested[a, j] = (ma & ~m0) == _U0 and (base_bitvals[0, j] & ma) == base_bitvals[a, j]
    # entries go round-robin to a fixed number of tasks, so each task allocates its buffers
    # once (allocating inside a parallel loop serializes the threads)
    tasks = min(num_entries, 64)
    for task in nb.prange(tasks):
        missed = np.empty(largest, np.uint64)    # chunks missing the tightest base
        all_vals = np.empty(largest, np.uint64)
        all_weights = np.empty(largest, np.int64)
        all_leaf_of = np.empty(largest, np.int64)
        distinct = np.empty(DISTINCT_VALUES, np.uint64)
        distinct_weights = np.empty(DISTINCT_VALUES, np.int64)
        counts = np.zeros((8, 64), np.int64)
        sizes = np.zeros(8, np.int64)
        matched = np.zeros(8 * nt, np.int64)
        leaf_masks = np.zeros(8 * nt, np.uint64)
        leaf_bitvals = np.zeros(8, np.uint64)
        buf = np.empty(sample, np.uint64)
        buf_weights = np.empty(sample, np.int64)
        split_gain = np.zeros(8, np.int64)
        split_bit = np.zeros(8, np.int64)
        slot_free = np.zeros(8, np.int64)
        for j in range(task, num_entries, tasks):
            c = entry_ids[j] % num_chunks
            g = entry_ids[j] // num_chunks
            r0 = row_start[g]
            n = row_start[g + 1] - r0
            num_missed = 0
            bm = base_masks[0, j]
            bv = base_bitvals[0, j]
            for i in range(n):  # (branch-free: a miss is a coin toss)
                x = _column_chunk(words, c, rows[r0 + i], w)
                missed[num_missed] = x
                num_missed += (x & bm) != bv
            for a in range(num_bases):
                if first[a, j] != a:
                    continue
                bm = base_masks[a, j]
                bv = base_bitvals[a, j]
                rest = 0
                if nested[a, j]:
                    for i in range(num_missed):
                        x = missed[i]
                        all_vals[rest] = x
                        rest += (x & bm) != bv
                else:
                    for i in range(n):
                        x = _column_chunk(words, c, rows[r0 + i], w)
                        all_vals[rest] = x
                        rest += (x & bm) != bv
                rest_count[a, j] = rest
                base_cost[a, j] = (n - rest) * (w - _popcount(bm))
                _column_alternatives_job(j, a, rest, w, taus, sample, alt_masks,
                                         alt_bitvals, rest_cost, all_vals, all_weights,
                                         all_leaf_of, distinct, distinct_weights, counts, sizes,
                                         matched, leaf_masks, leaf_bitvals, buf, buf_weights,
                                         split_gain, split_bit, slot_free)
    for j in range(num_entries):
        for a in range(num_bases):
            f = first[a, j]
            if f != a:
                rest_count[a, j] = rest_count[f, j]
                base_cost[a, j] = base_cost[f, j]
                for s in range(MAX_SELECT_BITS + 1):
                    rest_cost[a, j, s] = rest_cost[f, j, s]
                for v in range(alt_masks.shape[2]):
                    alt_masks[a, j, v] = alt_masks[f, j, v]
                    alt_bitvals[a, j, v] = alt_bitvals[f, j, v]
