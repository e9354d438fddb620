"""Space of each matrix as `ibp-gnn inspect` reports it, one line per file.

    python scripts/space_table.py PATH...
"""
import sys

from ibp_gnn import compress
from ibp_gnn.matrix_io import read_matrix

for path in sys.argv[1:]:
    cm = compress(read_matrix(path))
    name = path.rsplit("/", 1)[-1]
    print(f"{name:32s} payload {100 * cm.payload_bytes / cm.raw_bytes:6.2f}%  "
          f"host {100 * cm.host_bytes / cm.raw_bytes:6.2f}%  ratio {cm.ratio:6.2f}  "
          f"chunk {cm.chunk_bits}  threshold {cm.threshold}  kinds {cm.num_kinds}")
