import collections
import dataclasses
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibp_gnn.codec import SUPPORTED_DTYPES, _kernels, compress, load, tile_rows
from ibp_gnn.codec.dtypes import as_byte_rows, numpy_dtype, torch_dtype
from ibp_gnn.codec.plan import (DIRECT_COUNT_ROWS, Plan, bit_counts, choose_plan,
                                combine_plans)

from conftest import assert_bits_equal
from ibp_gnn.codec.container import WORD_DTYPES, split_offsets
from old_store_files import rewrite_as_version, with_selectors_by_segment
from reference_codec import chunk_values, encode as reference_encode

FLOAT_SPECIALS = {
    "float32": [0x7FC00000, 0x7FC00001, 0xFFFFFFFF, 0x7F800001, 0x80000000, 0x00000000,
                0x7F800000, 0xFF800000, 0x00000001, 0x807FFFFF, 0x3F800000],
    "float16": [0x7E00, 0x7C01, 0xFFFF, 0x8000, 0x0000, 0x7C00, 0xFC00, 0x0001, 0x83FF],
    "bfloat16": [0x7FC0, 0x7F81, 0xFFFF, 0x8000, 0x0000, 0x7F80, 0xFF80, 0x0001, 0x807F],
    "float64": [0x7FF8000000000001, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x0,
                0x7FF0000000000000, 0x0000000000000001],
}


def make_matrix(dtype: str, shape, pattern: str, seed: int) -> torch.Tensor:
    """A matrix whose bits follow ``pattern``; built from raw bits so every value can occur."""
    rng = np.random.default_rng(seed)
    npd = numpy_dtype(dtype)
    size = int(np.prod(shape))
    nbytes = size * npd.itemsize
    if pattern == "random":
        raw = rng.integers(0, 256, nbytes, dtype=np.uint8)
    elif pattern == "sparse":
        raw = np.zeros(nbytes, np.uint8)
        hot = rng.random(nbytes) < 0.01
        raw[hot] = rng.integers(1, 256, int(hot.sum()), dtype=np.uint8)
    elif pattern == "equal_rows":
        row = rng.integers(0, 256, nbytes // max(shape[0], 1), dtype=np.uint8)
        raw = np.tile(row, shape[0])
    elif pattern == "narrow":  # floats in a narrow range: invariant signs and exponents
        vals = (1.0 + rng.random(size) * 0.5).astype(np.float64)
        t = torch.from_numpy(vals).to(torch_dtype(dtype)) if dtype != "bool" else (
            torch.from_numpy(vals > 1.25))
        return t.reshape(shape)
    elif pattern == "specials":
        pool = FLOAT_SPECIALS.get(dtype)
        if pool is None:
            info = np.iinfo(npd) if npd.kind in "iu" else None
            pool = [0, 1] if info is None else [0, 1, int(info.max), int(info.min), -1 % (1 << 64)]
        words = rng.choice(np.array([p % (1 << (8 * npd.itemsize)) for p in pool],
                                    dtype=np.uint64), size)
        raw = words.astype(f"<u{npd.itemsize}").view(np.uint8)
    else:
        raise ValueError(pattern)
    if dtype == "bool":
        raw = raw & 1
    arr = np.frombuffer(raw.tobytes(), dtype=npd).reshape(shape)
    return torch.from_numpy(arr.copy()).view(torch_dtype(dtype))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(SUPPORTED_DTYPES),
       rows=st.integers(0, 40), dims=st.lists(st.integers(0, 23), min_size=0, max_size=2),
       pattern=st.sampled_from(["random", "sparse", "equal_rows", "narrow", "specials"]),
       chunk_bits=st.sampled_from(["auto", 16, 32, 64]), seed=st.integers(0, 2**16))
