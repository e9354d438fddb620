
import os
import sys

import pytest
import torch

from ibp_gnn.datasets import data_root

SHARED_DATASETS = data_root()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_runtest_logreport(report):
    """With $IBP_GNN_TEST_TIMES set, one line per test as it finishes (seconds, outcome): a
    run stopped at a time limit still shows where its time went."""
    if report.when == "call" and os.environ.get("IBP_GNN_TEST_TIMES"):
        sys.__stdout__.write(f"\n{report.duration:8.2f} s {report.outcome:7s} {report.nodeid}")
        sys.__stdout__.flush()


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    has_gpu = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


def assert_bits_equal(actual: torch.Tensor, expected: torch.Tensor):
    """Bit-exact equality (NaN payloads, -0.0 and all), dtype and shape included."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.numel() == 0:
        return
    a = actual.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    e = expected.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    assert torch.equal(a, e), "bits differ"


def dataset_files():
    """The real feature matrices shipped beside the project, if present."""
    files = sorted((SHARED_DATASETS / "normalized").glob("*.npz"))
    files += sorted((SHARED_DATASETS / "derived").glob("*.npz"))
    return files
