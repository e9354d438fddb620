"""The IBP codec: format, preprocessing, encoder and CPU decoder. Free of PyG and CUDA."""
from .container import CompressedMatrix, as_index
from .dtypes import SUPPORTED_DTYPES
from .encode import compress, tile_rows
from .plan import entropy_bound_bytes


def load(path, *, mmap: bool = True) -> CompressedMatrix:
    """Load a store file written by :meth:`CompressedMatrix.save`."""
    return CompressedMatrix.load(path, mmap=mmap)


__all__ = ["CompressedMatrix", "SUPPORTED_DTYPES", "as_index", "compress", "entropy_bound_bytes",
           "load", "tile_rows"]
