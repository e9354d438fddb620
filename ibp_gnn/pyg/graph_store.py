"""A PyG :class:`~torch_geometric.data.GraphStore` holding every edge type as CSC."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import EdgeAttr, GraphStore
from torch_geometric.data.graph_store import EdgeLayout
from torch_geometric.index import index2ptr, ptr2index
from torch_geometric.typing import EdgeType

EdgeKey = Optional[EdgeType]  # None for a homogeneous graph


@dataclass
class CSC:
    """One edge type in compressed sparse column form (grouped by destination node).

    Attributes:
        colptr: int64 ``[num_dst + 1]``; the in-edges of destination ``v`` are the positions
            ``colptr[v]:colptr[v + 1]``.
        row: int64 ``[E]``, the source node of each edge, grouped by destination.
        perm: int64 ``[E]`` or None: ``perm[e]`` is the position of CSC edge ``e`` in the edge
            list that was put (None when that list was already CSC-ordered).
        size: ``(num_src, num_dst)``.
    """

    colptr: Tensor
    row: Tensor
    perm: Optional[Tensor]
    size: Tuple[int, int]

    @property
    def num_edges(self) -> int:
        return int(self.row.numel())

    @property
    def nbytes(self) -> int:
        n = self.colptr.nbytes + self.row.nbytes
        return n + (self.perm.nbytes if self.perm is not None else 0)

    def edge_ids(self, e: Tensor) -> Tensor:
        """Ids in the edge list that was put, of the CSC positions ``e``."""
        return self.perm.index_select(0, e) if self.perm is not None else e


def _as_long(t, what: str) -> Tensor:
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{what} must be an integer tensor, got {type(t).__name__}") from exc
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{what} must be an integer tensor, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{what} must be 1-D, got shape {tuple(t.shape)}")
    return t.detach().to(torch.int64)


def _check_range(t: Tensor, upper: int, what: str) -> None:
    if t.numel():
        lo, hi = (int(v) for v in torch.aminmax(t))
        if lo < 0 or hi >= upper:
            raise ValueError(f"{what} holds node ids in [{lo}, {hi}], outside [0, {upper})")


def _owned(t: Tensor, device: torch.device) -> Tensor:
    """``t`` contiguous on ``device``, copied if it would still share the caller's memory."""
    out = t.to(device).contiguous()
    return out.clone() if out.data_ptr() == t.data_ptr() and t.numel() else out


