"""GPU gather/decode, raw gather, pinned memory and GPU encoder; bit-exact against the CPU
codec. Needs a CUDA device usable by torch and CuPy; skipped otherwise."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from ibp_gnn import compress
from ibp_gnn import gpu
# decode variants the device check compiles up front
from ibp_gnn.bench_gpu import CAPPED_BLOCKS_PER_SM as CAPPED

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not gpu.is_available(), reason="needs a CUDA device + CuPy")]

from conftest import SHARED_DATASETS as DATA
DATASETS = sorted(DATA.glob("normalized/*.npz")) + sorted(DATA.glob("derived/*.npz"))
DEV = "cuda"


def byte_view(t: torch.Tensor) -> torch.Tensor:
    """Bit pattern of a tensor (NaN-safe comparison), [B, row_bytes] uint8 on its device."""
    t = t.detach().contiguous()
    b = t.shape[0] if t.dim() else 1
    if not t.numel():
        return t.new_zeros((b, 0), dtype=torch.uint8)
    return t.view(torch.uint8).reshape(b, -1)


def as_bytes(t: torch.Tensor) -> np.ndarray:
    return byte_view(t).cpu().numpy()


def assert_same_bytes(got: torch.Tensor, expected: torch.Tensor):
    # compared on got's device (a batch can be hundreds of MB); numpy only reports a mismatch
    if not torch.equal(byte_view(got), byte_view(expected).to(got.device)):
        np.testing.assert_array_equal(as_bytes(got), as_bytes(expected))
        raise AssertionError("the bit patterns differ")


def assert_bit_exact(got: torch.Tensor, cm, idx):
    ref = cm.decode(np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, np.int64))
    assert got.is_cuda and got.dtype == ref.dtype and tuple(got.shape) == tuple(ref.shape)
    assert_same_bytes(got, ref)


def special_floats(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.7] = 0
    x = torch.from_numpy(x).to(dtype)
    flat = x.view(-1)
    info = torch.finfo(dtype)
    specials = torch.tensor([float("nan"), -0.0, float("inf"), float("-inf"), info.tiny / 4,
                             -info.tiny / 8, 1.0, -1.0, info.max], dtype=dtype)
    k = min(flat.numel(), 200)
    pos = torch.from_numpy(rng.choice(flat.numel(), k, replace=False))
    flat[pos] = specials[torch.from_numpy(rng.integers(0, len(specials), k))]
    if dtype == torch.float32:   # NaN with a payload and a negative NaN
        flat.view(torch.int32)[pos[:3]] = torch.tensor([0x7FC00123, -0x0000001, 0x7F800001],
                                                       dtype=torch.int32)
    return x


def make(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if dtype.is_floating_point:
        return special_floats(rng, shape, dtype)
    if dtype == torch.bool:
        return torch.from_numpy(rng.random(shape) < 0.1)
    info = torch.iinfo(dtype)
    vals = rng.integers(0, 3, shape)
    x = torch.from_numpy(vals).to(dtype)
    x.view(-1)[:7] = torch.tensor([info.min, info.max, 0, 1, info.max, info.min, 2]).to(dtype)
    return x


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.uint8, torch.bool]


def index_sets(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "random": torch.from_numpy(rng.integers(0, n, 997)),
        "duplicates": torch.from_numpy(np.repeat(rng.integers(0, n, 7), 31)),
        "sorted": torch.arange(n),
        "reversed": torch.arange(n - 1, -1, -1),
        "empty": torch.zeros(0, dtype=torch.int64),
        "single_last": torch.tensor([n - 1]),
    }


@pytest.fixture(autouse=True)
def _free():
    yield
    # pinned buffers a test leaves in reference cycles go back now rather than at some later
    # test; only then, as a full collection of a process holding torch and CuPy is slow
    if gpu.pinned_bytes_in_use():
        gc.collect()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("w", [16, 32, 64])
@pytest.mark.parametrize("location", ["pinned", "device"])
def test_dtypes_bit_exact(dtype, w, location):
    x = make(dtype, (401, 37 if dtype.itemsize <= 2 else 29))
    cm = compress(x, chunk_bits=w, allocator=gpu.pinned_allocator)
    dev = gpu.DeviceCompressedMatrix(cm, DEV, location)
    for name, idx in index_sets(cm.num_rows).items():
        for idt in (torch.int32, torch.int64):
            for on_gpu in (False, True):
                i = idx.to(idt)
                i = i.to(DEV) if on_gpu else i
                assert_bit_exact(dev.gather(i), cm, idx)
        assert_bit_exact(dev.gather(idx.to(DEV), sort=True), cm, idx)


@pytest.mark.parametrize("shape,dtype", [
    ((300, 1), torch.bool), ((300, 3), torch.int8), ((200, 1), torch.float16),
    ((250, 5), torch.float32), ((100, 2, 3), torch.int16),             # tiny rows
    ((64, 5000), torch.float32), ((40, 4500), torch.float64),          # rows over 16 KB
    ((33, 4099), torch.float32)])
@pytest.mark.parametrize("w", [16, 32, 64])
def test_row_widths(shape, dtype, w):
    x = make(dtype, shape, seed=3)
    if shape[-1] >= 4000 and dtype == torch.float32:
        x[::2] = torch.randn(x[::2].shape)            # dense rows: long encoded/raw rows
    cm = compress(x, chunk_bits=w)
    idx = torch.from_numpy(np.random.default_rng(5).integers(0, cm.num_rows, 300))
    for kw in ({}, {"mask_smem_limit": 0}, {"warp_buffer_bytes": 0}, {"threads": 32},
               {"zero_fill": False}, {"clear_rows": "output"}, {"clear_rows": "block"},
               {"fill_base": False}, {"blocks_per_sm": CAPPED}, {"scan_shortcuts": False},
               {"stretch": False, "fill_base": False},
               {"fixed_rounds": False, "fill_base": False},
               {"fixed_rounds": False, "warp_buffer_bytes": 0, "fill_base": False},
               {"warp_buffer_bytes": 0, "mask_smem_limit": 0}):
        dev = gpu.DeviceCompressedMatrix(cm, DEV, "pinned", **kw)
        assert_bit_exact(dev.gather(idx.to(DEV)), cm, idx)


@pytest.mark.parametrize("path", DATASETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.parametrize("w", [32, 64])
def test_datasets_bit_exact(path, w):
    x = np.load(path)["x"]
    cm = compress(x, chunk_bits=w, allocator=gpu.pinned_allocator)
    n = cm.num_rows
    rng = np.random.default_rng(0)
    idx = torch.from_numpy(rng.integers(0, n, min(4096, 4 * n)))
    for location in ("pinned", "device"):
        dev = gpu.DeviceCompressedMatrix(cm, DEV, location)
        assert_bit_exact(dev.gather(idx.to(DEV)), cm, idx)
        assert_bit_exact(dev.gather(idx.to(torch.int32), sort=True), cm, idx)
    for kw in ({"zero_fill": False}, {"clear_rows": "output"}, {"clear_rows": "block"},
               {"fill_base": False}, {"blocks_per_sm": CAPPED}, {"scan_shortcuts": False},
               {"stretch": False, "fill_base": False}, {"fixed_rounds": False, "fill_base": False}):
        other = gpu.DeviceCompressedMatrix(cm, DEV, **kw)
        assert_bit_exact(other.gather(idx.to(DEV)), cm, idx)
    full = torch.arange(n, device=DEV)
    got = gpu.DeviceCompressedMatrix(cm, DEV).gather(full)
    assert got.shape == x.shape
    assert_same_bytes(got, torch.from_numpy(x))


@pytest.mark.parametrize("bad", [-1, 100, 10**12])
@pytest.mark.parametrize("on_gpu", [False, True])
def test_out_of_range_raises(bad, on_gpu):
    cm = compress(make(torch.float32, (100, 8)), chunk_bits=32)
    dev = gpu.DeviceCompressedMatrix(cm, DEV)
    raw = gpu.PinnedRawMatrix(torch.zeros(100, 8), DEV)
    for idt in (torch.int64, torch.int32):
        if idt == torch.int32 and bad > 2**31:
            continue
        idx = torch.tensor([0, 5, bad, 7], dtype=idt)
        idx = idx.to(DEV) if on_gpu else idx
        with pytest.raises(IndexError):
            dev.gather(idx)
        with pytest.raises(IndexError):
            raw.gather(idx)


def test_bad_index_types():
    cm = compress(make(torch.float32, (10, 4)), chunk_bits=32)
    dev = gpu.DeviceCompressedMatrix(cm, DEV)
    with pytest.raises(TypeError):
        dev.gather(torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError):
        dev.gather(torch.tensor([True, False]))
    assert_bit_exact(dev.gather(torch.tensor([1, 2], dtype=torch.int16)), cm, [1, 2])
    assert_bit_exact(dev.gather(np.array([3, 4], np.uint32)), cm, [3, 4])


def test_bad_blocks_per_sm():
    cm = compress(make(torch.float32, (10, 4)), chunk_bits=32)
    for bad in (0, -1, 2.0, True, "5", 2048 // 256 + 1):
        with pytest.raises(ValueError, match="blocks_per_sm"):
            gpu.DeviceCompressedMatrix(cm, DEV, blocks_per_sm=bad)
    with pytest.raises(ValueError, match="blocks_per_sm"):
        gpu.DeviceCompressedMatrix(cm, DEV, threads=512, blocks_per_sm=5)


@pytest.mark.parametrize("clear_rows", ["output", "block"])
def test_rows_cleared_elsewhere_over_reused_memory_and_side_stream(clear_rows):
    """Rows cleared by the gather before the launch, or by the kernel's blocks, are exact even
    where the allocator hands back memory full of old bytes, on a stream other than the
    default too (the clearing and the kernel on the caller's stream), sorted or not."""
    x = (torch.from_numpy(np.random.default_rng(4).random((3000, 700))) < 0.01).float()
    cm = compress(x, chunk_bits=32)
    dev = gpu.DeviceCompressedMatrix(cm, DEV, clear_rows=clear_rows)
    assert dev._has_cleared_rows
    idx = torch.from_numpy(np.random.default_rng(5).integers(0, cm.num_rows, 2000))
    for stream in (torch.cuda.current_stream(), torch.cuda.Stream()):
        outs = []
        with torch.cuda.stream(stream):
            for sort in (False, True, False):
                dirty = torch.full((len(idx), cm.row_bytes), 0xA5, dtype=torch.uint8,
                                   device=DEV)
                del dirty                           # back to this stream's cached blocks
                outs.append(dev.gather(idx.to(DEV), sort=sort))
        stream.synchronize()
        for got in outs:
            assert_bit_exact(got, cm, idx)


def test_unchecked_bad_index_is_zero_and_safe():
    cm = compress(make(torch.float32, (50, 8)), chunk_bits=32)
    out = gpu.DeviceCompressedMatrix(cm, DEV).gather(
        torch.tensor([1, 10**9, -5, 2], device=DEV), check=False)
    assert not as_bytes(out)[1:3].any()
    assert_bit_exact(out[[0, 3]], cm, [1, 2])


def test_bench_dataset_record(tmp_path):
    """The gather benchmark's per-dataset record on a tiny matrix, the training-sized batch
    included, and its tables (the device check runs the benchmark only after the tests)."""
    from ibp_gnn import bench_gpu
    x = (np.random.default_rng(0).random((500, 64)) < 0.05).astype(np.float32)
    (tmp_path / "normalized").mkdir()
    path = tmp_path / "normalized" / "tiny.npz"
    np.savez(path, x=x)
    rec = bench_gpu.bench_dataset(path, tile_bytes=10**6, batch_bytes=256 * 64, repeats=2,
                                  check=True, min_rows=256, train_rows=4096)
    assert rec["batch"] == 256 and rec["train_batch"]["rows"] == 4096
    for key in ("ibp_pinned_unsorted", "raw_same_size_unsorted"):
        assert rec[key]["seconds"] > 0 and rec["train_batch"][key]["seconds"] > 0
    assert all(rec[f"ibp_pinned_unsorted_{key}"]["seconds"] > 0
               for key in (*bench_gpu.COMPILED_DECODE_VARIANTS, *bench_gpu.CLEARING_VARIANTS))
    assert all(rec["train_batch"][f"ibp_pinned_unsorted_{key}"]["seconds"] > 0
               for key in bench_gpu.CLEARING_VARIANTS)
    zero = rec["zero_rows"]                        # all-zero rows: the fill alone
    assert "error" not in zero and zero["filled_groups"] >= 1, zero
    assert zero["batch"]["seconds"] > 0 and zero["train_batch"]["seconds"] > 0
    res = {"card": "x", "link": {"h2d_GBps": 1.0}, "raw_rows": [], "datasets": [rec]}
    table = bench_gpu._table(res)
    assert table.count("normalized/tiny") == 3     # the three tables


def test_load_kernels():
    gpu.load_kernels()    # every source compiles for this device
    cm = compress(make(torch.float32, (50, 8)), chunk_bits=32)
    assert_bit_exact(gpu.DeviceCompressedMatrix(cm, DEV).gather(torch.arange(50, device=DEV)),
                     cm, np.arange(50))


def test_side_stream():
    cm = compress(make(torch.float32, (500, 64)), chunk_bits=32)
    dev = gpu.DeviceCompressedMatrix(cm, DEV)
    idx = torch.randint(0, 500, (2000,), device=DEV)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = dev.gather(idx)
        # a consumer on the same stream; integer arithmetic, because float arithmetic on a GPU
        # returns NaNs as the canonical 0x7FFFFFFF and would change the payloads under test
        out2 = (out.view(torch.int32) + 0).view(out.dtype)
    torch.cuda.current_stream().wait_stream(s)
    assert_bit_exact(out, cm, idx)
    assert_bit_exact(out2, cm, idx)


@pytest.mark.parametrize("row_bytes", [1, 2, 3, 6, 12, 24, 64, 100, 1000, 4096, 16384, 20000])
@pytest.mark.parametrize("sort", [False, True])
def test_raw_gather(row_bytes, sort):
    rng = np.random.default_rng(row_bytes)
    x = torch.from_numpy(rng.integers(0, 256, (300, row_bytes), dtype=np.uint8))
    for lanes in (None, 1, 32):
        raw = gpu.PinnedRawMatrix(x, DEV, lanes_per_row=lanes)
        for idx in index_sets(300).values():
            for idt in (torch.int32, torch.int64):
                got = raw.gather(idx.to(idt).to(DEV), sort=sort)
                assert got.is_cuda
                np.testing.assert_array_equal(got.cpu().numpy(), x[idx].numpy())
    with pytest.raises(ValueError, match="lanes_per_row"):
        gpu.PinnedRawMatrix(x, DEV, lanes_per_row=3)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_raw_gather_dtypes(dtype):
    x = make(dtype, (120, 3, 5))
    idx = torch.randint(0, 120, (77,))
    for location in ("pinned", "device"):
        got = gpu.PinnedRawMatrix(x, DEV, location).gather(idx)
        assert got.dtype == dtype and got.shape == (77, 3, 5)
        np.testing.assert_array_equal(as_bytes(got), as_bytes(x[idx]))
    pinned = x.pin_memory()                 # already pinned: used in place, no copy
    raw = gpu.PinnedRawMatrix(pinned, DEV)
    assert raw._host.data_ptr() == pinned.data_ptr()
    np.testing.assert_array_equal(as_bytes(raw.gather(idx)), as_bytes(x[idx]))


def test_pinned_allocator():
    before = gpu.pinned_bytes_in_use()
    buf = gpu.pinned_allocator(1 << 20)
    assert buf.dtype == np.uint8 and buf.size == 1 << 20 and buf.flags.writeable
    assert gpu.mapped_pointer(buf.ctypes.data) is not None
    assert buf.ctypes.data % 256 == 0
    assert gpu.pinned_bytes_in_use() == before + (1 << 20)
    buf[:] = 7
    del buf
    gc.collect()
    assert gpu.pinned_bytes_in_use() == before
    with pytest.raises(gpu.PinnedMemoryError):
        gpu.pinned_allocator(1 << 20, max_pinned_bytes=1 << 19)


def test_pinned_limit_env(monkeypatch):
    monkeypatch.setenv(gpu.ENV_MAX_PINNED, str(gpu.pinned_bytes_in_use() + 100))
    with pytest.raises(gpu.PinnedMemoryError):
        gpu.pinned_allocator(2000)
    cm = compress(make(torch.float32, (100, 100)))        # pageable payload of > 100 bytes
    assert cm.payload_bytes > 100
    with pytest.raises(gpu.PinnedMemoryError):
        gpu.DeviceCompressedMatrix(cm, DEV)


def test_payload_used_in_place_when_pinned():
    cm = compress(make(torch.float32, (200, 40)), allocator=gpu.pinned_allocator)
    dev = gpu.DeviceCompressedMatrix(cm, DEV)
    assert dev._payload_host.ctypes.data == cm.payload.ctypes.data
    cm2 = compress(make(torch.float32, (200, 40)))          # pageable: copied once
    dev2 = gpu.DeviceCompressedMatrix(cm2, DEV)
    assert dev2._payload_host.ctypes.data != cm2.payload.ctypes.data


def _same_container(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype and a.chunk_bits == b.chunk_bits
    assert a.raw_layout == b.raw_layout
    assert a.list_header == b.list_header
    for f in ("payload", "offset_lo", "block_base", "mask", "bitval", "kind_masks",
              "kind_bitvals", "column_kinds", "kind_select_bits", "alt_masks", "alt_bitvals"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        np.testing.assert_array_equal(x, y, err_msg=f)
    assert a.offset_shift == b.offset_shift


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("w", [16, 32, 64, "auto"])
def test_compress_on_gpu_identical(dtype, w):
    x = make(dtype, (333, 21))
    cpu = compress(x, chunk_bits=w)
    _same_container(gpu.compress_on_gpu(x, chunk_bits=w), cpu)
    _same_container(gpu.compress_on_gpu(x.to(DEV), chunk_bits=w), cpu)
    _same_container(gpu.compress_on_gpu(x, chunk_bits=w, block_bytes=1000), cpu)
    _same_container(gpu.compress_on_gpu(x, chunk_bits=w, extended=False),
                    compress(x, chunk_bits=w, extended=False))


@pytest.mark.parametrize("path", DATASETS[:4], ids=lambda p: p.stem)
def test_compress_on_gpu_datasets(path):
    x = np.load(path)["x"]
    cpu = compress(x)
    g = gpu.compress_on_gpu(torch.from_numpy(x).to(DEV), allocator=gpu.pinned_allocator)
    _same_container(g, cpu)
    idx = torch.arange(cpu.num_rows, device=DEV)
    assert_bit_exact(gpu.DeviceCompressedMatrix(g, DEV).gather(idx), cpu, idx)


def test_compress_on_gpu_wide_and_empty():
    x = make(torch.float32, (20, 5000))
    _same_container(gpu.compress_on_gpu(x), compress(x))
    e = torch.zeros(0, 7)
    _same_container(gpu.compress_on_gpu(e, chunk_bits=32), compress(e, chunk_bits=32))
