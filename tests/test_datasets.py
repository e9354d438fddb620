import numpy as np
import pytest
import torch

from ibp_gnn import datasets
from ibp_gnn.datasets import (TiledFeatures, load_dataset, load_npz, power_law_edge_index,
                              random_split, scale_up, synthetic_dataset)

SMALL = dict(num_nodes=2000, num_features=300, num_classes=5, avg_degree=8.0)


@pytest.fixture(scope="module")
def small():
    return synthetic_dataset(seed=3, **SMALL)


def test_synthetic_is_deterministic_and_labelled(small):
    again = synthetic_dataset(seed=3, **SMALL)
    other = synthetic_dataset(seed=4, **SMALL)
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(small.data[key], again.data[key])
    assert not torch.equal(small.data.x, other.data.x)
    assert small.synthetic and small.name == "synthetic"
    assert small.description.startswith("synthetic")
    assert small.summary()["synthetic"] is True


def test_synthetic_shapes_and_split(small):
    d = small.data
    assert d.x.shape == (2000, 300) and d.x.dtype == torch.float32
    assert d.y.shape == (2000,) and d.y.dtype == torch.int64 and int(d.y.max()) == 4
    assert d.edge_index.dtype == torch.int64 and d.edge_index.shape[0] == 2
    masks = torch.stack([d.train_mask, d.val_mask, d.test_mask])
    assert (masks.sum(0) == 1).all()  # disjoint and covering


def test_synthetic_graph_is_undirected_power_law(small):
    ei = small.data.edge_index
    n = small.num_nodes
    assert (ei[0] != ei[1]).all()
    key = ei[0] * n + ei[1]
    assert torch.equal(key, torch.unique(key))  # sorted, no duplicates
    assert torch.equal(torch.sort(ei[1] * n + ei[0])[0], key)  # both directions present
    deg = torch.bincount(ei[0], minlength=n).float()
    assert 5.0 < deg.mean() < 8.5
    assert deg.max() > 6 * deg.median()  # heavy tail, unlike an Erdos-Renyi graph
    y = small.data.y
    assert (y[ei[0]] == y[ei[1]]).float().mean() > 0.5  # homophilous: labels learnable


def test_synthetic_bit_statistics_look_like_bag_of_words(small):
    x = small.data.x
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    density = (x != 0).float().mean().item()
    assert 0.008 < density < 0.02  # Cora: 1.27%
    col = (x != 0).float().mean(0).sort(descending=True)[0]
    assert col[0] > 0.15 and col[0] > 10 * col[len(col) // 2]  # Zipf-like popularity
    bits = x.view(torch.int32)
    assert set(torch.unique(bits).tolist()) == {0, 0x3F800000}
    assert (x.sum(1) > 0).all()


def test_power_law_edge_index_validation():
    with pytest.raises(ValueError, match="exponent"):
        power_law_edge_index(100, exponent=2.0)
    with pytest.raises(ValueError, match="2 nodes"):
        power_law_edge_index(1)


def test_random_split_fractions():
    tr, va, te = random_split(1000, 0.5, 0.1, seed=1)
    assert (int(tr.sum()), int(va.sum()), int(te.sum())) == (500, 100, 400)
    tr, va, te = random_split(1000, 0.01, 0.0, 0.002, seed=1)
    assert (int(tr.sum()), int(va.sum()), int(te.sum())) == (10, 0, 2)
    with pytest.raises(ValueError, match="split"):
        random_split(10, 0.9, 0.9)


def _write_npz(path, with_masks):
    rng = np.random.default_rng(0)
    arrays = dict(x=rng.random((50, 7)).astype(np.float32),
                  edge_index=np.array([[0, 1, 2, 3], [1, 0, 3, 2]]),
                  y=rng.integers(0, 3, 50))
    if with_masks:
        m = np.zeros(50, bool)
        arrays.update(train_mask=m.copy(), val_mask=m.copy(), test_mask=~m)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("with_masks", [True, False])
def test_npz_loading(tmp_path, with_masks):
    arrays = _write_npz(tmp_path / "g.npz", with_masks)
    ds = load_dataset(str(tmp_path / "g.npz"))
    assert not ds.synthetic and ds.name == "g"
    assert torch.equal(ds.data.x, torch.from_numpy(arrays["x"]))
    assert torch.equal(ds.data.y, torch.from_numpy(arrays["y"]))
    assert ds.data.edge_index.dtype == torch.int64
    if with_masks:
        assert ds.data.test_mask.all() and "published split" in ds.description
    else:
        assert int(ds.data.train_mask.sum()) == 30 and "random split" in ds.description
        assert torch.equal(ds.data.train_mask, load_npz(tmp_path / "g.npz").data.train_mask)


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="edge_index"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no_such_dataset_name")
    with pytest.raises(ValueError, match="PyG dataset class"):
        load_dataset("pyg:NoSuchClass/X")


def test_short_name_resolution(tmp_path, monkeypatch):
    (tmp_path / "normalized").mkdir()
    _write_npz(tmp_path / "normalized" / "tiny.npz", True)
    monkeypatch.setenv("IBP_GNN_DATA", str(tmp_path))
    assert load_dataset("tiny").data.num_nodes == 50
    assert "tiny" in datasets.available_names()


def test_tiled_features_match_index_tiling():
    src = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3)
    tiled = TiledFeatures(src, 12)
    expected = src[torch.arange(12) % 5]
    assert tiled.shape == (12, 3) and tiled.nbytes == 12 * 3 * 4
    assert torch.equal(tiled.materialize(), expected)
    assert torch.equal(torch.cat(list(tiled.iter_blocks(5))), expected)
    assert [b.shape[0] for b in tiled.iter_blocks(5)] == [5, 5, 2]
    assert torch.equal(tiled.rows([11, 0, 7]), expected[[11, 0, 7]])
    with pytest.raises(IndexError):
        tiled.rows([12])


