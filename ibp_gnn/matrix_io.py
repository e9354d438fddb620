"""Reading feature matrices from user files: ``.npz``, ``.npy`` or saved stores."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .codec import load
from .codec.io import MAGIC


def is_store_file(path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_matrix(path, key: str | None = None) -> np.ndarray:
    """The array in ``path``: ``x`` (or ``key``) of an ``.npz``, or an ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            name = key or "x"
            if name not in data.files:
                raise KeyError(f"{path} has no array {name!r}; it has {', '.join(data.files)}")
            return data[name]
    if path.suffix == ".npy":
        if key:
            raise ValueError(f"--key applies to .npz files, not {path.name}")
        return np.load(path, allow_pickle=False)
    raise ValueError(f"{path}: expected an .npz or .npy file")


def read_compressed_or_matrix(path, key: str | None = None):
    """A saved store as a :class:`CompressedMatrix`, else the array in the file."""
    if Path(path).is_file() and is_store_file(path):
        if key:
            raise ValueError("--key applies to .npz files, not to store files")
        return load(path)
    return read_matrix(path, key)


__all__ = ["is_store_file", "read_compressed_or_matrix", "read_matrix"]
