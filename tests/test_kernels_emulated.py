"""The CUDA kernels run on the CPU: each .cu is compiled with g++ against a small shim that
emulates a warp with 32 host threads (shuffles, ballots and barriers through std::barrier),
then compared bit for bit with the CPU codec. This checks the kernels' arithmetic (bit offsets,
straddling words, shifts, padding, raw rows, offsets) on machines without a GPU; it does not
check performance, the memory model or real warp scheduling."""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ibp_gnn import compress
from ibp_gnn import gpu
from ibp_gnn.codec.container import WORD_DTYPES
from ibp_gnn.codec.dtypes import as_byte_rows
from ibp_gnn.codec.encode import pattern_tables, stored_row_words
from ibp_gnn.codec.plan import Plan, choose_plan

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

SHIM = r"""
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __CUDA_ARCH__ 900  /* the code paths of the GPUs the kernels are compiled for */
struct emu_dim3 { unsigned x, y, z; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
alignas(16) unsigned long long ibp_smem_u64[1 << 20];
static std::barrier<>* emu_block_bar;
static std::vector<std::unique_ptr<std::barrier<>>> emu_warp_bar;
static unsigned long long emu_xchg[32][32];
static inline int emu_lane() { return threadIdx.x & 31; }
static inline int emu_warp() { return threadIdx.x >> 5; }
static inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_bar[emu_warp()]->arrive_and_wait(); }
template <typename T> static T emu_exchange(T v, int src) {
  unsigned long long b = 0; std::memcpy(&b, &v, sizeof(T));
  emu_xchg[emu_warp()][emu_lane()] = b;
  __syncwarp();
  unsigned long long r = emu_xchg[emu_warp()][src];
  __syncwarp();
  T out; std::memcpy(&out, &r, sizeof(T)); return out;
}
template <typename T> static T __shfl_up_sync(unsigned, T v, int d) {
  T r = emu_exchange(v, emu_lane() >= d ? emu_lane() - d : emu_lane()); return r; }
template <typename T> static T __shfl_sync(unsigned, T v, int src) { return emu_exchange(v, src); }
template <typename T> static T __shfl_xor_sync(unsigned, T v, int d) { return emu_exchange(v, emu_lane() ^ d); }
// every lane's value at once: one write and two barriers for a whole-warp operation
static void emu_all_lanes(unsigned v, unsigned out[32]) {
  emu_xchg[emu_warp()][emu_lane()] = v;
  __syncwarp();
  for (int l = 0; l < 32; ++l) out[l] = (unsigned)emu_xchg[emu_warp()][l];
  __syncwarp();
}
static unsigned __reduce_or_sync(unsigned, unsigned v) {
  unsigned all[32], r = 0;
  emu_all_lanes(v, all);
  for (int l = 0; l < 32; ++l) r |= all[l];
  return r;
}
static unsigned __ballot_sync(unsigned, int pred) {
  unsigned all[32], b = 0;
  emu_all_lanes(pred ? 1u : 0u, all);
  for (int l = 0; l < 32; ++l) b |= all[l] << l;
  return b;
}
static bool __all_sync(unsigned, int pred) {
  return __ballot_sync(0xffffffffu, pred) == 0xffffffffu;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
template <typename T> static inline T __ldg(const T* p) { return *p; }
template <typename T> static inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }

template <typename K, typename... A> static void emu_launch(K k, int grid, int block, A... args) {
  blockDim = {(unsigned)block, 1, 1}; gridDim = {(unsigned)grid, 1, 1};
  for (int b = 0; b < grid; ++b) {
    std::memset(ibp_smem_u64, 0xA5, sizeof(ibp_smem_u64));   // catch reads of unwritten smem
    std::barrier<> bb(block); emu_block_bar = &bb;
    emu_warp_bar.clear();
    for (int w = 0; w < block / 32; ++w) emu_warp_bar.emplace_back(new std::barrier<>(32));
    std::vector<std::thread> ts;
    for (int t = 0; t < block; ++t)
      ts.emplace_back([=] { threadIdx = {(unsigned)t, 0, 0}; blockIdx = {(unsigned)b, 0, 0}; k(args...); });
    for (auto& t : ts) t.join();
  }
}
"""

