"""The ``ibp-gnn`` command line: inspect, compress, verify, bench, kernels."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from .codec import CompressedMatrix, compress
from .codec.dtypes import tensor_bytes
from .codec.io import StoreFileError
from .codec.plan import entropy_bound_bytes
from .matrix_io import read_compressed_or_matrix, read_matrix


def _chunk_bits(value: str):
    if value == "auto":
        return value
    if value not in ("16", "32", "64"):
        raise argparse.ArgumentTypeError("chunk width must be auto, 16, 32 or 64")
    return int(value)


def _compress_timed(x, chunk_bits, extended=True) -> tuple[CompressedMatrix, float]:
    """Compress ``x``; first compress a few of its rows so that the one-time cost of a new
    process (loading the compiled kernels, starting threads) is reported on its own as
    ``startup_seconds`` rather than inside ``compress_seconds``."""
    t0 = time.perf_counter()
    compress(x[:64], chunk_bits=chunk_bits, extended=extended)
    startup = time.perf_counter() - t0
    return compress(x, chunk_bits=chunk_bits, extended=extended), startup


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def cmd_inspect(args) -> int:
    obj = read_compressed_or_matrix(args.path, args.key)
    if isinstance(obj, CompressedMatrix):
        cm, startup = obj, 0.0
    else:
        cm, startup = _compress_timed(obj, args.chunk_bits, not args.basic)
    bound = entropy_bound_bytes(obj)
    report = {"path": str(args.path), **cm.summary(), "startup_seconds": startup,
              "entropy_bound_bytes": bound,
              "host_over_entropy_bound": cm.host_bytes / bound if bound else None}
    if args.json:
        print(json.dumps(report))
    else:
        width = max(len(k) for k in report)
        for k, v in report.items():
            if isinstance(v, float):
                v = f"{v:.4f}"
            print(f"{k:{width}s}  {v}")
    return 0


def cmd_compress(args) -> int:
    x = read_matrix(args.input, args.key)
    cm, _ = _compress_timed(x, args.chunk_bits, not args.basic)
    cm.save(args.output)
    print(f"{args.input} -> {args.output}: {cm.raw_bytes} raw bytes, {cm.host_bytes} "
          f"compressed (ratio {cm.ratio:.2f}, {cm.chunk_bits}-bit chunks, "
          f"{cm.num_groups} row group{'s' if cm.num_groups > 1 else ''}, "
          f"{cm.compress_seconds:.2f} s)")
    return 0


def _row_batches(num_rows: int, row_bytes: int, budget: int = 64 << 20):
    step = max(1, budget // max(row_bytes, 1))
    for lo in range(0, num_rows, step):
        yield lo, min(num_rows, lo + step)


def cmd_verify(args) -> int:
    t0 = time.perf_counter()
    try:
        cm = CompressedMatrix.load(args.store)
    except StoreFileError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    ref = None
    if args.against:
        ref = read_matrix(args.against, args.key)
        ref = torch.from_numpy(np.ascontiguousarray(ref))
        if tuple(ref.shape) != tuple(cm.shape) or ref.dtype != cm.torch_dtype:
            print(f"FAIL: store holds {tuple(cm.shape)} {cm.dtype}, {args.against} holds "
                  f"{tuple(ref.shape)} {str(ref.dtype).replace('torch.', '')}",
                  file=sys.stderr)
            return 1
    mismatched = 0
    for lo, hi in _row_batches(cm.num_rows, cm.row_bytes):
        rows = cm.decode(slice(lo, hi))
        if ref is not None:
            got = tensor_bytes(rows).numpy().reshape(hi - lo, -1)
            want = tensor_bytes(ref[lo:hi]).numpy().reshape(hi - lo, -1)
            mismatched += int((got != want).any(axis=1).sum())
    if mismatched:
        print(f"FAIL: {mismatched} of {cm.num_rows} rows differ", file=sys.stderr)
        return 1
    what = f"identical to {args.against}" if ref is not None else "decoded"
    print(f"OK: {cm.num_rows} rows {what} ({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_bench(args) -> int:
    if args.what == "codec":
        from .bench import bench_codec, format_table
        rows = [bench_codec(p, key=args.key, repeats=args.repeats, extended=not args.basic)
                for p in args.paths]
        print(json.dumps(rows, indent=1) if args.json else format_table(rows))
        return 0
    from .pyg.bench import bench_loader, format_bench
    results = [bench_loader(p, stores=args.stores.split(","), device=args.device,
                            epochs=args.repeats, num_workers=args.num_workers)
               for p in args.paths]
    print(json.dumps(results, indent=1) if args.json
          else "\n\n".join(format_bench(r) for r in results))
    return 0


def cmd_kernels(args) -> int:
    from . import gpu
    results = gpu.compile_check(archs=tuple(args.arch), variants=args.variants)
    failed = 0
    for source, arch, ok, message in results:
        print(f"{'ok  ' if ok else 'FAIL'} {source} {arch}" + ("" if ok else f"\n{message}"))
        failed += not ok
    if not results:
        print("no kernels found", file=sys.stderr)
        return 1
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibp-gnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="compress a matrix (or read a store) and report sizes")
    p.add_argument("path", help=".npz (array x unless --key), .npy, or a saved store")
    p.add_argument("--key", help="array name inside an .npz")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--chunk-bits", type=_chunk_bits, default="auto")
    p.add_argument("--basic", action="store_true",
                   help="basic format only (no alternative patterns, bitmap headers)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("compress", help="compress a matrix into a store file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--key")
    p.add_argument("--chunk-bits", type=_chunk_bits, default="auto")
    p.add_argument("--basic", action="store_true",
                   help="basic format only (no alternative patterns, bitmap headers)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("verify", help="check a store file; exit 0 only if every row decodes "
                                      "(and equals --against bit for bit)")
    p.add_argument("store")
    p.add_argument("--against", help=".npz or .npy holding the original matrix")
    p.add_argument("--key")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("bench", help="benchmarks: codec (compress, CPU decode-gather) or loader")
    p.add_argument("what", choices=("codec", "loader"))
    p.add_argument("paths", nargs="+", help="matrices (.npz, .npy) or datasets")
    p.add_argument("--key")
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeats", type=_positive, default=5,
                   help="timed repeats (codec) or timed epochs (loader); medians are reported")
    p.add_argument("--stores", default="cpu,ibp", help="loader: comma-separated stores")
    p.add_argument("--device", default="cpu", help="loader: where batches are delivered")
    p.add_argument("--num-workers", type=int, default=0, help="loader: sampling workers")
    p.add_argument("--basic", action="store_true", help="codec: the basic format")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("kernels", help="CUDA kernels: --check compiles each with NVRTC")
    p.add_argument("--check", action="store_true", required=True)
    p.add_argument("--arch", action="append", default=None,
                   help="target architecture, repeatable (default: sm_80 and sm_90)")
    p.add_argument("--variants", action="store_true",
                   help="also the decode kernels as each non-default setting compiles them "
                        "(scan_shortcuts=False, clear_rows='block', blocks_per_sm)")
    p.set_defaults(func=cmd_kernels)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "arch", "absent") is None:
        args.arch = ["sm_80", "sm_90"]
    try:
        return args.func(args)
    except (OSError, KeyError, ValueError, TypeError, StoreFileError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ibp-gnn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