def test_scale_up_tiles_features_and_labels(small):
    big = scale_up(small, 5000, avg_degree=6.0, seed=1)
    n_src = small.num_nodes
    idx = torch.arange(5000) % n_src
    assert torch.equal(big.data.x, small.data.x[idx])
    assert torch.equal(big.data.y, small.data.y[idx])
    assert big.synthetic and big.description.startswith("synthetic scale-up")
    assert big.data.edge_index.max() == 4999 or big.data.edge_index.max() < 5000
    assert int(big.data.train_mask.sum()) == 50  # 1% default
    assert big.summary()["features_materialized"] is True


def test_scale_up_without_materializing(small):
    big = scale_up(small, 4500, seed=1, max_materialize_bytes=1000)
    assert big.data.x is None
    assert big.features.shape == (4500, 300)
    assert big.feature_bytes == 4500 * 300 * 4
    rows = torch.tensor([0, 1999, 2000, 4499])
    assert torch.equal(big.features.rows(rows), small.data.x[rows % 2000])
    assert "not materialized" in big.description


def test_load_dataset_scale_nodes_from_npz(tmp_path):
    _write_npz(tmp_path / "g.npz", True)
    ds = load_dataset(str(tmp_path / "g.npz"), scale_nodes=120,
                      scale=dict(avg_degree=4.0, train_fraction=0.5, test_fraction=0.25))
    assert ds.data.x.shape == (120, 7) and ds.synthetic
    assert int(ds.data.train_mask.sum()) == 60 and int(ds.data.test_mask.sum()) == 30


@pytest.mark.skipif(not (datasets.data_root() / "normalized" / "cora.npz").is_file(),
                    reason="shared datasets folder not present")
def test_real_cora_short_name():
    ds = load_dataset("cora")
    assert ds.data.x.shape == (2708, 1433) and not ds.synthetic
    assert int(ds.data.train_mask.sum()) == 140


@pytest.mark.skipif(not (datasets.data_root() / "Planetoid" / "Cora" / "raw").is_dir(),
                    reason="shared datasets folder not present")
def test_pyg_planetoid_offline(tmp_path, monkeypatch):
    pytest.importorskip("scipy")  # PyG's Planetoid reader needs it
    monkeypatch.setenv("IBP_GNN_CACHE", str(tmp_path))
    ds = load_dataset("pyg:Planetoid/Cora")
    ref = load_dataset("cora")
    assert torch.equal(ds.data.x, ref.data.x)
    assert torch.equal(ds.data.train_mask, ref.data.train_mask)
    assert (tmp_path / "pyg" / "Planetoid" / "Cora" / "processed").is_dir()


def test_non_npz_dataset_file_is_a_clear_error(tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="must be an .npz"):
        load_dataset(str(path))