WRAPPERS = {
    "ibp_decode.cu": r"""
#define EMU_DECODE(NAME, WORD, INDEX, OFF) extern "C" void emu_##NAME(int grid, int block,     \
  const WORD* payload, const OFF* offset_lo, const u64* block_base, int offset_shift,          \
  const WORD* mask, const WORD* bitval, const u8* sel, const unsigned* alt_base,               \
  const WORD* alt_mask, const WORD* alt_bitval, const u8* fill_groups, const u16* base_prefix,  \
  const u16* round_bits, long long max_stretch, int list_header, int num_groups,               \
  long long num_rows, long long C, const INDEX* index, const long long* out_pos, long long B,   \
  u8* out, long long row_bytes, int unit, int stage_masks, long long cap_words,                 \
  int clear_rows) {                                                                             \
  emu_launch(NAME, grid, block, payload, offset_lo, block_base, offset_shift, mask, bitval,    \
             sel, alt_base, alt_mask, alt_bitval, fill_groups, base_prefix, round_bits,        \
             max_stretch,                                                                      \
             list_header, num_groups, num_rows, C, index, out_pos, B, out, row_bytes, unit,    \
             stage_masks, cap_words, clear_rows); }
""" + "".join(  # every kernel ibp_decode.cu instantiates
        f"EMU_DECODE(ibp_decode_w{w}_i{i}_o{o}, {word}, {index}, {off})\n"
        for w, word in ((16, "u16"), (32, "u32"), (64, "u64"))
        for i, index in ((32, "int"), (64, "long long"))
        for o, off in ((16, "u16"), (32, "u32"))),
    "gather_raw.cu": r"""
#define EMU_GATHER(NAME, VEC, INDEX) extern "C" void emu_##NAME(int grid, int block,           \
  const VEC* src, long long num_rows, long long row_vecs, const INDEX* index,                  \
  const long long* out_pos, long long B, VEC* out, int group_shift) {                          \
  emu_launch(NAME, grid, block, src, num_rows, row_vecs, index, out_pos, B, out, group_shift); }
EMU_GATHER(gather_raw_v16_i64, uint4, long long)
EMU_GATHER(gather_raw_v8_i64, uint2, long long)
EMU_GATHER(gather_raw_v4_i32, u32, int)
EMU_GATHER(gather_raw_v2_i64, u16, long long)
EMU_GATHER(gather_raw_v1_i32, u8, int)
""",
    "ibp_encode.cu": r"""
#define EMU_ENCODE(SUFFIX, WORD)                                                                \
extern "C" void emu_ibp_row_words_##SUFFIX(int grid, int block, const u8* x, long long n,       \
  long long row_bytes, int unit, const WORD* mask, const WORD* bitval, const u8* sel,           \
  const unsigned* alt_base, const WORD* alt_mask, const WORD* alt_bitval, int list_header,      \
  int num_groups, long long C, long long* lengths, int* row_group) {                            \
  emu_launch(ibp_row_words_##SUFFIX, grid, block, x, n, row_bytes, unit, mask, bitval, sel,     \
             alt_base, alt_mask, alt_bitval, list_header, num_groups, C, lengths, row_group); } \
extern "C" void emu_ibp_encode_rows_##SUFFIX(int grid, int block, const u8* x, long long n,     \
  long long row_bytes, int unit, const WORD* mask, const WORD* bitval, const u8* sel,           \
  const unsigned* alt_base, const WORD* alt_mask, const WORD* alt_bitval, int list_header,      \
  int num_groups, long long C, const int* row_group, const long long* offsets, WORD* out) {     \
  emu_launch(ibp_encode_rows_##SUFFIX, grid, block, x, n, row_bytes, unit, mask, bitval, sel,   \
             alt_base, alt_mask, alt_bitval, list_header, num_groups, C, row_group, offsets,    \
             out); }
EMU_ENCODE(w16, u16)
EMU_ENCODE(w32, u32)
EMU_ENCODE(w64, u64)
""",
}


FULL_SCANS = "ibp_decode.cu, full scans"
BY_BLOCK = "ibp_decode.cu, clearing by block"
# the decode kernels also as DeviceCompressedMatrix compiles them for these settings
DECODE_VARIANTS = {FULL_SCANS: {"scan_shortcuts": False}, BY_BLOCK: {"clear_rows": "block"}}


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("emu")
    variants = [(name, name, ()) for name in WRAPPERS]
    variants += [(key, "ibp_decode.cu", gpu.decode_defines(**settings))
                 for key, settings in DECODE_VARIANTS.items()]
    for key, name, defines in variants:
        wrappers = WRAPPERS[name]
        src = SHIM + "".join(f"#define {k} {v}\n" for k, v in defines) \
            + gpu.load_source(gpu.cuda_dir() / name) + wrappers
        tag = hashlib.sha1(src.encode()).hexdigest()[:12]
        cpp = d / f"{Path(name).stem}_{tag}.cpp"
        so = cpp.with_suffix(".so")
        cpp.write_text(src)
        r = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                            "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas",
                            "-o", str(so), str(cpp)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        out[key] = ctypes.CDLL(str(so))
    return out


def _p(a):
    return ctypes.c_void_p(0 if a is None else a.ctypes.data)


L = ctypes.c_longlong
I = ctypes.c_int


