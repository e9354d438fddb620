"""Store files: one file per compressed matrix, versioned header, a CRC-32 per section.

Layout: ``MAGIC`` (8 bytes), format version (uint32 LE), header length (uint32 LE), the JSON
header, its CRC-32 (uint32 LE), then each array section at a 4096-byte boundary so the payload
can be memory-mapped in place.
"""
from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from . import _kernels, dtypes
from .container import KIND_BITS, WORD_DTYPES, CompressedMatrix
from .plan import MAX_GROUPS, list_header_fits

MAGIC = b"\x89IBPGNN\n"
FORMAT_VERSION = 5
# version 1 files are the basic format (no alternatives, bitmap headers); version 2 files have
# no row groups; version 3 adds 16-bit chunks and row groups; version 4 adds 8-bit relative
# row offsets; version 5 moves each row's selectors to its end (versions 2 to 4 keep them
# segment by segment, and are rewritten on load)
READ_VERSIONS = (1, 2, 3, 4, 5)
SECTION_ALIGNMENT = 4096
_SECTIONS_V1 = ("kind_masks", "kind_bitvals", "column_kinds", "offset_lo", "block_base",
                "payload")
_SECTIONS = _SECTIONS_V1 + ("kind_select_bits", "alt_masks", "alt_bitvals")
MAX_SELECT_BITS = 8
_PREFIX = struct.Struct("<8sII")


class StoreFileError(ValueError):
    """A store file is truncated, corrupted, or not a store file."""


def _crc32(arr: np.ndarray) -> int:
    crc = 0
    flat = arr.reshape(-1).view(np.uint8)
    step = 64 << 20
    for lo in range(0, flat.size, step):
        crc = zlib.crc32(flat[lo:lo + step], crc)
    return crc


def save(cm: CompressedMatrix, path) -> None:
    """Write ``cm`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(getattr(cm, name)) for name in _SECTIONS}
    header = {
        "shape": [int(s) for s in cm.shape], "dtype": cm.dtype, "chunk_bits": cm.chunk_bits,
        "offset_shift": cm.offset_shift, "kind_bits": cm.kind_bits,
        "raw_layout": cm.raw_layout, "threshold": cm.threshold,
        "list_header": bool(cm.list_header), "num_groups": int(cm.num_groups),
        "sections": {},
    }
    # section offsets depend on the header length, which depends on the offsets: fix the
    # header size first with generous placeholders, then fill in the real values
    offset = 0
    for name, arr in arrays.items():
        header["sections"][name] = {"dtype": arr.dtype.str, "shape": list(arr.shape),
                                    "offset": 0, "nbytes": int(arr.nbytes),
                                    "crc32": _crc32(arr)}
    head_len = len(json.dumps(header).encode()) + 32 * len(arrays) + 64
    offset = -(-(_PREFIX.size + head_len + 4) // SECTION_ALIGNMENT) * SECTION_ALIGNMENT
    for name, arr in arrays.items():
        header["sections"][name]["offset"] = offset
        end = offset + arr.nbytes
        offset = -(-end // SECTION_ALIGNMENT) * SECTION_ALIGNMENT
    header["file_bytes"] = end
    head = json.dumps(header).encode().ljust(head_len)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)))
            f.write(head)
            f.write(struct.pack("<I", zlib.crc32(head)))
            for name, arr in arrays.items():
                f.seek(header["sections"][name]["offset"])
                f.write(arr.reshape(-1).view(np.uint8).data)
            f.truncate(end)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path, *, mmap: bool = True) -> CompressedMatrix:
    """Read a store file; with ``mmap`` the sections are mapped read-only instead of read.

    Every section's checksum and the container's structure are verified before returning, so a
    truncated or corrupted file raises :class:`StoreFileError` and never decodes to wrong data.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise StoreFileError(f"{path}: not an ibp_gnn store file")
        _, version, head_len = _PREFIX.unpack(prefix)
        if version not in READ_VERSIONS:
            raise StoreFileError(f"{path}: store format version {version}; this version of "
                                 f"ibp_gnn reads versions {READ_VERSIONS}")
        head = f.read(head_len)
        crc = f.read(4)
        if len(head) < head_len or len(crc) < 4:
            raise StoreFileError(f"{path}: truncated header")
        if struct.unpack("<I", crc)[0] != zlib.crc32(head):
            raise StoreFileError(f"{path}: header checksum mismatch (corrupted file)")
        try:
            header = json.loads(head)
        except ValueError as e:
            raise StoreFileError(f"{path}: unreadable header: {e}") from None
    _check_header(header, path, version)
    if size != header["file_bytes"]:
        raise StoreFileError(f"{path}: truncated or extended: {size} bytes, the header says "
                             f"{header['file_bytes']}")
    arrays = {}
    for name in _SECTIONS if version >= 2 else _SECTIONS_V1:
        sec = header["sections"][name]
        end = sec["offset"] + sec["nbytes"]
        if end > size:
            raise StoreFileError(f"{path}: truncated: section {name!r} ends at byte {end}, "
                                 f"the file has {size} bytes")
        dt = np.dtype(sec["dtype"])
        count = sec["nbytes"] // dt.itemsize
        if mmap and count:
            arr = np.memmap(path, dtype=dt, mode="r", offset=sec["offset"], shape=(count,))
        else:
            with open(path, "rb") as f:
                f.seek(sec["offset"])
                arr = np.frombuffer(f.read(sec["nbytes"]), dtype=dt).copy()
        if _crc32(arr) != sec["crc32"]:
            raise StoreFileError(f"{path}: checksum mismatch in section {name!r} "
                                 f"(corrupted file)")
        arrays[name] = arr.reshape(sec["shape"])
    cm = CompressedMatrix(shape=tuple(header["shape"]), dtype=header["dtype"],
                          chunk_bits=header["chunk_bits"], offset_shift=header["offset_shift"],
                          kind_bits=header["kind_bits"], raw_layout=header["raw_layout"],
                          threshold=header["threshold"],
                          list_header=header.get("list_header", False),
                          num_groups=header.get("num_groups", 1), **arrays)
    if 2 <= version <= 4:
        cm = _selectors_to_row_end(cm, path)
    validate(cm, str(path))
    return cm


