"""GPU side: gather + decode of IBP-compressed rows, raw zero-copy gather, GPU encoder.

The kernels are CUDA C sources in ``cuda/`` (one file per kernel family), compiled at first use
with NVRTC through ``cupy.RawModule`` for the running device and cached by CuPy on disk. Results
are torch CUDA tensors allocated by torch and written in place by the kernels, on torch's current
stream; nothing here synchronizes the device per batch.

Index validation: an index outside ``[0, N)`` raises ``IndexError`` before any kernel runs.
For a CPU index tensor the check is free; for a CUDA index tensor it costs one ``aminmax`` and a
two-element copy to the host (a wait on the current stream, not a device-wide synchronize).
``gather(..., check=False)`` skips it; the kernels then still never read out of bounds (a bad
row decodes to zeros), but no error is reported.

CuPy is imported lazily, so the package imports on machines without it.
"""
from __future__ import annotations

import math
import os
import re
import threading
import warnings
import weakref
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .codec import CompressedMatrix
from .codec import dtypes as _dtypes
from .codec.container import WORD_DTYPES
from .codec.encode import build_matrix, pattern_tables, raw_layout_pays

ENV_CUDA_DIR = "IBP_GNN_CUDA_DIR"
ENV_MAX_PINNED = "IBP_GNN_MAX_PINNED_BYTES"
NVRTC_OPTIONS = ("-std=c++17",)

DECODE_THREADS = 256            # must not exceed IBP_DECODE_THREADS in ibp_decode.cu (512)
GATHER_THREADS = 256            # IBP_GATHER_THREADS in gather_raw.cu
ENCODE_THREADS = 256            # IBP_ENCODE_THREADS in ibp_encode.cu
WARP_BUFFER_BYTES = 2048        # shared-memory copy of one encoded row per warp
MASK_SMEM_LIMIT = 48 << 10      # stage mask+bitval in shared memory up to this size
MAX_STRETCH_ROUNDS = 1 << 30    # all-base rounds decoded together: no limit but the row's


class PinnedMemoryError(MemoryError):
    """Pinned (page-locked) host memory could not be allocated or would exceed the limit."""


# -- sources and modules ---------------------------------------------------------------------

def cuda_dir() -> Path:
    """Folder of the ``.cu`` sources: ``$IBP_GNN_CUDA_DIR``, else ``ibp_gnn/cuda`` of an
    installed wheel, else ``cuda/`` beside the package in a source checkout."""
    env = os.environ.get(ENV_CUDA_DIR)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    packaged = here / "cuda"
    return packaged if any(packaged.glob("*.cu")) else here.parent / "cuda"


def kernel_sources() -> list[Path]:
    d = cuda_dir()
    files = sorted(d.glob("*.cu"))
    if not files:
        raise FileNotFoundError(f"no CUDA sources (*.cu) in {d}; set {ENV_CUDA_DIR}")
    return files


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)


def load_source(path) -> str:
    """Source of ``path`` with local ``#include "x.cuh"`` lines inlined. CuPy keys its kernel
    cache on the source text, so inlining makes a header change recompile the kernels."""
    path = Path(path)
    seen: set[Path] = set()

    def expand(p: Path) -> str:
        p = p.resolve()
        if p in seen:                    # headers use #pragma once
            return ""
        seen.add(p)
        text = p.read_text()
        return _INCLUDE.sub(lambda m: expand(p.parent / m.group(1)), text)

    return expand(path)


_modules: dict = {}
_modules_lock = threading.Lock()


def _cupy():
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install
        raise RuntimeError(f"ibp_gnn.gpu needs CuPy (pip install cupy-cuda13x): {e}") from e
    return cupy


def _module(name: str, defines: tuple = ()):
    """One RawModule per source file and set of ``(macro, value)`` settings per process
    (compiled for the device at first use)."""
    key = (name, defines)
    with _modules_lock:
        mod = _modules.get(key)
        if mod is None:
            cp = _cupy()
            options = NVRTC_OPTIONS + tuple(f"-D{k}={v}" for k, v in defines)
            mod = cp.RawModule(code=load_source(cuda_dir() / name), options=options)
            _modules[key] = mod
        return mod


def decode_defines(threads: int = DECODE_THREADS, blocks_per_sm: Optional[int] = None,
                   scan_shortcuts: bool = True, clear_rows: str = "warp") -> tuple:
    """The ``(macro, value)`` settings ibp_decode.cu is compiled with for a
    ``DeviceCompressedMatrix`` of these settings (the default ones add none)."""
    defines = () if scan_shortcuts else (("IBP_DECODE_SCAN_SHORTCUTS", 0),)
    if clear_rows == "block":
        defines += (("IBP_DECODE_CLEAR_BY_BLOCK", 1),)
    if blocks_per_sm is None:
        return defines
    return defines + (("IBP_DECODE_THREADS", int(threads)),
                      ("IBP_DECODE_MIN_BLOCKS", int(blocks_per_sm)))


def load_kernels(decode_settings: Iterable[dict] = (), every_source: bool = True) -> None:
    """Compile every kernel source for the current device now (CuPy keeps the result in its
    on-disk kernel cache, so later processes load it instead of compiling at first use), and
    the decode kernels for ``DeviceCompressedMatrix(**settings)`` for each dict of
    ``decode_settings`` (keywords of :func:`decode_defines`, e.g. ``{"blocks_per_sm": 5}``
    or ``{"clear_rows": "block"}``).
    ``every_source=False`` compiles only the latter (scripts/warm_kernels.py compiles each
    module in a process of its own). Modules this process already holds are left as they
    are."""
    jobs = [(f.name, ()) for f in kernel_sources()] if every_source else []
    jobs += [("ibp_decode.cu", decode_defines(**settings)) for settings in decode_settings]
    for name, defines in jobs:
        with _modules_lock:
            fresh = (name, defines) not in _modules
        module = _module(name, defines)
        if fresh:
            module.compile()


_kernels: dict = {}


def _kernel(file: str, name: str, device_index: int, defines: tuple = ()):
    key = (file, name, device_index, defines)
    k = _kernels.get(key)
    if k is None:
        cp = _cupy()
        with cp.cuda.Device(device_index):
            k = _module(file, defines).get_function(name)
        _kernels[key] = k
    return k


#: ``DeviceCompressedMatrix`` settings that compile the decode kernels apart from the default
#: (:func:`decode_defines`), one of each kind, for ``compile_check(variants=True)``.
DECODE_VARIANT_SETTINGS = ({"scan_shortcuts": False}, {"clear_rows": "block"},
                           {"blocks_per_sm": 5})