def emu_decode(lib, cm, idx, *, sort=False, threads=64, grid=3, cap_bytes=2048, stage=True,
               fixed_rounds=True, stretch=True, fill_base=True, zero_fill=True,
               clear_rows="warp", prefill=None):
    """The decode kernel's output for requests ``idx``, launched as ``DeviceCompressedMatrix``
    launches it with these settings. The output starts as ``prefill`` bytes (default: 0 where
    ``clear_rows="output"`` has the gather clear it, else 0x5A, so unwritten bytes show)."""
    ws = cm.chunk_bits // 8
    idx = np.asarray(idx)
    pos = None
    if sort:
        order = np.argsort(idx, kind="stable")
        idx, pos = idx[order], order.astype(np.int64)
    idx = np.ascontiguousarray(idx)
    b = len(idx)
    ityp = "i32" if idx.dtype == np.int32 else "i64"
    offset_lo, block_base, offset_shift = gpu.device_offset_tables(cm)
    otyp = "o16" if offset_lo.dtype == np.uint16 else "o32"
    fn = getattr(lib, f"emu_ibp_decode_w{cm.chunk_bits}_{ityp}_{otyp}")
    # keep every array referenced while the kernel runs (cm.mask is computed on access)
    payload, lo, base, mask, bitval = (np.ascontiguousarray(a) for a in (
        cm.payload, offset_lo, block_base, cm.mask, cm.bitval))
    sel, alt_base, alt_mask, alt_bitval = gpu.column_alternatives(cm)
    prefix, round_bits = gpu.base_round_tables(cm) if fixed_rounds else (None, None)
    # every group the fill path can take, not only those it pays for
    fill = gpu.fill_modes(cm, gpu.fill_groups(cm, max_entry_rounds=1),
                          zero_fill=zero_fill) if fill_base else None
    moved = fill is not None and zero_fill and (fill == 2).any()
    clear = gpu.CLEAR_ROWS[clear_rows if moved else "warp"]
    if prefill is None:
        prefill = 0 if clear == gpu.CLEAR_ROWS["output"] else 0x5A
    out = np.full((b, cm.row_bytes), prefill, np.uint8)
    fn(I(grid), I(threads), _p(payload), _p(lo), _p(base), I(offset_shift), _p(mask),
       _p(bitval), _p(sel), _p(alt_base), _p(alt_mask), _p(alt_bitval), _p(fill), _p(prefix),
       _p(round_bits), L(gpu.MAX_STRETCH_ROUNDS if stretch else 1), I(int(cm.list_header)),
       I(cm.num_groups), L(cm.num_rows), L(cm.num_chunks), _p(idx), _p(pos),
       L(b), _p(out), L(cm.row_bytes), I(gpu._unit(cm.row_bytes, ws)), I(int(stage)),
       L(max(32, cap_bytes // ws)), I(clear))
    return out


def expected_bytes(cm, idx):
    return cm.decode(np.asarray(idx, np.int64)).reshape(len(idx), -1).view(torch.uint8).numpy() \
        if cm.row_bytes else np.zeros((len(idx), 0), np.uint8)


def _special_floats(rng, n, d, dtype):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) < 0.6] = 0
    flat = x.reshape(-1)
    specials = np.array([np.nan, -0.0, np.inf, -np.inf, np.finfo(dtype).tiny / 4, -1.0, 1.0],
                        dtype=dtype)
    k = min(flat.size, 50)
    flat[rng.choice(flat.size, k, replace=False)] = rng.choice(specials, k)
    return x


def _matrices():
    rng = np.random.default_rng(0)
    yield "f32_sparse", (rng.random((300, 77)) < 0.05).astype(np.float32)
    yield "f32_special", _special_floats(rng, 200, 45, np.float32)
    yield "f16_odd", _special_floats(rng, 150, 33, np.float16)
    yield "bf16", torch.from_numpy(_special_floats(rng, 120, 19, np.float32)).to(torch.bfloat16)
    yield "f64", _special_floats(rng, 100, 9, np.float64)
    yield "i8", rng.integers(-3, 3, (160, 41)).astype(np.int8)
    yield "u8_3", rng.integers(0, 2, (90, 3)).astype(np.uint8)
    yield "bool", rng.random((130, 70)) < 0.1
    yield "i64", rng.integers(-5, 5, (80, 13)).astype(np.int64)
    yield "wide", (rng.random((24, 5000)) < 0.02).astype(np.float32)       # 20 KB rows
    yield "wide_dense", rng.standard_normal((12, 4500)).astype(np.float32)  # long encoded rows
    yield "dense_mixed", np.concatenate([rng.standard_normal((50, 64)).astype(np.float32),
                                         np.zeros((50, 64), np.float32)])
    yield "wide_random", rng.integers(-2**31, 2**31, (40, 6000)).astype(np.int32)  # raw rows
    yield "i16_rows3d", rng.integers(0, 4, (70, 5, 7)).astype(np.int16)
    mixed = np.concatenate([(rng.random((150, 40)) < 0.05).astype(np.float32),  # row groups
                            rng.standard_normal((150, 40)).astype(np.float32).round(1),
                            3 + (rng.random((150, 40)) < 0.1).astype(np.float32)])
    yield "clustered", mixed[rng.permutation(len(mixed))]
    # list headers whose dense rows list all 32 chunks of a round
    listed = (rng.random((160, 100)) < 0.04).astype(np.float32)
    listed[::16, :70] = rng.standard_normal((10, 70)).astype(np.float32)
    yield "list_full_rounds", listed


MATRICES = dict(_matrices())
# a quick subset by default (raw and encoded rows, 8- and 16-bit offsets, long rows, list rounds
# of 32 entries); all with --runslow
QUICK = {"f32_sparse", "f16_odd", "wide_random", "clustered", "list_full_rounds"}
CASES = [pytest.param(name, marks=() if name in QUICK else pytest.mark.slow)
         for name in MATRICES]


def _decode_case(name, w, extended):
    cm = compress(MATRICES[name], chunk_bits=w, extended=extended)
    n = cm.num_rows
    rng = np.random.default_rng(1)
    idx = rng.integers(0, n, size=min(3 * n, 200)).astype(np.int64)
    idx[:5] = n - 1
    return cm, idx, expected_bytes(cm, idx)


def over_cases(names):
    """Parametrize a test over the matrices ``names``, every chunk width and both formats."""
    def wrap(test):
        test = pytest.mark.parametrize("extended", [True, False], ids=["extended", "basic"])(test)
        test = pytest.mark.parametrize("w", [16, 32, 64])(test)
        return pytest.mark.parametrize("name", names)(test)
    return wrap


@over_cases(CASES)
def test_emulated_decode_bit_exact(libs, name, w, extended):
    cm, idx, exp = _decode_case(name, w, extended)
    lib = libs["ibp_decode.cu"]
    np.testing.assert_array_equal(emu_decode(lib, cm, idx), exp)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx.astype(np.int32), sort=True), exp)
    # no shared staging of masks, tiny per-warp buffer: the direct-from-payload path
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, stage=False, cap_bytes=0), exp)
    # rows of groups whose bit values are zero filled with them instead of cleared
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, zero_fill=False), exp)
    # the rows of those groups cleared with the whole output before the launch, or by blocks
    # (in a sorted gather the blocks leave it to the warps: test_launcher_*)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, clear_rows="output"), exp)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, clear_rows="output", sort=True,
                                             stage=False, cap_bytes=0), exp)
    np.testing.assert_array_equal(emu_decode(libs[BY_BLOCK], cm, idx, clear_rows="block"), exp)
    # every row round by round (no filled rows), runs of all-base rounds together
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, fill_base=False), exp)