def _selectors_to_row_end(cm: CompressedMatrix, path) -> CompressedMatrix:
    """``cm`` read from a file of versions 2 to 4, in the current layout: a new payload in
    memory when its rows hold selectors (the file stays as it is; saving ``cm`` writes the
    current version), else ``cm`` itself."""
    if cm.raw_layout or not np.any(cm.kind_select_bits):
        return cm
    validate(cm, str(path), streams=False)
    offsets = cm._offsets(np.arange(cm.num_rows + 1, dtype=np.int64))
    _, _, pat_free, sel64, alt_start = cm.patterns()
    payload = np.zeros_like(np.asarray(cm.payload))
    bad = _kernels.selectors_to_row_end(np.asarray(cm.payload), offsets, cm.num_chunks,
                                        cm.chunk_bits, cm.column_kind_ids(), sel64, alt_start,
                                        pat_free, cm.list_header, cm.num_groups, payload)
    if bad >= 0:
        raise StoreFileError(f"{path}: invalid container: row {bad}: its header and "
                             f"selectors do not match its stored length")
    return dataclasses.replace(cm, payload=payload)


_SECTION_DTYPES = {"|u1", "<u2", "<u4", "<u8"}


def _check_header(header, path, version: int = FORMAT_VERSION) -> None:
    """Types and ranges of every header field, so a malformed header is reported as such."""
    def fail(msg):
        raise StoreFileError(f"{path}: malformed header: {msg}")

    def is_int(v, lo=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    if not isinstance(header, dict):
        fail("not an object")
    fields = {"shape": list, "dtype": str, "chunk_bits": int, "offset_shift": int,
              "kind_bits": int, "raw_layout": bool, "threshold": (int, float),
              "file_bytes": int, "sections": dict}
    if version >= 2:
        fields["list_header"] = bool
    if version >= 3:
        fields["num_groups"] = int
    for key, kind in fields.items():
        if not isinstance(header.get(key), kind):
            fail(f"field {key!r} is missing or has the wrong type")
    if not header["shape"] or not all(is_int(d) for d in header["shape"]):
        fail(f"shape {header['shape']}")
    for name in _SECTIONS if version >= 2 else _SECTIONS_V1:
        sec = header["sections"].get(name)
        if not isinstance(sec, dict):
            fail(f"section {name!r} is missing")
        if (sec.get("dtype") not in _SECTION_DTYPES or not isinstance(sec.get("shape"), list)
                or len(sec["shape"]) != 1 or not is_int(sec["shape"][0])
                or not all(is_int(sec.get(k)) for k in ("offset", "nbytes", "crc32"))):
            fail(f"section {name!r}: {sec}")
        if sec["nbytes"] != sec["shape"][0] * np.dtype(sec["dtype"]).itemsize:
            fail(f"section {name!r}: {sec['nbytes']} bytes do not hold shape {sec['shape']}")


def validate(cm: CompressedMatrix, where: str = "matrix", *, streams: bool = True) -> None:
    """Check the container's structure so decoding can never read out of bounds
    (``streams=False``: all but the rows' bit streams)."""
    def fail(msg):
        raise StoreFileError(f"{where}: invalid container: {msg}")

    if cm.dtype not in dtypes.SUPPORTED_DTYPES:
        fail(f"unknown dtype {cm.dtype!r}")
    if cm.chunk_bits not in WORD_DTYPES:
        fail(f"chunk_bits {cm.chunk_bits}")
    wd = WORD_DTYPES[cm.chunk_bits]
    n, c = cm.num_rows, cm.num_chunks
    if not 1 <= cm.num_groups <= MAX_GROUPS or (cm.raw_layout and cm.num_groups != 1):
        fail(f"num_groups {cm.num_groups}")
    if not 0 <= cm.offset_shift <= 16:
        fail(f"offset_shift {cm.offset_shift}")
    if cm.kind_bits not in KIND_BITS:
        fail(f"kind_bits {cm.kind_bits}")
    k = cm.kind_masks.shape[0] if cm.kind_masks.ndim == 1 else -1
    kind_words = 0 if cm.kind_bits == 0 else -(-cm.num_groups * c * cm.kind_bits // 32)
    tables = 0 if cm.raw_layout else 1
    expect = {"kind_masks": ((k,), wd), "kind_bitvals": ((k,), wd),
              "column_kinds": ((kind_words,), np.dtype(np.uint32)), "payload": (None, wd),
              "offset_lo": (((n + 1) * tables,), None),
              "block_base": ((((n >> cm.offset_shift) + 1) * tables,), np.dtype(np.uint64))}
    for name, (shape, dt) in expect.items():
        arr = getattr(cm, name)
        ok_dtype = arr.dtype in (np.uint8, np.uint16, np.uint32) if dt is None else arr.dtype == dt
        if not ok_dtype or arr.ndim != 1 or (shape is not None and arr.shape != shape):
            fail(f"{name} has dtype {arr.dtype} and shape {arr.shape}")
    if c and (k < 1 or k > (1 << cm.kind_bits) or cm.column_kind_ids().max() >= k):
        fail(f"column kinds refer to kinds beyond the {k} stored")
    if np.any(cm.kind_bitvals & ~cm.kind_masks):
        fail("bitval has bits outside mask")
    sel = cm.kind_select_bits
    if sel.dtype != np.uint8 or sel.shape != (k,) or (k and sel.max() > MAX_SELECT_BITS):
        fail(f"kind_select_bits has dtype {sel.dtype}, shape {sel.shape} or values above "
             f"{MAX_SELECT_BITS}")
    alts = int(np.sum(1 << sel.astype(np.int64)))
    for name in ("alt_masks", "alt_bitvals"):
        arr = getattr(cm, name)
        if arr.dtype != wd or arr.shape != (alts,):
            fail(f"{name} has dtype {arr.dtype} and shape {arr.shape}, expected ({alts},)")
    if np.any(cm.alt_bitvals & ~cm.alt_masks):
        fail("an alternative's bitval has bits outside its mask")
    if cm.raw_layout and cm.list_header:
        fail("a raw layout has no row headers")
    if cm.list_header and not list_header_fits(c, cm.chunk_bits):
        fail(f"a list header of {c} chunks does not fit {cm.chunk_bits}-bit fields")
    if cm.raw_layout:
        if cm.payload.size != n * c:
            fail(f"raw layout of {n} rows x {c} words, payload has {cm.payload.size} words")
        return
    offsets = cm._offsets(np.arange(n + 1, dtype=np.int64))
    lengths = np.diff(offsets)
    if offsets[0] != 0 or (n and (lengths.min() < 0 or lengths.max() > c)):
        fail("row offsets are not increasing or a row is longer than a raw row")
    if offsets[-1] != cm.payload.size:
        fail(f"offsets end at word {offsets[-1]}, payload has {cm.payload.size} words")
    if not streams:
        return
    _, _, pat_free, sel64, alt_start = cm.patterns()
    bad = _kernels.first_inconsistent_row(cm.payload, offsets, c, cm.chunk_bits,
                                          cm.column_kind_ids(), sel64, alt_start, pat_free,
                                          cm.list_header, cm.num_groups)
    if bad >= 0:
        fail(f"row {bad}: its header and selectors do not match its stored length")
