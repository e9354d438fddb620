"""Every CUDA kernel source compiles with NVRTC for the supported architectures. Needs no GPU;
skipped when NVRTC cannot be loaded."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibp_gnn import gpu
from ibp_gnn.bench_gpu import COMPILED_DECODE_VARIANTS

try:
    from cupy_backends.cuda.libs import nvrtc
    nvrtc.getVersion()
except Exception as e:  # cupy missing, or the NVRTC library not found
    pytest.skip(f"NVRTC not available: {e}", allow_module_level=True)

ARCHS = ("sm_80", "sm_90")
EXPECTED_KERNELS = {
    "ibp_decode.cu": [f"ibp_decode_w{w}_i{i}_o{o}" for w in (16, 32, 64) for i in (32, 64)
                      for o in (16, 32)],
    "gather_raw.cu": [f"gather_raw_v{v}_i{i}" for v in (16, 8, 4, 2, 1) for i in (32, 64)],
    "ibp_encode.cu": [f"ibp_{k}_w{w}" for k in ("row_words", "encode_rows") for w in (16, 32, 64)],
}


def test_sources_found():
    names = {p.name for p in gpu.kernel_sources()}
    assert set(EXPECTED_KERNELS) <= names


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles(arch):
    results = gpu.compile_check(archs=(arch,))
    assert results
    failed = [(f, m) for f, a, ok, m in results if not ok]
    assert not failed, failed


@pytest.mark.slow
def test_compile_check_of_decode_variants():
    # what ibp-gnn kernels --check --variants reports (a minute or so on 2 cores)
    results = gpu.compile_check(archs=("sm_90",), variants=True)
    variants = [r for r in results if r[0].startswith("ibp_decode.cu [")]
    assert len(variants) == len(gpu.DECODE_VARIANT_SETTINGS)
    assert "ibp_decode.cu [IBP_DECODE_CLEAR_BY_BLOCK=1]" in [r[0] for r in variants]
    failed = [(f, m) for f, a, ok, m in results if not ok]
    assert not failed, failed


@pytest.mark.parametrize("source", sorted(EXPECTED_KERNELS))
def test_entry_points_exported(source):
    # extern "C" kernels keep their names in the PTX, which is what RawModule looks up
    src = gpu.load_source(gpu.cuda_dir() / source)
    prog = nvrtc.createProgram(src, source, [], [])
    nvrtc.compileProgram(prog, ["--gpu-architecture=compute_80", *gpu.NVRTC_OPTIONS])
    ptx = nvrtc.getPTX(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for k in EXPECTED_KERNELS[source]:
        assert f".entry {k}(" in ptx, k


@pytest.mark.parametrize("settings,count", [({"blocks_per_sm": 5}, 2),
                                            ({"scan_shortcuts": False}, 1),
                                            ({"clear_rows": "block"}, 1),
                                            ({"scan_shortcuts": False, "blocks_per_sm": 5}, 3)])
def test_decode_variants_compile(settings, count):
    # DeviceCompressedMatrix(**settings) compiles the decode kernels with these macros
    src = gpu.load_source(gpu.cuda_dir() / "ibp_decode.cu")
    prog = nvrtc.createProgram(src, "ibp_decode.cu", [], [])
    defines = [f"-D{k}={v}" for k, v in gpu.decode_defines(**settings)]
    assert len(defines) == count
    nvrtc.compileProgram(prog, ["--gpu-architecture=sm_90", *gpu.NVRTC_OPTIONS, *defines])
    assert nvrtc.getCUBIN(prog)


def test_load_kernels_compiles_each_variant_once(monkeypatch):
    compiled = []

    class FakeModule:
        def __init__(self, code, options):
            self.options = options

        def compile(self):
            compiled.append(self.options)

    class FakeCupy:
        RawModule = FakeModule

    monkeypatch.setattr(gpu, "_cupy", lambda: FakeCupy)
    monkeypatch.setattr(gpu, "_modules", {})
    gpu.load_kernels(COMPILED_DECODE_VARIANTS.values())
    gpu.load_kernels([{"blocks_per_sm": 5}])      # held already: not compiled again
    base = tuple(gpu.NVRTC_OPTIONS)
    assert compiled.count(base) == len(gpu.kernel_sources())
    capped = base + (f"-DIBP_DECODE_THREADS={gpu.DECODE_THREADS}", "-DIBP_DECODE_MIN_BLOCKS=5")
    full = base + ("-DIBP_DECODE_SCAN_SHORTCUTS=0",)
    by_block = base + ("-DIBP_DECODE_CLEAR_BY_BLOCK=1",)
    assert compiled.count(capped) == compiled.count(full) == compiled.count(by_block) == 1
    assert len(compiled) == len(gpu.kernel_sources()) + len(COMPILED_DECODE_VARIANTS) == 6
    # a variant alone, as scripts/warm_kernels.py compiles it in a process of its own
    compiled.clear()
    monkeypatch.setattr(gpu, "_modules", {})
    gpu.load_kernels([{"scan_shortcuts": False}], every_source=False)
    assert compiled == [full]
    assert gpu._module("ibp_decode.cu", gpu.decode_defines(gpu.DECODE_THREADS, 5)).options == capped
    assert gpu.decode_defines(gpu.DECODE_THREADS, None) == gpu.decode_defines() == ()


def test_cuda_dir_override(tmp_path, monkeypatch):
    (tmp_path / "bad.cu").write_text('extern "C" __global__ void k() { this is not C++; }')
    monkeypatch.setenv(gpu.ENV_CUDA_DIR, str(tmp_path))
    results = gpu.compile_check(archs=("sm_80",))
    assert [(f, ok) for f, _, ok, _ in results] == [("bad.cu", False)]
    assert "error" in results[0][3].lower()


def test_includes_inlined():
    src = gpu.load_source(gpu.cuda_dir() / "ibp_decode.cu")
    assert '#include "' not in src and "deposit_bits" in src


def test_warm_kernels_jobs():
    # the device check starts one process per job: every source, then each benchmark variant
    script = Path(__file__).parents[1] / "scripts" / "warm_kernels.py"
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    out = subprocess.run([sys.executable, str(script), "--jobs"], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    assert out == ["sources", *COMPILED_DECODE_VARIANTS]
    bad = subprocess.run([sys.executable, str(script), "nope"], capture_output=True, text=True,
                         env=env)
    assert bad.returncode != 0 and "unknown job 'nope'" in bad.stderr