@over_cases(CASES)
def test_emulated_decode_older_paths(libs, name, w, extended):
    cm, idx, exp = _decode_case(name, w, extended)
    lib = libs["ibp_decode.cu"]
    # every round's fields placed by full warp scans
    np.testing.assert_array_equal(emu_decode(libs[FULL_SCANS], cm, idx), exp)
    np.testing.assert_array_equal(emu_decode(libs[FULL_SCANS], cm, idx, fill_base=False), exp)
    # all-base rounds one at a time
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, stretch=False, fill_base=False), exp)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, stage=False, cap_bytes=0,
                                             stretch=False, fill_base=False), exp)
    # every round decoded the general way (no precomputed offsets of all-base rounds)
    np.testing.assert_array_equal(
        emu_decode(lib, cm, idx, fixed_rounds=False, fill_base=False), exp)
    np.testing.assert_array_equal(
        emu_decode(lib, cm, idx, stage=False, cap_bytes=0, fixed_rounds=False,
                   fill_base=False), exp)


def test_emulated_cases_cover_the_format():
    """The matrices above reach raw and encoded rows, 8- and 16-bit offsets (8-bit ones reach
    the kernels widened to 16; 32-bit ones need rows of over 32,768 words, and the next test
    widens tables to reach that kernel), both header kinds, selectors, row groups, and encoded
    rows longer than the per-warp buffer."""
    kinds, offsets, long_rows, headers, selectors = set(), set(), False, set(), set()
    groups, device_offsets = set(), set()
    for x in MATRICES.values():
        for w in (16, 32, 64):
            cm = compress(x, chunk_bits=w)
            headers.add(cm.list_header)
            groups.add(cm.num_groups > 1)
            selectors |= set(int(s) for s in cm.kind_select_bits)
            kinds |= {bool(f) for f in cm.raw_flags}
            offsets.add(cm.offset_tables()[0].dtype)
            device_offsets.add(gpu.device_offset_tables(cm)[0].dtype)
            enc = cm.row_words[~cm.raw_flags]
            long_rows |= bool(len(enc) and enc.max() * w // 8 > 2048)
    assert kinds == {True, False}
    assert headers == {True, False}
    assert groups == {True, False}
    assert selectors >= {0, 1, 2, 3}
    assert offsets == {np.dtype(np.uint8), np.dtype(np.uint16)}
    assert device_offsets == {np.dtype(np.uint16)}
    assert long_rows


def test_emulated_cases_reach_filled_rows():
    """The quick matrices reach rows decoded over their base bit values (row groups whose base
    patterns have no free bits) with both header kinds and next to groups decoded round by
    round, and list rows whose entries take several batches of 32."""
    seen = set()
    for name in QUICK:
        for w in (16, 32, 64):
            for extended in (True, False):
                cm = compress(MATRICES[name], chunk_bits=w, extended=extended)
                fill = gpu.fill_groups(cm, max_entry_rounds=1)
                if fill.any():
                    seen.add("list" if cm.list_header else "bitmap")
                modes = gpu.fill_modes(cm, fill, zero_fill=True)
                seen |= {f"mode {m}" for m in modes}
                if fill.any() and not fill.all():
                    seen.add("mixed groups")
    assert seen == {"list", "bitmap", "mixed groups", "mode 0", "mode 1", "mode 2"}
    x = MATRICES["list_full_rounds"]
    cm = compress(x, chunk_bits=32)
    assert cm.list_header and gpu.fill_groups(cm, max_entry_rounds=1).all()
    assert not cm.raw_flags[::16].any() and ((x[::16] != 0).sum(1) > 64).all()


@pytest.mark.parametrize("extended", [True, False], ids=["list", "bitmap"])
def test_emulated_decode_runs_of_base_rounds(libs, extended):
    """Rows whose base patterns (zeros) run over more than 32 rounds of 64-bit chunks: runs of
    all-base rounds longer than a bitmap header's look-ahead of 32 rounds, and long runs
    between list entries, decoded together and one round at a time."""
    # (enough rows that a column's base pattern is zero and its few ones are not)
    x = (np.random.default_rng(7).random((300, 6000)) < 0.0003).astype(np.float32)
    # exactly 32 all-base rounds between two others, of 32- and of 64-bit chunks
    x[:2] = 0
    x[0, [0, 33 * 32]] = x[1, [0, 33 * 64]] = 1
    longest = np.array([np.diff(np.flatnonzero(np.r_[True, row != 0, True])).max()
                        for row in x])
    idx = np.flatnonzero((longest * x.itemsize > 33 * 32 * 8) & (x != 0).any(1))[:8]
    assert len(idx) == 8
    idx = np.r_[idx, idx[::-2]]
    lib = libs["ibp_decode.cu"]
    for w in (32, 64):
        cm = compress(x, chunk_bits=w, extended=extended)
        assert cm.list_header == extended and not cm.raw_flags.any()
        assert (cm.mask == np.iinfo(cm.mask.dtype).max).all() and not cm.bitval.any()
        exp = expected_bytes(cm, idx)
        assert gpu.fill_groups(cm, max_entry_rounds=1).all()
        np.testing.assert_array_equal(emu_decode(lib, cm, idx), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, stage=False, cap_bytes=0), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, zero_fill=False), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, fill_base=False), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, stretch=False, fill_base=False),
                                      exp)


