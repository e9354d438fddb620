"""CPU decoder: gathers and decodes rows with a parallel Numba kernel."""
from __future__ import annotations

import numpy as np

from . import _kernels


def decode_rows(cm, idx: np.ndarray) -> np.ndarray:
    """Decode rows ``idx`` (validated int64 ``[B]``) -> words ``[B, C]`` of the chunk dtype."""
    starts, ends = cm.row_offsets(idx)
    out = np.empty((len(idx), cm.num_chunks), cm.payload.dtype)
    if len(idx) and cm.num_chunks:
        run_start, run_len, run_count = cm.kind_runs
        _kernels.decode_rows(cm.payload, starts, ends, cm.num_chunks, cm.chunk_bits,
                             cm.column_kind_ids(), cm.kind_bitvals.astype(np.uint64),
                             run_len.sum(1), run_start, run_len, run_count, out)
    return out
