import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_graphsage.py"
SMOKE = REPO / "configs" / "smoke.yaml"


def available_stores():
    stores = ["ibp", "cpu"]
    if torch.cuda.is_available():
        stores += ["uva", "gpu"]
    return stores


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_graphsage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_end_to_end_smoke(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", str(SMOKE), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "features identical across stores: yes" in proc.stdout
    report = json.loads(out.read_text())
    assert sorted(report["stores"]) == sorted(available_stores())
    assert report["features_identical"] is True
    assert report["synthetic"] is True and report["dataset"]["description"].startswith("synthetic")
    assert report["device"] and "train_graphsage.py" in report["command"]
    for name, r in report["stores"].items():
        assert len(r["epochs"]) == 2 and r["epochs"][0]["warmup"]
        assert all(e["time_s"] > 0 and e["loader_s"] > 0 for e in r["epochs"])
        assert r["median_epoch_s"] > 0 and 0.0 <= r["test_acc"] <= 1.0
        assert r["speedup_vs_cpu"] is not None
    assert report["stores"]["ibp"]["ratio"] > 1.5
    assert report["stores"]["ibp"]["host_bytes"] < report["stores"]["cpu"]["host_bytes"]
    if not torch.cuda.is_available():
        assert report["losses_identical"] is True
        assert set(report["skipped"]) == {"uva", "gpu"}
    assert (tmp_path / "results.png").stat().st_size > 0


def test_scaled_config_path_at_tiny_scale(example, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "src.npz", x=(rng.random((300, 40)) < 0.05).astype(np.float32),
             edge_index=np.array([[0, 1], [1, 0]]), y=rng.integers(0, 3, 300))
    out = tmp_path / "scaled.json"
    rc = example.main([
        "--config", str(REPO / "configs" / "gpu_scaled.yaml"),
        "--dataset", str(tmp_path / "src.npz"), "--scale-nodes", "5000", "--epochs", "2",
        "--batch-size", "64", "--fanout", "4,2", "--stores", "ibp,cpu", "--out", str(out),
        "--interleave",
        "--plot", "none"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["dataset"]["num_nodes"] == 5000 and report["synthetic"] is True
    assert report["dataset"]["description"].startswith("synthetic scale-up")
    assert report["features_identical"] is True
    assert not (tmp_path / "scaled.png").exists()


def test_checksum_sees_every_bit(example):
    x = torch.rand(50, 7)
    n_id = torch.arange(50)
    ref = example.batch_checksum(x, n_id)
    for flip in [(0, 0), (49, 6), (17, 3)]:
        y = x.clone()
        y.view(torch.int32)[flip] ^= 1
        assert not torch.equal(example.batch_checksum(y, n_id), ref)
    assert not torch.equal(example.batch_checksum(x, n_id.flip(0)), ref)
    assert torch.equal(example.batch_checksum(x.clone(), n_id.clone()), ref)
    odd = torch.zeros(3, 3, dtype=torch.uint8)  # rows not a multiple of 4 bytes
    assert example.batch_checksum(odd, torch.arange(3)).shape == (5,)


@pytest.mark.parametrize("args, message", [
    (["--fanout", "25,x"], "bad fanout"),
    (["--fanout", "25,0"], "bad fanout"),
    (["--stores", "ibp,tpu"], "bad stores"),
    (["--epochs", "0"], "epochs must be >= 1"),
])
def test_bad_flags(example, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        example.build_config(["--config", str(SMOKE)] + args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_dataset_and_config(example, tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown dataset"):
        example.main(["--config", str(SMOKE), "--dataset", "no_such_dataset"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(SystemExit):
        example.build_config(["--config", str(bad)])
    assert "unknown option" in capsys.readouterr().err


def test_flags_override_config(example):
    config = example.build_config(["--config", str(SMOKE), "--fanout", "7,3,2", "--stores",
                                   "cpu", "--batch-size", "9"])
    assert config["fanout"] == [7, 3, 2] and config["stores"] == ["cpu"]
    assert config["batch_size"] == 9 and config["epochs"] == 2  # from the file


def test_too_large_to_materialize_runs_only_the_tiling_ibp_store(example, tmp_path, capsys):
    out = tmp_path / "big.json"
    rc = example.main(["--config", str(SMOKE), "--scale-nodes", "3000", "--stores", "ibp,cpu",
                       "--max-materialize-gb", "0.0001", "--plot", "none", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "exceeds max_materialize_gb" in printed
    assert rc == 3  # the cpu store could not be built
    report = json.loads(out.read_text())
    assert set(report["stores"]) == {"ibp"} and "cpu" in report["skipped"]