def compile_check(archs: Sequence[str] = ("sm_80", "sm_90"),
                  variants: bool = False) -> list[tuple[str, str, bool, str]]:
    """Compile every kernel source with NVRTC for each arch; needs no GPU. ``variants`` also
    compiles the decode kernels for each of ``DECODE_VARIANT_SETTINGS`` (tens of seconds
    each), reported as ``ibp_decode.cu [MACRO=value ...]``.

    Returns ``(source file, arch, ok, message)`` tuples; the message is the compiler log (or the
    reason NVRTC could not be used)."""
    try:
        files = kernel_sources()
    except FileNotFoundError as e:
        return [(str(cuda_dir()), a, False, str(e)) for a in archs]
    jobs = [(f, f.name, ()) for f in files]
    if variants:
        decode = cuda_dir() / "ibp_decode.cu"
        for settings in DECODE_VARIANT_SETTINGS:
            defines = decode_defines(**settings)
            label = " ".join(f"{k}={v}" for k, v in defines)
            jobs.append((decode, f"{decode.name} [{label}]", defines))
    try:
        from cupy_backends.cuda.libs import nvrtc
        version = ".".join(map(str, nvrtc.getVersion()))
    except Exception as e:
        return [(name, a, False, f"NVRTC not available: {e}") for _, name, _ in jobs
                for a in archs]
    results = []
    for f, name, defines in jobs:
        src = load_source(f)
        options = [*NVRTC_OPTIONS, *(f"-D{k}={v}" for k, v in defines)]
        for arch in archs:
            prog = nvrtc.createProgram(src, f.name, [], [])
            try:
                nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *options])
                binary = nvrtc.getCUBIN(prog) if arch.startswith("sm_") else nvrtc.getPTX(prog)
                log = nvrtc.getProgramLog(prog).strip()
                msg = f"NVRTC {version}: {len(binary)} bytes" + (f"; {log}" if log else "")
                results.append((name, arch, True, msg))
            except Exception as e:
                try:
                    log = nvrtc.getProgramLog(prog).strip()
                except Exception:
                    log = ""
                results.append((name, arch, False, f"{e}\n{log}".strip()))
            finally:
                try:
                    nvrtc.destroyProgram(prog)
                except Exception:
                    pass
    return results


def is_available() -> bool:
    """True when a CUDA device is usable by both torch and CuPy."""
    try:
        if not torch.cuda.is_available():
            return False
        cp = _cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


# -- launch helpers --------------------------------------------------------------------------

_streams: dict = {}


def _current_stream_handle(device: torch.device) -> int:
    """Handle of torch's current stream on ``device``. Through torch's raw accessor where the
    build has one: ``torch.cuda.current_stream`` builds a Python stream object on every call,
    a few microseconds of each gather's launch."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return int(raw(device.index))
    return torch.cuda.current_stream(device).cuda_stream


def _cupy_stream(device: torch.device):
    """CuPy view of torch's current stream on ``device`` (cached per stream handle)."""
    key = (device.index, _current_stream_handle(device))
    s = _streams.get(key)
    if s is None:
        cp = _cupy()
        ts = torch.cuda.current_stream(device)
        if hasattr(cp.cuda.Stream, "from_external"):
            try:
                s = cp.cuda.Stream.from_external(ts)
            except Exception:    # torch without the CUDA stream protocol
                s = None
        if s is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                s = cp.cuda.ExternalStream(ts.cuda_stream, device.index)
        _streams[key] = s
    return s


def _allow_smem(kernel, smem: int) -> None:
    """Let ``kernel`` use ``smem`` bytes of dynamic shared memory (over 48 KB needs opting in);
    call in the kernel's device context."""
    if smem > 48 << 10 and kernel.max_dynamic_shared_size_bytes < smem:
        kernel.max_dynamic_shared_size_bytes = smem


def _launch(kernel, device: torch.device, grid: int, block: int, args: tuple, smem: int = 0):
    cp = _cupy()
    with cp.cuda.Device(device.index), _cupy_stream(device):
        _allow_smem(kernel, smem)
        kernel((int(grid),), (int(block),), args, shared_mem=int(smem))


_props: dict = {}


def _device_props(device: torch.device) -> dict:
    p = _props.get(device.index)
    if p is None:
        rt = _cupy().cuda.runtime

        def attr(name, default):
            try:
                return int(rt.deviceGetAttribute(getattr(rt, name), device.index))
            except Exception:
                return default

        p = {
            "sms": attr("cudaDevAttrMultiProcessorCount", 108),
            "threads_per_sm": attr("cudaDevAttrMaxThreadsPerMultiProcessor", 2048),
            "smem_per_sm": attr("cudaDevAttrMaxSharedMemoryPerMultiprocessor", 164 << 10),
            "smem_optin": attr("cudaDevAttrMaxSharedMemoryPerBlockOptin", 48 << 10),
        }
        _props[device.index] = p
    return p


_occupancy: dict = {}


