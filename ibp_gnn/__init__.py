"""ibp_gnn: IBP-compressed node features in host memory for PyTorch Geometric."""
from .codec import CompressedMatrix, compress, load

__version__ = "0.1.0"

__all__ = ["CompressedMatrix", "compress", "load", "__version__"]

# PyG glue is imported on first use so the codec stays importable without touching PyG.
_PYG_EXPORTS = {
    "IBPFeatureStore", "CPUFeatureStore", "UVAFeatureStore", "GPUFeatureStore",
    "CSCGraphStore", "NeighborSampler", "NeighborLoader", "from_data",
}


def __getattr__(name):
    if name in _PYG_EXPORTS:
        from . import pyg
        return getattr(pyg, name)
    raise AttributeError(f"module 'ibp_gnn' has no attribute {name!r}")
