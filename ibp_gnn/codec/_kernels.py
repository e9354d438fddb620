"""Numba kernels of the CPU codec: bit statistics, exact sizes, encoder and decoder.

All arithmetic runs on uint64 whatever the chunk width, so one kernel serves 32- and 64-bit
chunks; constants are typed explicitly because mixing signed and unsigned integers makes Numba
fall back to floats.
"""
from __future__ import annotations

import numba as nb
import numpy as np

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
                    hist[v, c * 8 + b] += 1.0


@nb.njit(cache=True, nogil=True, parallel=True)
def candidate_words(words, num_chunks, chunk_bits, majority, masks, free_bits, out):
    """Exact stored words of every row under every candidate mask.

    ``words``: ``[n, >= C]`` chunks (uint32 or uint64); ``majority``: ``[C]`` usual bit values;
    ``masks``: ``[T, C]`` candidate masks, each a subset of the one before (thresholds
    ascending); ``free_bits``: ``[T, C]``. Adds to ``out[T]``
    the total stored words (header + stream, or ``C`` for rows stored raw).
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


@nb.njit(cache=True, nogil=True, parallel=True)
def row_words(words, num_chunks, chunk_bits, mask, bitval, free_bits, out):
    """Stored length in words of each row of ``words`` under one plan, into ``out[n]``."""
    n = words.shape[0]
    w = chunk_bits
    header = (num_chunks + w - 1) // w
    base = 0
    for c in range(num_chunks):
        base += free_bits[c]
    for i in nb.prange(n):
        bits = base
        for c in range(num_chunks):
            if (np.uint64(words[i, c]) & mask[c]) != bitval[c]:
                bits += w - free_bits[c]
        out[i] = min(header + (bits + w - 1) // w, num_chunks)


@nb.njit(cache=True, nogil=True, parallel=True)
def encode_rows(words, num_chunks, chunk_bits, kinds, kind_masks, kind_bitvals, run_start,
                run_len, run_count, offsets, payload):
    """Encode each row of ``words`` into ``payload[offsets[i]:offsets[i + 1]]``.

    A row given exactly ``num_chunks`` words is stored raw. Column ``c`` has kind ``kinds[c]``;
    ``run_start/run_len[k, r]`` list the runs of free bits of kind ``k`` from the most
    significant down (``run_count[k]`` of them), so extracting free bits costs one shift and mask
    per run instead of one per bit.
    """
    n = words.shape[0]
    w = chunk_bits
    header = (num_chunks + w - 1) // w
    for i in nb.prange(n):
        pos = offsets[i]
        if offsets[i + 1] - pos == num_chunks:
            for c in range(num_chunks):
                payload[pos + c] = words[i, c]
            continue
        for h in range(header):
            hv = _U0
            for b in range(min(w, num_chunks - h * w)):
                c = h * w + b
                k = kinds[c]
                if (np.uint64(words[i, c]) & kind_masks[k]) == kind_bitvals[k]:
                    hv |= _U1 << np.uint64(b)
            payload[pos + h] = hv
        out = pos + header
        cur = _U0
        nbits = 0
        for c in range(num_chunks):
            x = np.uint64(words[i, c])
            k = kinds[c]
            if (x & kind_masks[k]) == kind_bitvals[k]:
                v = _U0
                length = 0
                for r in range(run_count[k]):
                    rl = run_len[k, r]
                    v = _shl(v, rl) | (_shr(x, run_start[k, r]) & _low(rl))
                    length += rl
            else:
                v = x
                length = w
            if length == 0:
                continue
            if nbits + length < w:
                cur = _shl(cur, length) | v
                nbits += length
            else:
                take = w - nbits
                rest = length - take
                payload[out] = (_shl(cur, take) | _shr(v, rest)) & _low(w)
                out += 1
                cur = v & _low(rest)
                nbits = rest
        if nbits > 0:
            payload[out] = _shl(cur, w - nbits) & _low(w)
            out += 1


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


@nb.njit(cache=True, nogil=True, parallel=True)
def decode_rows(payload, starts, ends, num_chunks, chunk_bits, kinds, kind_bitvals, kind_free,
                run_start, run_len, run_count, group_fixed, bitval_row, out):
    """Decode rows ``[starts[i], ends[i])`` of ``payload`` into ``out[i]``.

    ``out`` is ``[B, row_units]`` of any unsigned width that divides the chunk width; each chunk
    fills ``chunk_bits / unit_bits`` consecutive units (little-endian, as the rows were read).
    ``bitval_row`` is the row every packed chunk without free bits decodes to, in output units;
    ``group_fixed[h]`` has bit ``b`` set when column ``h * W + b`` has no free bits. An encoded
    row starts as ``bitval_row`` and only the chunks that read the stream are visited, found
    a header word at a time: sparse rows cost about one visit per non-default chunk.
    """
    b_count = starts.shape[0]
    w = chunk_bits
    unit_bits = out.itemsize * 8
    pieces = w // unit_bits
    header = (num_chunks + w - 1) // w
    units = out.shape[1]
    for i in nb.prange(b_count):
        start = starts[i]
        if ends[i] - start == num_chunks:
            for c in range(num_chunks):
                _store_chunk(out, i, c, np.uint64(payload[start + c]), pieces, unit_bits)
            continue
        for u in range(units):
            out[i, u] = bitval_row[u]
        pos = start + header  # next stream word to read
        buf = _U0             # pending stream bits, most significant first
        nbuf = 0
        for h in range(header):
            c0 = h * w
            hword = np.uint64(payload[start + h])
            todo = ~(hword & group_fixed[h]) & _low(min(w, num_chunks - c0))
            while todo:
                b = _lowest_bit(todo)
                todo &= todo - _U1
                c = c0 + b
                k = kinds[c]
                packed = (hword >> np.uint64(b)) & _U1
                length = kind_free[k] if packed else w
                if nbuf >= length:
                    v = buf >> np.uint64(64 - length) if length else _U0
                    buf = _shl(buf, length)
                    nbuf -= length
                else:  # the chunk continues in the next stream word
                    word = np.uint64(payload[pos]) << np.uint64(64 - w)
                    pos += 1
                    need = length - nbuf
                    v = (buf >> np.uint64(64 - length)) | (word >> np.uint64(64 - need))
                    buf = _shl(word, need)
                    nbuf = w - need
                if packed:
                    runs = run_count[k]
                    if runs == 1:  # the usual float layout: free bits are the low mantissa
                        v = kind_bitvals[k] | (v << np.uint64(run_start[k, 0]))
                    else:  # several runs: none is 64 bits long, so plain shifts are safe
                        x = kind_bitvals[k]
                        for r in range(runs - 1, -1, -1):
                            rl = np.uint64(run_len[k, r])
                            x |= (v & ((_U1 << rl) - _U1)) << np.uint64(run_start[k, r])
                            v >>= rl
                        v = x
                _store_chunk(out, i, c, v, pieces, unit_bits)


@nb.njit(cache=True, nogil=True)
def first_inconsistent_row(payload, offsets, num_chunks, chunk_bits, free_bits):
    """Index of the first encoded row whose header implies a length other than its stored one,
    or -1. Guarantees the decoder never reads past a row."""
    w = chunk_bits
    header = (num_chunks + w - 1) // w
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        length = offsets[i + 1] - start
        if length == num_chunks:
            continue
        if length < header:
            return i
        bits = 0
        for c in range(num_chunks):
            if (np.uint64(payload[start + c // w]) >> np.uint64(c % w)) & _U1:
                bits += free_bits[c]
            else:
                bits += w
        if header + (bits + w - 1) // w != length:
            return i
    return -1
