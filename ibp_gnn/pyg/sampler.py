"""Uniform neighbor sampling in pure torch (no pyg-lib / torch-sparse), on CPU or CUDA."""
from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, FeatureStore, GraphStore, HeteroData
from torch_geometric.sampler import (BaseSampler, EdgeSamplerInput, HeteroSamplerOutput,
                                     NodeSamplerInput, SamplerOutput)
from torch_geometric.typing import EdgeType, NodeType

from .graph_store import CSC, CSCGraphStore

NumNeighbors = Union[Sequence[int], Dict[Union[EdgeType, str], Sequence[int]]]


def _check_fanouts(values, what: str) -> List[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{what} must be a list of ints, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{what} must be a list of ints, got {v!r}")
        if v < -1:
            raise ValueError(f"{what}: fan-outs are >= 0, or -1 for all neighbors; got {v}")
        out.append(int(v))
    return out


def sample_uniform(deg: Tensor, k: int, generator: torch.Generator,
                   floyd_max_fanout: int = 64) -> Tensor:
    """``k`` distinct offsets in ``[0, deg[i])`` for every ``i``, uniform over ``k``-subsets.

    ``deg``: int64 ``[H]`` with ``deg > k``. Returns int64 ``[H, k]``, each row distinct (in no
    particular order).
    Vectorized over nodes: Floyd's algorithm (``k`` steps of ``[H]``-wide tensor operations)
    for small ``k``; for large ``k``, one random key per candidate edge and a segmented sort.
    """
    h, device = deg.numel(), deg.device
    if h == 0 or k == 0:
        return torch.empty(h, k, dtype=torch.int64, device=device)
    if k <= floyd_max_fanout:
        # Floyd: for j = deg-k .. deg-1 draw t uniform in [0, j]; take t unless already taken,
        # else take j. Every k-subset comes out with the same probability.
        u = torch.rand(h, k, generator=generator, dtype=torch.float64, device=device)
        chosen = torch.empty(h, k, dtype=torch.int64, device=device)
        j = deg - k
        for i in range(k):
            t = torch.minimum((u[:, i] * (j + 1)).to(torch.int64), j)
            if i:
                taken = (chosen[:, :i] == t.unsqueeze(1)).any(1)
                t = torch.where(taken, j, t)
            chosen[:, i] = t
            j = j + 1
        return chosen
    # Random keys: sort each node's candidates by a uniform key and keep the first k.
    total = int(deg.sum())
    seg_start = deg.cumsum(0) - deg
    seg = torch.repeat_interleave(torch.arange(h, device=device), deg, output_size=total)
    offset = torch.arange(total, device=device) - seg_start.index_select(0, seg)
    key = torch.rand(total, generator=generator, dtype=torch.float64, device=device)
    by_key = key.argsort()
    order = by_key.index_select(0, torch.sort(seg.index_select(0, by_key), stable=True)[1])
    keep = offset < k  # rank within the segment after sorting (segments keep their positions)
    return offset.index_select(0, order[keep]).view(h, k)


def sample_csc(csc: CSC, targets: Tensor, k: int, generator: torch.Generator,
               floyd_max_fanout: int = 64) -> Tuple[Tensor, Tensor]:
    """Sample up to ``k`` in-edges of each node in ``targets`` (``-1``: all of them), without
    replacement.

    Returns ``(edges, owner)``: int64 ``[E']`` CSC positions of the sampled edges, grouped by
    target in target order, and int64 ``[E']`` the index into
    ``targets`` of each edge's target.
    """
    device = targets.device
    start = csc.colptr.index_select(0, targets)
    deg = csc.colptr.index_select(0, targets + 1) - start
    take = deg if k < 0 else deg.clamp(max=k)
    total = int(take.sum())
    out_start = take.cumsum(0) - take
    owner = torch.repeat_interleave(torch.arange(targets.numel(), device=device), take,
                                    output_size=total)
    offset = torch.arange(total, device=device) - out_start.index_select(0, owner)
    if k >= 0:
        big = (deg > k).nonzero().view(-1)
        if big.numel():
            chosen = sample_uniform(deg.index_select(0, big), k, generator, floyd_max_fanout)
            slots = out_start.index_select(0, big).unsqueeze(1) + torch.arange(k, device=device)
            offset[slots.view(-1)] = chosen.view(-1)
    return start.index_select(0, owner) + offset, owner


class _NodeSet:
    """The nodes of one type in a mini-batch: global ids in order of arrival, and a dense
    global -> local map (``-1``: absent) that is reset after every batch, so deduplication costs
    O(candidates) instead of O(num_nodes) and needs no sort."""

    def __init__(self, num_nodes: int, device: torch.device):
        self.local = torch.full((num_nodes,), -1, dtype=torch.int64, device=device)
        self.parts: List[Tensor] = []
        self.count = 0

    def _first_copies(self, ids: Tensor) -> Tensor:
        """bool ``[n]``: ``ids[i]`` is the first copy of its value. Every ``ids`` must be absent
        from the map; their entries are left holding ``-2 - position of the first copy``."""
        code = -2 - torch.arange(ids.numel(), device=ids.device)
        # amax over -2 - position picks the smallest position; deterministic on CUDA too.
        self.local.scatter_reduce_(0, ids, code, 'amax', include_self=False)
        return self.local.index_select(0, ids) == code

    def add_seeds(self, seeds: Tensor) -> None:
        """Seeds keep their order and multiplicity; a repeated seed maps to its first copy."""
        first = self._first_copies(seeds)
        self.local[seeds[first]] = first.nonzero().view(-1)
        self.parts.append(seeds)
        self.count = seeds.numel()

    def add(self, candidates: Tensor) -> Tuple[Tensor, Tensor]:
        """Local ids of ``candidates`` (global ids), appending the unseen ones in order of
        first appearance. Returns ``(local ids, new global ids)``."""
        loc = self.local.index_select(0, candidates)
        unseen = loc < 0
        fresh = candidates[unseen]
        if fresh.numel() == 0:
            return loc, fresh
        new = fresh[self._first_copies(fresh)]
        self.local[new] = torch.arange(self.count, self.count + new.numel(), device=new.device)
        self.count += new.numel()
        self.parts.append(new)
        loc[unseen] = self.local.index_select(0, fresh)
        return loc, new

    def nodes(self) -> Tensor:
        return self.parts[0] if len(self.parts) == 1 else torch.cat(self.parts)

    def reset(self, nodes: Tensor) -> None:
        self.local[nodes] = -1
        self.parts, self.count = [], 0


@contextlib.contextmanager
def _single_thread(device: torch.device):
    """Run CPU sampling on one thread: its tensors are small (about 10^5 elements), so OpenMP
    fan-out costs more than it gains, and it slows down by an order of magnitude when the
    cores are shared (loader workers, feature decoding)."""
    if device.type != 'cpu':
        yield
        return
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


class NeighborSampler(BaseSampler):
    r"""Uniform neighbor sampling without replacement, per hop, in pure torch.

    For each hop, every node added in the previous hop (the seeds, for the first hop) draws
    ``min(degree, fan-out)`` distinct in-neighbors uniformly (all of them for fan-out ``-1``);
    nodes new to the batch become the next hop's frontier. Output follows PyG:
    ``node`` holds global ids with the seeds first, in seed order; ``row`` (neighbor, source)
    and ``col`` (sampling node, target) are local indices into ``node``; ``edge`` holds the
    ids of the sampled edges in the edge list given to the graph store.

    It runs where the graph store's tensors are (CPU, or CUDA with ``num_workers=0``).
    With a ``seed``, the sample of a batch depends only on ``(seed, epoch, input ids)``: the
    same seed gives the same batches for any number of workers. Without one it draws from
    torch's global generator.

    Args:
        data: ``(feature_store, graph_store)``, a :class:`CSCGraphStore` or another
            :class:`~torch_geometric.data.GraphStore`, or a ``Data``/``HeteroData``.
        num_neighbors: fan-out per hop, e.g. ``[25, 10]``; for a heterogeneous graph, either one
            list for every edge type or a dict ``{edge_type: [...]}`` (missing types: 0).
        seed: makes sampling reproducible (see above).
    """

    floyd_max_fanout = 64

    def __init__(self, data, num_neighbors: NumNeighbors, *, seed: Optional[int] = None):
        self.graph = _as_csc_store(data)
        if not self.graph.edge_types:
            raise ValueError("the graph store holds no edges")
        self.is_hetero = self.graph.is_hetero
        self.device = self.graph.device
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.epoch = 0
        self.num_neighbors = self._fanouts(num_neighbors)
        self.num_hops = len(next(iter(self.num_neighbors.values())))
        self.node_counts = self._node_counts()
        self._init_scratch()

    def _init_scratch(self) -> None:
        # Per-process scratch space: the node maps are reused batch after batch, so one sampler
        # must not run two batches at once.
        self._node_sets: Dict[Optional[NodeType], _NodeSet] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state['_node_sets'], state['_lock']
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_scratch()

    # -- configuration -----------------------------------------------------------------------
    def _fanouts(self, num_neighbors) -> Dict[Optional[EdgeType], List[int]]:
        types = self.graph.edge_types
        if isinstance(num_neighbors, dict):
            if not self.is_hetero:
                raise TypeError("num_neighbors must be a list for a homogeneous graph")
            out = {et: [] for et in types}
            for key, values in num_neighbors.items():
                et = tuple(key.split('__')) if isinstance(key, str) else key
                if et not in out:
                    raise ValueError(f"num_neighbors names edge type {key!r}, which the graph "
                                     f"does not have")
                out[et] = _check_fanouts(values, f"num_neighbors[{key!r}]")
            hops = {len(v) for v in out.values() if v}
            if len(hops) > 1:
                raise ValueError(f"every edge type needs the same number of hops, got {hops}")
            n = hops.pop() if hops else 0
            return {et: v or [0] * n for et, v in out.items()}
        values = _check_fanouts(num_neighbors, "num_neighbors")
        return {et: list(values) for et in types}

    def _node_counts(self) -> Dict[Optional[NodeType], int]:
        counts: Dict[Optional[NodeType], int] = {}
        for et in self.graph.edge_types:
            csc = self.graph.get_csc(et)
            src, dst = (None, None) if et is None else (et[0], et[-1])
            for nt, n in ((src, csc.size[0]), (dst, csc.size[1])):
                if counts.setdefault(nt, n) != n:
                    raise ValueError(f"node type {nt!r} has {counts[nt]} nodes in one edge type "
                                     f"and {n} in another")
        return counts

    # -- BaseSampler interface ---------------------------------------------------------------
    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs):
        if inputs.time is not None:
            raise NotImplementedError("temporal sampling is not supported")
        seeds = inputs.node
        if not isinstance(seeds, Tensor) or seeds.dim() != 1 or seeds.dtype in (
                torch.bool, torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError("seed nodes must be a 1-D integer tensor")
        input_type = inputs.input_type
        if self.is_hetero:
            if input_type not in self.node_counts:
                raise ValueError(f"input node type {input_type!r} is not in the graph "
                                 f"(types: {sorted(t for t in self.node_counts)})")
        elif input_type is not None:
            raise ValueError(f"the graph is homogeneous, got input node type {input_type!r}")
        num = self.node_counts[input_type]
        seeds = seeds.to(device=self.device, dtype=torch.int64)
        if seeds.numel():
            lo, hi = (int(v) for v in torch.aminmax(seeds))
            if lo < 0 or hi >= num:
                raise IndexError(f"seed nodes must be in [0, {num}), got [{lo}, {hi}]")
        generator = self._generator(inputs)
        with self._lock, _single_thread(self.device):
            node, row, col, edge, n_nodes, n_edges = self._sample(input_type, seeds, generator)
        if self.is_hetero:
            out = HeteroSamplerOutput(node=node, row=row, col=col, edge=edge,
                                      num_sampled_nodes=n_nodes, num_sampled_edges=n_edges)
        else:
            out = SamplerOutput(node=node[None], row=row[None], col=col[None], edge=edge[None],
                                num_sampled_nodes=n_nodes[None],
                                num_sampled_edges=n_edges[None])
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def sample_from_edges(self, inputs: EdgeSamplerInput, neg_sampling=None):
        raise NotImplementedError(f"{type(self).__name__} samples from nodes only "
                                  f"(link prediction loaders are not supported)")

    # -- sampling -----------------------------------------------------------------------------
    def _generator(self, inputs: NodeSamplerInput) -> torch.Generator:
        if self.seed is None:
            batch_seed = int(torch.randint(0, 2**62, (1,)))
        else:
            ids = inputs.input_id if inputs.input_id is not None else inputs.node
            h = hashlib.blake2b(digest_size=8)
            h.update(np.array([self.seed, self.epoch], dtype=np.int64).tobytes())
            h.update(repr(inputs.input_type).encode())
            h.update(ids.detach().cpu().to(torch.int64).numpy().tobytes())
            batch_seed = int.from_bytes(h.digest(), 'little') >> 1
        generator = torch.Generator(device=self.device)
        generator.manual_seed(batch_seed)
        return generator

    def _node_set(self, node_type) -> _NodeSet:
        ns = self._node_sets.get(node_type)
        if ns is None:
            ns = self._node_sets[node_type] = _NodeSet(self.node_counts[node_type], self.device)
        return ns

    def _sample(self, input_type, seeds: Tensor, generator: torch.Generator):
        try:
            return self._sample_hops(input_type, seeds, generator)
        except BaseException:
            self._node_sets.clear()  # a half-filled node map must not leak into later batches
            raise

    def _sample_hops(self, input_type, seeds: Tensor, generator: torch.Generator):
        node_types = list(self.node_counts)
        sets = {nt: self._node_set(nt) for nt in node_types}
        sets[input_type].add_seeds(seeds)
        # frontier: node type -> (global ids, local ids) of the nodes that sample this hop
        frontier = {input_type: (seeds, torch.arange(seeds.numel(), device=self.device))}
        rows = {et: [] for et in self.num_neighbors}
        cols = {et: [] for et in self.num_neighbors}
        edges = {et: [] for et in self.num_neighbors}
        n_nodes = {nt: [seeds.numel() if nt == input_type else 0] for nt in node_types}
        n_edges = {et: [] for et in self.num_neighbors}
        for hop in range(self.num_hops):
            picked: Dict[Optional[NodeType], List[Tuple[EdgeType, Tensor]]] = {}
            for et, fanouts in self.num_neighbors.items():
                dst = None if et is None else et[-1]
                src = None if et is None else et[0]
                k = fanouts[hop]
                if dst not in frontier or k == 0:
                    n_edges[et].append(0)
                    continue
                targets, target_local = frontier[dst]
                csc = self.graph.get_csc(et)
                e, owner = sample_csc(csc, targets, k, generator, self.floyd_max_fanout)
                cols[et].append(target_local.index_select(0, owner))
                edges[et].append(csc.edge_ids(e))
                n_edges[et].append(e.numel())
                picked.setdefault(src, []).append((et, csc.row.index_select(0, e)))
            frontier = {}
            for nt in node_types:
                parts = picked.get(nt)
                if not parts:
                    n_nodes[nt].append(0)
                    continue
                cand = parts[0][1] if len(parts) == 1 else torch.cat([p for _, p in parts])
                loc, new = sets[nt].add(cand)
                n_nodes[nt].append(new.numel())
                if new.numel():
                    frontier[nt] = (new, torch.arange(sets[nt].count - new.numel(),
                                                      sets[nt].count, device=self.device))
                for (et, p), part_loc in zip(parts, loc.split([p.numel() for _, p in parts])):
                    rows[et].append(part_loc)
            if not frontier:
                for _ in range(hop + 1, self.num_hops):
                    for v in n_nodes.values():
                        v.append(0)
                    for v in n_edges.values():
                        v.append(0)
                break
        node = {}
        for nt in node_types:
            s = sets[nt]
            node[nt] = s.nodes() if s.parts else torch.empty(0, dtype=torch.int64,
                                                             device=self.device)
            s.reset(node[nt])
        empty = torch.empty(0, dtype=torch.int64, device=self.device)

        def cat(parts: List[Tensor]) -> Tensor:
            return (parts[0] if len(parts) == 1 else torch.cat(parts)) if parts else empty

        row = {et: cat(v) for et, v in rows.items()}
        col = {et: cat(v) for et, v in cols.items()}
        edge = {et: cat(v) for et, v in edges.items()}
        return node, row, col, edge, n_nodes, n_edges


def _as_csc_store(data) -> CSCGraphStore:
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], GraphStore):
        if not isinstance(data[0], FeatureStore):
            raise TypeError(f"expected (FeatureStore, GraphStore), got "
                            f"({type(data[0]).__name__}, {type(data[1]).__name__})")
        data = data[1]
    if isinstance(data, CSCGraphStore):
        return data
    if isinstance(data, GraphStore):
        out = CSCGraphStore()
        for attr in data.get_all_edge_attrs():
            if attr.edge_type in out.edge_types:
                continue
            out.put_edge_index(data.get_edge_index(attr), edge_type=attr.edge_type,
                               layout=attr.layout, is_sorted=attr.is_sorted, size=attr.size)
        return out
    if isinstance(data, (Data, HeteroData)):
        from .convert import graph_store_from_data
        return graph_store_from_data(data)
    raise TypeError(f"NeighborSampler needs (FeatureStore, GraphStore), a GraphStore, Data or "
                    f"HeteroData, got {type(data).__name__}")
