"""Check every mini-batch of ibp_gnn.NeighborLoader against the source graph.

    python scripts/check_loader.py cora amazon_photo path/to/graph.npz [--stores ibp,cpu]
        [--fanout 25,10] [--batch-size 1024] [--num-workers 0] [--device cpu]

For each dataset (a name, an .npz path or pyg:Class/Name, as the training example takes them)
and store, the loader runs once over all training nodes and every batch is checked: features
bit-identical to ``x[n_id]``, labels equal, seeds first in seed order, every sampled edge present
in the graph (source -> target), no edge sampled twice, each target given exactly
``min(in-degree, fan-out)`` neighbours per hop, and every training node seen once per epoch.
Exits 1 if anything is wrong.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

import ibp_gnn
from ibp_gnn.codec.dtypes import bits_equal
from ibp_gnn.datasets import load_dataset


def check(data, store: str, fanout, batch_size: int, num_workers: int, device: str) -> list:
    """Problems found in one epoch of the loader over ``data``'s training nodes."""
    n = data.num_nodes
    ei = data.edge_index.numpy()
    keys = np.sort(ei[0].astype(np.int64) * n + ei[1])
    in_degree = np.bincount(ei[1], minlength=n)
    train = data.train_mask.nonzero().view(-1) if data.get("train_mask") is not None else (
        torch.arange(n))
    # min_ratio=1.0: compress even the features the store would keep raw by default, so
    # that the decoder is what gets checked
    kwargs = {"min_ratio": 1.0} if store == "ibp" else {}
    fs, gs = ibp_gnn.from_data(data, store=store, device=device, **kwargs)
    loader = ibp_gnn.NeighborLoader((fs, gs), num_neighbors=list(fanout), input_nodes=train,
                                    batch_size=batch_size, shuffle=True,
                                    num_workers=num_workers, seed=0)
    problems, seen = [], []
    for b in loader:
        n_id = b.n_id.cpu().numpy()
        seeds = train.numpy()[b.input_id.cpu().numpy()]
        seen.append(seeds)
        if not np.array_equal(n_id[:b.batch_size], seeds):
            problems.append("seeds are not first in seed order")
        if not bits_equal(b.x.cpu(), data.x[b.n_id.cpu()]):
            problems.append("features differ from x[n_id]")
        if not torch.equal(b.y.cpu(), data.y[b.n_id.cpu()]):
            problems.append("labels differ from y[n_id]")
        local = b.edge_index.cpu().numpy()
        src, dst = n_id[local[0]], n_id[local[1]]
        edge = src.astype(np.int64) * n + dst
        pos = np.minimum(np.searchsorted(keys, edge), len(keys) - 1)
        if len(edge) and not (keys[pos] == edge).all():
            problems.append("a sampled edge is not in the graph")
        if len(np.unique(edge)) != len(edge):
            problems.append("an edge was sampled twice")
        node_lo = edge_lo = 0
        for hop, k in enumerate(fanout):
            node_hi = node_lo + int(b.num_sampled_nodes[hop])
            edge_hi = edge_lo + int(b.num_sampled_edges[hop])
            got = np.bincount(local[1, edge_lo:edge_hi] - node_lo, minlength=node_hi - node_lo)
            want = in_degree[n_id[node_lo:node_hi]]
            want = want if k < 0 else np.minimum(want, k)
            if not np.array_equal(got, want):
                problems.append(f"hop {hop}: a target got other than min(in-degree, {k}) edges")
            node_lo, edge_lo = node_hi, edge_hi
    if not np.array_equal(np.sort(np.concatenate(seen)), np.sort(train.numpy())):
        problems.append("the epoch did not visit every training node exactly once")
    return sorted(set(problems))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--stores", default="ibp,cpu")
    ap.add_argument("--fanout", default="25,10")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    fanout = [int(v) for v in args.fanout.split(",")]
    failed = False
    for name in args.datasets:
        data = load_dataset(name).data
        for store in args.stores.split(","):
            t0 = time.perf_counter()
            problems = check(data, store, fanout, args.batch_size, args.num_workers,
                             args.device)
            failed |= bool(problems)
            print(f"{name} [{store}]: {data.num_nodes} nodes, {data.num_edges} edges, "
                  f"{time.perf_counter() - t0:.1f} s: "
                  + ("ok" if not problems else "PROBLEMS: " + "; ".join(problems)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