class CSCGraphStore(GraphStore):
    r"""Graph topology as CSC per edge type, in host or GPU memory.

    Edges may be put in COO (``edge_index`` as a ``[2, E]`` tensor or a ``(row, col)`` pair),
    CSR (``(rowptr, col)``) or CSC (``(row, colptr)``) layout; they are always held as CSC
    (sorted by destination node, stable, so each node's in-edges keep their input order) and
    listed by :meth:`get_all_edge_attrs` with ``layout='csc'``. :meth:`get_edge_index` converts
    back to any layout on request.

    A homogeneous graph uses ``edge_type=None``; a heterogeneous graph uses
    ``(src, rel, dst)`` tuples for every edge type (mixing both is refused).

    Args:
        device: where the CSC tensors live (``'cpu'`` or a CUDA device); a sampler over this
            store runs there.
    """

    def __init__(self, device: Union[str, torch.device] = 'cpu'):
        super().__init__()
        self.__dict__['device'] = torch.device(device)
        self.__dict__['_csc'] = {}

    # -- GraphStore interface ----------------------------------------------------------------
    def _put_edge_index(self, edge_index, edge_attr: EdgeAttr) -> bool:
        key = self._check_key(edge_attr.edge_type)
        if edge_attr.size is not None:
            size = tuple(int(s) for s in edge_attr.size)
            if len(size) != 2 or min(size) < 0:
                raise ValueError(f"size must be (num_src, num_dst), got {edge_attr.size}")
        else:
            size = None
        if isinstance(edge_index, Tensor) and edge_index.dim() == 2:
            if edge_index.size(0) != 2:
                raise ValueError(
                    f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
            first, second = edge_index[0], edge_index[1]
        elif isinstance(edge_index, (tuple, list)) and len(edge_index) == 2:
            first, second = edge_index
        else:
            raise TypeError("edge_index must be a [2, E] tensor or a pair of 1-D tensors")
        first = _as_long(first, "edge_index[0]")
        second = _as_long(second, "edge_index[1]")

        layout = edge_attr.layout
        if layout == EdgeLayout.CSC:
            row, colptr = first, second
            if size is None:
                size = self._infer_size(key, row, colptr.numel() - 1)
            self._check_ptr(colptr, size[1], row.numel(), "colptr")
            _check_range(row, size[0], "row")
            perm = None
        else:
            if layout == EdgeLayout.CSR:
                rowptr, col = first, second
                num_src = size[0] if size is not None else rowptr.numel() - 1
                self._check_ptr(rowptr, num_src, col.numel(), "rowptr")
                row = ptr2index(rowptr, output_size=col.numel())
            else:
                row, col = first, second
                if row.numel() != col.numel():
                    raise ValueError(f"edge_index rows differ in length: {row.numel()} "
                                     f"sources, {col.numel()} destinations")
            if size is None:
                size = self._infer_size(key, row, None, col)
            _check_range(row, size[0], "row (source)")
            _check_range(col, size[1], "col (destination)")
            if edge_attr.is_sorted and layout == EdgeLayout.COO:
                if col.numel() > 1 and bool((col[1:] < col[:-1]).any()):
                    raise ValueError("is_sorted=True but edge_index is not sorted by "
                                     "destination")
                perm = None
            else:
                col, perm = torch.sort(col, stable=True)
                row = row.index_select(0, perm)
            colptr = index2ptr(col, size[1])
        dev = self.device
        self._csc[key] = CSC(colptr=_owned(colptr, dev), row=_owned(row, dev),
                             perm=None if perm is None else _owned(perm, dev), size=size)
        return True

    def _get_edge_index(self, edge_attr: EdgeAttr) -> Optional[Tuple[Tensor, Tensor]]:
        csc = self._csc.get(edge_attr.edge_type)
        if csc is None:
            return None
        layout = EdgeLayout(edge_attr.layout)
        if layout == EdgeLayout.CSC:
            return csc.row, csc.colptr
        col = ptr2index(csc.colptr, output_size=csc.num_edges)
        if layout == EdgeLayout.COO:
            return csc.row, col
        row, order = torch.sort(csc.row, stable=True)
        return index2ptr(row, csc.size[0]), col.index_select(0, order)

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        return self._csc.pop(edge_attr.edge_type, None) is not None

    def get_all_edge_attrs(self) -> List[EdgeAttr]:
        return [EdgeAttr(key, EdgeLayout.CSC, True, csc.size) for key, csc in self._csc.items()]

    # -- direct access for samplers ------------------------------------------------------------
    def csc(self, edge_types=None, store: bool = False):
        """PyG's conversion API, answered without conversion: ``(row, colptr, perm)`` (dicts for
        a heterogeneous store)."""
        if not self.is_hetero:
            csc = self.get_csc(None)
            return csc.row, csc.colptr, csc.perm
        keys = list(self._csc) if edge_types is None else edge_types
        out = ({}, {}, {})
        for key in keys:
            csc = self.get_csc(key)
            out[0][key], out[1][key], out[2][key] = csc.row, csc.colptr, csc.perm
        return out

    def get_csc(self, edge_type: EdgeKey = None) -> CSC:
        """The :class:`CSC` of ``edge_type`` (None for a homogeneous graph)."""
        try:
            return self._csc[edge_type]
        except KeyError:
            known = ', '.join(repr(k) for k in self._csc) or 'none'
            raise KeyError(f"no edges of type {edge_type!r} in the graph store "
                           f"(stored: {known})") from None

    @property
    def edge_types(self) -> List[EdgeKey]:
        return list(self._csc)

    @property
    def is_hetero(self) -> bool:
        return any(key is not None for key in self._csc)

    def num_nodes(self, node_type: Optional[str] = None) -> Optional[int]:
        """Number of nodes of ``node_type`` known from the edge sizes (None if unknown)."""
        for key, csc in self._csc.items():
            if key is None and node_type is None:
                return csc.size[1]
            if key is not None:
                if key[-1] == node_type:
                    return csc.size[1]
                if key[0] == node_type:
                    return csc.size[0]
        return None

    @property
    def nbytes(self) -> int:
        return sum(csc.nbytes for csc in self._csc.values())

    def to(self, device) -> 'CSCGraphStore':
        """A copy of this store with its tensors on ``device``."""
        out = CSCGraphStore(device)
        for key, csc in self._csc.items():
            out._csc[key] = CSC(csc.colptr.to(device), csc.row.to(device),
                                None if csc.perm is None else csc.perm.to(device), csc.size)
        return out

    def __repr__(self) -> str:
        types = ', '.join(f'{k!r}: {v.num_edges} edges' for k, v in self._csc.items())
        return f'{self.__class__.__name__}(device={self.device}, {{{types}}})'

    # -- helpers ---------------------------------------------------------------------------
    def _check_key(self, key) -> EdgeKey:
        if key is not None:
            if (not isinstance(key, tuple) or len(key) != 3
                    or not all(isinstance(k, str) for k in key)):
                raise TypeError(f"edge_type must be None (homogeneous) or a (src, rel, dst) "
                                f"tuple of strings, got {key!r}")
        if self._csc and any((k is None) != (key is None) for k in self._csc):
            raise ValueError("cannot mix a homogeneous edge_type=None with typed edges in "
                             "one graph store")
        return key

    @staticmethod
    def _check_ptr(ptr: Tensor, num: int, num_edges: int, what: str) -> None:
        if ptr.numel() != num + 1:
            raise ValueError(f"{what} must have {num + 1} entries, got {ptr.numel()}")
        if int(ptr[0]) != 0 or int(ptr[-1]) != num_edges:
            raise ValueError(f"{what} must start at 0 and end at the number of edges "
                             f"({num_edges})")
        if ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any()):
            raise ValueError(f"{what} must be non-decreasing")

    @staticmethod
    def _infer_size(key, row: Tensor, num_dst: Optional[int], col: Optional[Tensor] = None):
        num_src = int(row.max()) + 1 if row.numel() else 0
        if num_dst is None:
            num_dst = int(col.max()) + 1 if col.numel() else 0
        if key is None:  # one node set: both sides have the same size
            num_src = num_dst = max(num_src, num_dst)
        return num_src, num_dst

    def __copy__(self):
        out = self.__class__.__new__(self.__class__)
        out.__dict__.update(self.__dict__)
        out.__dict__['_csc'] = copy.copy(self._csc)
        return out
