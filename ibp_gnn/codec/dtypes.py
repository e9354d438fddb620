"""Element types the codec accepts, and the conversion of inputs to a byte matrix."""
from __future__ import annotations

import numpy as np
import torch

# name -> (torch dtype, numpy dtype holding the same bits)
_TYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float16": (torch.float16, np.dtype(np.float16)),
    "bfloat16": (torch.bfloat16, np.dtype(np.uint16)),  # numpy has no bfloat16: keep its bits
    "float32": (torch.float32, np.dtype(np.float32)),
    "float64": (torch.float64, np.dtype(np.float64)),
    "int8": (torch.int8, np.dtype(np.int8)),
    "int16": (torch.int16, np.dtype(np.int16)),
    "int32": (torch.int32, np.dtype(np.int32)),
    "int64": (torch.int64, np.dtype(np.int64)),
    "uint8": (torch.uint8, np.dtype(np.uint8)),
    "uint16": (torch.uint16, np.dtype(np.uint16)),
    "uint32": (torch.uint32, np.dtype(np.uint32)),
    "uint64": (torch.uint64, np.dtype(np.uint64)),
    "bool": (torch.bool, np.dtype(np.bool_)),
}
SUPPORTED_DTYPES = tuple(_TYPES)
_BY_TORCH = {t: name for name, (t, _) in _TYPES.items()}
_BY_NUMPY = {n: name for name, (_, n) in _TYPES.items() if name != "bfloat16"}


def dtype_name(dtype) -> str:
    """Canonical name of a torch or numpy dtype; raises TypeError when unsupported."""
    if isinstance(dtype, torch.dtype):
        name = _BY_TORCH.get(dtype)
    else:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is not None and dt.byteorder == ">" and dt.newbyteorder("=") in _BY_NUMPY:
            raise TypeError(f"big-endian {dt} is not supported: convert it first, e.g. "
                            f"x.astype(x.dtype.newbyteorder('='))")
        name = _BY_NUMPY.get(dt) if dt is not None else None
    if name is None:
        raise TypeError(
            f"unsupported dtype {dtype}; supported: {', '.join(SUPPORTED_DTYPES)}")
    return name


def torch_dtype(name: str) -> torch.dtype:
    return _TYPES[name][0]


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype with the same bits (uint16 for bfloat16)."""
    return _TYPES[name][1]


def itemsize(name: str) -> int:
    return _TYPES[name][1].itemsize


def read_only(a: np.ndarray) -> np.ndarray:
    """``a`` itself when read-only, else a read-only view. The kernels see one array type
    (numba compiles a writable and a read-only argument separately, tens of seconds each)."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def as_byte_rows(x) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """View ``x`` (``[N, *rest]``) as a read-only C-contiguous uint8 matrix ``[N, row_bytes]``.

    Returns the byte matrix, the dtype name and the row shape ``rest``. Copies only when ``x``
    is not contiguous; never writes to ``x``.
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.is_quantized or x.layout != torch.strided:
            raise TypeError(f"unsupported tensor: dtype {x.dtype}, layout {x.layout}")
        name = dtype_name(x.dtype)
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        arr = t.contiguous().view(torch.uint8).numpy() if t.numel() else np.zeros(
            t.shape, numpy_dtype(name)).view(np.uint8)
        shape = tuple(x.shape)
    else:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise TypeError("object arrays are not supported")
        name = dtype_name(arr.dtype)
        shape = arr.shape
        arr = np.ascontiguousarray(arr)
        arr = arr.view(np.uint8) if arr.ndim else arr
    if len(shape) < 1:
        raise ValueError(f"expected an array of shape [N, ...], got a scalar (shape {shape})")
    rows = shape[0]
    row_shape = tuple(int(s) for s in shape[1:])
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * itemsize(name)
    return read_only(arr.reshape(rows, row_bytes)), name, row_shape


def tensor_bytes(t: torch.Tensor) -> torch.Tensor:
    """The bytes of ``t`` (any dtype, any device) as a flat uint8 tensor: the view to compare
    when equality must be bit-exact (NaN payloads, -0.0)."""
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8,
                                                             device=t.device)


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, same shape and the same bits."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(tensor_bytes(a.cpu()), tensor_bytes(b.cpu())))
