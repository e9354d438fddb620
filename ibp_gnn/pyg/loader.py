"""A drop-in for PyG's ``NeighborLoader`` over a (feature store, graph store) pair."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import FeatureStore, GraphStore
from torch_geometric.loader import NodeLoader

from .sampler import NeighborSampler, NumNeighbors


class NeighborLoader(NodeLoader):
    r"""Mini-batches of sampled neighborhoods from ``(feature_store, graph_store)``.

    Same call as PyG's ``NeighborLoader((feature_store, graph_store), num_neighbors=...,
    input_nodes=..., batch_size=..., shuffle=..., num_workers=...)``, sampling with
    :class:`NeighborSampler` (pure torch, so neither pyg-lib nor torch-sparse is needed).
    Each batch is a ``Data`` (``HeteroData`` for a heterogeneous graph) with every stored node
    attribute (``x``, ``y``, ...) on the feature store's device, ``edge_index``, ``n_id``,
    ``e_id``, ``batch_size`` and ``input_id``.

    Sampling runs in ``num_workers`` worker processes (CPU graph store) while the feature fetch
    runs in the main process (``filter_per_worker=False``): CUDA cannot be used in forked
    workers, and it lets the store decode a whole batch at once.

    Args:
        data: ``(feature_store, graph_store)``, e.g. from :func:`ibp_gnn.from_data`.
        num_neighbors: fan-out per hop (``-1``: all neighbors), or a dict per edge type.
        input_nodes: seed nodes: an index or bool mask tensor; a node type; or
            ``(node_type, index or None)``. None: every node of a homogeneous graph.
        seed: makes the shuffle order and the sampled neighborhoods reproducible, independent of
            ``num_workers``.
        neighbor_sampler: a ready sampler (then ``num_neighbors`` and ``seed`` are ignored).
        **kwargs: ``batch_size``, ``shuffle``, ``num_workers``, ``drop_last``, ...
            of :class:`torch.utils.data.DataLoader`, and ``transform`` etc. of PyG's
            :class:`~torch_geometric.loader.NodeLoader`.
    """

    def __init__(self, data: Tuple[FeatureStore, GraphStore], num_neighbors: NumNeighbors,
                 input_nodes=None, *, seed: Optional[int] = None,
                 neighbor_sampler: Optional[NeighborSampler] = None,
                 filter_per_worker: bool = False, transform: Optional[Callable] = None,
                 **kwargs):
        _refuse_unsupported(kwargs)
        if (not isinstance(data, (tuple, list)) or len(data) != 2
                or not isinstance(data[0], FeatureStore) or not isinstance(data[1], GraphStore)):
            raise TypeError("NeighborLoader expects (feature_store, graph_store); build them "
                            "with ibp_gnn.from_data(data, store=...)")
        feature_store, graph_store = data
        if neighbor_sampler is None:
            neighbor_sampler = NeighborSampler(data, num_neighbors, seed=seed)
        num_workers = kwargs.get('num_workers', 0)
        if neighbor_sampler.device.type != 'cpu' and num_workers > 0:
            raise ValueError(f"the graph store is on {neighbor_sampler.device}: sampling there "
                             f"needs num_workers=0 (CUDA cannot be used in worker processes)")
        fs_device = getattr(feature_store, 'device', torch.device('cpu'))
        if filter_per_worker and num_workers > 0 and torch.device(fs_device).type != 'cpu':
            raise ValueError("filter_per_worker=True would fetch features on "
                             f"{fs_device} inside worker processes, where CUDA cannot be used")
        if seed is not None and kwargs.get('shuffle') and kwargs.get('generator') is None:
            kwargs['generator'] = torch.Generator().manual_seed(int(seed))
        input_nodes = _resolve_input_nodes(feature_store, neighbor_sampler, input_nodes)
        super().__init__(data=(feature_store, graph_store), node_sampler=neighbor_sampler,
                         input_nodes=input_nodes, filter_per_worker=filter_per_worker,
                         transform=transform, **kwargs)

    def _get_iterator(self):
        # A new epoch draws new neighborhoods even for an unshuffled, seeded loader. Workers
        # receive the sampler as it is when the iterator starts (not with persistent_workers).
        self.node_sampler.epoch += 1
        return super()._get_iterator()


# PyG NeighborLoader options and the only value this loader implements.
_PYG_OPTIONS = {'input_time': None, 'replace': False, 'subgraph_type': 'directional',
                'disjoint': False, 'temporal_strategy': 'uniform', 'time_attr': None,
                'weight_attr': None, 'directed': True}


def _refuse_unsupported(kwargs: dict) -> None:
    """Accept PyG's NeighborLoader options at their defaults; refuse the rest by name (they
    would otherwise reach DataLoader as unknown arguments)."""
    kwargs.pop('is_sorted', None)  # the graph store is CSC: always sorted
    for name, default in _PYG_OPTIONS.items():
        if name in kwargs:
            value = kwargs.pop(name)
            plain = getattr(value, 'value', value)  # PyG passes some options as enums
            if (plain is not None) if default is None else (plain != default):
                raise NotImplementedError(
                    f"NeighborLoader supports {name}={default!r} only, got {name}={value!r}")


def _resolve_input_nodes(feature_store, sampler: NeighborSampler, input_nodes):
    """PyG's forms of ``input_nodes``, with node counts taken from the sampler's graph (PyG
    cannot count the nodes of a custom store pair)."""
    if input_nodes is None:
        if sampler.is_hetero:
            raise ValueError("input_nodes is required for a heterogeneous graph: a node type or "
                             "(node_type, index)")
        return torch.arange(sampler.node_counts[None])
    if isinstance(input_nodes, str):
        input_nodes = (input_nodes, None)
    if isinstance(input_nodes, (tuple, list)) and len(input_nodes) == 2 and isinstance(
            input_nodes[0], str):
        node_type, index = input_nodes
        if not sampler.is_hetero:
            raise ValueError(f"input node type {node_type!r} given for a homogeneous graph")
        if node_type not in sampler.node_counts:
            raise ValueError(f"node type {node_type!r} has no edges in the graph store "
                             f"(types: {sorted(sampler.node_counts)})")
        n = sampler.node_counts[node_type]
        return node_type, _as_seed_tensor(index, n)
    if sampler.is_hetero:
        raise ValueError("input_nodes must name the node type in a heterogeneous graph: "
                         "(node_type, index)")
    return _as_seed_tensor(input_nodes, sampler.node_counts[None])


def _as_seed_tensor(index, num_nodes: int) -> Tensor:
    if index is None:
        return torch.arange(num_nodes)
    if not isinstance(index, Tensor):
        try:
            index = torch.as_tensor(index)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"input_nodes must be an index or mask tensor, got "
                            f"{type(index).__name__}") from exc
    if index.dim() != 1:
        raise ValueError(f"input_nodes must be 1-D, got shape {tuple(index.shape)}")
    if index.dtype == torch.bool:
        if index.numel() != num_nodes:
            raise ValueError(f"an input_nodes mask must have {num_nodes} entries, "
                             f"got {index.numel()}")
        return index  # PyG turns masks into indices and keeps input_id = node id
    if index.is_floating_point() or index.is_complex():
        raise TypeError(f"input_nodes must be integers or a bool mask, got {index.dtype}")
    if index.numel():
        lo, hi = (int(v) for v in torch.aminmax(index))
        if lo < 0 or hi >= num_nodes:
            raise IndexError(f"input_nodes must be in [0, {num_nodes}), got [{lo}, {hi}]")
    return index.to(torch.int64)
