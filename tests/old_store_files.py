"""Store files of earlier format versions, made from current ones for the compatibility tests."""
import dataclasses
import json
import struct
import zlib

import numpy as np

from ibp_gnn.codec.dtypes import as_byte_rows
from reference_codec import encode as reference_encode


def rewrite_as_version(path, version: int, sections=(), fields=()) -> None:
    """Make the store file at ``path`` look like an older version: its version number, and a
    header without the given sections and fields (checksum updated)."""
    raw = bytearray(path.read_bytes())
    head_len = struct.unpack_from("<I", raw, 12)[0]
    header = json.loads(raw[16:16 + head_len])
    for name in sections:
        del header["sections"][name]
    for name in fields:
        del header[name]
    head = json.dumps(header).encode().ljust(head_len)
    raw[8:12] = struct.pack("<I", version)
    raw[16:16 + head_len] = head
    raw[16 + head_len:20 + head_len] = struct.pack("<I", zlib.crc32(head))
    path.write_bytes(bytes(raw))


def with_selectors_by_segment(cm, x):
    """``cm`` (the compressed ``x``) with its rows in the layout of format versions 2 to 4:
    each segment's selectors before its free bits (the reference encoder's), same lengths."""
    if cm.raw_layout:
        return cm
    rows = reference_encode(as_byte_rows(x)[0], cm.plan(), selectors_by_segment=True)
    payload = np.concatenate([np.asarray(r, cm.payload.dtype) for r in rows] +
                             [np.zeros(0, cm.payload.dtype)])
    assert payload.shape == cm.payload.shape
    return dataclasses.replace(cm, payload=payload)