def test_emulated_decode_reads_every_offset_width(libs):
    """The same rows through the 16- and 32-bit offset kernels: 8-bit tables widened to 16 bits
    (what a device gets) and to 32 bits."""
    cm = compress(MATRICES["f32_sparse"], chunk_bits=32)
    assert cm.offset_lo.dtype == np.uint8
    idx = np.random.default_rng(2).integers(0, cm.num_rows, 200)
    exp = expected_bytes(cm, idx)
    for dtype in (np.uint16, np.uint32):
        wide = dataclasses.replace(cm, offset_lo=cm.offset_lo.astype(dtype))
        assert gpu.device_offset_tables(wide)[0].dtype == dtype
        np.testing.assert_array_equal(emu_decode(libs["ibp_decode.cu"], wide, idx), exp)


def test_emulated_decode_rounds_without_free_bits(libs):
    """Binary features in 64-bit chunks: every pattern of their columns fixes all 64 bits, so
    their rounds hold selectors of one width and no free bits (the scan shortcuts), next to a
    round of dense columns that holds both; with and without filled rows and precomputed
    all-base rounds (then rounds of no selectors with free bits), and with full scans."""
    rng = np.random.default_rng(3)
    x = (rng.random((200, 150)) < 0.35).astype(np.float32)
    x[:, 140:] = rng.standard_normal((200, 10)).astype(np.float32)
    cm = compress(x, chunk_bits=64)
    sel, alt_base, alt_mask, _ = gpu.column_alternatives(cm)
    free_base = gpu._base_free_bits(cm)[0]
    assert not cm.raw_flags.any() and cm.num_groups == 1
    assert (free_base[:64] == 0).all() and (free_base[70:] > 0).all()   # rounds 0, 1 and 2
    assert (sel[:64] > 0).all()
    fixed = alt_mask == np.uint64(2**64 - 1)      # alternatives without free bits
    assert all(fixed[alt_base[j]:alt_base[j] + 2 ** sel[j]].any() for j in range(64))
    idx = np.r_[np.arange(cm.num_rows), np.arange(cm.num_rows)[::-3]]
    exp = expected_bytes(cm, idx)
    for lib in (libs["ibp_decode.cu"], libs[FULL_SCANS]):
        np.testing.assert_array_equal(emu_decode(lib, cm, idx), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, fill_base=False), exp)
        np.testing.assert_array_equal(
            emu_decode(lib, cm, idx, fixed_rounds=False, fill_base=False, stage=False,
                       cap_bytes=0), exp)


@pytest.mark.parametrize("w", [16, 32, 64])
def test_emulated_decode_mixed_rows(libs, w):
    """Short and long encoded rows, raw rows and out-of-range indices among one warp's
    requests; fewer requests than warps, duplicates, sorted requests, and rows decoded
    straight from the payload."""
    rng = np.random.default_rng(11)
    x = (rng.random((120, 100)) < 0.03).astype(np.float32)          # short encoded rows
    x[::7, :80] = rng.standard_normal((18, 80)).astype(np.float32).round(2)     # long ones
    x[::11] = rng.integers(0, 2**32, (11, 100), np.uint32).view(np.float32)     # raw rows
    cm = compress(x, chunk_bits=w)
    words = cm.row_words
    assert cm.raw_flags.any() and (words[~cm.raw_flags] <= 32).any()
    assert (words[~cm.raw_flags] > 32).any()
    lib = libs["ibp_decode.cu"]
    for size in (1, 5, 97, 250):                # 6 warps: some without a request
        idx = rng.integers(0, cm.num_rows, size).astype(np.int64)
        exp = expected_bytes(cm, idx)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, sort=True), exp)
        np.testing.assert_array_equal(emu_decode(lib, cm, idx, cap_bytes=0, stage=False), exp)
        # blocks clearing their requests' rows: a last round short of the block's warps
        np.testing.assert_array_equal(
            emu_decode(libs[BY_BLOCK], cm, idx, clear_rows="block"), exp)
    idx = np.array([0, -1, 3, cm.num_rows, 7, 7, 11, 2] * 4, np.int64)
    bad = (idx < 0) | (idx >= cm.num_rows)
    for clear_rows, clearing in (("warp", lib), ("block", libs[BY_BLOCK])):
        out = emu_decode(clearing, cm, idx, grid=1, threads=32, clear_rows=clear_rows)
        assert not out[bad].any()
        np.testing.assert_array_equal(out[~bad], expected_bytes(cm, idx[~bad]))


def test_emulated_decode_bad_index_writes_zeros(libs):
    cm = compress(MATRICES["f32_sparse"], chunk_bits=32)
    out = emu_decode(libs["ibp_decode.cu"], cm, np.array([0, -1, cm.num_rows, 3], np.int64))
    assert not out[1].any() and not out[2].any()
    np.testing.assert_array_equal(out[[0, 3]], expected_bytes(cm, [0, 3]))