def test_round_trip_matches_reference_layout(dtype, rows, dims, pattern, chunk_bits, seed):
    x = make_matrix(dtype, (rows, *dims), pattern, seed)
    before = x.clone()
    cm = compress(x, chunk_bits=chunk_bits)
    assert_bits_equal(cm.decode(), x)
    assert_bits_equal(x, before)  # input untouched
    if rows:
        idx = np.random.default_rng(seed).integers(0, rows, 2 * rows)
        assert_bits_equal(cm.decode(idx), x[torch.from_numpy(idx)])

    # the payload is exactly what a straightforward reading of the format produces
    byte_rows, _, _ = as_byte_rows(x)
    plan = cm.plan()
    expected = reference_encode(byte_rows, plan)
    wb = cm.chunk_bits // 8
    offsets = np.cumsum([0] + [len(w) for w in expected])
    lo, base, _ = split_offsets(offsets)
    # the whole matrix is kept raw exactly when the encoded rows and their offsets do not pay
    raw_layout = rows > 0 and offsets[-1] * wb + lo.nbytes + base.nbytes >= (
        rows * cm.num_chunks * wb)
    assert cm.raw_layout == raw_layout
    if raw_layout:
        expected = [chunk_values(bytes(r), cm.chunk_bits) for r in byte_rows]
        index_bytes = 0
    else:
        index_bytes = (cm.offset_lo.itemsize * (rows + 1)
                       + 8 * ((rows >> cm.offset_shift) + 1))
    starts, ends = cm.row_offsets()
    for i, words in enumerate(expected):
        assert [int(v) for v in cm.payload[starts[i]:ends[i]]] == words, f"row {i}"
    assert cm.payload_bytes == sum(len(w) for w in expected) * wb
    kinds = {(int(m), int(v), int(s), tuple(int(a) for a in am[:1 << s]),
              tuple(int(b) for b in ab[:1 << s]))
             for m, v, s, am, ab in zip(plan.mask, plan.bitval, plan.select_bits,
                                        plan.alt_masks, plan.alt_bitvals)}
    assert cm.num_kinds == len(kinds)
    kind_bits = next(b for b in (0, 1, 2, 4, 8, 16, 32) if 2**b >= len(kinds))
    alts = sum(1 << k[2] for k in kinds)
    assert cm.host_bytes == (cm.payload_bytes + index_bytes + 2 * len(kinds) * wb
                             + 4 * -(-cm.num_chunks * kind_bits // 32) + len(kinds)
                             + 2 * alts * wb)
    assert cm.rows_raw == sum(len(w) == cm.num_chunks for w in expected)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
@pytest.mark.parametrize("pattern", ["specials", "sparse", "narrow"])
def test_every_dtype_round_trips(dtype, pattern):
    x = make_matrix(dtype, (257, 19), pattern, seed=1)
    for chunk_bits in (16, 32, 64):
        cm = compress(x, chunk_bits=chunk_bits)
        assert_bits_equal(cm.decode(), x)
        assert cm.decode().dtype == x.dtype


def test_numpy_input_and_shapes():
    x = np.arange(5 * 3 * 2, dtype=np.int16).reshape(5, 3, 2)
    cm = compress(x)
    assert cm.shape == (5, 3, 2)
    assert_bits_equal(cm.decode([4, 0]), torch.from_numpy(x[[4, 0]]))
    one_d = np.array([1.5, -0.0, np.nan], dtype=np.float32)
    assert_bits_equal(compress(one_d).decode(), torch.from_numpy(one_d))
    empty = np.zeros((0, 7), np.float32)
    cm = compress(empty)
    assert cm.decode().shape == (0, 7) and cm.payload_bytes == 0
    zero_width = np.zeros((4, 0), np.float64)
    assert compress(zero_width).decode([1, 1]).shape == (2, 0)
    column = np.array([[1], [2], [2], [2]], np.uint8)
    assert_bits_equal(compress(column).decode(), torch.from_numpy(column))


def test_sparse_rows_compress_and_dense_random_rows_stay_raw():
    rng = np.random.default_rng(0)
    sparse = (rng.random((500, 512)) < 0.01).astype(np.float32)
    cm = compress(sparse)
    assert cm.ratio > 10 and cm.rows_raw == 0 and not cm.raw_layout
    noise = rng.integers(0, 2**32, (100, 64), dtype=np.uint32)
    cm = compress(noise)
    assert cm.rows_raw == 100 and cm.raw_layout
    assert cm.payload_bytes == noise.nbytes and cm.index_bytes == 0
    assert cm.ratio > 0.99


def test_rows_too_narrow_to_encode_are_kept_raw_without_offsets(tmp_path):
    x = np.random.default_rng(0).integers(-128, 128, (10000, 4)).astype(np.int8)
    cm = compress(x)  # random rows of 4 bytes: a header and an offset alone cost a third
    assert cm.raw_layout and cm.host_bytes <= x.nbytes + 64
    assert_bits_equal(cm.decode([9999, 3]), torch.from_numpy(x[[9999, 3]]))
    lo, base, shift = cm.offset_tables()
    assert lo.shape == (10001,)
    cm.save(tmp_path / "n.ibp")
    assert_bits_equal(load(tmp_path / "n.ibp").decode(), torch.from_numpy(x))
    assert_bits_equal(tile_rows(cm, 25000).decode([24999]), torch.from_numpy(x[[4999]]))


def test_odd_widths_use_64_bit_chunks_when_they_pay():
    rng = np.random.default_rng(0)
    x = (rng.random((300, 3703)) < 0.008).astype(np.float32)  # citeseer's shape
    auto = compress(x, extended=False)
    assert auto.chunk_bits == 64
    assert auto.payload_bytes <= compress(x, chunk_bits=32, extended=False).payload_bytes
    assert_bits_equal(auto.decode(), torch.from_numpy(x))


def test_index_forms_and_errors():
    x = torch.randn(10, 4)
    cm = compress(x)
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        assert_bits_equal(cm.decode(np.array([9, 0, 9], dtype=dt)), x[[9, 0, 9]])
    assert_bits_equal(cm.decode(torch.tensor([3, 3], dtype=torch.int32)), x[[3, 3]])
    assert_bits_equal(cm.decode([]), x[:0])
    assert_bits_equal(cm.decode(slice(2, 8, 3)), x[2:8:3])
    with pytest.raises(IndexError, match="negative"):
        cm.decode([1, -1])
    with pytest.raises(IndexError, match="out of range"):
        cm.decode(torch.tensor([10]))
    with pytest.raises(IndexError, match="out of range"):
        cm.decode(np.array([2**64 - 1], np.uint64))
    with pytest.raises(TypeError, match="integer"):
        cm.decode(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="integer"):
        cm.decode(np.array([1.0]))


def test_unsupported_input_is_refused():
    with pytest.raises(TypeError, match="unsupported dtype"):
        compress(np.zeros((3, 2), np.complex64))
    with pytest.raises(TypeError, match="unsupported"):
        compress(np.array([["a"]]))
    with pytest.raises(ValueError, match="scalar"):
        compress(np.float32(1.0))
    with pytest.raises(ValueError, match="chunk_bits"):
        compress(np.zeros((3, 2), np.float32), chunk_bits=48)
    with pytest.raises(ValueError, match="thresholds"):
        compress(np.zeros((3, 2), np.float32), thresholds=(0.2,))


def test_read_only_and_non_contiguous_input():
    base = np.random.default_rng(0).random((20, 12)).astype(np.float32)
    base.flags.writeable = False
    view = base[::2, ::3]
    assert_bits_equal(compress(view).decode(), torch.from_numpy(np.ascontiguousarray(view)))
    t = torch.from_numpy(base.copy()).t()
    assert_bits_equal(compress(t).decode(), t.contiguous())


def test_kernels_see_one_argument_layout_per_element_type(monkeypatch):
    """Every input form reaches each numba kernel with the same array layouts and flags for the
    same element types: any other would be one more compile of the kernel, which costs tens
    of seconds."""
    from numba import typeof
    from numba.core.registry import CPUDispatcher

    seen = collections.defaultdict(set)

    def recording(name, kernel):
        def call(*args):
            seen[name].add(tuple(typeof(a) for a in args))
            return kernel(*args)
        return call

    for name, kernel in list(vars(_kernels).items()):
        if isinstance(kernel, CPUDispatcher):
            monkeypatch.setattr(_kernels, name, recording(name, kernel))
    rng = np.random.default_rng(0)
    dense = make_matrix("float32", (250, 5), "specials", 0)
    sparse = (rng.random((200, 300)) < 0.03).astype(np.float32)
    read_only = sparse.copy()
    read_only.flags.writeable = False
    inputs = [torch.from_numpy(rng.random((300, 1)) < 0.1),     # one chunk: one varying column
              dense, dense.numpy(), np.asfortranarray(dense.numpy()), dense[:, ::2], dense.t(),
              sparse, read_only, sparse[::3, 7:]]
    for w in (16, 32, 64):
        for x in inputs:
            for extended in (True, False):
                cm = compress(x, chunk_bits=w, extended=extended)
                cm.decode(rng.integers(0, cm.num_rows, 50).astype(np.int32))
                cm.decode(list(range(cm.num_rows)))
    assert seen
    for name, signatures in seen.items():
        by_types = collections.Counter(tuple(str(getattr(t, "dtype", t)) for t in s)
                                       for s in signatures)
        assert max(by_types.values()) == 1, (name, sorted(map(str, signatures)))


def test_allocator_receives_the_payload():
    seen = []

    def allocator(nbytes):
        buf = np.zeros(nbytes, np.uint8)
        seen.append(buf)
        return buf

    x = (torch.rand(64, 100) < 0.05).float()
    cm = compress(x, allocator=allocator)
    assert len(seen) == 1 and np.shares_memory(cm.payload, seen[0])
    assert_bits_equal(cm.decode(), x)
    with pytest.raises(ValueError, match="allocator"):
        compress(x, allocator=lambda n: np.zeros(max(n - 1, 0), np.uint8))


def test_sampled_plan_and_reused_plan_stay_lossless():
    rng = np.random.default_rng(0)
    x = (rng.random((5000, 64)) < 0.05).astype(np.float32)
    x[-1] = rng.random(64)  # a row unlike the sample still round-trips
    cm = compress(x, sample_rows=100)
    assert_bits_equal(cm.decode(), torch.from_numpy(x))
    plan = cm.plan()
    other = (rng.random((50, 64)) < 0.05).astype(np.float32)
    assert_bits_equal(compress(other, plan=plan).decode(), torch.from_numpy(other))
    with pytest.raises(ValueError, match="chunks per row"):
        compress(np.zeros((3, 65), np.float32), plan=plan)


def test_block_processing_matches_single_block():
    x = (torch.rand(300, 50) < 0.1).float()
    small = compress(x, block_bytes=1000)
    whole = compress(x)
    assert np.array_equal(small.payload, whole.payload)
    assert np.array_equal(small.offset_lo, whole.offset_lo)


def test_offsets_split_into_blocks():
    x = torch.zeros(70000, 8)  # one header word a row: 8-bit offsets in blocks of 256 rows
    x[69999, 3] = 1.0
    cm = compress(x)
    assert cm.offset_lo.dtype == np.uint8
    assert cm.offset_shift == 8 and cm.block_base.shape == (274,)
    rows = [0, 255, 256, 65535, 65536, 69999]
    assert_bits_equal(cm.decode(rows), x[rows])


@pytest.mark.parametrize("row_words, long_row, dtype, shift", [
    (1, None, np.uint8, 8),     # 256 rows of 1 word: relative offsets up to 255
    (1, 3999, np.uint8, 7),     # one row of 8 words: its block of 256 would reach 262
    (3, None, np.uint8, 6),     # 64 rows of 3 words: up to 189
    (40, None, np.uint16, 10),  # 8 bits a row plus a base every 4 rows would cost more
    (70000, None, np.uint32, 16),
])
def test_offset_tables_are_the_smallest_that_hold_the_offsets(row_words, long_row, dtype,
                                                              shift):
    offsets = np.arange(5001, dtype=np.int64) * row_words
    if long_row is not None:
        offsets[long_row + 1:] += 7
    lo, base, got_shift = split_offsets(offsets)
    assert lo.dtype == dtype and got_shift == shift
    assert len(base) == (5000 >> shift) + 1
    np.testing.assert_array_equal(base[np.arange(5001) >> shift].astype(np.int64) + lo, offsets)


def test_long_rows_get_32_bit_offsets():
    x = (1 + np.random.default_rng(0).random((6, 100000)) / 2).astype(np.float32)
    cm = compress(x)  # encoded rows of about 69,000 words: one overflows 16-bit offsets
    assert not cm.raw_layout
    assert cm.offset_lo.dtype == np.uint32
    assert_bits_equal(cm.decode([5, 0]), torch.from_numpy(x[[5, 0]]))


def test_column_kinds_pack_and_unpack():
    from ibp_gnn.codec.container import pack_kinds, unpack_kinds
    rng = np.random.default_rng(0)
    for bits in (1, 2, 4, 8, 16, 32):
        ids = rng.integers(0, 2**bits, 77, dtype=np.uint64)
        assert np.array_equal(unpack_kinds(pack_kinds(ids, bits), bits, 77), ids)


def test_tile_rows_equals_compressing_the_tiled_matrix():
    rng = np.random.default_rng(0)
    x = (rng.random((37, 90)) < 0.05).astype(np.float32)
    cm = compress(x)
    plan = cm.plan()
    for num_rows in (0, 5, 37, 100, 74):
        tiled_raw = x[np.arange(num_rows) % 37]
        tiled = tile_rows(cm, num_rows)
        direct = compress(tiled_raw, plan=plan)
        assert np.array_equal(tiled.payload, direct.payload)
        assert tiled.row_offsets()[0].tolist() == direct.row_offsets()[0].tolist()
        assert_bits_equal(tiled.decode(), torch.from_numpy(tiled_raw))
    with pytest.raises(ValueError, match="cannot tile"):
        tile_rows(cm, -1)


def random_plan(rng, x, w, list_header, num_groups=1):
    """A plan with random base patterns, selector bits and alternatives (the last one of every
    column the empty mask, so every chunk is encodable), in ``num_groups`` row groups; in
    groups after the first a few columns lack the empty mask, so some rows cannot use them."""
    plans = [_random_group(rng, x, w, list_header, strict=g > 0) for g in range(num_groups)]
    return plans[0] if num_groups == 1 else combine_plans(plans)


def _random_group(rng, x, w, list_header, strict):
    byte_rows, _, _ = as_byte_rows(x)
    c = -(-byte_rows.shape[1] // (w // 8))
    wd = WORD_DTYPES[w]
    top = (1 << w) - 1

    def words(k):
        return rng.integers(0, top, size=k, dtype=np.uint64, endpoint=True)

    rows = np.zeros((max(len(byte_rows), 1), c * (w // 8)), np.uint8)
    rows[:len(byte_rows), :byte_rows.shape[1]] = byte_rows
    chunks = rows.view(wd).astype(np.uint64)
    # patterns drawn from the data (so that some chunks match them) or at random
    pick = chunks[rng.integers(0, len(chunks), c), np.arange(c)]
    mask = words(c) | words(c)
    bitval = np.where(rng.random(c) < 0.7, pick, words(c)) & mask
    sel = rng.integers(0, 4, c).astype(np.uint8)
    alt_m = np.zeros((c, 8), np.uint64)
    alt_b = np.zeros((c, 8), np.uint64)
    for j in range(c):
        for v in range((1 << sel[j]) - 1):
            m = words(1)[0] & words(1)[0]
            src = chunks[rng.integers(0, len(chunks)), j] if rng.random() < 0.7 else words(1)[0]
            alt_m[j, v], alt_b[j, v] = m, src & m
        if strict and rng.random() < 0.05:
            last = (1 << sel[j]) - 1
            alt_m[j, last], alt_b[j, last] = top, chunks[rng.integers(0, len(chunks)), j]
    return Plan(w, mask.astype(wd), bitval.astype(wd), 1.0, select_bits=sel,
                alt_masks=alt_m.astype(wd), alt_bitvals=alt_b.astype(wd),
                list_header=list_header)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(SUPPORTED_DTYPES), rows=st.integers(1, 30),
       dim=st.integers(1, 150),
       pattern=st.sampled_from(["random", "sparse", "equal_rows", "narrow", "specials"]),
       w=st.sampled_from([16, 32, 64]), list_header=st.booleans(),
       groups=st.sampled_from([1, 1, 2, 3, 5]), seed=st.integers(0, 2**16))
def test_any_plan_round_trips_and_matches_reference(dtype, rows, dim, pattern, w, list_header,
                                                     groups, seed):
    """Random patterns, selectors, headers and row groups: the encoder writes exactly what the
    format says, the decoder reads it back, and a store file keeps it."""
    x = make_matrix(dtype, (rows, dim), pattern, seed)
    plan = random_plan(np.random.default_rng(seed), x, w, list_header, groups)
    cm = compress(x, plan=plan)
    for fast_pdep in (True, False):  # free bits scattered by PDEP, and run by run
        with mock.patch.object(_kernels, "FAST_PDEP", fast_pdep):
            assert_bits_equal(cm.decode(), x)
    if not cm.raw_layout:
        byte_rows, _, _ = as_byte_rows(x)
        expected = reference_encode(byte_rows, plan)
        starts, ends = cm.row_offsets()
        for i, words in enumerate(expected):
            assert [int(v) for v in cm.payload[starts[i]:ends[i]]] == words, f"row {i}"
        assert cm.list_header == list_header and cm.num_groups == groups
    again = compress(x, plan=cm.plan())
    assert np.array_equal(again.payload, cm.payload)
    with tempfile.TemporaryDirectory() as d:
        cm.save(f"{d}/m.ibp")
        assert_bits_equal(load(f"{d}/m.ibp").decode(), x)
        # the same rows in the layout of format version 4 load into this one
        with_selectors_by_segment(cm, x).save(f"{d}/v4.ibp")
        rewrite_as_version(Path(d) / "v4.ibp", 4)
        np.testing.assert_array_equal(load(f"{d}/v4.ibp").payload, cm.payload)


@pytest.mark.parametrize("w", [16, 32, 64])
def test_listed_rows_in_groups_without_free_base_bits_match_the_reference(w):
    """Rows listed against base patterns that leave no bit free (a sparse matrix's usual
    plan) write only their listed chunks; the words are still exactly the format's, over
    several 32-chunk segments, in a plan whose other row group's base patterns do leave bits
    free (the shortcut is decided per group)."""
    from ibp_gnn.codec.plan import score_rows
    x = make_matrix("float32", (60, 150), "sparse", w)
    byte_rows, _, _ = as_byte_rows(x)
    rng = np.random.default_rng(w)
    plan = random_plan(rng, x, w, True, 2)
    c = plan.num_chunks
    chunks = np.pad(byte_rows, ((0, 0), (0, c * w // 8 - byte_rows.shape[1]))).view(
        WORD_DTYPES[w])
    mask, bitval = plan.mask.copy(), plan.bitval.copy()
    mask[:c] = (1 << w) - 1                                   # group 0: no free base bits
    bitval[:c] = chunks[rng.integers(0, len(chunks), c), np.arange(c)]
    plan = dataclasses.replace(plan, mask=mask, bitval=bitval)
    cm = compress(x, plan=plan)
    assert not cm.raw_layout and cm.list_header
    starts, ends = cm.row_offsets()
    for i, words in enumerate(reference_encode(byte_rows, plan)):
        assert [int(v) for v in cm.payload[starts[i]:ends[i]]] == words, f"row {i}"
    assert_bits_equal(cm.decode(), x)
    _, _, row_groups = score_rows(byte_rows, plan)
    assert (row_groups == 0).any()


def test_plan_without_an_empty_alternative_is_refused():
    x = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
    full = np.full(2, 0xFFFFFFFF, np.uint32)
    plan = Plan(32, full, np.zeros(2, np.uint32), 1.0, select_bits=np.zeros(2, np.uint8),
                alt_masks=full[:, None].copy(), alt_bitvals=np.zeros((2, 1), np.uint32))
    with pytest.raises(ValueError, match="none of the plan's patterns matches"):
        compress(x, plan=plan)


def test_half_precision_rows_pick_the_smallest_width(monkeypatch):
    """``"auto"`` scores 16-bit chunks for 2-byte elements (and only for them) and keeps the
    width whose exact size is smallest (row groups, searched for that width afterwards, are
    left out here)."""
    monkeypatch.setattr("ibp_gnn.codec.plan.GROUP_COUNTS", ())
    rng = np.random.default_rng(4)
    dense = torch.from_numpy(rng.standard_normal((500, 48)).astype(np.float32))
    sparse = dense * (torch.rand(500, 48, generator=torch.Generator().manual_seed(0)) < 0.1)
    for x in (dense.half(), sparse.half(), dense.bfloat16(), sparse.to(torch.int16)):
        auto = compress(x)
        sizes = {w: compress(x, chunk_bits=w).payload_bytes for w in (16, 32, 64)}
        assert auto.payload_bytes == min(sizes.values())
        assert_bits_equal(auto.decode(), x)
    assert compress(dense.half()).chunk_bits == 16  # one fp16 value per chunk pays here
    for x in (dense, sparse):
        assert compress(x).chunk_bits != 16


def test_list_header_fields_must_fit_a_chunk_word():
    x = np.zeros((3, 70000), np.uint16)               # 70,000 16-bit chunks per row
    x[0, 7] = x[1, 69999] = 1
    rows, _, _ = as_byte_rows(x)
    plan = choose_plan(rows, chunk_bits=16)
    assert not plan.list_header
    listed = dataclasses.replace(plan, list_header=True)
    with pytest.raises(ValueError, match="list header"):
        compress(x, plan=listed)
    assert_bits_equal(compress(x, plan=plan).decode(), torch.from_numpy(x))
    assert compress(x, chunk_bits=32).list_header   # 35,000 32-bit chunks: fits


def test_planner_groups_rows_when_it_pays(monkeypatch):
    """Rows of three kinds (sparse 0/1, dense floats, shifted counts) get one row group each
    when that stores them in fewer host bytes; a single population keeps one group."""
    rng = np.random.default_rng(1)
    mixed = np.concatenate([(rng.random((150, 40)) < 0.05).astype(np.float32),
                            rng.standard_normal((150, 40)).astype(np.float32).round(1),
                            3 + (rng.random((150, 40)) < 0.1).astype(np.float32)])
    mixed = mixed[rng.permutation(len(mixed))]
    grouped = compress(mixed)
    assert grouped.num_groups > 1 and grouped.extended
    assert_bits_equal(grouped.decode(), torch.from_numpy(mixed))
    # every row in the group storing it in the fewest words, the lowest on ties (16-bit
    # chunks give many ties here)
    for w in (16, 32, 64):
        cm = compress(mixed, chunk_bits=w)
        expected = reference_encode(as_byte_rows(mixed)[0], cm.plan())
        starts, ends = cm.row_offsets()
        for i, words in enumerate(expected):
            assert [int(v) for v in cm.payload[starts[i]:ends[i]]] == words, f"row {i}"
    monkeypatch.setattr("ibp_gnn.codec.plan.GROUP_COUNTS", ())
    single = compress(mixed)
    assert single.num_groups == 1
    assert grouped.host_bytes < single.host_bytes
    monkeypatch.undo()
    uniform = (rng.random((400, 40)) < 0.05).astype(np.float32)
    assert compress(uniform).num_groups == 1


def population_rows(count: int = 8) -> np.ndarray:
    """800 float32 rows of 48 values from ``count`` dense prototypes, 5 % of values
    redrawn."""
    rng = np.random.default_rng(2)
    prototypes = rng.standard_normal((count, 48)).astype(np.float32)
    rows = np.repeat(prototypes, 800 // count, axis=0)
    noisy = rng.random(rows.shape) < 0.05
    rows[noisy] = rng.standard_normal(int(noisy.sum())).astype(np.float32)
    return rows[rng.permutation(len(rows))]


def test_planner_picks_the_group_count_by_size(monkeypatch):
    """Eight populations of rows (each its own dense prototype, a few values varying): eight
    row groups store them smaller than four, and the planner takes eight."""
    rows = population_rows()
    chosen = compress(rows)
    assert chosen.num_groups == 8
    assert_bits_equal(chosen.decode(), torch.from_numpy(rows))
    monkeypatch.setattr("ibp_gnn.codec.plan.GROUP_COUNTS", (4,))
    assert compress(rows).host_bytes > chosen.host_bytes


def test_a_plans_tables_are_built_once_per_compression(monkeypatch):
    """The planner scores rows under a plan, prices its tables and hands it to the encoder:
    within one compression each plan's tables are built once (the winner's once more, with
    the payload); outside one, every call builds its own."""
    from ibp_gnn.codec import encode
    built = []
    build_matrix = encode.build_matrix
    monkeypatch.setattr(encode, "build_matrix",
                        lambda plan, *a, **k: built.append(plan) or build_matrix(plan, *a, **k))
    rows = population_rows()
    cm = compress(rows)
    assert_bits_equal(cm.decode(), torch.from_numpy(rows))
    times = collections.Counter(map(id, built))
    assert max(times.values()) == 2 and times[id(built[-1])] == 2
    assert sum(n == 2 for n in times.values()) == 1
    plan = built[-1]
    assert encode.pattern_tables(plan, (5, 192)) is not encode.pattern_tables(plan, (5, 192))
    with encode.reused_tables():
        assert encode.pattern_tables(plan, (5, 192)) is encode.pattern_tables(plan, (5, 192))
        assert encode.pattern_tables(plan, (5, 192)) is not encode.pattern_tables(plan, (6, 192))


def test_extrapolated_gain_scales_the_last_gain_by_its_shrinkage():
    from ibp_gnn.codec.plan import extrapolated_gain
    assert extrapolated_gain([]) is None and extrapolated_gain([0.1]) is None
    assert extrapolated_gain([0.0, 0.05]) is None and extrapolated_gain([-0.01, 0.05]) is None
    assert extrapolated_gain([0.08, 0.04]) == pytest.approx(0.02)
    assert extrapolated_gain([0.5, 0.08, 0.04]) == pytest.approx(0.02)


def test_entropy_scaled_gain_scales_the_last_gain_by_the_bounds_shrinkage():
    from ibp_gnn.codec.plan import entropy_scaled_gain, row_entropy
    assert entropy_scaled_gain([], [10.0, 5.0, 4.0]) is None
    assert entropy_scaled_gain([0.1], [10.0, 5.0]) is None
    assert entropy_scaled_gain([0.1], [10.0, 10.0, 4.0]) is None   # no shrinkage to scale by
    # the bound halved for a 10 % gain; now it shrinks a tenth: about 2 % to expect
    assert entropy_scaled_gain([0.1], [10.0, 5.0, 4.5]) == pytest.approx(0.02)
    assert entropy_scaled_gain([0.3, 0.1], [20.0, 10.0, 5.0, 4.5]) == pytest.approx(0.02)
    assert entropy_scaled_gain([0.1], [10.0, 0.0, 0.0]) == 0.0     # nothing left to gain
    # two groups of 4 rows: one constant (no entropy), one with a fair coin bit (4 bits)
    counts = np.array([[4, 0], [2, 0]])
    assert row_entropy(counts, np.array([4, 4])) == pytest.approx(0.5)


@pytest.mark.parametrize("populations", [4, 8])
def test_a_clustering_whose_bound_barely_shrinks_is_not_searched(monkeypatch, populations):
    """Four populations: four groups find them, eight only split each by its noise; the
    bit-entropy bound then shrinks far less than it did for four, so eight groups are
    clustered but their patterns are not searched. Eight populations: more groups than four
    are searched (and eight taken)."""
    from ibp_gnn.codec import plan
    rows = population_rows(populations)
    clustered, patterned = [], []
    cluster_rows, group_extended_plans = plan.cluster_rows, plan.group_extended_plans
    monkeypatch.setattr(plan, "cluster_rows",
                        lambda bits, k, seed=0: clustered.append(k) or cluster_rows(bits, k, seed))
    monkeypatch.setattr(plan, "group_extended_plans", lambda columns, c, counts, *a, **k: (
        patterned.append(len(counts)) if len(counts) > 1 else None) or group_extended_plans(
            columns, c, counts, *a, **k))
    chosen = compress(rows)
    assert clustered[:2] == [4, 8] and patterned[0] == 4
    assert len(patterned) == 1 if populations == 4 else len(patterned) > 1
    assert chosen.num_groups == populations
    assert_bits_equal(chosen.decode(), torch.from_numpy(rows))


@pytest.mark.parametrize("min_gain, counts_tried", [(0.02, [4, 8, 16]), (0.03, [4, 8])])
def test_a_count_whose_expected_gain_falls_short_is_not_tried(monkeypatch, min_gain,
                                                              counts_tried):
    """Eight populations: four groups gain about 58% over one, eight about 25% over four, so
    sixteen can be expected to gain about 11%. Sixteen needs 4 * MIN_GROUP_GAIN: it is
    clustered and searched at 2% (8% needed) and given up without either at 3% (12%).
    (Eight clusters may merge two populations; the rows still decode exactly.)"""
    from ibp_gnn.codec import plan
    rows = population_rows()
    tried = []
    cluster_rows = plan.cluster_rows
    monkeypatch.setattr(plan, "MIN_GROUP_GAIN", min_gain)
    monkeypatch.setattr(plan, "cluster_rows",
                        lambda bits, k, seed=0: tried.append(k) or cluster_rows(bits, k, seed))
    chosen = compress(rows)
    assert tried == counts_tried and chosen.num_groups >= 7
    assert_bits_equal(chosen.decode(), torch.from_numpy(rows))


@pytest.mark.parametrize("whole_rows", [0, 10 ** 6])
def test_group_counts_compared_on_other_rows_or_on_every_row(monkeypatch, whole_rows):
    """With more rows than the patterns are discovered from, group counts are compared on
    rows other than those (then the winner confirmed over every row), or, for a matrix of at
    most ``WHOLE_SCORING_ROWS`` rows, over every row at once: both find the eight populations,
    and the row sizes the planner hands the encoder are the stored ones."""
    from ibp_gnn.codec import dtypes
    from ibp_gnn.codec.plan import plan_rows
    rows = population_rows()
    monkeypatch.setattr("ibp_gnn.codec.plan.DISCOVERY_ROWS", 300)
    monkeypatch.setattr("ibp_gnn.codec.plan.WHOLE_SCORING_ROWS", whole_rows)
    chosen = compress(rows)
    assert chosen.num_groups == 8
    assert_bits_equal(chosen.decode(), torch.from_numpy(rows))
    plan, lengths, _ = plan_rows(dtypes.as_byte_rows(rows)[0], element_bytes=4)
    assert plan.num_groups == 8
    offsets = chosen._offsets(np.arange(len(rows) + 1, dtype=np.int64))
    np.testing.assert_array_equal(lengths, np.diff(offsets))


@pytest.mark.parametrize("chunk_bits", [16, 32, 64])
def test_free_bit_runs_list_the_zero_runs_from_the_top(chunk_bits):
    """Every mask's runs of zero bits, most significant first, against a walk over its bits
    (all ones, all zeros, alternating bits and random masks)."""
    from ibp_gnn.codec.plan import free_bit_runs
    rng = np.random.default_rng(chunk_bits)
    full = (1 << chunk_bits) - 1
    masks = [0, full, 0x5555555555555555 & full, 0xAAAAAAAAAAAAAAAA & full, 1,
             1 << (chunk_bits - 1)]
    masks += [int(v) & full for v in rng.integers(0, 2 ** 63, 40, dtype=np.uint64)]
    start, length, count = free_bit_runs(np.array(masks, np.uint64), chunk_bits)
    for p, mask in enumerate(masks):
        expected, b = [], chunk_bits - 1
        while b >= 0:
            if mask >> b & 1:
                b -= 1
                continue
            top = b
            while b >= 0 and not mask >> b & 1:
                b -= 1
            expected.append((b + 1, top - b))
        assert count[p] == len(expected)
        assert list(zip(start[p, :count[p]].tolist(), length[p, :count[p]].tolist())) == expected
        assert not length[p, count[p]:].any()
    assert start.shape[1] == max(1, count.max()) == chunk_bits // 2


def test_pdep_scatters_the_low_bits_to_the_masks_set_bits():
    """The decoder's PDEP (the CPU instruction where it is fast) and the bit-by-bit loop
    against a walk over the mask's bits."""
    rng = np.random.default_rng(0)
    full = (1 << 64) - 1
    masks = [0, full, 0x5555555555555555, 1 << 63, 0xFFFF0000FFFF0000, 0x80000001]
    masks += [int(v) for v in rng.integers(0, full, 60, dtype=np.uint64, endpoint=True)]
    for mask in masks:
        for value in [0, full, 1 << 63] + [int(v) for v in rng.integers(0, full, 4,
                                                                         dtype=np.uint64)]:
            expected, k = 0, 0
            for b in range(64):
                if mask >> b & 1:
                    expected |= (value >> k & 1) << b
                    k += 1
            assert int(_kernels.pdep(np.uint64(value), np.uint64(mask))) == expected
            assert int(_kernels.pdep_loop(np.uint64(value), np.uint64(mask))) == expected


@pytest.mark.parametrize("machine, name, features, fast", [
    ("x86_64", "skylake", "+avx2,+bmi2,+sse4.2", True),
    ("x86_64", "znver4", "+bmi2,+avx512f", True),
    ("x86_64", "znver2", "+bmi2,+avx2", False),       # microcoded PDEP
    ("x86_64", "ivybridge", "+avx,-bmi2", False),
    ("x86_64", "generic", "", False),                  # NUMBA_CPU_NAME=generic
    ("aarch64", "neoverse-v2", "+sve2", False),
])
def test_pdep_instruction_only_where_numba_targets_a_fast_one(monkeypatch, machine, name,
                                                               features, fast):
    monkeypatch.setattr(_kernels.platform, "machine", lambda: machine)
    monkeypatch.setattr(_kernels._numba_config, "CPU_NAME", name)
    monkeypatch.setattr(_kernels._numba_config, "CPU_FEATURES", features)
    assert _kernels._fast_pdep() is fast


def test_bit_counts_of_few_and_many_rows_agree():
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, DIRECT_COUNT_ROWS, DIRECT_COUNT_ROWS + 1, 2000):
        rows = rng.integers(0, 256, (n, 13), dtype=np.uint8)
        rows[rng.random(rows.shape) < 0.5] = 0
        padded = np.pad(rows, ((0, 0), (0, 3)))
        expected = np.unpackbits(padded, axis=1, bitorder="little").sum(0)
        np.testing.assert_array_equal(bit_counts(rows), expected)


def test_padding_is_reused_only_for_the_same_rows():
    from ibp_gnn.codec.plan import padded_words, reused_padding
    rows = np.arange(15, dtype=np.uint8).reshape(3, 5)
    with reused_padding():
        padded = padded_words(rows)
        assert padded_words(rows[0:3]) is padded          # a view of the same rows
        other = rows + 1
        np.testing.assert_array_equal(padded_words(other)[:, :5], other)
        np.testing.assert_array_equal(padded_words(rows[1:])[:, :5], rows[1:])
    assert padded_words(rows) is not padded
    np.testing.assert_array_equal(padded, np.pad(rows, ((0, 0), (0, 3))))


def test_row_blocks_pad_rows_only_to_the_word_width():
    """A pass reading 32-bit words views rows of 4k bytes as they are (no copy of the
    matrix); rows that are not a whole number of words are padded with zeros."""
    from ibp_gnn.codec.plan import row_blocks
    rows = np.arange(7 * 12, dtype=np.uint8).reshape(7, 12)
    for pad_to, width in ((2, 12), (4, 12), (8, 16)):
        blocks = list(row_blocks(rows, 40, pad_to))
        assert [lo for lo, _ in blocks] == [0, 3, 6]
        joined = np.concatenate([b for _, b in blocks])
        np.testing.assert_array_equal(joined, np.pad(rows, ((0, 0), (0, width - 12))))
        assert all(not b.flags.writeable for _, b in blocks)
        if width == 12:
            assert all(np.shares_memory(b, rows) for _, b in blocks)


@pytest.mark.parametrize("w", [16, 32, 64])
def test_sample_columns_of_all_rows_and_of_a_few(monkeypatch, w):
    """Rows column by column as 64-bit words, of every row or of a few rows of a larger matrix
    (those are gathered and padded in blocks, never the whole matrix), as a direct transpose
    gives; and the bit counts of some of those rows counted from the columns in chunks of
    every width."""
    from ibp_gnn.codec._kernels import column_bit_counts
    from ibp_gnn.codec.plan import sample_columns
    rng = np.random.default_rng(6)
    rows = rng.integers(0, 256, (1000, 22), dtype=np.uint8)   # 22 bytes: padded to 24
    words = np.pad(rows, ((0, 0), (0, 2))).view(np.uint64)
    np.testing.assert_array_equal(sample_columns(rows), words.T)
    monkeypatch.setattr("ibp_gnn.codec.plan.DEFAULT_BLOCK_BYTES", 8 * 22 * 7)  # 7-row blocks
    few = np.sort(rng.choice(1000, 50, replace=False))
    columns = sample_columns(rows, few)
    np.testing.assert_array_equal(columns, words[few].T)
    c = -(-22 // (w // 8))
    # groups of rows: repeated picks, none, and more than the 255 rows a byte-wide counter holds
    groups = [np.array([3, 0, 49, 3]), np.zeros(0, np.int64), rng.integers(0, 50, 700)]
    counts = np.zeros((3, c * w), np.int64)
    column_bit_counts(columns, np.concatenate(groups), np.array([0, 4, 4, 704]), c, w, counts)
    for picks, got in zip(groups, counts):
        chosen = np.pad(rows[few[picks]], ((0, 0), (0, c * w // 8 - 22)))
        np.testing.assert_array_equal(got, np.unpackbits(chosen, axis=1, bitorder="little").sum(0))


def move_centers(bits, labels, sums, sizes):
    """Each centre to the mean of its rows (``sums``/``sizes`` as in ``nearest_centers``; a
    centre left without rows stays where it was): the plain k-means step."""
    for j in range(len(sizes)):
        rows = bits[labels == j]
        if len(rows):
            sizes[j] = len(rows)
            sums[j] = rows.sum(0)


def test_nearest_centers_are_the_exactly_nearest():
    """k-means assignment on integer centre sums: every row goes to the centre at the smallest
    exact squared distance (the lowest on ties), checked with exact fractions."""
    from fractions import Fraction

    from ibp_gnn.codec._kernels import nearest_centers
    rng = np.random.default_rng(5)
    bits = (rng.random((300, 20)) < 0.3).astype(np.uint8)
    labels = rng.integers(0, 5, 300)
    sums = np.zeros((5, 20), np.int64)
    sizes = np.ones(5, np.int64)
    move_centers(bits, labels, sums, sizes)
    np.testing.assert_array_equal(sizes, np.bincount(labels, minlength=5))
    got = np.full(300, -1, np.int64)
    assert nearest_centers(bits, sums, sizes, got)
    for i, row in enumerate(bits):
        distances = [sum((Fraction(int(x)) - Fraction(int(s), int(n))) ** 2
                         for x, s in zip(row, sums[j])) for j, n in enumerate(sizes)]
        assert got[i] == distances.index(min(distances))
    assert not nearest_centers(bits, sums, sizes, got)  # nothing left to move


def test_seed_centers_pick_the_rows_generator_choice_picks():
    """k-means++ seeding maps its uniform draws to rows as ``Generator.choice(p=...)`` does,
    with squared distances to the nearest centre so far as weights; it stops early once every
    row sits on a centre."""
    from ibp_gnn.codec._kernels import seed_centers
    from ibp_gnn.codec.plan import pack_rows
    rng = np.random.default_rng(3)
    bits = (rng.random((500, 70)) < 0.3).astype(np.uint8)
    chosen = np.zeros(9, np.int64)
    count = seed_centers(pack_rows(bits), 17, np.random.default_rng(4).random(8), chosen)
    draws = np.random.default_rng(4)
    expected = [17]
    far = (bits != bits[17]).sum(1).astype(np.float64)
    for _ in range(8):
        expected.append(int(draws.choice(500, p=far / far.sum())))
        far = np.minimum(far, (bits != bits[expected[-1]]).sum(1))
    assert count == 9 and chosen.tolist() == expected
    two = np.repeat(bits[:2], 50, axis=0)                   # only two distinct rows
    assert seed_centers(pack_rows(two), 0, np.full(5, 0.5), chosen) == 2 and chosen[1] >= 50
    packed = pack_rows(bits)
    assert packed.shape == (500, 2) and packed.dtype == np.uint64
    for i in (0, 17, 499):  # bit b of a row: bit b % 64 of word b // 64
        words = [int(v) for v in packed[i]]
        assert [words[b // 64] >> (b % 64) & 1 for b in range(128)] == bits[i].tolist() + [0] * 58


@pytest.mark.parametrize("k, empty", [(2, False), (5, False), (16, False), (5, True)])
def test_lloyd_rounds_with_bounds_give_the_labels_of_plain_rounds(k, empty):
    """k-means rounds that skip rows their bounds keep in place, and move centres by the rows
    that changed cluster, end with exactly the labels and centres of plain rounds (every row
    measured against every centre, then every centre summed again), after every number of
    rounds; also when a centre starts on another one and so never gets a row."""
    from ibp_gnn.codec._kernels import lloyd_rounds, nearest_centers
    rng = np.random.default_rng(k)
    prototypes = (rng.random((k, 48)) < 0.4).astype(np.uint8)
    bits = prototypes[rng.integers(0, k, 700)]
    bits = np.where(rng.random(bits.shape) < 0.15, 1 - bits, bits).astype(np.uint8)
    start = bits[rng.choice(700, k, replace=False)].astype(np.int64)
    if empty:
        start[3] = start[1]  # (ties go to the lower centre: 3 stays empty, and where it was)
    for rounds in (1, 2, 3, 10, 50):
        sums, sizes = start.copy(), np.ones(k, np.int64)
        labels = np.full(700, -1, np.int64)
        moved = lloyd_rounds(bits, sums, sizes, labels, rounds)
        plain_sums, plain_sizes = start.copy(), np.ones(k, np.int64)
        plain = np.full(700, -1, np.int64)
        for _ in range(rounds):
            plain_moved = nearest_centers(bits, plain_sums, plain_sizes, plain)
            if not plain_moved:
                break
            move_centers(bits, plain, plain_sums, plain_sizes)
        assert moved == plain_moved
        np.testing.assert_array_equal(labels, plain)
        np.testing.assert_array_equal(sums, plain_sums)
        np.testing.assert_array_equal(sizes, plain_sizes)
        assert not empty or (sizes[3] == 1 and (sums[3] == start[3]).all())


def test_a_planning_sample_gives_the_plan_of_the_whole_matrix():
    """What ``compress_on_gpu`` relies on: planning from the sample ``compress`` would draw,
    told how many rows it stands for, gives ``compress``'s plan."""
    rng = np.random.default_rng(4)
    x = np.concatenate([(rng.random((3000, 40)) < 0.05).astype(np.float32),
                        rng.standard_normal((3000, 40)).astype(np.float32).round(1)])
    rows = as_byte_rows(x)[0]
    sample_rows = 1000
    pick = np.sort(np.random.default_rng(0).choice(len(rows), size=sample_rows, replace=False))
    whole = choose_plan(rows, sample_rows=sample_rows)
    sampled = choose_plan(rows[pick], sample_rows=None, num_rows=len(rows))
    for field in dataclasses.fields(Plan):
        a, b = getattr(whole, field.name), getattr(sampled, field.name)
        assert np.array_equal(a, b), field.name


def test_gather_bits_and_cluster_bits_of_some_rows():
    """The bits rows are clustered on, read in place: bit ``8 * byte + bit`` of each chosen
    row, and the same bits for a few rows as for all rows."""
    from ibp_gnn.codec._kernels import gather_bits
    from ibp_gnn.codec.plan import cluster_bits
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 256, (200, 13), dtype=np.uint8)
    picks = np.array([5, 0, 199, 5])
    positions = np.array([0, 7, 8, 103, 50])
    out = np.empty((len(picks), len(positions)), np.uint8)
    gather_bits(rows, picks, positions, out)
    unpacked = np.unpackbits(rows, axis=1, bitorder="little")
    np.testing.assert_array_equal(out, unpacked[np.ix_(picks, positions)])
    counts = unpacked.sum(0)
    np.testing.assert_array_equal(cluster_bits(rows, counts, picks),
                                  cluster_bits(rows, counts)[picks])


def test_cluster_rows_fitted_on_a_sample_put_every_row_with_its_population(monkeypatch):
    """k-means moves its centres on a sample of the rows (``KMEANS_ROWS``), then puts every
    row with its nearest centre: three well separated populations come out whole."""
    from ibp_gnn.codec.plan import cluster_rows
    rng = np.random.default_rng(8)
    prototypes = (rng.random((3, 64)) < 0.5).astype(np.uint8)
    population = rng.integers(0, 3, 900)
    bits = prototypes[population]
    flips = rng.random(bits.shape) < 0.02
    bits = np.where(flips, 1 - bits, bits).astype(np.uint8)
    monkeypatch.setattr("ibp_gnn.codec.plan.KMEANS_ROWS", 90)
    labels = cluster_rows(bits, 3, seed=1)
    assert labels.shape == (900,) and labels.min() >= 0
    for p in range(3):
        assert len(set(labels[population == p])) == 1
    assert len(set(labels)) == 3


def test_columns_a_group_holds_constant_get_no_alternatives():
    """Columns constant within a row group are left out of the alternative search: their
    base is the value itself, with no selector bits and only empty alternative slots, while
    the varying columns of the same call still get theirs."""
    from ibp_gnn.codec.plan import bit_counts, extended_plans, sample_columns
    rng = np.random.default_rng(4)
    x = np.zeros((500, 3), np.float32)
    x[:, 0] = 2.5                                        # constant
    x[:, 1] = rng.choice([0.0, 1.0, 2.0, 3.0, 7.0], 500)  # a few values: alternatives pay
    rows = x.view(np.uint8)
    [(bitmap, _)] = [(p, e) for p, e in extended_plans(sample_columns(rows), 3,
                                                       bit_counts(rows), 500, 32, 0.9)
                     if not p.list_header]
    assert bitmap.select_bits[0] == 0 and bitmap.select_bits[1] > 0
    assert bitmap.mask[0] == 0xFFFFFFFF and bitmap.bitval[0] == np.float32(2.5).view(np.uint32)
    assert not bitmap.alt_masks[0].any() and not bitmap.alt_bitvals[0].any()
    assert bitmap.alt_masks[1, :(1 << int(bitmap.select_bits[1])) - 1].any()
    assert not bitmap.alt_masks[1, 1 << int(bitmap.select_bits[1]):].any()


def test_alternatives_of_a_few_distinct_values_are_exact():
    """Chunks missing the base that take only a few values (a bag-of-words column: mostly one
    count) are searched as values with counts over all of them, never a sample: with two
    selector bits each value gets its own exact alternative and pays only its selector."""
    from ibp_gnn.codec import _kernels
    from ibp_gnn.codec.plan import sample_columns
    rng = np.random.default_rng(9)
    values = np.array([0x3F800000, 0x40000000, 0x40400000], np.uint32)  # 1.0, 2.0, 3.0
    column = np.zeros(4000, np.uint32)
    missed = rng.random(4000) < 0.8        # 3,200 misses: more than REST_SAMPLE
    column[missed] = values[rng.integers(0, 3, int(missed.sum()))]
    rows = column.view(np.uint8).reshape(4000, 4)
    columns = sample_columns(rows)
    levels = _kernels.MAX_SELECT_BITS + 1
    alt_m = np.zeros((1, 1, (1 << levels) - 1), np.uint64)  # level s: slots 2**s - 1 on
    alt_b = np.zeros_like(alt_m)
    rest_cost = np.zeros((1, 1, levels), np.int64)
    rest_count = np.zeros((1, 1), np.int64)
    base_cost = np.zeros((1, 1), np.int64)
    full = np.array([[0xFFFFFFFF]], np.uint64)
    _kernels.column_alternatives(columns, np.arange(4000), np.array([0, 4000]), 1, 32, full,
                                 np.zeros_like(full), np.zeros(1, np.int64),
                                 np.array([1.0, 0.99, 0.95, 0.9]), 64, alt_m, alt_b,
                                 rest_cost, rest_count, base_cost)
    rest = int(missed.sum())
    assert rest_count[0, 0] == rest and rest_count[0, 0] > _kernels.REST_SAMPLE
    assert sorted(alt_b[0, 0, 3:6]) == sorted(values.astype(np.uint64))
    assert (alt_m[0, 0, 3:6] == 0xFFFFFFFF).all() and alt_m[0, 0, 6] == 0
    assert rest_cost[0, 0, 2] == 2 * rest   # the selector, no free bits
    assert rest_cost[0, 0, 0] == 32 * rest  # no alternatives: every miss stored whole
