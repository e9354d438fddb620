r"""PyG :class:`~torch_geometric.data.FeatureStore`\ s for node features.

All stores share :class:`NodeFeatureStore`: attribute bookkeeping, index validation and the
batched :meth:`~NodeFeatureStore._multi_get_tensor`. A subclass only decides how one tensor is
held (:meth:`~NodeFeatureStore._hold`) and how rows of it are gathered onto the store's device
(:meth:`~NodeFeatureStore._gather`), so comparing two stores changes exactly one thing:

- :class:`CPUFeatureStore`: raw, host memory; CPU ``index_select``, then ``.to(device)``
  (PyG's usual path for in-memory features).
- :class:`UVAFeatureStore`: raw, pinned host memory; GPU zero-copy gather.
- :class:`GPUFeatureStore`: raw, device memory; ``index_select`` on the device.
- :class:`IBPFeatureStore`: IBP-compressed, host memory; CPU decoder, or GPU gather + decode.

Node types are ``group_name`` (None for a homogeneous graph). Edge attributes are refused: PyG
indexes them with node ids when fetched through a store pair (pyg#9566).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import FeatureStore, TensorAttr

from ..codec import CompressedMatrix

Key = Tuple[Optional[str], str]  # (node type or None, attribute name)


@dataclass
class HeldTensor:
    """One stored attribute.

    Attributes:
        shape: ``(N, *row_shape)`` of the tensor that was put.
        dtype: its torch dtype.
        data: the store-specific representation (a tensor, a compressed matrix, ...).
        host_bytes: bytes of it held in host memory.
        device_bytes: bytes of it held in accelerator memory.
        kind: how it is held (``'raw'``, ``'ibp'``, ``'pinned'``, ...), for summaries.
        info: extra facts for summaries (compression ratio, ...).
    """

    shape: Tuple[int, ...]
    dtype: torch.dtype
    data: Any
    host_bytes: int
    device_bytes: int = 0
    kind: str = 'raw'
    info: Optional[dict] = None

    @property
    def num_rows(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> Tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def raw_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * _itemsize(self.dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _input_tensor(tensor) -> Tensor:
    """The user's tensor or array as a torch tensor, without copying and never writable by us."""
    if isinstance(tensor, np.ndarray):
        if tensor.dtype == object:
            raise TypeError("object arrays cannot be stored")
        # torch.from_numpy refuses some dtypes and warns on read-only arrays: go via a copy
        # only in those cases.
        try:
            if not tensor.flags.writeable:
                raise ValueError
            return torch.from_numpy(tensor)
        except (TypeError, ValueError):
            return torch.tensor(np.array(tensor))
    if not isinstance(tensor, Tensor):
        raise TypeError(f"expected a torch.Tensor or np.ndarray, got {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise TypeError(f"only dense tensors can be stored, got layout {tensor.layout}")
    if tensor.is_complex() or tensor.is_quantized:
        raise TypeError(f"unsupported dtype {tensor.dtype}")
    return tensor.detach()


@dataclass
class RowIndex:
    """A validated row selection.

    Attributes:
        flat: int64 ``[B]`` row ids on the gather device.
        shape: shape of the index the caller passed (``()`` for a single ``int``), so the result
            is ``[*shape, *row_shape]`` like ``tensor[index]``.
    """

    flat: Tensor
    shape: Tuple[int, ...]


class NodeFeatureStore(FeatureStore):
    r"""Base class of the node feature stores: bookkeeping shared by every store.

    Subclasses implement :meth:`_hold` (turn a CPU tensor ``[N, *row_shape]`` into what the
    store keeps) and :meth:`_gather` (rows ``index`` of it as a tensor on :attr:`device`), and may
    set :attr:`index_device` (where :meth:`_gather` wants its row ids).

    ``index`` in a :class:`~torch_geometric.data.TensorAttr` may be None (all rows), a ``slice``,
    an ``int``, an integer tensor or array of any shape, or a bool mask of length ``N``; results
    are shaped like ``tensor[index]``. Negative or out-of-range rows raise :class:`IndexError`.

    Args:
        device: where fetched tensors are returned.
    """

    def __init__(self, device: Union[str, torch.device] = 'cpu'):
        super().__init__()
        device = torch.device(device)
        if device.type == 'cuda' and device.index is None:
            device = torch.device('cuda', torch.cuda.current_device()
                                  if torch.cuda.is_available() else 0)
        self.__dict__['device'] = device
        self.__dict__['_held'] = {}

    # -- what subclasses implement ------------------------------------------------------------
    def _hold(self, tensor: Tensor, key: Key) -> HeldTensor:
        """Keep ``tensor`` (contiguous, on CPU, ``[N, *row_shape]``; the caller's memory: copy
        it, never write to it)."""
        raise NotImplementedError

    def _gather(self, held: HeldTensor, index: Tensor) -> Tensor:
        """Rows ``index`` (int64 ``[B]`` on :attr:`index_device`) of ``held`` as a new tensor
        ``[B, *row_shape]`` on :attr:`device`."""
        raise NotImplementedError

    @property
    def index_device(self) -> torch.device:
        return torch.device('cpu')

    # -- FeatureStore interface -----------------------------------------------------------------
    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        key = self._check_key(attr)
        if attr.index is not None and not (isinstance(attr.index, slice)
                                           and attr.index == slice(None)):
            raise ValueError(f"{type(self).__name__} stores whole tensors only: put with "
                             f"index=None (got index={_describe(attr.index)})")
        if isinstance(tensor, CompressedMatrix):
            return self._put_compressed(tensor, key)
        t = _input_tensor(tensor)
        if t.dim() == 0:
            raise ValueError(f"attribute {_name(key)} must have shape [N, ...], got a scalar")
        self._check_rows(key, t.size(0))
        cpu = t.cpu() if t.device.type != 'cpu' else t
        self._held[key] = self._hold(cpu.contiguous(), key)
        return True

    def _put_compressed(self, cm: CompressedMatrix, key: Key) -> bool:
        """Hold an already compressed matrix (e.g. from :func:`ibp_gnn.codec.tile_rows`)."""
        if not hasattr(self, '_hold_precompressed'):
            raise TypeError(f"{type(self).__name__} holds raw tensors; put a tensor, or put "
                            f"the compressed matrix into an IBPFeatureStore")
        self._check_rows(key, cm.num_rows)
        self._held[key] = self._hold_precompressed(cm)
        return True

    def _check_rows(self, key: Key, num_rows: int) -> None:
        for (group, name), held in self._held.items():
            if group == key[0] and name != key[1] and held.num_rows != num_rows:
                raise ValueError(
                    f"attribute {_name(key)} has {num_rows} rows but {_name((group, name))} "
                    f"has {held.num_rows}: attributes of one node type share their rows")

    def _get_tensor(self, attr: TensorAttr) -> Tensor:
        return self._multi_get_tensor([attr])[0]

    def _multi_get_tensor(self, attrs: List[TensorAttr]) -> List[Tensor]:
        """Fetch every attribute of a mini-batch at once; attributes that share an index object
        (``x`` and ``y`` of one node type, as PyG's loader passes them) validate and move it
        to the gather device once."""
        indices: Dict[Tuple[int, int], RowIndex] = {}
        out = []
        for attr in attrs:
            held = self._lookup(attr)
            cache_key = (id(attr.index), held.num_rows)
            index = indices.get(cache_key)
            if index is None:
                index = indices[cache_key] = self._row_index(attr.index, held.num_rows)
            rows = self._gather(held, index.flat)
            out.append(rows.reshape(index.shape + held.row_shape))
        return out

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        return self._held.pop((attr.group_name, attr.attr_name), None) is not None

    def _get_tensor_size(self, attr: TensorAttr) -> Optional[Tuple[int, ...]]:
        held = self._held.get((attr.group_name, attr.attr_name))
        if held is None:
            return None
        if attr.index is None or not attr.is_set('index'):
            return held.shape
        return self._row_index(attr.index, held.num_rows, cpu=True).shape + held.row_shape

    def get_all_tensor_attrs(self) -> List[TensorAttr]:
        # PyG's loader writes `index` into the returned objects: hand out new ones every call.
        return [self._tensor_attr_cls(group_name=group, attr_name=name)
                for group, name in self._held]

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def host_bytes(self) -> int:
        """Bytes of feature data this store holds in host memory."""
        return sum(h.host_bytes for h in self._held.values())

    @property
    def device_bytes(self) -> int:
        """Bytes of feature data this store holds in accelerator memory."""
        return sum(h.device_bytes for h in self._held.values())

    @property
    def raw_bytes(self) -> int:
        """Bytes of the stored tensors, uncompressed."""
        return sum(h.raw_bytes for h in self._held.values())

    def summary(self) -> dict:
        """Per attribute: shape, dtype, how it is held, and its bytes."""
        attrs = {}
        for (group, name), h in self._held.items():
            attrs[_name((group, name))] = {
                'shape': list(h.shape), 'dtype': str(h.dtype).replace('torch.', ''),
                'kind': h.kind, 'raw_bytes': h.raw_bytes, 'host_bytes': h.host_bytes,
                'device_bytes': h.device_bytes, **(h.info or {})}
        return {'store': type(self).__name__, 'device': str(self.device),
                'raw_bytes': self.raw_bytes, 'host_bytes': self.host_bytes,
                'device_bytes': self.device_bytes, 'attrs': attrs}

    @property
    def node_types(self) -> List[Optional[str]]:
        return list(dict.fromkeys(group for group, _ in self._held))

    def num_nodes(self, node_type: Optional[str] = None) -> Optional[int]:
        for (group, _), held in self._held.items():
            if group == node_type:
                return held.num_rows
        return None

    def __repr__(self) -> str:
        attrs = ', '.join(f'{_name(k)}: {list(h.shape)}' for k, h in self._held.items())
        return f'{type(self).__name__}(device={self.device}, {{{attrs}}})'

    # -- helpers ----------------------------------------------------------------------------
    def _check_key(self, attr: TensorAttr) -> Key:
        group, name = attr.group_name, attr.attr_name
        if isinstance(group, tuple):
            raise ValueError(
                f"{type(self).__name__} holds node attributes only; got an edge attribute of "
                f"edge type {group}. PyG fetches store-pair attributes with node ids "
                f"(pyg#9566), so edge features would come back wrong.")
        if group is not None and not isinstance(group, str):
            raise TypeError(f"group_name must be a node type (str) or None, got {group!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"attr_name must be a non-empty str, got {name!r}")
        if name.startswith('edge'):
            raise ValueError(
                f"{type(self).__name__} holds node attributes only; {name!r} looks like an edge "
                f"attribute. PyG fetches store-pair attributes with node ids (pyg#9566), so edge "
                f"features would come back wrong.")
        return group, name

    def _lookup(self, attr: TensorAttr) -> HeldTensor:
        try:
            return self._held[(attr.group_name, attr.attr_name)]
        except KeyError:
            known = ', '.join(_name(k) for k in self._held) or 'none'
            raise KeyError(f"no attribute {_name((attr.group_name, attr.attr_name))} in "
                           f"{type(self).__name__} (stored: {known})") from None

    def _row_index(self, index, num_rows: int, cpu: bool = False) -> RowIndex:
        """Validate ``index`` against ``num_rows`` rows; int64 ids on the gather device."""
        device = torch.device('cpu') if cpu else self.index_device
        if index is None:
            return RowIndex(torch.arange(num_rows, device=device), (num_rows,))
        if isinstance(index, slice):
            flat = torch.arange(*index.indices(num_rows), device=device)
            return RowIndex(flat, (flat.numel(),))
        if isinstance(index, (bool, np.bool_)):
            raise TypeError("a row index must be integers, got a bool")
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not 0 <= i < num_rows:
                raise IndexError(f"row {i} out of range for {num_rows} rows")
            return RowIndex(torch.tensor([i], device=device), ())
        if isinstance(index, np.ndarray):
            if index.dtype == object:
                raise TypeError("a row index must be integers, got an object array")
            index = torch.from_numpy(np.array(index))
        elif isinstance(index, (list, tuple, range)):
            try:
                index = torch.as_tensor(index)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"a row index must be integers, got {index!r:.80}") from exc
            if index.numel() == 0:
                index = index.long()
        elif not isinstance(index, Tensor):
            raise TypeError(f"a row index must be None, a slice, an int, or an integer tensor, "
                            f"got {type(index).__name__}")
        if index.dtype == torch.bool:
            if index.shape != (num_rows,):
                raise IndexError(f"a bool mask must have shape ({num_rows},), "
                                 f"got {tuple(index.shape)}")
            index = index.nonzero().view(-1)
        elif index.is_floating_point() or index.is_complex():
            raise TypeError(f"a row index must be integers, got dtype {index.dtype}")
        shape = tuple(index.shape)
        flat = index.detach().reshape(-1)
        if flat.numel():
            lo, hi = (int(v) for v in torch.aminmax(flat))
            if lo < 0:
                raise IndexError(f"negative row {lo}: rows must be in [0, {num_rows})")
            if hi >= num_rows:
                raise IndexError(f"row {hi} out of range for {num_rows} rows")
        flat = flat.to(device=device, dtype=torch.int64)
        return RowIndex(flat, shape)


def _name(key: Key) -> str:
    group, name = key
    return repr(name) if group is None else f"{group!r}.{name}"


def _describe(index) -> str:
    if isinstance(index, Tensor):
        return f"tensor of shape {tuple(index.shape)}"
    return f"{index!r:.40}"


def _is_cuda(device: torch.device) -> bool:
    return device.type == 'cuda'


def _require_cuda(store: str, device: torch.device) -> None:
    if not _is_cuda(device):
        raise ValueError(f"{store} gathers with the GPU and needs a CUDA device, got {device}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"{store}: CUDA is not available on this machine")


def _gpu_module():
    from ibp_gnn import gpu
    if not gpu.is_available():
        raise RuntimeError("the ibp_gnn GPU module is not available (CuPy and a CUDA device "
                           "are needed)")
    return gpu


def _pinned_rows(tensor: Tensor, device: torch.device):
    """A ``gpu.PinnedRawMatrix`` with its own copy of ``tensor`` (it would use a tensor that is
    already pinned in place, sharing the caller's memory)."""
    if tensor.is_pinned():
        tensor = tensor.clone()
    return _gpu_module().PinnedRawMatrix(tensor, device, location='pinned')


class CPUFeatureStore(NodeFeatureStore):
    r"""Raw features in host memory: CPU ``index_select``, then ``.to(device)`` (PyG's usual
    path for in-memory features).

    Args:
        device: where fetched tensors are returned.
    """

    def _hold(self, tensor: Tensor, key: Key) -> HeldTensor:
        data = tensor.clone()  # the store owns its memory: later writes by the caller don't leak in
        return HeldTensor(tuple(data.shape), data.dtype, data, host_bytes=data.nbytes)

    def _gather(self, held: HeldTensor, index: Tensor) -> Tensor:
        return held.data.index_select(0, index).to(self.device)


class GPUFeatureStore(NodeFeatureStore):
    r"""Raw features resident on ``device`` (GPU memory), gathered there with
    ``index_select``. With ``device='cpu'`` it degenerates to host memory (counted as such).

    Args:
        device: where the features live and fetched tensors are returned.
    """

    @property
    def index_device(self) -> torch.device:
        return self.device

    def _hold(self, tensor: Tensor, key: Key) -> HeldTensor:
        data = tensor.to(self.device, copy=True)
        on_host = data.device.type == 'cpu'
        return HeldTensor(tuple(data.shape), data.dtype, data,
                          host_bytes=data.nbytes if on_host else 0,
                          device_bytes=0 if on_host else data.nbytes, kind='device')

    def _gather(self, held: HeldTensor, index: Tensor) -> Tensor:
        return held.data.index_select(0, index)


class UVAFeatureStore(NodeFeatureStore):
    r"""Raw features in pinned host memory, gathered by the GPU with zero-copy (UVA) reads.

    Args:
        device: the CUDA device that gathers and receives the rows.
    """

    def __init__(self, device: Union[str, torch.device] = 'cuda'):
        super().__init__(device)
        _require_cuda(type(self).__name__, self.device)

    @property
    def index_device(self) -> torch.device:
        return self.device

    def _hold(self, tensor: Tensor, key: Key) -> HeldTensor:
        data = _pinned_rows(tensor, self.device)
        return HeldTensor(tuple(tensor.shape), tensor.dtype, data,
                          host_bytes=tensor.nbytes, kind='pinned')

    def _gather(self, held: HeldTensor, index: Tensor) -> Tensor:
        return held.data.gather(index, check=False)  # already validated


class IBPFeatureStore(NodeFeatureStore):
    r"""Node features IBP-compressed in host memory, decoded losslessly on fetch.

    On a CUDA ``device`` the compressed payload lives in pinned host memory (``location=
    'pinned'``, read zero-copy) or in device memory (``location='device'``), and the GPU gathers
    and decodes the rows of a mini-batch in one pass; on ``device='cpu'`` the CPU decoder does.

    Attributes that would not gain are kept raw: 1-D attributes (labels, masks), those under
    ``min_bytes``, and those whose compression ratio is below ``min_ratio`` (a matrix put
    already compressed is then decoded once). Raw attributes go through pinned memory on CUDA,
    like :class:`UVAFeatureStore`.

    Args:
        device: where fetched tensors are returned.
        min_ratio: keep an attribute raw when ``raw_bytes / host_bytes`` compressed is below
            this. Near 1 the decoding costs more than the bytes it saves: on an H100 over PCIe
            gen5, dense PCA features compressed 1.16x gathered at 0.91x the raw zero-copy
            rate, pygod_reddit's 1.49x at 1.9x (``bench/results/gpu-*.json``), and the CPU
            decoder is slower than a plain row copy on such rows. Pass ``min_ratio=1.0`` to
            keep every saving of host memory instead.
        min_bytes: keep attributes smaller than this raw.
        location: ``'pinned'`` or ``'device'``, where the compressed payload lives on CUDA.
        **compress_kwargs: passed to :func:`ibp_gnn.codec.compress`.
    """

    def __init__(self, device: Union[str, torch.device] = 'cpu', *, min_ratio: float = 1.25,
                 min_bytes: int = 1 << 16, location: str = 'pinned', **compress_kwargs):
        super().__init__(device)
        if location not in ('pinned', 'device'):
            raise ValueError(f"location must be 'pinned' or 'device', got {location!r}")
        if _is_cuda(self.device):
            _require_cuda(type(self).__name__, self.device)
        elif self.device.type != 'cpu':
            raise ValueError(f"{type(self).__name__} decodes on the CPU or a CUDA device, "
                             f"got {self.device}")
        self.__dict__.update(min_ratio=float(min_ratio), min_bytes=int(min_bytes),
                             location=location, compress_kwargs=dict(compress_kwargs))

    @property
    def index_device(self) -> torch.device:
        return self.device

    @property
    def ratio(self) -> float:
        """``raw_bytes / host_bytes`` over all attributes (raw-kept ones count at ratio 1)."""
        return self.raw_bytes / self.host_bytes if self.host_bytes else 1.0

    def attr_ratio(self, attr_name: str, group_name: Optional[str] = None) -> float:
        """Compression ratio of one attribute (1.0 when it is kept raw)."""
        h = self._lookup(self._tensor_attr_cls(group_name=group_name, attr_name=attr_name))
        return (h.info or {}).get('ratio', 1.0)

    def _hold(self, tensor: Tensor, key: Key) -> HeldTensor:
        from ibp_gnn.codec import compress
        from ibp_gnn.codec.dtypes import SUPPORTED_DTYPES, dtype_name
        try:
            dtype_name(tensor.dtype)
        except TypeError:
            raise TypeError(f"{type(self).__name__} cannot hold dtype {tensor.dtype}; "
                            f"supported: {', '.join(SUPPORTED_DTYPES)}") from None
        raw_bytes = tensor.nbytes
        why_raw = None
        if tensor.dim() < 2:
            why_raw = '1-D'
        elif raw_bytes < self.min_bytes:
            why_raw = f'under {self.min_bytes} bytes'
        cm = None
        if why_raw is None:
            cuda = _is_cuda(self.device)
            pinned = cuda and self.location == 'pinned'
            allocator = _gpu_module().pinned_allocator if pinned else None
            cm = compress(tensor, allocator=allocator, **self.compress_kwargs)
            why_raw = self._gains_too_little(cm)
        if why_raw is not None:
            return self._hold_raw(tensor, why_raw, cm)
        return self._hold_compressed(cm)

    def _gains_too_little(self, cm) -> Optional[str]:
        """Why ``cm`` is better held raw (its ratio is below ``min_ratio``), or None."""
        return f'ratio {cm.ratio:.3f} < {self.min_ratio}' if cm.ratio < self.min_ratio else None

    def _hold_precompressed(self, cm) -> HeldTensor:
        # the same rule as for a tensor put here: a matrix that gains too little is decoded
        # once and held raw
        why_raw = self._gains_too_little(cm)
        if why_raw is not None and cm.num_rows:
            return self._hold_raw(cm.decode(), why_raw, cm)
        return self._hold_compressed(cm)

    def _hold_compressed(self, cm) -> HeldTensor:
        info = {'ratio': cm.ratio, 'compress_seconds': cm.compress_seconds}
        shape, dtype = tuple(cm.shape), cm.torch_dtype
        if not _is_cuda(self.device):
            return HeldTensor(shape, dtype, cm, host_bytes=cm.host_bytes, kind='ibp', info=info)
        dev = _gpu_module().DeviceCompressedMatrix(cm, self.device, location=self.location)
        # Offsets, mask and bitval always go to the device; the payload only for 'device'.
        # The device matrix keeps the host copy referenced in both cases.
        side = cm.host_bytes - cm.payload_bytes
        return HeldTensor(shape, dtype, dev, host_bytes=cm.host_bytes,
                          device_bytes=cm.host_bytes if self.location == 'device' else side,
                          kind=f'ibp-{self.location}', info=info)

    def _hold_raw(self, tensor: Tensor, why: str, cm=None) -> HeldTensor:
        info = {'raw_reason': why}
        if cm is not None:
            info['ratio_if_compressed'] = cm.ratio
        if _is_cuda(self.device):
            data = _pinned_rows(tensor, self.device)
            return HeldTensor(tuple(tensor.shape), tensor.dtype, data, host_bytes=tensor.nbytes,
                              kind='raw-pinned', info=info)
        data = tensor.clone()
        return HeldTensor(tuple(data.shape), data.dtype, data, host_bytes=data.nbytes,
                          kind='raw', info=info)

    def _gather(self, held: HeldTensor, index: Tensor) -> Tensor:
        if isinstance(held.data, Tensor):
            return held.data.index_select(0, index)
        if _is_cuda(self.device):
            return held.data.gather(index, check=False)  # already validated
        return held.data.decode(index.numpy())