@pytest.mark.parametrize("w", [16, 32, 64])
def test_emulated_rows_cleared_elsewhere(libs, w):
    """With ``clear_rows="output"`` (the gather clears the output before the launch) a row of
    a group whose base patterns are all zero writes only its nonzero chunks: launched on an
    output that was not cleared, every other chunk of such a row keeps its old bytes, while
    raw rows and bad indices are written whole. With ``"block"`` the kernel clears them
    itself: the old bytes are gone, for any number of warps a block and requests (and in a
    kernel compiled without clearing by block, its warps clear them)."""
    rng = np.random.default_rng(12)
    x = (rng.random((200, 90)) < 0.04).astype(np.float32)
    x[::13] = rng.integers(0, 2**32, (16, 90), np.uint32).view(np.float32)   # raw rows
    cm = compress(x, chunk_bits=w)
    modes = gpu.fill_modes(cm, gpu.fill_groups(cm, max_entry_rounds=1), zero_fill=True)
    assert cm.num_groups == 1 and modes.tolist() == [2] and cm.raw_flags.any()
    idx = rng.integers(0, cm.num_rows, 150).astype(np.int64)
    idx[:3] = [-1, cm.num_rows, 13]
    lib = libs["ibp_decode.cu"]
    out = emu_decode(lib, cm, idx, clear_rows="output", prefill=0x5A)
    bad = (idx < 0) | (idx >= cm.num_rows)
    assert not out[bad].any()
    exp = expected_bytes(cm, idx[~bad])
    wd = WORD_DTYPES[w]
    got, want = out[~bad].view(wd), exp.view(wd)
    old = np.full_like(want, 0x5A5A5A5A5A5A5A5A & ((1 << w) - 1))
    raw = cm.raw_flags[idx[~bad]][:, None]
    np.testing.assert_array_equal(got, np.where(raw | (want != 0), want, old))
    assert (got == old).any() and raw.any()
    # cleared first, the same launch gives the rows exactly
    np.testing.assert_array_equal(emu_decode(lib, cm, idx[~bad], clear_rows="output"), exp)
    for threads, grid, part in ((32, 1, slice(None)), (64, 3, slice(None)), (96, 2, slice(7)),
                                (128, 4, slice(3, 4))):
        some, some_bad = idx[part], bad[part]
        for clearing in (libs[BY_BLOCK], lib):
            out = emu_decode(clearing, cm, some, clear_rows="block", threads=threads, grid=grid)
            assert not out[some_bad].any()
            np.testing.assert_array_equal(out[~some_bad], expected_bytes(cm, some[~some_bad]))


@pytest.mark.parametrize("row_bytes,vec,itype", [(64, 16, "i64"), (24, 8, "i64"),
                                                  (12, 4, "i32"), (6, 2, "i64"),
                                                  (3, 1, "i32"), (4096, 16, "i64"),
                                                  (1000, 8, "i64")])
@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("lanes", [None, 1, 32], ids=["fewest_lanes", "lane", "warp"])
def test_emulated_raw_gather(libs, row_bytes, vec, itype, sort, lanes):
    rng = np.random.default_rng(row_bytes)
    n = 57
    x = rng.integers(0, 256, (n, row_bytes), dtype=np.uint8)
    idx = rng.integers(0, n, 150).astype(np.int32 if itype == "i32" else np.int64)
    pos = None
    if sort:
        order = np.argsort(idx, kind="stable")
        idx, pos = np.ascontiguousarray(idx[order]), order.astype(np.int64)
    out = np.zeros((len(idx), row_bytes), np.uint8)
    row_vecs = row_bytes // vec
    group = lanes or min(32, 1 << max(0, int(np.ceil(np.log2(row_vecs)))))
    fn = getattr(libs["gather_raw.cu"], f"emu_gather_raw_v{vec}_{itype}")
    fn(I(2), I(64), _p(x), L(n), L(row_vecs), _p(idx), _p(pos), L(len(idx)), _p(out),
       I(group.bit_length() - 1))
    exp = x[idx]
    if pos is not None:
        exp = np.empty_like(exp)
        exp[pos] = x[idx]
    np.testing.assert_array_equal(out, exp)


def _byte_rows(x):
    return as_byte_rows(x)[0]


def emu_encode(lib, x, plan):
    """Run the GPU encoder's two kernels on ``x`` under ``plan``: ``(lengths, payload)`` as the
    GPU writes them (offsets from the lengths, zero-filled output of even length, as
    ``gpu.compress_on_gpu`` allocates it)."""
    rows = np.ascontiguousarray(_byte_rows(x))
    w = plan.chunk_bits
    ws = w // 8
    proto = pattern_tables(plan, rows.shape)
    mask, bitval = np.ascontiguousarray(plan.mask), np.ascontiguousarray(plan.bitval)
    sel, alt_base, alt_mask, alt_bitval = gpu.column_alternatives(proto)
    patterns = (_p(mask), _p(bitval), _p(sel), _p(alt_base), _p(alt_mask), _p(alt_bitval),
                I(int(plan.list_header)), I(plan.num_groups), L(plan.num_chunks))
    n, rb = rows.shape
    unit = gpu._unit(rb, ws)
    lengths = np.zeros(n, np.int64)
    row_group = np.zeros(n, np.int32)
    getattr(lib, f"emu_ibp_row_words_w{w}")(I(2), I(64), _p(rows), L(n), L(rb), I(unit),
                                            *patterns, _p(lengths), _p(row_group))
    expected, expected_group = stored_row_words(rows, proto)
    np.testing.assert_array_equal(row_group, expected_group)
    if n and lengths.min() < 0:  # gpu.py raises before encoding
        return lengths, None, expected
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    out = np.zeros(total + total % 2, WORD_DTYPES[w])
    getattr(lib, f"emu_ibp_encode_rows_w{w}")(I(3), I(64), _p(rows), L(n), L(rb), I(unit),
                                              *patterns, _p(row_group), _p(offsets), _p(out))
    return lengths, out[:total], expected


