import json
import struct

import numpy as np
import pytest
import torch

from ibp_gnn.codec import compress, load
from ibp_gnn.codec.io import MAGIC, StoreFileError
from ibp_gnn.codec.plan import combine_plans

from conftest import assert_bits_equal
from old_store_files import rewrite_as_version, with_selectors_by_segment


@pytest.fixture
def stored(tmp_path):
    x = (torch.rand(500, 77) < 0.05).to(torch.bfloat16)
    x[3, 5] = float("nan")
    x[:, :20] = torch.randn(500, 20)  # columns of another kind than the sparse ones
    path = tmp_path / "m.ibp"
    compress(x).save(path)
    return x, path


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(stored, mmap):
    x, path = stored
    cm = load(path, mmap=mmap)
    assert cm.shape == tuple(x.shape) and cm.dtype == "bfloat16"
    assert_bits_equal(cm.decode(), x)


def test_empty_matrix_round_trips(tmp_path):
    compress(np.zeros((0, 3), np.int32)).save(tmp_path / "e.ibp")
    assert load(tmp_path / "e.ibp").decode().shape == (0, 3)


def _sections(path):
    raw = path.read_bytes()
    head_len = struct.unpack_from("<I", raw, 12)[0]
    return json.loads(raw[16:16 + head_len])["sections"]


@pytest.mark.parametrize("section", ["kind_masks", "kind_bitvals", "column_kinds",
                                     "offset_lo", "block_base", "payload"])
def test_corrupted_section_is_detected(stored, section):
    _, path = stored
    sec = _sections(path)[section]
    assert sec["nbytes"] > 0
    raw = bytearray(path.read_bytes())
    raw[sec["offset"] + sec["nbytes"] // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreFileError, match=f"checksum mismatch in section '{section}'"):
        load(path)


def test_corrupted_header_is_detected(stored):
    _, path = stored
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreFileError, match="header checksum"):
        load(path)


@pytest.mark.parametrize("keep", [0, 5, 17, 200, 4096, -1])
def test_truncated_file_is_detected(stored, keep):
    _, path = stored
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep >= 0 else raw[:len(raw) - 100])
    with pytest.raises(StoreFileError):
        load(path)


def test_wrong_magic_and_version(stored, tmp_path):
    _, path = stored
    other = tmp_path / "other.bin"
    other.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(StoreFileError, match="not an ibp_gnn store"):
        load(other)
    raw = bytearray(path.read_bytes())
    raw[8:12] = struct.pack("<I", 99)
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreFileError, match="version 99"):
        load(path)


def test_inconsistent_structure_is_refused_even_with_valid_checksums(stored, tmp_path):
    x, path = stored
    cm = load(path, mmap=False)
    cm.offset_lo = cm.offset_lo.copy()
    cm.offset_lo[1] += 1  # lengths no longer match the headers
    bad = tmp_path / "bad.ibp"
    cm.save(bad)
    with pytest.raises(StoreFileError, match="invalid container"):
        load(bad)


def test_save_is_atomic_and_magic_first(stored):
    _, path = stored
    assert path.read_bytes()[:8] == MAGIC
    assert not path.with_name(path.name + ".tmp").exists()


def test_version_1_files_still_load(tmp_path):
    """A version 1 file (the basic format, without the alternative sections) reads as such."""
    x = (torch.rand(200, 40) < 0.1).to(torch.float32)
    path = tmp_path / "v1.ibp"
    compress(x, extended=False).save(path)
    rewrite_as_version(path, 1, ("kind_select_bits", "alt_masks", "alt_bitvals"),
                       ("list_header", "num_groups"))
    cm = load(path)
    assert not cm.extended
    assert_bits_equal(cm.decode(), x)


def test_malformed_list_rows_are_refused(tmp_path):
    x = np.zeros((300, 500), np.float32)
    x[np.arange(300), np.arange(300) % 500] = 1.0  # one non-zero per row: list headers
    cm = compress(x)
    assert cm.list_header
    for value in (np.iinfo(cm.payload.dtype).max, 0):  # too many entries; too few
        bad = compress(x)
        bad.payload[bad.row_offsets([5])[0][0]] = value  # the count field of row 5
        bad.save(tmp_path / "bad.ibp")
        with pytest.raises(StoreFileError, match="row 5"):
            load(tmp_path / "bad.ibp")
    good = tmp_path / "good.ibp"
    cm.save(good)
    assert_bits_equal(load(good).decode(), torch.from_numpy(x))


