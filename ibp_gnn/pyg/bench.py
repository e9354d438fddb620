"""Loader benchmark: sampler throughput and per-epoch loader time of each feature store."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Sequence, Union

import torch
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput

from ..codec.dtypes import bits_equal
from .convert import from_data, graph_store_from_data
from .loader import NeighborLoader
from .sampler import NeighborSampler


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _time_sampler(data: Data, device: torch.device, input_nodes: torch.Tensor,
                  num_neighbors: Sequence[int], batch_size: int, epochs: int, warmup: int,
                  seed: int) -> dict:
    """Sampled edges per second of :class:`NeighborSampler` over a graph store on ``device``,
    drawing the batches a shuffled loader would draw."""
    sampler = NeighborSampler(graph_store_from_data(data, device=device), num_neighbors,
                              seed=seed)
    gen = torch.Generator().manual_seed(seed)
    times, edges = [], []
    for epoch in range(warmup + epochs):
        perm = torch.randperm(input_nodes.numel(), generator=gen)
        sampler.epoch = epoch
        n_edges = 0
        _sync(device)
        t0 = time.perf_counter()
        for start in range(0, perm.numel(), batch_size):
            pos = perm[start:start + batch_size]
            out = sampler.sample_from_nodes(NodeSamplerInput(pos, input_nodes[pos]))
            n_edges += out.row.numel()
        _sync(device)
        if epoch >= warmup:
            times.append(time.perf_counter() - t0)
            edges.append(n_edges)
    return {
        'device': str(device), 'epoch_seconds': times,
        'epoch_seconds_median': statistics.median(times),
        'edges_per_epoch_median': statistics.median(edges),
        'edges_per_second': statistics.median(e / t for e, t in zip(edges, times)),
    }


def bench_loader(dataset: Union[str, os.PathLike, Data] = 'amazon_computers',
                 stores: Sequence[str] = ('cpu', 'ibp'), device: Union[str, torch.device] = 'cpu',
                 num_neighbors: Sequence[int] = (25, 10), batch_size: int = 1024,
                 epochs: int = 3, warmup: int = 1, num_workers: int = 0, seed: int = 0,
                 check: bool = True) -> dict:
    """Measure the sampler alone and a full loader epoch per feature store.

    Every epoch visits all training nodes (``train_mask`` when the data has one, else all
    nodes), shuffled, in batches of ``batch_size``. The sampler is timed on its own (sampled
    edges per second); each store is timed over whole loader epochs (sampling, feature fetch
    and decode, batches delivered on ``device``). Medians over ``epochs`` after ``warmup``
    epochs; the ``cpu`` store is always measured in the same run and ratios are against it.
    With ``check``, the first batch of each store is compared bit-exact with the source.

    Returns a dict: run settings, ``sampler`` (``edges_per_second``, ...; the CPU graph
    store), ``sampler_cuda`` (the same on the device, for a CUDA ``device``), and ``stores``:
    per store ``epoch_seconds`` (list), ``epoch_seconds_median``, ``time_vs_cpu`` (ratio of
    medians), ``host_bytes``, ``host_bytes_vs_cpu``, ``compression_ratio`` and
    ``build_seconds``.
    """
    if not isinstance(dataset, Data):
        from ..datasets import load_dataset
        dataset = load_dataset(str(dataset)).data
    data = dataset
    name = 'data' if isinstance(dataset, Data) else Path(dataset).stem
    device = torch.device(device)
    if epochs < 1 or warmup < 0:
        raise ValueError("epochs must be >= 1 and warmup >= 0")
    stores = list(dict.fromkeys(['cpu', *stores]))
    mask = data.get('train_mask')
    input_nodes = mask.nonzero().view(-1) if mask is not None else torch.arange(data.num_nodes)
    num_neighbors = [int(k) for k in num_neighbors]

    result = {
        'dataset': name, 'num_nodes': int(data.num_nodes), 'num_edges': int(data.num_edges),
        'feature_shape': list(data.x.shape), 'feature_dtype': str(data.x.dtype),
        'input_nodes': int(input_nodes.numel()), 'batch_size': batch_size,
        'num_neighbors': num_neighbors, 'num_workers': num_workers, 'device': str(device),
        'epochs': epochs, 'warmup': warmup, 'torch_threads': torch.get_num_threads(),
    }

    # Sampler alone, on the CPU and, for a CUDA loader, on the device's graph store too.
    result['sampler'] = _time_sampler(data, torch.device('cpu'), input_nodes, num_neighbors,
                                      batch_size, epochs, warmup, seed)
    if device.type == 'cuda':
        result['sampler_cuda'] = _time_sampler(data, device, input_nodes, num_neighbors,
                                               batch_size, epochs, warmup, seed)

    per_store = {}
    for store in stores:
        t0 = time.perf_counter()
        fs, gs = from_data(data, store=store, device=device)
        build = time.perf_counter() - t0
        loader = NeighborLoader((fs, gs), num_neighbors=num_neighbors, input_nodes=input_nodes,
                                batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                seed=seed)
        times = []
        for epoch in range(warmup + epochs):
            _sync(device)
            t0 = time.perf_counter()
            first = None
            for batch in loader:
                if first is None:
                    first = batch
            _sync(device)
            if epoch >= warmup:
                times.append(time.perf_counter() - t0)
        if check and first is not None:
            n_id = first.n_id.cpu()
            keys = [k for k in ('x', 'y') if k in data]
            if not all(bits_equal(first[k], data[k][n_id]) for k in keys):
                raise AssertionError(f"store {store!r} returned features that differ from "
                                     f"the source")
        per_store[store] = {
            'epoch_seconds': times, 'epoch_seconds_median': statistics.median(times),
            'host_bytes': fs.host_bytes, 'device_bytes': fs.device_bytes,
            'raw_bytes': fs.raw_bytes,
            'compression_ratio': getattr(fs, 'ratio', 1.0), 'build_seconds': build,
        }
        del loader, fs, gs
    base = per_store['cpu']
    for entry in per_store.values():
        entry['time_vs_cpu'] = entry['epoch_seconds_median'] / base['epoch_seconds_median']
        entry['host_bytes_vs_cpu'] = (entry['host_bytes'] / base['host_bytes']
                                      if base['host_bytes'] else float('nan'))
    result['stores'] = per_store
    return result


def format_bench(result: dict) -> str:
    """A short human-readable table of :func:`bench_loader`'s result."""
    lines = [
        f"{result['dataset']}: {result['num_nodes']} nodes, {result['num_edges']} edges, "
        f"x {result['feature_shape']} {result['feature_dtype']}; {result['input_nodes']} seeds, "
        f"batch {result['batch_size']}, fan-out {result['num_neighbors']}, "
        f"workers {result['num_workers']}, device {result['device']}",
        f"{'store':6s} {'s/epoch':>9s} {'time/cpu':>8s} {'host MiB':>9s} {'mem/cpu':>7s} "
        f"{'ratio':>6s}",
    ]
    for key in ('sampler', 'sampler_cuda'):
        if key in result:
            r = result[key]
            lines.insert(-1, f"sampler ({r['device']}): {r['edges_per_second'] / 1e6:.2f} M "
                             f"edges/s ({r['epoch_seconds_median']:.3f} s/epoch, "
                             f"{r['edges_per_epoch_median']} edges)")
    for store, r in result['stores'].items():
        lines.append(f"{store:6s} {r['epoch_seconds_median']:9.3f} {r['time_vs_cpu']:8.2f} "
                     f"{r['host_bytes'] / 2**20:9.1f} {r['host_bytes_vs_cpu']:7.3f} "
                     f"{r['compression_ratio']:6.2f}")
    return '\n'.join(lines)