def check_encoder(lib, x, plan):
    lengths, payload, expected_lengths = emu_encode(lib, x, plan)
    np.testing.assert_array_equal(lengths, expected_lengths)
    cm = compress(x, plan=plan)
    if not cm.raw_layout:  # (a raw layout is a plain copy, made on the CPU)
        np.testing.assert_array_equal(payload, cm.payload)
    return cm


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("w", [16, 32, 64])
@pytest.mark.parametrize("extended", [True, False], ids=["extended", "basic"])
def test_emulated_encode_identical(libs, name, w, extended):
    x = MATRICES[name]
    plan = choose_plan(_byte_rows(x), chunk_bits=w, extended=extended)
    check_encoder(libs["ibp_encode.cu"], x, plan)


@pytest.mark.parametrize("seed", range(6))
def test_emulated_encode_any_plan(libs, seed):
    """The GPU encoder under random base patterns, selectors, alternatives, headers and row
    groups."""
    from test_codec import make_matrix, random_plan
    rng = np.random.default_rng(100 + seed)
    dtype = ["float32", "float16", "int8", "float64", "bfloat16", "uint16"][seed]
    pattern = ["sparse", "equal_rows"][seed % 2]
    x = make_matrix(dtype, (40, int(rng.integers(20, 300))), pattern, seed)
    plan = random_plan(rng, x, (16, 32, 64)[seed % 3], seed % 2 == 0, (2, 1, 3, 4, 5, 1)[seed])
    assert not check_encoder(libs["ibp_encode.cu"], x, plan).raw_layout


def test_emulated_encoder_flags_unencodable_rows(libs):
    x = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
    full = np.full(2, 0xFFFFFFFF, np.uint32)
    plan = Plan(32, full, np.zeros(2, np.uint32), 1.0, select_bits=np.zeros(2, np.uint8),
                alt_masks=full[:, None].copy(), alt_bitvals=np.zeros((2, 1), np.uint32))
    lengths, _, expected = emu_encode(libs["ibp_encode.cu"], x, plan)
    assert list(lengths) == list(expected) == [-1, -1]


@pytest.mark.parametrize("seed", range(6))
def test_emulated_decode_any_plan(libs, seed):
    """Random base patterns, selector bits, alternatives, both header kinds, row groups."""
    from test_codec import make_matrix, random_plan
    rng = np.random.default_rng(seed)
    dtype = ["float32", "float16", "int8", "float64", "bfloat16", "uint16"][seed]
    pattern = ["sparse", "equal_rows"][seed % 2]  # patterns that some chunks match
    x = make_matrix(dtype, (40, int(rng.integers(20, 300))), pattern, seed)
    cm = compress(x, plan=random_plan(rng, x, (16, 32, 64)[seed % 3], seed % 2 == 0,
                                      (1, 2, 3, 4, 1, 5)[seed]))
    assert not cm.raw_layout
    idx = rng.integers(0, cm.num_rows, 60).astype(np.int64)
    exp = expected_bytes(cm, idx)
    lib = libs["ibp_decode.cu"]
    np.testing.assert_array_equal(emu_decode(lib, cm, idx), exp)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, stage=False, cap_bytes=0), exp)
    np.testing.assert_array_equal(emu_decode(lib, cm, idx, stretch=False), exp)


