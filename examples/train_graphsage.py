"""GraphSAGE node classification fed by ibp_gnn's NeighborLoader, one run per feature store.

Every store trains the same model from the same initial weights on the same mini-batches
(same seed), so their epoch times compare the feature path alone, and the features of every
batch are checked to be bit-identical across stores (IBP is lossless).

Stores: ``ibp`` (compressed in host memory, decoded on the GPU or CPU), ``uva`` (raw, pinned host
memory read by the GPU), ``cpu`` (raw host memory, CPU gather then copy), ``gpu`` (raw, resident in
GPU memory). ``uva`` and ``gpu`` need CUDA and are skipped on a CPU-only machine.

Examples:
    python examples/train_graphsage.py --config configs/default.yaml --out results.json
    python examples/train_graphsage.py --dataset cora --epochs 5 --stores ibp,cpu
    python examples/train_graphsage.py --dataset coauthor_cs --scale-nodes 200000 --epochs 3
"""
from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch_geometric.data import Data
from torch_geometric.nn import GraphSAGE
from tqdm import tqdm

import ibp_gnn
from ibp_gnn.datasets import load_dataset

ALL_STORES = ("ibp", "uva", "cpu", "gpu")
GPU_ONLY_STORES = ("uva", "gpu")

# Defaults follow the IBP paper's GraphSAGE setting.
DEFAULTS = {
    "dataset": "synthetic",
    "epochs": 5,
    "batch_size": 1024,
    "fanout": [25, 10],
    "hidden_channels": 256,
    "lr": 0.003,
    "stores": list(ALL_STORES),
    "seed": 0,
    "num_workers": 0,
    "scale_nodes": None,
    "eval_batch_size": 4096,
    "max_materialize_gb": 16.0,
    "interleave": False,
    "min_ratio": None,
    "device": "auto",
    "out": None,
    "plot": None,
    "synthetic": {},
    "split": {},
    "scale": {},
}


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
def parse_fanout(value) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        fanout = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"bad fanout {value!r}: expected comma-separated integers like 25,10")
    if not fanout or any(f == 0 or f < -1 for f in fanout):
        raise ValueError(f"bad fanout {value!r}: each hop needs a positive count (or -1 for all "
                         f"neighbours), one entry per layer")
    return fanout


def parse_stores(value) -> list[str]:
    stores = value.split(",") if isinstance(value, str) else list(value)
    stores = [s.strip().lower() for s in stores if s.strip()]
    unknown = [s for s in stores if s not in ALL_STORES]
    if unknown or not stores:
        raise ValueError(f"bad stores {value!r}: choose from {','.join(ALL_STORES)}")
    return list(dict.fromkeys(stores))