def _blocks_per_sm(kernel, device: torch.device, threads: int, smem: int) -> int:
    """Blocks of ``kernel`` one SM holds at once (registers, shared memory, threads), from the
    driver; an estimate from threads and shared memory alone when it cannot say."""
    key = (id(kernel), device.index, threads, smem)
    n = _occupancy.get(key)
    if n is None:
        p = _device_props(device)
        n = max(1, p["threads_per_sm"] // threads)
        if smem:
            n = max(1, min(n, p["smem_per_sm"] // (smem + 1024)))
        if kernel is not None:
            try:
                cp = _cupy()
                with cp.cuda.Device(device.index):
                    _allow_smem(kernel, smem)
                    got = cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                        kernel.kernel.ptr, threads, smem)
                if got > 0:
                    n = int(got)
            except Exception:
                pass
        _occupancy[key] = n
    return n


def _grid(device: torch.device, work_items: int, items_per_block: int, threads: int,
          smem: int = 0, kernel=None) -> int:
    """Enough blocks to fill the device once (persistent blocks loop over the rest): as many as
    the SMs hold of ``kernel`` at once, so no second, partial wave follows the first."""
    per_sm = _blocks_per_sm(kernel, device, threads, smem)
    return max(1, min(-(-work_items // items_per_block), _device_props(device)["sms"] * per_sm))


def _u64(x) -> np.uint64:
    return np.uint64(x)


def _i64(x) -> np.int64:
    return np.int64(x)


def _i32(x) -> np.int32:
    return np.int32(x)


def _ptr(t: Optional[torch.Tensor]) -> np.uint64:
    return np.uint64(0 if t is None else t.data_ptr())


def _unit(row_bytes: int, width: int) -> int:
    """Largest power of two <= width dividing row_bytes: the alignment of a packed output row."""
    u = width
    while u > 1 and row_bytes % u:
        u //= 2
    return u


def _resolve_device(device) -> torch.device:
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device())
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {device}")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def prepare_index(index, num_rows: int, device: torch.device, check: bool = True) -> torch.Tensor:
    """Row index -> contiguous 1-D int32/int64 CUDA tensor on ``device``; raises IndexError for
    an index outside ``[0, num_rows)`` (before anything is launched)."""
    if not isinstance(index, torch.Tensor):
        arr = np.asarray(index)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"row index must be integers, got dtype {arr.dtype}")
        if arr.dtype == np.uint64:
            if arr.size and arr.max() > np.iinfo(np.int64).max:
                raise IndexError(f"row index {arr.max()} out of range for {num_rows} rows")
            arr = arr.astype(np.int64)
        index = torch.from_numpy(np.ascontiguousarray(arr))
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise TypeError(f"row index must be an integer tensor, got {index.dtype}")
    index = index.reshape(-1)
    if index.dtype not in (torch.int32, torch.int64):
        if index.dtype == torch.uint64 and index.numel() and index.max().item() > (1 << 63) - 1:
            raise IndexError(f"row index out of range for {num_rows} rows")
        index = index.to(torch.int64)
    if check and index.numel():
        mn, mx = torch.aminmax(index)
        lo, hi = (int(v) for v in torch.stack([mn, mx]).cpu().tolist())
        if lo < 0:
            raise IndexError(f"negative row index {lo}: indices must be in [0, {num_rows})")
        if hi >= num_rows:
            raise IndexError(f"row index {hi} out of range for {num_rows} rows")
    if index.device != device:
        index = index.to(device, non_blocking=True)
    return index.contiguous()


def _start_gather(matrix, index, sort: bool, check: bool):
    """``(idx, pos, out)`` for a gather kernel over ``matrix`` (a device or pinned matrix):
    validated indices on its device, their positions in the caller's order when ``sort``
    reorders them (else None), and the uint8 output ``[B, row_bytes]``. ``idx`` is None when
    there is nothing to launch; ``out`` is then already the (empty) result."""
    idx = prepare_index(index, matrix.num_rows, matrix.device, check)
    b = idx.numel()
    if b == 0 or matrix.row_bytes == 0:
        return None, None, torch.zeros((b,) + matrix.row_shape, dtype=matrix.dtype,
                                       device=matrix.device)
    out = torch.empty((b, matrix.row_bytes), dtype=torch.uint8, device=matrix.device)
    idx, pos = _sorted(idx) if sort else (idx, None)
    return idx, pos, out


def _sorted(index: torch.Tensor):
    """Indices sorted ascending (neighbouring rows are read together) and, per sorted entry,
    its position in the caller's order."""
    s, perm = torch.sort(index)
    return s.contiguous(), perm.to(torch.int64).contiguous()


# -- pinned host memory ----------------------------------------------------------------------

_pinned_lock = threading.Lock()
_pinned_bytes = 0


def pinned_bytes_in_use() -> int:
    """Bytes currently held by :func:`pinned_allocator` buffers."""
    return _pinned_bytes


def _release_pinned(nbytes: int) -> None:
    global _pinned_bytes
    with _pinned_lock:
        _pinned_bytes -= nbytes


def _pinned_limit(max_pinned_bytes: Optional[int]) -> Optional[int]:
    if max_pinned_bytes is not None:
        return int(max_pinned_bytes)
    env = os.environ.get(ENV_MAX_PINNED)
    if env:
        try:
            return int(float(env))
        except ValueError as e:
            raise ValueError(f"{ENV_MAX_PINNED}={env!r} is not a byte count") from e
    return None


def pinned_allocator(nbytes: int, *, max_pinned_bytes: Optional[int] = None) -> np.ndarray:
    """A writable ``np.uint8`` array of ``nbytes`` in pinned, device-mapped host memory.

    Meant as ``compress(x, allocator=gpu.pinned_allocator)``: the payload is encoded straight
    into memory the GPU reads zero-copy. The memory is released (``cudaFreeHost``) when the last
    reference to the array goes away. ``max_pinned_bytes`` (or ``$IBP_GNN_MAX_PINNED_BYTES``)
    caps the total held by these buffers; exceeding it, or a failing ``cudaHostAlloc``, raises
    :class:`PinnedMemoryError`.
    """
    global _pinned_bytes
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    limit = _pinned_limit(max_pinned_bytes)
    with _pinned_lock:
        if limit is not None and _pinned_bytes + nbytes > limit:
            raise PinnedMemoryError(
                f"pinning {nbytes} bytes would exceed the pinned-memory limit of {limit} bytes "
                f"({_pinned_bytes} already pinned; raise max_pinned_bytes or {ENV_MAX_PINNED})")
        _pinned_bytes += nbytes
    try:
        cp = _cupy()
        rt = cp.cuda.runtime
        # Not the CuPy pinned pool: a pool keeps freed blocks pinned for reuse, and feature
        # stores are large and long-lived, so their memory should go back when dropped.
        mem = cp.cuda.PinnedMemory(max(nbytes, 1), rt.hostAllocPortable | rt.hostAllocMapped)
    except Exception as e:
        _release_pinned(nbytes)
        raise PinnedMemoryError(f"could not allocate {nbytes} bytes of pinned host memory: {e}. "
                                f"Check the CUDA device, free host memory, and the "
                                f"memlock limit (ulimit -l)") from e
    holder = _PinnedBlock(mem, nbytes)
    weakref.finalize(holder, _release_pinned, nbytes)
    return np.asarray(holder)    # the array's base is the holder, which owns the allocation


class _PinnedBlock:
    """Owner of one pinned allocation, exposed to numpy as a writable byte array."""

    def __init__(self, mem, nbytes: int):
        self.mem = mem                   # cudaFreeHost runs when this goes away
        self.nbytes = nbytes
        self.__array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "version": 3,
                                    "data": (int(mem), False)}


def mapped_pointer(host_ptr: int) -> Optional[int]:
    """Device address of pinned (page-locked, mapped) host memory, or None when ``host_ptr`` is
    ordinary pageable memory."""
    cp = _cupy()
    rt = cp.cuda.runtime
    try:
        attrs = rt.pointerGetAttributes(int(host_ptr))
    except Exception:
        return None
    if attrs.type != rt.memoryTypeHost or not attrs.devicePointer:
        return None
    return int(attrs.devicePointer)


def _as_pinned(arr: np.ndarray, max_pinned_bytes=None) -> tuple[np.ndarray, int]:
    """``arr`` as bytes in pinned memory (itself when already pinned, else one copy), and the
    device address to read it at."""
    u8 = arr.reshape(-1).view(np.uint8) if arr.flags.c_contiguous else None
    if u8 is not None and u8.size:
        dp = mapped_pointer(u8.ctypes.data)
        if dp is not None:
            return u8, dp
    buf = pinned_allocator(arr.nbytes, max_pinned_bytes=max_pinned_bytes)
    if arr.nbytes:
        buf[:] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    dp = mapped_pointer(buf.ctypes.data) if buf.size else 0
    if dp is None:
        raise PinnedMemoryError("pinned buffer is not mapped into the device address space")
    return buf, dp


def _to_device_bytes(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """One copy of ``arr``'s bytes into device memory (works for pinned, pageable, memmap)."""
    out = torch.empty(arr.nbytes, dtype=torch.uint8, device=device)
    if arr.nbytes:
        src = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        cp = _cupy()
        with cp.cuda.Device(device.index):
            torch.cuda.current_stream(device).synchronize()
            cp.cuda.runtime.memcpy(out.data_ptr(), src.ctypes.data, arr.nbytes,
                                   cp.cuda.runtime.memcpyDefault)
    return out


def _small_to_device(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """Small metadata arrays (offsets, masks) as device tensors of the same bits."""
    a = np.ascontiguousarray(arr)
    signed = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    return torch.from_numpy(a.view(signed).copy()).to(device)


# -- compressed rows -------------------------------------------------------------------------

def device_offset_tables(cm: CompressedMatrix) -> tuple[np.ndarray, np.ndarray, int]:
    """``cm.offset_tables()`` as the decode kernels read them: relative offsets of 16 or 32
    bits. 8-bit ones are widened to 16, which costs one byte of GPU memory per row (the host
    keeps one) and saves the kernels a third offset type."""
    lo, block_base, shift = cm.offset_tables()
    lo = np.asarray(lo)
    if lo.dtype not in (np.uint16, np.uint32):
        lo = lo.astype(np.uint16 if lo.dtype == np.uint8 else np.uint32)
    return lo, block_base, shift


def column_alternatives(cm: CompressedMatrix):
    """Per-column selector bits (uint8 ``[C]``) and first alternative (uint32 ``[C]``), and the
    alternative patterns (``[A]`` words), as the decode kernel reads them."""
    kinds = cm.column_kind_ids()
    _, _, _, sel, alt_start = cm.patterns()
    wd = WORD_DTYPES[cm.chunk_bits]
    return (np.ascontiguousarray(sel[kinds].astype(np.uint8)),
            np.ascontiguousarray(alt_start[kinds].astype(np.uint32)),
            np.ascontiguousarray(cm.alt_masks.astype(wd)),
            np.ascontiguousarray(cm.alt_bitvals.astype(wd)))


def _base_free_bits(cm: CompressedMatrix) -> np.ndarray:
    """Free bits of each row group's base pattern of each chunk, int64 ``[G, C]``."""
    pattern_free = cm.patterns()[2]      # patterns [0, K) are the kinds' base patterns
    return pattern_free[cm.column_kind_ids()].reshape(int(cm.num_groups), int(cm.num_chunks))


def base_round_tables(cm: CompressedMatrix) -> tuple[np.ndarray, np.ndarray]:
    """The decode kernel's tables for rounds whose 32 chunks all match their base patterns:
    per row group and chunk, the chunk's offset among the round's free bits (uint16 ``[G * C]``)
    and per row group and round, the round's free bits (uint16 ``[G * ceil(C / 32)]``)."""
    g, c = int(cm.num_groups), int(cm.num_chunks)
    rounds = -(-c // 32)
    free = np.zeros((g, rounds * 32), np.int64)
    free[:, :c] = _base_free_bits(cm)
    free = free.reshape(g, rounds, 32)
    prefix = (np.cumsum(free, axis=2) - free).reshape(g, rounds * 32)[:, :c]
    return (np.ascontiguousarray(prefix, np.uint16).reshape(-1),
            np.ascontiguousarray(free.sum(axis=2), np.uint16).reshape(-1))


FILL_MAX_ENTRY_ROUNDS = 0.75   # see fill_groups
FILL_SAMPLE_ROWS = 2048


def entry_round_share(cm: CompressedMatrix, sample_rows: int = FILL_SAMPLE_ROWS,
                      seed: int = 0) -> np.ndarray:
    """float64 ``[G]``: per row group, the share of rounds (32 chunks) of its encoded rows that
    hold a chunk missing its base pattern, in a random sample of ``sample_rows`` rows (NaN for a
    group without encoded rows in the sample). Decoded on the host with the CPU decoder."""
    g, c = int(cm.num_groups), int(cm.num_chunks)
    share = np.full(g, np.nan)
    n = int(cm.num_rows)
    if n == 0 or c == 0 or cm.raw_layout:
        return share
    idx = np.sort(np.random.default_rng(seed).choice(n, min(n, sample_rows), replace=False))
    start, end = cm.row_offsets(idx)
    encoded = (end - start) != c
    idx, start = idx[encoded], np.asarray(start, np.int64)[encoded]
    if len(idx) == 0:
        return share
    w, ws = int(cm.chunk_bits), int(cm.chunk_bits) // 8
    wd = WORD_DTYPES[w]
    rows = np.zeros((len(idx), c * ws), np.uint8)
    rows[:, :cm.row_bytes] = cm.decode(idx).reshape(len(idx), -1).view(torch.uint8).numpy()
    words = rows.view(wd)
    if g > 1:
        first = np.asarray(cm.payload)[start + cm.header_words].astype(np.uint64)
        group = (first >> np.uint64(w - cm.group_bits)).astype(np.int64)
    else:
        group = np.zeros(len(idx), np.int64)
    mask = np.asarray(cm.mask).astype(wd, copy=False).reshape(g, c)
    bitval = np.asarray(cm.bitval).astype(wd, copy=False).reshape(g, c)
    nonbase = (words & mask[group]) != bitval[group]
    rounds = -(-c // 32)
    padded = np.zeros((len(idx), rounds * 32), bool)
    padded[:, :c] = nonbase
    per_row = padded.reshape(len(idx), rounds, 32).any(axis=2).mean(axis=1)
    for k in range(g):
        if (group == k).any():
            share[k] = per_row[group == k].mean()
    return share


def fill_groups(cm: CompressedMatrix, max_entry_rounds: float = FILL_MAX_ENTRY_ROUNDS,
                sample_rows: int = FILL_SAMPLE_ROWS) -> np.ndarray:
    """uint8 ``[G]``: 1 for each row group whose rows the decode kernel writes with the base bit
    values first and then decodes only the chunks that miss their base patterns: groups whose
    base patterns all have no free bits, and whose sampled rows hold such chunks in at most
    ``max_entry_rounds`` of their rounds (:func:`entry_round_share`). Where nearly every round
    holds one, filling first only adds writes, and the rows decode faster round by round.
    ``max_entry_rounds=1`` takes every group without free base bits."""
    fill = (_base_free_bits(cm) == 0).all(axis=1)
    if fill.any() and max_entry_rounds < 1:
        share = entry_round_share(cm, sample_rows)
        fill &= ~(share > max_entry_rounds)      # NaN (no sampled rows): kept
    return np.ascontiguousarray(fill, np.uint8)


def fill_modes(cm: CompressedMatrix, fill: np.ndarray, *, zero_fill: bool) -> np.ndarray:
    """The decode kernel's per-group table (uint8 ``[G]``) from :func:`fill_groups`' ``fill``:
    0 decode round by round, 1 fill with the base bit values, 2 (only with ``zero_fill``) the
    bit values are all zero, so the row is cleared instead (or found clear: see
    ``CLEAR_ROWS``)."""
    fill = np.asarray(fill, np.uint8)
    if not zero_fill or cm.num_chunks == 0:
        return np.ascontiguousarray(fill)
    zero = (np.asarray(cm.bitval).reshape(int(cm.num_groups), -1) == 0).all(axis=1)
    return np.ascontiguousarray(np.where((fill == 1) & zero, 2, fill), np.uint8)


#: ``DeviceCompressedMatrix(clear_rows=...)`` -> the decode kernel's ``clear_rows`` argument
#: (``IBP_CLEAR_BY_*`` in ibp_decode.cu): who clears the rows of groups whose bit values are
#: all zero. Each row's warp; the gather, the whole output in one pass before the launch; or
#: each block, its warps' rows of a round together.
CLEAR_ROWS = {"warp": 0, "output": 1, "block": 2}


class DeviceCompressedMatrix:
    """A :class:`CompressedMatrix` served to one GPU: ``gather(index)`` returns decoded rows.

    ``location="pinned"``: the payload stays in pinned host memory and each gather reads only
    the requested rows' compressed words over the bus. When ``cm.payload`` is not pinned yet it
    is copied once into pinned memory; ``compress(x, allocator=gpu.pinned_allocator)`` avoids
    that copy. ``location="device"``: the payload is copied to device memory once.
    Offsets, mask and bitval always live in device memory.

    ``fixed_rounds`` (default True): rounds of 32 chunks that all match their base patterns
    are decoded from precomputed bit offsets, without warp scans; False decodes every round
    the general way (same output). ``stretch`` (default True, with ``fixed_rounds``): such
    rounds that follow each other are decoded together, the loads of several rounds issued
    before their stores; False decodes them one round at a time (same output). ``fill_base``
    (default True): rows of a group whose base patterns have no free bits (see
    :func:`fill_groups`) are written with the base bit values and only their other chunks are
    decoded; False decodes them round by round like the others (same output). ``zero_fill``
    (default True; 0.92x-1.28x the speed of False on an H200, see the README): such groups
    whose bit values are all zero are cleared with 16-byte stores and no loads instead of
    copying their bit values (same output). ``clear_rows`` (with ``zero_fill``; neither
    alternative to the default is timed on a GPU yet, see the README): who clears those rows.
    ``"warp"`` (the default): each row's warp before decoding it, some 4,000 warps at once
    each in a row of its own, with which the decoder delivers 51%-77% of the device's write
    rate on the five sparsest sets (three runs on an H200 and an H100). ``"output"``: each
    gather clears its whole output in one contiguous pass (``Tensor.zero_``, the device's full
    write rate) before the decode kernel, which then writes only the chunks of those rows that
    miss their base patterns; at the cost of an extra launch, a second write of every other
    row, and those chunks' writes landing in memory no longer cached. ``"block"``: each block
    of the decode kernel clears its warps' rows together, one contiguous stretch of the output
    (requests in the caller's order; a sorted gather's rows lie apart and their warps clear
    them), then each warp writes its row's other chunks while the stretch is likely cached;
    at the cost of a barrier per round of the block's requests, where its warps wait for the
    slowest; one more compile, like ``blocks_per_sm``. Same output either way.
    ``blocks_per_sm`` (default None: 64 registers a thread at most, so 1,024 threads fit an
    SM; 5 ran at 0.73x-1.11x the default's speed on an H200): the decode kernel is compiled
    so that this many blocks of ``threads`` fit on an SM at once, the compiler capping its
    registers per thread to fit (spilling if it must): more warps in flight to hide the
    latency of the payload's reads. Each value is one more compile of the decode kernels
    (kept in CuPy's on-disk cache; see :func:`load_kernels`).
    ``scan_shortcuts`` (default True; 1.02x-1.16x the speed of False on the binary
    bag-of-words sets amazon_computers and amazon_photo in three runs on an H200 and an
    H100, 0.73x-1.36x over all sets, see the README): where the selector widths or free-bit
    counts that a round's chunks place in the stream are all equal (or all zero, as in binary
    features), the round places them with a ballot and a popcount instead of a warp scan, and
    a round without free bits reads none; False scans every round in full (same output; one
    more compile, like ``blocks_per_sm``).
    """

    def __init__(self, cm: CompressedMatrix, device=None, location: str = "pinned", *,
                 sort_indices: bool = False, max_pinned_bytes: Optional[int] = None,
                 threads: int = DECODE_THREADS, warp_buffer_bytes: int = WARP_BUFFER_BYTES,
                 mask_smem_limit: int = MASK_SMEM_LIMIT, fixed_rounds: bool = True,
                 stretch: bool = True, fill_base: bool = True, zero_fill: bool = True,
                 clear_rows: str = "warp", blocks_per_sm: Optional[int] = None,
                 scan_shortcuts: bool = True):
        if location not in ("pinned", "device"):
            raise ValueError(f"location must be 'pinned' or 'device', got {location!r}")
        if clear_rows not in CLEAR_ROWS:
            raise ValueError(f"clear_rows must be one of {', '.join(map(repr, CLEAR_ROWS))}, "
                             f"got {clear_rows!r}")
        if clear_rows != "warp" and not (fill_base and zero_fill):
            raise ValueError(f"clear_rows={clear_rows!r} needs fill_base and zero_fill: it "
                             f"moves the clearing of the rows that zero_fill clears")
        if threads % 32 or not 32 <= threads <= 512:
            raise ValueError("threads must be a multiple of 32 in [32, 512]")
        self.cm = cm
        self.device = _resolve_device(device)
        if blocks_per_sm is not None:
            most = _device_props(self.device)["threads_per_sm"] // threads
            if (isinstance(blocks_per_sm, bool) or not isinstance(blocks_per_sm, (int, np.integer))
                    or not 1 <= blocks_per_sm <= most):
                raise ValueError(f"blocks_per_sm must be None or an int in [1, {most}] (blocks "
                                 f"of {threads} threads an SM holds), got {blocks_per_sm!r}")
            blocks_per_sm = int(blocks_per_sm)
        self.blocks_per_sm = blocks_per_sm
        self.scan_shortcuts = bool(scan_shortcuts)
        self.location = location
        self.sort_indices = sort_indices
        self.threads = threads
        self.num_rows = cm.num_rows
        self.row_shape = cm.row_shape
        self.row_bytes = cm.row_bytes
        self.dtype = cm.torch_dtype
        self.chunk_bits = cm.chunk_bits
        self.num_chunks = cm.num_chunks
        ws = cm.chunk_bits // 8
        self._word_bytes = ws

        payload = np.asarray(cm.payload)
        if location == "pinned":
            self._payload_host, self._payload_ptr = _as_pinned(payload, max_pinned_bytes)
            self._payload_dev = None
        else:
            self._payload_host = None
            self._payload_dev = _to_device_bytes(payload, self.device)
            self._payload_ptr = self._payload_dev.data_ptr()
        # a raw layout keeps no offset tables on the host; the kernel reads them from the device
        lo, block_base, self._offset_shift = device_offset_tables(cm)
        self._offset_bits = lo.dtype.itemsize * 8
        self._offset_lo = _small_to_device(lo, self.device)
        self._block_base = _small_to_device(block_base.astype(np.uint64, copy=False), self.device)
        wd = WORD_DTYPES[cm.chunk_bits]
        self._mask = _small_to_device(np.asarray(cm.mask).astype(wd, copy=False), self.device)
        self._bitval = _small_to_device(np.asarray(cm.bitval).astype(wd, copy=False), self.device)
        self._sel, self._alt_base, self._alt_mask, self._alt_bitval = (
            _small_to_device(a, self.device) for a in column_alternatives(cm))
        self._list_header = int(cm.list_header)
        self._num_groups = int(cm.num_groups)
        self.fixed_rounds = bool(fixed_rounds)
        self.stretch = bool(stretch)
        self._base_prefix, self._round_bits = (
            _small_to_device(a, self.device) for a in base_round_tables(cm))
        self.fill_base = bool(fill_base)
        self.zero_fill = bool(zero_fill)
        self.clear_rows = clear_rows
        fill = fill_groups(cm)
        self._fill_groups = _small_to_device(fill, self.device)
        cleared = fill_modes(cm, fill, zero_fill=True)
        self._fill_groups_zero = _small_to_device(cleared, self.device)
        # without such groups there is nothing to clear elsewhere
        self._has_cleared_rows = bool((cleared == 2).any())

        c = self.num_chunks
        self._unit = _unit(self.row_bytes, ws)
        self._cap_words = max(32, warp_buffer_bytes // ws)
        warps = threads // 32
        mask_bytes = 2 * cm.num_groups * c * ws
        optin = _device_props(self.device)["smem_optin"] if c else 48 << 10
        self._stage = mask_bytes <= mask_smem_limit and (
            mask_bytes + warps * self._cap_words * ws <= optin)
        while not self._stage and warps * self._cap_words * ws > optin and self._cap_words > 32:
            self._cap_words //= 2
        self._smem = (mask_bytes if self._stage else 0) + warps * self._cap_words * ws
        self._launch_plans: dict = {}

    @property
    def payload_bytes(self) -> int:
        return self.cm.payload_bytes

    def row_words(self, index) -> int:
        """Stored words of the requested rows (host side; for statistics)."""
        idx = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, np.int64)
        s, e = self.cm.row_offsets(idx)
        return int((e - s).sum())

    def gather(self, index, *, sort: Optional[bool] = None, check: bool = True) -> torch.Tensor:
        """Decoded rows ``index`` (int32/int64, CPU or CUDA, any order, duplicates allowed) as a
        CUDA tensor ``[B, *row_shape]`` of the original dtype, bit-exact, in the caller's order.
        ``sort`` (default: the constructor's ``sort_indices``) reads the rows in ascending
        order for locality and scatters them back."""
        idx, pos, out = _start_gather(self, index, self.sort_indices if sort is None else sort,
                                      check)
        if idx is None:
            return out
        b = idx.numel()
        kernel, head, tail, clear_rows = self._launch_plan(idx.dtype)
        if clear_rows == CLEAR_ROWS["output"]:
            out.zero_()   # on the current stream, like the kernel
        grid = _grid(self.device, b, self.threads // 32, self.threads, self._smem, kernel)
        args = head + (_ptr(idx), _ptr(pos), _i64(b), _ptr(out)) + tail
        _launch(kernel, self.device, grid, self.threads, args, self._smem)
        return out.view(self.dtype).view((b,) + self.row_shape)

    __call__ = gather

    def _launch_plan(self, index_dtype: torch.dtype) -> tuple:
        """``(kernel, head, tail, clear_rows)`` for a gather with indices of ``index_dtype``:
        the decode kernel, its arguments before and after the per-call ones (index, positions,
        row count, output), and the last of them (``clear_rows``, a value of ``CLEAR_ROWS``),
        built once per setting of the public decode switches. A gather of a few thousand short rows
        takes tens of microseconds on the device, so converting two dozen constant arguments
        on every call would be a visible share of it."""
        settings = (index_dtype, self.blocks_per_sm, self.scan_shortcuts, self.fill_base,
                    self.zero_fill, self.clear_rows, self.fixed_rounds, self.stretch)
        plan = self._launch_plans.get(settings)
        if plan is None:
            name = (f"ibp_decode_w{self.chunk_bits}_i{32 if index_dtype == torch.int32 else 64}"
                    f"_o{self._offset_bits}")
            moved = self.fill_base and self.zero_fill and self._has_cleared_rows
            clear_by = self.clear_rows if moved else "warp"
            kernel = _kernel("ibp_decode.cu", name, self.device.index,
                             decode_defines(self.threads, self.blocks_per_sm,
                                            self.scan_shortcuts, clear_by))
            clear_rows = CLEAR_ROWS[clear_by]
            fill = (None if not self.fill_base else
                    self._fill_groups_zero if self.zero_fill else self._fill_groups)
            head = (_u64(self._payload_ptr), _ptr(self._offset_lo), _ptr(self._block_base),
                    _i32(self._offset_shift), _ptr(self._mask), _ptr(self._bitval),
                    _ptr(self._sel), _ptr(self._alt_base), _ptr(self._alt_mask),
                    _ptr(self._alt_bitval), _ptr(fill),
                    _ptr(self._base_prefix if self.fixed_rounds else None),
                    _ptr(self._round_bits if self.fixed_rounds else None),
                    _i64(MAX_STRETCH_ROUNDS if self.stretch else 1),
                    _i32(self._list_header), _i32(self._num_groups),
                    _i64(self.num_rows), _i64(self.num_chunks))
            tail = (_i64(self.row_bytes), _i32(self._unit), _i32(int(self._stage)),
                    _i64(self._cap_words), _i32(clear_rows))
            plan = self._launch_plans[settings] = (kernel, head, tail, clear_rows)
        return plan


# -- uncompressed rows -----------------------------------------------------------------------

_VEC_WIDTHS = (16, 8, 4, 2, 1)


class PinnedRawMatrix:
    """Uncompressed rows in pinned host memory, gathered zero-copy by a GPU kernel (warp-group
    per row, 16-byte loads when rows allow): the uncompressed baseline. A row gets the fewest
    lanes (a power of two) that cover it in one load each, ``lanes_per_row`` to choose.

    A CPU tensor that is already pinned is used in place; otherwise it is copied once into
    pinned memory. ``location="device"`` keeps a device copy instead (all features resident
    on the GPU)."""

    def __init__(self, x: torch.Tensor, device=None, location: str = "pinned", *,
                 max_pinned_bytes: Optional[int] = None, threads: int = GATHER_THREADS,
                 lanes_per_row: Optional[int] = None):
        if location not in ("pinned", "device"):
            raise ValueError(f"location must be 'pinned' or 'device', got {location!r}")
        if lanes_per_row is not None and lanes_per_row not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"lanes_per_row must be a power of two in [1, 32], "
                             f"got {lanes_per_row}")
        self.lanes_per_row = lanes_per_row
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.dim() < 1:
            raise ValueError("expected a tensor of shape [N, ...]")
        _dtypes.dtype_name(x.dtype)
        self.device = _resolve_device(device)
        self.location = location
        self.threads = threads
        self.dtype = x.dtype
        self.num_rows = int(x.shape[0])
        self.row_shape = tuple(x.shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * x.element_size()
        t = x.detach()
        if location == "device":
            self._dev = t.to(self.device).contiguous()
            self._host = None
            self._ptr = self._dev.data_ptr()
        else:
            t = t.cpu().contiguous()
            self._dev = None
            dp = mapped_pointer(t.data_ptr()) if t.numel() else None
            if dp is not None:
                self._host, self._ptr = t, dp
            else:
                arr = t.view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)
                self._host, self._ptr = _as_pinned(arr, max_pinned_bytes)
        self._vec = next(v for v in _VEC_WIDTHS if self.row_bytes % v == 0 and self._ptr % v == 0)

    def gather(self, index, *, sort: bool = False, check: bool = True) -> torch.Tensor:
        idx, pos, out = _start_gather(self, index, sort, check)
        if idx is None:
            return out
        b = idx.numel()
        row_vecs = self.row_bytes // self._vec
        group = self.lanes_per_row or min(32, 1 << max(0, math.ceil(math.log2(row_vecs))))
        shift = group.bit_length() - 1
        name = f"gather_raw_v{self._vec}_i{32 if idx.dtype == torch.int32 else 64}"
        kernel = _kernel("gather_raw.cu", name, self.device.index)
        grid = _grid(self.device, b, self.threads // group, self.threads, kernel=kernel)
        args = (_u64(self._ptr), _i64(self.num_rows), _i64(row_vecs), _ptr(idx), _ptr(pos),
                _i64(b), _ptr(out), _i32(shift))
        _launch(kernel, self.device, grid, self.threads, args)
        return out.view(self.dtype).view((b,) + self.row_shape)

    __call__ = gather


# -- GPU encoder -----------------------------------------------------------------------------

def _byte_rows_any(x):
    """``x`` as ``[N, row_bytes]`` uint8: a CUDA tensor stays on its device (no host copy)."""
    if isinstance(x, torch.Tensor) and x.is_cuda:
        name = _dtypes.dtype_name(x.dtype)
        t = x.detach().contiguous()
        n = int(t.shape[0]) if t.dim() else 0
        if t.dim() < 1:
            raise ValueError("expected a tensor of shape [N, ...]")
        rows = t.view(torch.uint8).reshape(n, -1) if t.numel() else torch.zeros(
            (n, 0), dtype=torch.uint8, device=t.device)
        return rows, name, tuple(int(s) for s in t.shape[1:])
    byte_rows, name, row_shape = _dtypes.as_byte_rows(x)
    return byte_rows, name, row_shape


def compress_on_gpu(x, *, chunk_bits="auto", plan=None, device=None, allocator=None,
                    block_bytes: int = 256 << 20, **plan_kwargs) -> CompressedMatrix:
    """Compress ``x`` on the GPU; the result is identical (payload, offsets, patterns) to
    ``ibp_gnn.compress(x, plan=plan)``.

    The plan (chunk width, patterns, header kind; basic or extended format) comes from ``plan``
    or from the CPU planner (``choose_plan``, which samples rows); only the encoding runs on
    the GPU. ``x`` may be a CPU array/tensor (copied to the device in blocks of about
    ``block_bytes``, twice: once for the row lengths, once to encode) or a CUDA tensor (used
    in place). ``allocator`` as in ``compress``: the payload is written straight into the
    buffer it returns.
    """
    import time

    from .codec.container import _default_allocator
    from .codec.dtypes import itemsize
    from .codec.encode import compress as cpu_compress
    from .codec.plan import DEFAULT_SAMPLE_ROWS, choose_plan

    t0 = time.perf_counter()
    device = _resolve_device(device if device is not None else (
        x.device if isinstance(x, torch.Tensor) and x.is_cuda else None))
    rows, name, row_shape = _byte_rows_any(x)
    n, rb = int(rows.shape[0]), int(rows.shape[1])
    plan_kwargs.setdefault("element_bytes", itemsize(name))
    if plan is None:
        sample_rows = plan_kwargs.pop("sample_rows", DEFAULT_SAMPLE_ROWS)
        seed = plan_kwargs.get("seed", 0)
        if isinstance(rows, torch.Tensor):
            # Draw the planner's sample on the device so only the sample crosses the bus; the
            # same rows as choose_plan would draw itself, hence the same plan as compress().
            if sample_rows is not None and n > sample_rows:
                pick = np.sort(np.random.default_rng(seed).choice(n, size=sample_rows,
                                                                  replace=False))
                sample = rows[torch.from_numpy(pick).to(rows.device)].cpu().numpy()
            else:
                sample = rows.cpu().numpy()
            plan = choose_plan(sample, chunk_bits=chunk_bits, sample_rows=None, num_rows=n,
                               **plan_kwargs)
        else:
            plan = choose_plan(rows, chunk_bits=chunk_bits, sample_rows=sample_rows,
                               **plan_kwargs)
    if n == 0 or rb == 0:
        # Nothing to encode (no payload words): the CPU encoder gives the identical result.
        xc = x.detach().cpu() if isinstance(x, torch.Tensor) else x
        return cpu_compress(xc, plan=plan, allocator=allocator)

    w = plan.chunk_bits
    ws = w // 8
    wd = WORD_DTYPES[w]
    c = -(-rb // ws)
    if plan.num_chunks != c:
        raise ValueError(f"plan has {plan.num_chunks} chunks per row, the rows need {c}")
    proto = pattern_tables(plan, (n,) + row_shape, name)
    patterns = [_small_to_device(np.asarray(a).astype(wd), device)
                for a in (plan.mask, plan.bitval)]
    patterns += [_small_to_device(a, device) for a in column_alternatives(proto)]
    list_header, num_groups = _i32(int(plan.list_header)), _i32(plan.num_groups)
    unit = _unit(rb, ws)
    step = max(1, block_bytes // rb)
    warps = ENCODE_THREADS // 32
    k_len = _kernel("ibp_encode.cu", f"ibp_row_words_w{w}", device.index)
    k_enc = _kernel("ibp_encode.cu", f"ibp_encode_rows_w{w}", device.index)

    def blocks():
        for lo in range(0, n, step):
            blk = rows[lo:lo + step]
            if isinstance(blk, np.ndarray):
                with warnings.catch_warnings():   # read-only input: torch only reads it
                    warnings.simplefilter("ignore", UserWarning)
                    blk = torch.from_numpy(np.ascontiguousarray(blk))
            blk = blk.to(device, non_blocking=False).contiguous()
            if blk.data_ptr() % ws:
                blk = blk.clone()
            yield lo, blk

    lengths = torch.empty(n, dtype=torch.int64, device=device)
    row_group = torch.empty(n, dtype=torch.int32, device=device)
    for lo, blk in blocks():
        m = int(blk.shape[0])
        grid = _grid(device, m, warps, ENCODE_THREADS)
        _launch(k_len, device, grid, ENCODE_THREADS,
                (_ptr(blk), _i64(m), _i64(rb), _i32(unit), *map(_ptr, patterns), list_header,
                 num_groups, _i64(c), _u64(lengths.data_ptr() + 8 * lo),
                 _u64(row_group.data_ptr() + 4 * lo)))
    if n and int(lengths.min()) < 0:
        bad = int(torch.argmax((lengths < 0).to(torch.int8)))
        raise ValueError(f"row {bad} has a chunk that none of the plan's patterns matches "
                         f"(a plan needs an empty-mask alternative for every column)")
    offsets_dev = torch.zeros(n + 1, dtype=torch.int64, device=device)
    torch.cumsum(lengths, 0, out=offsets_dev[1:])
    offsets = offsets_dev.cpu().numpy()
    total = int(offsets[-1])
    if raw_layout_pays(offsets, c, ws):
        # the rows are kept raw without offsets: a copy, which the CPU encoder makes as well
        xc = x.detach().cpu() if isinstance(x, torch.Tensor) else x
        return cpu_compress(xc, plan=plan, allocator=allocator)

    buf = (allocator or _default_allocator)(total * ws)
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.nbytes < total * ws:
        raise ValueError(f"allocator must return a writable uint8 array of at least "
                         f"{total * ws} bytes")
    payload = buf[:total * ws].view(wd)
    signed = {2: torch.int16, 4: torch.int32, 8: torch.int64}[ws]
    host_words = torch.from_numpy(payload.view(f"i{ws}"))
    for lo, blk in blocks():
        m = int(blk.shape[0])
        o0, o1 = int(offsets[lo]), int(offsets[lo + m])
        rel = (offsets_dev[lo:lo + m + 1] - o0).contiguous()
        # 16-bit words are written through 32-bit atomics: keep the buffer an even length
        words = torch.zeros(o1 - o0 + (o1 - o0) % 2, dtype=signed, device=device)
        grid = _grid(device, m, warps, ENCODE_THREADS)
        _launch(k_enc, device, grid, ENCODE_THREADS,
                (_ptr(blk), _i64(m), _i64(rb), _i32(unit), *map(_ptr, patterns), list_header,
                 num_groups, _i64(c), _u64(row_group.data_ptr() + 4 * lo), _ptr(rel),
                 _ptr(words)))
        host_words[o0:o1].copy_(words[:o1 - o0])
    torch.cuda.current_stream(device).synchronize()
    return build_matrix(plan, (n,) + row_shape, name, payload, offsets,
                        time.perf_counter() - t0)
