import json
import subprocess
import sys

import numpy as np
import pytest

from ibp_gnn.cli import main


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((300, 129)) < 0.03).astype(np.float32)
    x[0, 0] = np.float32("nan")
    path = tmp_path / "feat.npz"
    np.savez(path, x=x, other=x[:, :10].astype(np.float16))
    return path, x


def test_inspect_json(npz, capsys):
    path, x = npz
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("rows", "dim", "dtype", "raw_bytes", "payload_bytes", "host_bytes", "ratio",
                "chunk_bits", "rows_raw", "compress_seconds"):
        assert key in report
    assert report["rows"] == 300 and report["dim"] == 129 and report["dtype"] == "float32"
    assert report["raw_bytes"] == x.nbytes
    assert report["ratio"] == pytest.approx(report["raw_bytes"] / report["host_bytes"])
    assert report["host_bytes"] <= report["payload_bytes"] + 5 * report["rows"] + 2 * 129 * 8
    # where the host bytes go: rows, their offsets (8, 16 or 32 bits each), pattern tables
    assert report["host_bytes"] == (report["payload_bytes"] + report["offset_bytes"]
                                    + report["pattern_bytes"])
    assert report["offset_bits"] in (8, 16, 32)
    # the bit-entropy bound, computed independently: every bit position's binary entropy
    bits = np.unpackbits(x.view(np.uint8), axis=1)
    p = bits.mean(0)
    p = p[(p > 0) & (p < 1)]
    bound = -(p * np.log2(p) + (1 - p) * np.log2(1 - p)).sum() * len(x) / 8
    assert report["entropy_bound_bytes"] == pytest.approx(bound, rel=1e-9)
    assert main(["inspect", str(path), "--json", "--basic"]) == 0
    basic = json.loads(capsys.readouterr().out)
    assert basic["header"] == "bitmap" and basic["max_select_bits"] == 0
    assert basic["host_bytes"] >= report["host_bytes"]


def test_inspect_key_npy_and_store(npz, tmp_path, capsys):
    path, x = npz
    assert main(["inspect", str(path), "--key", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float16"
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    assert main(["inspect", str(npy), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    store = tmp_path / "x.ibp"
    assert main(["compress", str(npy), str(store)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(store), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["host_bytes"] == first["host_bytes"]
    assert again["entropy_bound_bytes"] == pytest.approx(first["entropy_bound_bytes"])


def test_compress_and_verify(npz, tmp_path, capsys):
    path, x = npz
    store = tmp_path / "s.ibp"
    assert main(["compress", str(path), str(store)]) == 0
    assert main(["verify", str(store)]) == 0
    assert main(["verify", str(store), "--against", str(path)]) == 0
    changed = x.copy()
    changed[7, 3] = -0.0 if changed[7, 3] == 0 else 0.0  # one sign bit differs
    other = tmp_path / "changed.npy"
    np.save(other, changed)
    assert main(["verify", str(store), "--against", str(other)]) == 1
    assert "1 of 300 rows differ" in capsys.readouterr().err


def test_verify_detects_corruption(npz, tmp_path, capsys):
    path, _ = npz
    store = tmp_path / "s.ibp"
    main(["compress", str(path), str(store)])
    raw = bytearray(store.read_bytes())
    head_len = int.from_bytes(raw[12:16], "little")
    payload = json.loads(raw[16:16 + head_len])["sections"]["payload"]
    raw[payload["offset"] + payload["nbytes"] // 2] ^= 0xFF
    store.write_bytes(bytes(raw))
    assert main(["verify", str(store)]) == 1
    assert "FAIL" in capsys.readouterr().err


def test_bad_input_errors(npz, tmp_path, capsys):
    path, _ = npz
    assert main(["inspect", str(tmp_path / "missing.npz")]) == 2
    assert main(["inspect", str(path), "--key", "nope"]) == 2
    assert "no array 'nope'" in capsys.readouterr().err
    txt = tmp_path / "x.txt"
    txt.write_text("hi")
    assert main(["inspect", str(txt)]) == 2


def test_bench_codec_reports_ratios(npz, capsys):
    path, _ = npz
    assert main(["bench", "codec", "--json", "--repeats", "2", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["compress_vs_copy"] > 0 and row["decode_vs_raw_gather"] > 0
    assert row["format"] == "extended"
    assert main(["bench", "codec", "--json", "--repeats", "2", "--basic", str(path)]) == 0
    basic = json.loads(capsys.readouterr().out)[0]
    assert basic["format"] == "basic" and basic["host_bytes"] >= row["host_bytes"]


def test_console_script_runs(npz):
    path, _ = npz
    out = subprocess.run([sys.executable, "-m", "ibp_gnn.cli", "inspect", str(path), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["rows"] == 300


def test_user_mistakes_are_errors_not_tracebacks(npz, tmp_path, capsys):
    path, x = npz
    assert main(["compress", str(path), str(tmp_path)]) == 2  # output is a directory
    assert "is a directory" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp"))
    np.save(tmp_path / "scalar.npy", np.float32(1))
    assert main(["bench", "codec", str(tmp_path / "scalar.npy")]) == 2
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    assert main(["inspect", str(tmp_path / "be.npy")]) == 2
    assert "big-endian" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "codec", "--repeats", "0", str(path)])


def test_malformed_store_header_is_a_store_error(npz, tmp_path, capsys):
    import struct
    import zlib
    path, _ = npz
    store = tmp_path / "s.ibp"
    main(["compress", str(path), str(store)])
    raw = bytearray(store.read_bytes())
    head_len = struct.unpack_from("<I", raw, 12)[0]
    header = json.loads(raw[16:16 + head_len])
    header["sections"]["payload"]["offset"] = -4096
    head = json.dumps(header).encode().ljust(head_len)
    raw[16:16 + head_len] = head
    raw[16 + head_len:20 + head_len] = struct.pack("<I", zlib.crc32(head))
    store.write_bytes(bytes(raw))
    assert main(["verify", str(store)]) == 1
    assert "malformed header" in capsys.readouterr().err
