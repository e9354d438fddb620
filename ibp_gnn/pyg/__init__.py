"""PyTorch Geometric integration: feature stores, a CSC graph store, a pure-torch neighbor
sampler and a loader that wires them together."""
from .convert import from_data, graph_store_from_data, make_feature_store
from .feature_store import (CPUFeatureStore, GPUFeatureStore, IBPFeatureStore, NodeFeatureStore,
                            UVAFeatureStore)
from .graph_store import CSC, CSCGraphStore
from .loader import NeighborLoader
from .sampler import NeighborSampler

__all__ = [
    "IBPFeatureStore", "CPUFeatureStore", "UVAFeatureStore", "GPUFeatureStore",
    "NodeFeatureStore", "CSCGraphStore", "CSC", "NeighborSampler", "NeighborLoader",
    "from_data", "graph_store_from_data", "make_feature_store",
]
