"""scripts/check_loader.py passes on a correct loader and catches a wrong one."""
import importlib.util
from pathlib import Path

import torch
from torch_geometric.data import Data

spec = importlib.util.spec_from_file_location(
    "check_loader", Path(__file__).resolve().parents[1] / "scripts" / "check_loader.py")
check_loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_loader)


def _graph():
    g = torch.Generator().manual_seed(0)
    n = 400
    edge_index = torch.randint(0, n, (2, 4000), generator=g)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]].unique(dim=1)
    x = (torch.rand(n, 300, generator=g) < 0.03).float()
    return Data(x=x, y=torch.randint(0, 3, (n,), generator=g), edge_index=edge_index,
                num_nodes=n)


def test_correct_loader_has_no_problems():
    assert check_loader.check(_graph(), "ibp", [5, 3], 64, 0, "cpu") == []


def test_changed_features_are_caught(monkeypatch):
    data = _graph()
    real = check_loader.ibp_gnn.from_data

    def tampered(d, **kw):
        other = d.clone()
        other.x = d.x.clone()
        other.x[7, 0] = -0.0 if other.x[7, 0] == 0 else 0.0  # one sign bit
        return real(other, **kw)

    monkeypatch.setattr(check_loader.ibp_gnn, "from_data", tampered)
    problems = check_loader.check(data, "cpu", [5, 3], 400, 0, "cpu")
    assert problems == ["features differ from x[n_id]"]
