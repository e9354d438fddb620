"""Build a (feature store, graph store) pair from a PyG ``Data`` or ``HeteroData``."""
from __future__ import annotations

import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData

from .feature_store import (CPUFeatureStore, GPUFeatureStore, IBPFeatureStore, NodeFeatureStore,
                            UVAFeatureStore)
from .graph_store import CSCGraphStore

STORES = {
    'ibp': IBPFeatureStore,
    'cpu': CPUFeatureStore,
    'uva': UVAFeatureStore,
    'gpu': GPUFeatureStore,
}


def make_feature_store(store: str = 'ibp', device: Union[str, torch.device] = 'cpu',
                       **store_kwargs) -> NodeFeatureStore:
    """An empty feature store of kind ``store`` (``'ibp'``, ``'cpu'``, ``'uva'`` or ``'gpu'``)."""
    try:
        cls = STORES[store]
    except (KeyError, TypeError):
        raise ValueError(f"store must be one of {', '.join(map(repr, STORES))}, "
                         f"got {store!r}") from None
    return cls(device, **store_kwargs)


def _node_attrs(storage) -> list:
    return [k for k in storage.node_attrs()
            if isinstance(storage[k], Tensor) and storage[k].dim() >= 1]


def _dropped_edge_attrs(storage) -> list:
    return [k for k in storage.keys() if k not in ('edge_index', 'adj', 'adj_t')
            and storage.is_edge_attr(k)]


def graph_store_from_data(data: Union[Data, HeteroData],
                          device: Union[str, torch.device] = 'cpu') -> CSCGraphStore:
    """A :class:`CSCGraphStore` with the ``edge_index`` of every edge type of ``data``."""
    graph_store = CSCGraphStore(device)
    if isinstance(data, HeteroData):
        for edge_type in data.edge_types:
            src, _, dst = edge_type
            edge_index = data[edge_type].get('edge_index')
            if edge_index is None:
                raise ValueError(f"edge type {edge_type} has no edge_index")
            graph_store.put_edge_index(edge_index, edge_type=edge_type, layout='coo',
                                       size=(data[src].num_nodes, data[dst].num_nodes))
    elif isinstance(data, Data):
        if data.edge_index is None:
            raise ValueError("data has no edge_index")
        n = data.num_nodes
        graph_store.put_edge_index(data.edge_index, edge_type=None, layout='coo', size=(n, n))
    else:
        raise TypeError(f"expected Data or HeteroData, got {type(data).__name__}")
    return graph_store


def from_data(data: Union[Data, HeteroData], store: str = 'ibp',
              device: Union[str, torch.device] = 'cpu', *,
              graph_device: Optional[Union[str, torch.device]] = 'cpu',
              **store_kwargs) -> Tuple[NodeFeatureStore, CSCGraphStore]:
    """Split ``data`` into ``(feature_store, graph_store)`` for :class:`NeighborLoader`.

    Every node-level tensor (``x``, ``y``, masks, ...) goes into a feature store of kind ``store``
    (``'ibp'``, ``'cpu'``, ``'uva'`` or ``'gpu'``) returning batches on ``device``; node types
    become ``group_name``. The edges go into a :class:`CSCGraphStore` on ``graph_device`` (the
    sampler runs there; keep ``'cpu'`` to sample in loader workers). ``data`` is not modified.

    Edge attributes cannot be served through a store pair (pyg#9566): they are left out, with
    a warning.

    Args:
        store_kwargs: passed to the feature store (e.g. ``min_ratio`` for ``'ibp'``).
    """
    if not isinstance(data, (Data, HeteroData)):
        raise TypeError(f"from_data expects a torch_geometric Data or HeteroData, "
                        f"got {type(data).__name__}")
    feature_store = make_feature_store(store, device, **store_kwargs)
    graph_store = graph_store_from_data(data, graph_device)
    dropped = []
    if isinstance(data, HeteroData):
        for node_type in data.node_types:
            for key in _node_attrs(data[node_type]):
                feature_store.put_tensor(data[node_type][key], group_name=node_type,
                                         attr_name=key, index=None)
        for edge_type in data.edge_types:
            dropped += [f"{edge_type}.{k}" for k in _dropped_edge_attrs(data[edge_type])]
    else:
        for key in _node_attrs(data):
            feature_store.put_tensor(data[key], group_name=None, attr_name=key, index=None)
        dropped += _dropped_edge_attrs(data)
    if dropped:
        warnings.warn(f"edge attributes {dropped} are not carried over: PyG serves store-pair "
                      f"attributes by node id (pyg#9566)", stacklevel=2)
    return feature_store, graph_store