def build_config(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML file; flags given here override it")
    parser.add_argument("--dataset", help="synthetic, a short name (cora, coauthor_cs, ...), a "
                        "path to an .npz, or pyg:Class/Name")
    parser.add_argument("--epochs", type=int, help="epochs per store; the first is warm-up")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--fanout", help="neighbours per hop, e.g. 25,10 (one per layer)")
    parser.add_argument("--hidden-channels", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--stores", help=f"comma-separated subset of {','.join(ALL_STORES)}")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int, help="sampling worker processes")
    parser.add_argument("--scale-nodes", type=int,
                        help="tile the dataset's features over a generated graph of N nodes")
    parser.add_argument("--max-materialize-gb", type=float,
                        help="largest tiled feature matrix to build in host memory")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=None,
                        help="build all stores at once and alternate their epochs (fairer "
                        "timings on a shared machine; needs memory for every store)")
    parser.add_argument("--min-ratio", type=float,
                        help="ibp store: keep features raw when they compress less than this "
                        "(default: the store's, 1.25)")
    parser.add_argument("--device", help="auto (CUDA when present), cpu or cuda[:i]")
    parser.add_argument("--out", type=Path, help="write every number to this JSON file")
    parser.add_argument("--plot", help="PNG of epoch times per store (default: next to --out; "
                        "'none' to skip)")
    args = parser.parse_args(argv)

    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    if args.config is not None:
        if not args.config.is_file():
            parser.error(f"config file not found: {args.config}")
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            parser.error(f"{args.config}: expected a mapping of options")
        unknown = sorted(set(loaded) - set(DEFAULTS))
        if unknown:
            parser.error(f"{args.config}: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
        config.update(loaded)
        config["config"] = str(args.config)
    for key, value in vars(args).items():
        if key != "config" and value is not None:
            config[key] = value
    try:
        config["fanout"] = parse_fanout(config["fanout"])
        config["stores"] = parse_stores(config["stores"])
    except ValueError as exc:
        parser.error(str(exc))
    for key in ("epochs", "batch_size", "hidden_channels"):
        if int(config[key]) < 1:
            parser.error(f"{key} must be >= 1, got {config[key]}")
    if int(config["num_workers"]) < 0:
        parser.error(f"num_workers must be >= 0, got {config['num_workers']}")
    for key in ("out", "plot"):
        if config[key] is not None:
            config[key] = str(config[key])
    if config["plot"] is None and config["out"] is not None:
        config["plot"] = str(Path(config["out"]).with_suffix(".png"))
    if str(config["plot"]).lower() == "none":
        config["plot"] = None
    return config


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def gpu_decoder_available() -> bool:
    try:
        from ibp_gnn import gpu
        return bool(gpu.is_available())
    except (ImportError, AttributeError):
        return False


# ------------------------------------------------------------------------------------------------
# Checksums: cheap, order-sensitive fingerprints of a batch, computed where the batch lives
# ------------------------------------------------------------------------------------------------
def batch_checksum(x: torch.Tensor, n_id: torch.Tensor) -> torch.Tensor:
    """int64 ``[5]`` fingerprint of the feature bits and the sampled node ids.

    Row and column sums of the features viewed as integers (modulo 2**32: wrap-around sums are
    exact and order-independent, and need no int64 copy of the batch), weighted by position.
    Any changed element changes both its row and its column sum, so equal fingerprints mean
    bit-identical batches for all practical purposes. Stays on the batch's device.
    """
    bits = x.contiguous().reshape(x.shape[0], -1).view(torch.uint8)
    if bits.shape[1] % 4 == 0:
        bits = bits.view(torch.int32)
    n = torch.arange(1, bits.shape[0] + 1, device=x.device, dtype=torch.int64)
    d = torch.arange(1, bits.shape[1] + 1, device=x.device, dtype=torch.int64)
    row_sums = bits.sum(dim=1, dtype=torch.int32).to(torch.int64)
    col_sums = bits.sum(dim=0, dtype=torch.int32).to(torch.int64)
    ids = n_id.to(device=x.device, dtype=torch.int64)
    m = torch.arange(1, ids.numel() + 1, device=x.device, dtype=torch.int64)
    return torch.stack([row_sums.sum(), (row_sums * n).sum(), (col_sums * d).sum(),
                        ids.sum(), (ids * m).sum()])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
class StoreUnavailable(RuntimeError):
    """A feature store could not be built here (missing GPU support, ...)."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loader(fs, gs, config, input_nodes, shuffle, batch_size):
    return ibp_gnn.NeighborLoader(
        (fs, gs), num_neighbors=config["fanout"], input_nodes=input_nodes,
        batch_size=batch_size, shuffle=shuffle, num_workers=int(config["num_workers"]),
        seed=int(config["seed"]))


def train_epoch(model, optimizer, loader, device, desc):
    """One epoch. Loader time is the time spent waiting for the next batch plus moving it to the
    device (sampling + feature fetch/decode/copy). On CUDA the device is synchronized before and
    after each fetch, so GPU-side decoding and copies count as loader time and the training
    step's kernels do not (this gives up overlapping sampling with the previous step)."""
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    checksums = []
    sync(device)
    start = time.perf_counter()
    batches = iter(loader)  # starts sampling workers when num_workers > 0: loader time too
    loader_s = time.perf_counter() - start
    progress = tqdm(total=len(loader), desc=desc, leave=False, disable=None)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        x = batch.x.to(device, non_blocking=True)
        edge_index = batch.edge_index.to(device, non_blocking=True)
        y = batch.y[:batch.batch_size].to(device, non_blocking=True).reshape(-1)
        sync(device)
        loader_s += time.perf_counter() - t0

        checksums.append(batch_checksum(x, batch.n_id))
        optimizer.zero_grad()
        out = model(x, edge_index)[:batch.batch_size]
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * batch.batch_size
        correct += (out.argmax(dim=-1) == y).sum()
        seen += batch.batch_size
        sync(device)
        progress.update(1)
    sync(device)
    epoch_s = time.perf_counter() - start
    progress.close()
    sums = torch.stack(checksums).cpu().tolist() if checksums else []
    return {
        "time_s": epoch_s,
        "loader_s": loader_s,
        "loss": float(loss_sum) / max(seen, 1),
        "train_acc": int(correct) / max(seen, 1),
        "batches": len(sums),
    }, sums


@torch.no_grad()
def evaluate(model, loader, device) -> float:
    model.eval()
    correct = seen = 0
    for batch in loader:
        x = batch.x.to(device)
        out = model(x, batch.edge_index.to(device))[:batch.batch_size]
        y = batch.y[:batch.batch_size].to(device).reshape(-1)
        correct += int((out.argmax(dim=-1) == y).sum())
        seen += batch.batch_size
    return correct / max(seen, 1)


def feature_memory(fs, raw_bytes: int) -> dict:
    """Bytes the store holds for ``x`` in host and in GPU memory, and its compression ratio."""
    summary = fs.summary() if hasattr(fs, "summary") else {}
    attrs = summary.get("attrs", {})
    x = attrs.get("'x'") or attrs.get("x")
    if x is None:  # a store without per-attribute summaries: count everything it holds
        x = {"host_bytes": int(getattr(fs, "host_bytes", raw_bytes)),
             "device_bytes": int(getattr(fs, "device_bytes", 0))}
    held = int(x.get("host_bytes", 0)) + int(x.get("device_bytes", 0))
    return {"host_bytes": int(x.get("host_bytes", 0)),
            "device_bytes": int(x.get("device_bytes", 0)),
            "ratio": float(x.get("ratio", raw_bytes / held if held else 1.0)),
            "kind": x.get("kind", "unknown"),
            "raw_reason": x.get("raw_reason")}


class StoreRun:
    """One store's training run: its feature store, model (same initial weights for every store),
    optimizer and loader (same seed, hence the same batches)."""

    def __init__(self, store, dataset, config, device, train_idx):
        self.store, self.dataset, self.config, self.device = store, dataset, config, device
        # Only what a batch needs goes into the stores (masks would be fetched with every batch).
        tiled = store == "ibp" and dataset.features is not None
        data = Data(x=None if tiled else dataset.data.x, y=dataset.data.y,
                    edge_index=dataset.data.edge_index, num_nodes=dataset.num_nodes)
        if data.x is None and not tiled:
            raise StoreUnavailable(
                f"the raw feature matrix ({dataset.feature_bytes / 2**30:.1f} GiB) was not built: "
                f"it exceeds max_materialize_gb={config['max_materialize_gb']}")
        t0 = time.perf_counter()
        try:
            store_kwargs = ({"min_ratio": float(config["min_ratio"])}
                            if store == "ibp" and config["min_ratio"] is not None else {})
            self.fs, self.gs = ibp_gnn.from_data(data, store=store, device=device,
                                                 **store_kwargs)
            if tiled:
                self.fs.put_tensor(tiled_compressed(dataset.features, device), group_name=None,
                                   attr_name="x", index=None)
        except (ImportError, RuntimeError, ValueError) as exc:  # e.g. no GPU decoder installed
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.build_s = time.perf_counter() - t0
        self.memory = feature_memory(self.fs, dataset.feature_bytes)
        m = self.memory
        print(f"[{store}] store built in {self.build_s:.2f} s: features held as {m['kind']}, "
              f"{m['host_bytes'] / 2**20:,.1f} MiB host + {m['device_bytes'] / 2**20:,.1f} MiB "
              f"GPU memory (raw {dataset.feature_bytes / 2**20:,.1f} MiB, "
              f"ratio {m['ratio']:.2f}x)" + (f"; kept raw: {m['raw_reason']}" if m["raw_reason"]
                                             and store == "ibp" else ""))

        torch.manual_seed(int(config["seed"]))  # identical initial weights for every store
        self.model = GraphSAGE(dataset.num_features, int(config["hidden_channels"]),
                               num_layers=len(config["fanout"]),
                               out_channels=dataset.num_classes, aggr="mean").to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(config["lr"]))
        self.loader = make_loader(self.fs, self.gs, config, train_idx, True,
                                  int(config["batch_size"]))
        self.epochs, self.checksums = [], []

    def train_epoch(self, epoch: int) -> None:
        stats, sums = train_epoch(self.model, self.optimizer, self.loader, self.device,
                                  f"{self.store} epoch {epoch}")
        stats["epoch"] = epoch
        # with a single epoch there is nothing to exclude: it is timed like the others
        stats["warmup"] = epoch == 1 and int(self.config["epochs"]) > 1
        self.epochs.append(stats)
        self.checksums.append(sums)
        print(f"[{self.store}] epoch {epoch:02d}{' (warm-up)' if stats['warmup'] else ''}: "
              f"time {stats['time_s']:.3f} s, loader {stats['loader_s']:.3f} s, "
              f"loss {stats['loss']:.4f}, train acc {stats['train_acc']:.4f}")

    def finish(self, test_idx) -> dict:
        """Test accuracy, the summary of this run; then the store's memory is released."""
        t0 = time.perf_counter()
        test_loader = make_loader(self.fs, self.gs, self.config, test_idx, False,
                                  int(self.config["eval_batch_size"]))
        test_acc = evaluate(self.model, test_loader, self.device)
        eval_s = time.perf_counter() - t0
        epochs = self.epochs
        timed = [e for e in epochs if not e["warmup"]]
        result = {
            "store": self.store,
            "build_s": self.build_s,
            "host_bytes": self.memory["host_bytes"],
            "device_bytes": self.memory["device_bytes"],
            "raw_bytes": self.dataset.feature_bytes,
            "ratio": self.memory["ratio"],
            "feature_kind": self.memory["kind"],
            "epochs": epochs,
            "median_epoch_s": statistics.median(e["time_s"] for e in timed),
            "median_loader_s": statistics.median(e["loader_s"] for e in timed),
            "timed_epochs": len(timed) if len(epochs) > 1 else 0,
            "test_acc": test_acc,
            "eval_s": eval_s,
            "checksum_digest": hashlib.sha256(json.dumps(self.checksums).encode()).hexdigest(),
        }
        del test_loader
        self.fs = self.gs = self.loader = self.model = self.optimizer = None
        gc.collect()  # free this store's copy of the features before another store needs memory
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return result


def tiled_compressed(features, device):
    """The IBP store's copy of tiled features: the source rows compressed once and the
    compressed rows tiled (bit-identical to compressing the tiled matrix with the same plan),
    written straight into pinned memory on CUDA; the raw tiled matrix is never needed."""
    from ibp_gnn.codec import compress, tile_rows
    allocator = None
    if device.type == "cuda":
        from ibp_gnn import gpu
        allocator = gpu.pinned_allocator
    return tile_rows(compress(features.source), features.num_rows, allocator=allocator)


def build_run(store, dataset, config, device, train_idx, skipped, failed):
    if store in GPU_ONLY_STORES and device.type != "cuda":
        skipped[store] = "needs a CUDA device"
        print(f"[{store}] skipped: needs a CUDA device")
        return None
    try:
        return StoreRun(store, dataset, config, device, train_idx)
    except StoreUnavailable as exc:
        skipped[store] = f"failed to build: {exc}"
        failed.append(store)
        print(f"[{store}] skipped: could not build the store: {exc}")
        return None


def run_stores(dataset, config, device, train_idx, test_idx):
    """Train every store. Sequentially: one store in memory at a time. Interleaved: all stores
    built up front and epoch ``e`` of every store run back to back, so that load from other
    processes on a shared machine hits all stores alike."""
    results, checksums, skipped, failed = {}, {}, {}, []
    epochs = range(1, int(config["epochs"]) + 1)
    if config["interleave"]:
        runs = [build_run(s, dataset, config, device, train_idx, skipped, failed)
                for s in config["stores"]]
        runs = [r for r in runs if r is not None]
        for epoch in epochs:
            for run in runs:
                run.train_epoch(epoch)
        for run in runs:
            results[run.store], checksums[run.store] = run.finish(test_idx), run.checksums
    else:
        for store in config["stores"]:
            run = build_run(store, dataset, config, device, train_idx, skipped, failed)
            if run is None:
                continue
            for epoch in epochs:
                run.train_epoch(epoch)
            results[store], checksums[store] = run.finish(test_idx), run.checksums
            del run
    return results, checksums, skipped, failed


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------
def add_speedups(results: dict) -> None:
    for ref in ("cpu", "uva"):
        base = results.get(ref)
        for r in results.values():
            r[f"speedup_vs_{ref}"] = (base["median_epoch_s"] / r["median_epoch_s"]
                                      if base is not None and r["median_epoch_s"] > 0 else None)


def print_table(results: dict) -> None:
    header = ("store", "median epoch s", "median loader s", "vs cpu", "vs uva",
              "host feature MiB", "GPU feature MiB", "ratio", "test acc")
    rows = []
    for r in results.values():
        rows.append((
            r["store"], f"{r['median_epoch_s']:.3f}", f"{r['median_loader_s']:.3f}",
            "n/a" if r["speedup_vs_cpu"] is None else f"{r['speedup_vs_cpu']:.2f}x",
            "n/a" if r["speedup_vs_uva"] is None else f"{r['speedup_vs_uva']:.2f}x",
            f"{r['host_bytes'] / 2**20:,.2f}", f"{r['device_bytes'] / 2**20:,.2f}",
            f"{r['ratio']:.2f}x", f"{r['test_acc']:.4f}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def save_plot(results: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results.values():
        xs = [e["epoch"] for e in r["epochs"]]
        ys = [e["time_s"] for e in r["epochs"]]
        ax.plot(xs, ys, marker="o", label=f"{r['store']} (median {r['median_epoch_s']:.2f} s)")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (1 = warm-up)")
    ax.set_ylabel("epoch time (s)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_runs(checksums: dict, results: dict, device: torch.device) -> dict:
    stores = list(checksums)
    if len(stores) < 2:
        return {"features_identical": None, "losses_identical": None,
                "note": "only one store ran; nothing to compare"}
    ref = stores[0]
    features_identical = all(checksums[s] == checksums[ref] for s in stores[1:])
    losses = {s: [e["loss"] for e in results[s]["epochs"]] for s in stores}
    losses_identical = all(losses[s] == losses[ref] for s in stores[1:])
    return {"features_identical": features_identical, "losses_identical": losses_identical,
            "losses_compared_strictly": device.type == "cpu"}


def main(argv=None) -> int:
    wall_start = time.perf_counter()
    config = build_config(argv)
    device = pick_device(str(config["device"]))
    print(f"device: {device_name(device)}")

    t0 = time.perf_counter()
    try:
        dataset = load_dataset(
            str(config["dataset"]), scale_nodes=config["scale_nodes"], seed=int(config["seed"]),
            synthetic=config["synthetic"], split=config["split"],
            scale={"max_materialize_bytes": int(float(config["max_materialize_gb"]) * 2**30),
                   **config["scale"]})
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise SystemExit(f"error: {exc}")
    load_s = time.perf_counter() - t0
    print(f"dataset: {dataset.description}")
    print(f"loaded in {load_s:.2f} s; features {dataset.feature_bytes / 2**20:,.1f} MiB raw")
    if dataset.data.x is None:
        print(f"note: the tiled feature matrix ({dataset.feature_bytes / 2**30:.1f} GiB) exceeds "
              f"max_materialize_gb={config['max_materialize_gb']}: only the ibp store, which "
              f"tiles compressed rows, can run")

    data = dataset.data
    train_idx = data.train_mask.nonzero().view(-1)
    test_idx = data.test_mask.nonzero().view(-1)
    if train_idx.numel() == 0 or test_idx.numel() == 0:
        raise SystemExit("error: the dataset's split has no training or no test nodes")

    results, checksums, skipped, failed = run_stores(dataset, config, device, train_idx,
                                                     test_idx)
    if not results:
        raise SystemExit("error: no store could run on this device")

    add_speedups(results)
    comparison = compare_runs(checksums, results, device)
    print()
    print(f"dataset: {dataset.description}")
    timed = next(iter(results.values()))["timed_epochs"]
    print(f"device: {device_name(device)}; medians over {timed} epoch(s) after warm-up"
          if timed else f"device: {device_name(device)}; one epoch only, no warm-up excluded")
    print_table(results)
    if comparison["features_identical"] is None:
        print("features identical across stores: n/a (one store)")
    else:
        print(f"features identical across stores: "
              f"{'yes' if comparison['features_identical'] else 'no'}")
        print(f"losses identical across stores: "
              f"{'yes' if comparison['losses_identical'] else 'no'}"
              f"{'' if device.type == 'cpu' else ' (not required on GPU)'}")

    title = (f"GraphSAGE epoch time per feature store\n{dataset.name}"
             f"{' (synthetic)' if dataset.synthetic else ''} on {device_name(device)}")
    if config["plot"]:
        save_plot(results, config["plot"], title)
        print(f"plot: {config['plot']}")
    wall_s = time.perf_counter() - wall_start
    print(f"total wall time: {wall_s:.1f} s")

    if config["out"]:
        report = {
            "command": " ".join(shlex.quote(a) for a in [sys.executable, sys.argv[0] if argv is
                                                           None else str(Path(__file__))]
                                + list(sys.argv[1:] if argv is None else argv)),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": config,
            "device": device_name(device),
            "device_type": device.type,
            "gpu_decoder_available": gpu_decoder_available(),
            "versions": {"torch": torch.__version__,
                         "torch_geometric": __import__("torch_geometric").__version__,
                         "ibp_gnn": ibp_gnn.__version__, "python": platform.python_version()},
            "dataset": dataset.summary(),
            "synthetic": dataset.synthetic,
            "dataset_load_s": load_s,
            "stores": results,
            "skipped": skipped,
            "failed_stores": failed,
            **comparison,
            "features_identical_text": ("n/a" if comparison["features_identical"] is None else
                                        "yes" if comparison["features_identical"] else "no"),
            "wall_s": wall_s,
        }
        Path(config["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(config["out"]).write_text(json.dumps(report, indent=2))
        print(f"results: {config['out']}")

    if comparison["features_identical"] is False:
        print("error: batch features differ between stores", file=sys.stderr)
        return 1
    if failed:
        print(f"error: store(s) {','.join(failed)} could not be built", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