def test_base_round_tables_are_the_offsets_of_all_base_rounds():
    """Per row group: each chunk's free-bit offset within its round of 32 when every chunk of
    the round is stored in its base pattern, and each round's total (the last round short)."""
    cm = compress(MATRICES["clustered"], chunk_bits=16)
    assert cm.num_groups > 1
    prefix, round_bits = gpu.base_round_tables(cm)
    g, c = cm.num_groups, cm.num_chunks
    masks = np.asarray(cm.mask).reshape(g, c).astype(np.uint64)
    free = [[16 - bin(int(m)).count("1") for m in row] for row in masks]
    rounds = -(-c // 32)
    for k in range(g):
        for r in range(rounds):
            run = 0
            for j in range(32 * r, min(32 * r + 32, c)):
                assert prefix[k * c + j] == run
                run += free[k][j]
            assert round_bits[k * rounds + r] == run
    assert round_bits.max() > 0


@pytest.fixture
def emulated_device(libs, monkeypatch):
    """``gpu.DeviceCompressedMatrix`` (``location="device"``) on a stand-in device: its tensors
    live in host memory and its launches run the emulated kernels, so the launcher's own
    work (kernel choice, argument order, tables, the output and its clearing) is checked on
    machines without a GPU. Each gather's output starts as 0xA5 bytes, as memory the caching
    allocator hands back would hold old bytes."""
    host = torch.device("cpu")
    monkeypatch.setattr(gpu, "_resolve_device", lambda device: host)
    monkeypatch.setattr(gpu, "_device_props", lambda device: {
        "sms": 2, "threads_per_sm": 2048, "smem_per_sm": 228 << 10, "smem_optin": 227 << 10})
    monkeypatch.setattr(gpu, "_to_device_bytes", lambda arr, device: torch.from_numpy(
        np.ascontiguousarray(arr).reshape(-1).view(np.uint8).copy()))
    monkeypatch.setattr(gpu, "_kernel", lambda file, name, index, defines=(): (name, defines))
    monkeypatch.setattr(gpu, "_grid", lambda device, items, per_block, threads, smem=0,
                        kernel=None: max(1, min(-(-items // per_block), 3)))
    start = gpu._start_gather

    def dirty_start(*args):
        idx, pos, out = start(*args)
        if idx is not None:
            out.fill_(0xA5)
        return idx, pos, out

    monkeypatch.setattr(gpu, "_start_gather", dirty_start)
    kinds = {np.uint64: ctypes.c_void_p, np.int64: L, np.int32: I}   # u64: pointers

    compiled = {gpu.decode_defines(**settings): key for key, settings in DECODE_VARIANTS.items()}

    def launch(kernel, device, grid, block, args, smem=0):
        name, defines = kernel
        lib = libs[compiled[defines] if defines else "ibp_decode.cu"]
        getattr(lib, f"emu_{name}")(I(grid), I(block),
                                    *(kinds[type(a)](int(a)) for a in args))

    monkeypatch.setattr(gpu, "_launch", launch)
    return lambda cm, **kw: gpu.DeviceCompressedMatrix(cm, "cuda", "device", **kw)


SETTINGS = [{}, {"clear_rows": "output"}, {"clear_rows": "block"}, {"zero_fill": False},
            {"fill_base": False}, {"scan_shortcuts": False},
            {"stretch": False, "fill_base": False}, {"fixed_rounds": False, "fill_base": False},
            {"warp_buffer_bytes": 0, "mask_smem_limit": 0, "clear_rows": "output"},
            {"threads": 64, "sort_indices": True, "clear_rows": "block"},
            {"threads": 32, "sort_indices": True}]


# one chunk width per matrix by default (raw rows, row groups, 16-bit words); all with --runslow
LAUNCHER_QUICK = {(32, "f32_sparse"), (16, "clustered"), (64, "wide_random")}


@pytest.mark.parametrize("name,w", [
    pytest.param(name, w, marks=() if (w, name) in LAUNCHER_QUICK else pytest.mark.slow)
    for name in ("f32_sparse", "clustered", "wide_random", "f16_odd") for w in (16, 32, 64)])
def test_launcher_decodes_bit_exact_on_the_emulated_kernel(emulated_device, name, w):
    cm = compress(MATRICES[name], chunk_bits=w)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, cm.num_rows, 150)
    exp = expected_bytes(cm, idx)
    for kw in SETTINGS:
        dev = emulated_device(cm, **kw)
        for itype in (torch.int64, torch.int32) if not kw else (torch.int64,):
            got = dev.gather(torch.from_numpy(idx).to(itype))
            assert got.dtype == cm.torch_dtype and tuple(got.shape) == (150, *cm.row_shape)
            np.testing.assert_array_equal(got.reshape(150, -1).view(torch.uint8).numpy(), exp,
                                          err_msg=str(kw))
    with pytest.raises(IndexError):
        dev.gather([0, cm.num_rows])


def test_launcher_moves_the_clearing_only_where_there_is_some(emulated_device):
    """``clear_rows`` other than ``"warp"`` reaches the kernel (and ``"output"`` clears the
    output before the launch) only for matrices with rows to clear; elsewhere the launch is
    the default one."""
    sparse = compress(MATRICES["f32_sparse"], chunk_bits=32)
    dense = compress(MATRICES["wide_dense"], chunk_bits=32)
    assert emulated_device(sparse)._has_cleared_rows
    assert not emulated_device(dense)._has_cleared_rows
    for cm in (sparse, dense):
        dev = emulated_device(cm)
        for clear_rows in ("output", "block", "warp"):
            dev.clear_rows = clear_rows             # a public switch, read at each gather
            code = dev._launch_plan(torch.int64)[3]
            assert code == gpu.CLEAR_ROWS[clear_rows if cm is sparse else "warp"]
            idx = np.arange(cm.num_rows)[::-2]
            got = dev.gather(idx)
            np.testing.assert_array_equal(got.reshape(len(idx), -1).view(torch.uint8).numpy(),
                                          expected_bytes(cm, idx))


def test_bad_clear_rows():
    cm = compress(MATRICES["f32_sparse"], chunk_bits=32)
    with pytest.raises(ValueError, match="clear_rows must be one of 'warp', 'output', 'block'"):
        gpu.DeviceCompressedMatrix(cm, "cpu", clear_rows="first")
    for kw in ({"zero_fill": False}, {"fill_base": False}):
        for clear_rows in ("output", "block"):
            with pytest.raises(ValueError, match="needs fill_base and zero_fill"):
                gpu.DeviceCompressedMatrix(cm, "cpu", clear_rows=clear_rows, **kw)


def test_fill_groups_are_the_groups_without_free_base_bits():
    cm = compress(MATRICES["clustered"], chunk_bits=16)
    fill = gpu.fill_groups(cm, max_entry_rounds=1)
    g, c = cm.num_groups, cm.num_chunks
    masks = np.asarray(cm.mask).reshape(g, c)
    np.testing.assert_array_equal(fill, (masks == 0xFFFF).all(axis=1))
    assert fill.any() and not fill.all()
    _, round_bits = gpu.base_round_tables(cm)
    np.testing.assert_array_equal(fill, (round_bits.reshape(g, -1) == 0).all(axis=1))


def test_fill_groups_leave_out_rows_with_entries_in_every_round():
    """Rows missing their base patterns in nearly every round decode faster round by round."""
    rng = np.random.default_rng(3)
    sparse = (rng.random((400, 2000)) < 0.002).astype(np.float32)
    dense = (rng.random((400, 64)) < 0.5).astype(np.float32)
    for x, share_range, filled in ((sparse, (0.0, 0.2), 1), (dense, (0.99, 1.0), 0)):
        cm = compress(x, chunk_bits=32)
        assert cm.num_groups == 1 and gpu.fill_groups(cm, max_entry_rounds=1).all()
        share = gpu.entry_round_share(cm)
        assert share_range[0] <= share[0] <= share_range[1]
        assert gpu.fill_groups(cm).tolist() == [filled]
