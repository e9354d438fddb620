"""CPU decoder: gathers and decodes rows with a parallel Numba kernel."""
from __future__ import annotations

import numpy as np

from . import _kernels
from .dtypes import read_only

_UNITS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}


def decode_rows(cm, idx: np.ndarray) -> np.ndarray:
    """Decode rows ``idx`` (validated int64 ``[B]``) -> uint8 ``[B, row_bytes]``.

    The kernel writes in the widest unit dividing both the row and the chunk, so rows whose
    size is not a multiple of the chunk need no padded buffer and no second copy.
    """
    unit = next(u for u in _UNITS if u <= cm.chunk_bytes and cm.row_bytes % u == 0)
    out = np.empty((len(idx), cm.row_bytes // unit), _UNITS[unit])
    if len(idx) and cm.num_chunks:
        starts, ends = cm._offsets(idx), cm._offsets(idx + 1)
        run_start, run_len, run_count = cm.pattern_runs
        pat_mask, pat_bitval, pat_free, sel, alt_start = cm.patterns()
        kinds, segment_free, bitval_row = cm.decode_tables
        _kernels.decode_rows(read_only(cm.payload), starts, ends, cm.num_chunks,
                             cm.chunk_bits, kinds, sel, alt_start, pat_mask, pat_bitval,
                             pat_free, run_start, run_len, run_count, cm.list_header,
                             cm.num_groups, segment_free, bitval_row.view(out.dtype),
                             _kernels.FAST_PDEP, out)
    return out.view(np.uint8)