def test_version_2_files_still_load(tmp_path):
    """A version 2 file (no row groups field, selectors segment by segment) reads as one row
    group, in the current layout."""
    x = (torch.rand(200, 40) < 0.1).to(torch.float32) * torch.randint(1, 4, (200, 40))
    path = tmp_path / "v2.ibp"
    cm = compress(x)
    assert cm.kind_select_bits.any() and cm.num_groups == 1
    with_selectors_by_segment(cm, x).save(path)
    rewrite_as_version(path, 2, fields=("num_groups",))
    old = load(path)
    assert old.num_groups == 1
    np.testing.assert_array_equal(old.payload, cm.payload)
    assert_bits_equal(old.decode(), x)


@pytest.mark.parametrize("version", [3, 4])
def test_rows_of_versions_3_and_4_move_their_selectors_to_the_row_end(tmp_path, version):
    """Files of versions 2 to 4 keep each segment's selectors before its free bits; loading
    one rewrites the rows into the current layout (the bits the current encoder writes), and
    saving it again writes the current version. A row whose old layout does not add up to its
    length is refused."""
    rng = np.random.default_rng(version)
    x = np.where(rng.random((400, 300)) < 0.05, rng.integers(1, 9, (400, 300)), 0)
    x = x.astype(np.float32)
    x[:50, :70] = rng.standard_normal((50, 70)).round(1)     # rows of another population
    # two row groups, each with its own patterns
    cm = compress(x, plan=combine_plans([compress(x[50:]).plan(), compress(x[:50]).plan()]))
    assert cm.kind_select_bits.any() and cm.num_groups == 2 and not cm.raw_layout
    old = with_selectors_by_segment(cm, x)
    assert not np.array_equal(old.payload, cm.payload)
    old.save(tmp_path / "old.ibp")
    rewrite_as_version(tmp_path / "old.ibp", version)
    loaded = load(tmp_path / "old.ibp")
    np.testing.assert_array_equal(loaded.payload, cm.payload)
    assert_bits_equal(loaded.decode(), torch.from_numpy(x))
    loaded.save(tmp_path / "again.ibp")
    assert struct.unpack_from("<I", (tmp_path / "again.ibp").read_bytes(), 8)[0] == 5
    np.testing.assert_array_equal(load(tmp_path / "again.ibp").payload, cm.payload)
    row = int(np.flatnonzero(~cm.raw_flags)[0])
    start, end = cm.row_offsets([row])
    old.payload[int(start[0]):int(end[0])] = 0       # every field zero: too short for its length
    old.save(tmp_path / "bad.ibp")
    rewrite_as_version(tmp_path / "bad.ibp", version)
    with pytest.raises(StoreFileError, match=f"row {row}"):
        load(tmp_path / "bad.ibp")


def test_8_bit_offsets_store_and_version_3_files_still_load(tmp_path):
    """Short rows get 8-bit relative offsets, which a store file keeps; a version 3 file (16-
    or 32-bit offsets only) reads as before."""
    x = (torch.rand(3000, 40) < 0.02).to(torch.float32)      # a few words a row
    cm = compress(x)
    assert cm.offset_lo.dtype == np.uint8
    cm.save(tmp_path / "short.ibp")
    assert_bits_equal(load(tmp_path / "short.ibp").decode(), x)
    y = torch.randn(300, 256).round(decimals=1)              # about 70 words a row
    wide = compress(y)
    assert wide.offset_lo.dtype == np.uint16 and not wide.raw_layout
    path = tmp_path / "v3.ibp"
    with_selectors_by_segment(wide, y).save(path)
    rewrite_as_version(path, 3)
    assert_bits_equal(load(path).decode(), y)


def test_row_group_ids_beyond_the_groups_are_refused(tmp_path):
    x = (torch.rand(300, 64) < 0.2).to(torch.float32) * torch.randn(300, 64)
    single = compress(x).plan()
    plan = combine_plans([single] * 3)                  # 3 groups: 2-bit ids, id 3 unused
    cm = compress(x, plan=plan)
    assert cm.num_groups == 3 and not cm.raw_layout
    cm.save(tmp_path / "good.ibp")
    assert_bits_equal(load(tmp_path / "good.ibp").decode(), x)
    row = int(np.flatnonzero(~cm.raw_flags)[0])
    first = cm.row_offsets([row])[0][0] + cm.header_words   # the stream's first word
    top = np.array(3 << (cm.chunk_bits - 2), dtype=cm.payload.dtype)
    cm.payload[first] |= top                            # group id 3
    cm.save(tmp_path / "bad.ibp")
    with pytest.raises(StoreFileError, match=f"row {row}"):
        load(tmp_path / "bad.ibp")
