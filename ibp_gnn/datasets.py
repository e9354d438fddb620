"""Graph datasets for training and benchmarks, each returned as a PyG ``Data`` on the CPU.

Sources (see :func:`load_dataset`):

* ``synthetic`` -- a generated graph that needs no files. The graph is a Chung-Lu power-law graph
  (degree exponent 2.5 by default) with class homophily, and the node features imitate the
  *bit statistics* of sparse binary bag-of-words features such as Cora/CiteSeer: float32 0.0/1.0,
  about 1.3% nonzero, Zipf-like column popularity, plus class "topic" words so that labels are
  predictable from features and neighbourhoods. Everything about it is labelled *synthetic*.
* a path to an ``.npz`` holding ``x``, ``edge_index``, ``y`` and optionally ``train_mask``,
  ``val_mask``, ``test_mask`` (a seeded random split is made when masks are absent);
* a short name such as ``cora`` or ``amazon_computers_pca100``, looked up as
  ``normalized/<name>.npz`` or ``derived/<name>.npz`` under the data root (``$IBP_GNN_DATA``, else
  ``../shared/datasets`` next to the repository);
* ``pyg:<Class>/<Name>`` (e.g. ``pyg:Planetoid/Cora``, ``pyg:Coauthor/CS``,
  ``pyg:Amazon/Computers``) -- a ``torch_geometric.datasets`` class reading the original files
  offline. The dataset folder is copied to a writable cache first (``$IBP_GNN_CACHE``, else
  ``~/.cache/ibp_gnn``) because PyG writes ``processed/`` next to ``raw/``. PyG's readers for
  these formats need scipy.

Scale-up (``scale_nodes=N``): the features and labels of a real dataset are tiled over a generated
power-law graph of ``N`` nodes, node ``i`` getting row ``i % n_src`` -- the way the IBP paper builds
large graphs from small feature sets. Tiled features are exposed as :class:`TiledFeatures`, which
produces any rows or consecutive row blocks on demand, so a matrix too large for host memory
(2M x 6805 float32 is 54 GB) never has to exist uncompressed. Below ``max_materialize_bytes`` the
matrix is materialized into ``data.x`` as usual.

All tensors stay in host memory; moving features anywhere is the feature store's business.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch_geometric.data import Data

__all__ = [
    "GraphDataset", "TiledFeatures", "load_dataset", "synthetic_dataset", "power_law_edge_index",
    "load_npz", "load_pyg", "scale_up", "random_split", "data_root", "available_names",
]

SYNTHETIC_NAME = "synthetic"
DEFAULT_MAX_MATERIALIZE_BYTES = 16 << 30
REPO_ROOT = Path(__file__).resolve().parents[1]

# Folder names under the data root that differ from the PyG class name.
PYG_FOLDERS = {"HeterophilousGraphDataset": "HeterophilousGraphs"}


@dataclass
class GraphDataset:
    """A loaded dataset.

    Attributes:
        data: PyG ``Data`` with ``x`` (CPU tensor, or None when only ``features`` holds the rows),
            ``edge_index``, ``y``, ``train_mask``, ``val_mask``, ``test_mask``.
        name: short name (``synthetic``, ``cora``, ``coauthor_cs@scale2000000`` ...).
        description: one line saying what the data is; starts with ``synthetic`` when the graph
            or the features were generated.
        synthetic: True when the graph or the features were generated.
        features: the lazily tiled feature matrix of a scale-up (None otherwise).
    """

    data: Data
    name: str
    description: str
    synthetic: bool
    features: Optional["TiledFeatures"] = None
    info: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    @property
    def num_features(self) -> int:
        if self.data.x is not None:
            return int(self.data.x.shape[1])
        return int(self.features.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.data.y.max()) + 1

    @property
    def feature_shape(self) -> tuple:
        return tuple(self.data.x.shape) if self.data.x is not None else self.features.shape

    @property
    def feature_bytes(self) -> int:
        """Raw (uncompressed) size of the feature matrix in bytes."""
        if self.data.x is not None:
            return self.data.x.numel() * self.data.x.element_size()
        return self.features.nbytes

    def summary(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "synthetic": self.synthetic,
            "num_nodes": self.num_nodes,
            "num_edges": int(self.data.edge_index.shape[1]),
            "feature_shape": list(self.feature_shape),
            "feature_dtype": str(self.data.x.dtype if self.data.x is not None
                                 else self.features.dtype).replace("torch.", ""),
            "feature_bytes": self.feature_bytes,
            "num_classes": self.num_classes,
            "train_nodes": int(self.data.train_mask.sum()),
            "val_nodes": int(self.data.val_mask.sum()),
            "test_nodes": int(self.data.test_mask.sum()),
            **self.info,
        }


# ------------------------------------------------------------------------------------------------
# Tiled features (scale-up)
# ------------------------------------------------------------------------------------------------
class TiledFeatures:
    """A ``[num_rows, d]`` matrix whose row ``i`` is ``source[i % len(source)]``, not stored.

    ``rows(index)`` gathers arbitrary rows, ``iter_blocks(block_rows)`` yields consecutive row
    blocks (what a block-wise compressor consumes), ``materialize()`` builds the full tensor with
    a single allocation.
    """

    def __init__(self, source: torch.Tensor, num_rows: int):
        if source.dim() < 2:
            raise ValueError(f"source features must be [n, d], got shape {tuple(source.shape)}")
        if source.shape[0] == 0:
            raise ValueError("source features have no rows")
        if num_rows < 0:
            raise ValueError(f"num_rows must be >= 0, got {num_rows}")
        self.source = source.contiguous()
        self.num_rows = int(num_rows)

    @property
    def shape(self) -> tuple:
        return (self.num_rows,) + tuple(self.source.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.source.dtype

    @property
    def row_bytes(self) -> int:
        return self.source[0].numel() * self.source.element_size()

    @property
    def nbytes(self) -> int:
        return self.num_rows * self.row_bytes

    def __len__(self) -> int:
        return self.num_rows

    def rows(self, index) -> torch.Tensor:
        """Rows ``index`` (int tensor/array/list) as a new ``[len(index), d]`` tensor."""
        index = torch.as_tensor(index, dtype=torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_rows):
            raise IndexError(f"row index out of range for {self.num_rows} rows")
        return self.source[index % self.source.shape[0]]

    __getitem__ = rows

    def iter_blocks(self, block_rows: int = 1 << 16) -> Iterator[torch.Tensor]:
        """Consecutive row blocks ``[start, start + block_rows)``, covering all rows in order."""
        if block_rows <= 0:
            raise ValueError(f"block_rows must be positive, got {block_rows}")
        for start in range(0, self.num_rows, block_rows):
            stop = min(start + block_rows, self.num_rows)
            yield self.rows(torch.arange(start, stop))

    def materialize(self) -> torch.Tensor:
        """The full matrix (``nbytes`` of host memory), filled block by block."""
        out = torch.empty(self.shape, dtype=self.dtype)
        n_src = self.source.shape[0]
        # Whole copies of the source first (cheap memcpy), then the remainder.
        full, rest = divmod(self.num_rows, n_src)
        for k in range(full):
            out[k * n_src:(k + 1) * n_src] = self.source
        if rest:
            out[full * n_src:] = self.source[:rest]
        return out


# ------------------------------------------------------------------------------------------------
# Generated graphs
# ------------------------------------------------------------------------------------------------
def _chung_lu_weights(num_nodes: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Expected-degree weights with a power-law tail P(deg >= k) ~ k^(1 - exponent), in random
    node order (so hubs are spread over the id range, as in real graphs)."""
    if exponent <= 2.0:
        raise ValueError(f"degree exponent must be > 2 for a finite mean degree, got {exponent}")
    alpha = 1.0 / (exponent - 1.0)
    # The offset caps the largest expected degree near sqrt(N * avg) so hubs do not saturate.
    offset = max(1.0, num_nodes ** 0.5 / 10.0)
    w = (np.arange(num_nodes, dtype=np.float64) + offset) ** (-alpha)
    return w[rng.permutation(num_nodes)]


def power_law_edge_index(num_nodes: int, avg_degree: float = 10.0, exponent: float = 2.5,
                         seed: int = 0, labels: Optional[np.ndarray] = None,
                         homophily: float = 0.0) -> torch.Tensor:
    """Undirected Chung-Lu power-law graph as int64 ``[2, E]`` (both directions, sorted, without
    duplicates or self-loops).

    ``num_nodes * avg_degree / 2`` endpoint pairs are drawn with probability proportional to the
    nodes' weights; after removing duplicates and self-loops the mean degree is a little below
    ``avg_degree``. With ``labels``, a fraction ``homophily`` of the pairs picks its second endpoint
    within the first endpoint's class, so labels are predictable from neighbourhoods.
    """
    if num_nodes < 2:
        raise ValueError(f"a graph needs at least 2 nodes, got {num_nodes}")
    if avg_degree <= 0:
        raise ValueError(f"avg_degree must be positive, got {avg_degree}")
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"homophily must be in [0, 1], got {homophily}")
    rng = np.random.default_rng(seed)
    w = _chung_lu_weights(num_nodes, exponent, rng)
    num_pairs = int(round(num_nodes * avg_degree / 2))

    if labels is None or homophily == 0.0:
        order = np.arange(num_nodes)
        cw = np.cumsum(w)
    else:
        order = np.argsort(labels, kind="stable")
        cw = np.cumsum(w[order])
    total = cw[-1]

    def draw(lo, hi):
        pos = np.searchsorted(cw, lo + rng.random(lo.shape) * (hi - lo), side="right")
        return order[np.minimum(pos, num_nodes - 1)]

    zeros = np.zeros(num_pairs)
    src = draw(zeros, zeros + total)
    dst = draw(zeros, zeros + total)
    if labels is not None and homophily > 0.0:
        labels = np.asarray(labels)
        sorted_labels = labels[order]
        classes = np.arange(int(labels.max()) + 1)
        first = np.searchsorted(sorted_labels, classes, side="left")
        last = np.searchsorted(sorted_labels, classes, side="right")
        cw0 = np.concatenate([[0.0], cw])
        same = rng.random(num_pairs) < homophily
        c = labels[src[same]]
        dst[same] = draw(cw0[first[c]], cw0[last[c]])

    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = torch.from_numpy(np.concatenate([src * num_nodes + dst, dst * num_nodes + src])
                           .astype(np.int64))
    key = torch.unique(key, sorted=True)  # by (source, target), duplicates gone; multi-threaded
    return torch.stack([key // num_nodes, key % num_nodes])


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    p = (np.arange(1, n + 1, dtype=np.float64)) ** (-s)
    c = np.cumsum(p)
    return c / c[-1]


def synthetic_dataset(num_nodes: int = 20_000, num_features: int = 1433, num_classes: int = 7,
                      avg_degree: float = 10.0, exponent: float = 2.5, homophily: float = 0.7,
                      density: float = 0.0127, topic_fraction: float = 0.35, zipf: float = 0.75,
                      train_fraction: float = 0.6, val_fraction: float = 0.2,
                      seed: int = 0) -> GraphDataset:
    """Generated power-law graph with Cora-like sparse binary bag-of-words features.

    Features: float32 0.0/1.0. Each node gets ``~Gamma(4)``-distributed many word draws averaging
    ``density * num_features`` (Cora: 1.27% of 1433 columns, ~18 words), each draw either a global
    word (Zipf(``zipf``) column popularity over a random column order) or, with probability
    ``topic_fraction``, a word from its class's topic set (about 5% of the columns, also Zipf), so
    the bit patterns match a real bag-of-words matrix: sign/exponent bits of 1.0f in the nonzero
    entries, all-zero words elsewhere, a few popular columns and a long tail.
    Labels: uniform random classes; the graph is ``homophily`` class-assortative.
    """
    if num_features < 1 or num_classes < 2:
        raise ValueError("need num_features >= 1 and num_classes >= 2")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, num_nodes)
    edge_index = power_law_edge_index(num_nodes, avg_degree, exponent, seed=seed + 1,
                                      labels=y, homophily=homophily)

    words_per_node = density * num_features
    counts = np.clip(np.rint(rng.gamma(4.0, words_per_node / 4.0, num_nodes)), 1,
                     num_features).astype(np.int64)
    rows = np.repeat(np.arange(num_nodes), counts)
    num_draws = rows.size
    column_order = rng.permutation(num_features)
    cols = column_order[np.searchsorted(_zipf_cdf(num_features, zipf), rng.random(num_draws))]
    topic_size = max(4, num_features // 20)
    topics = np.stack([rng.choice(num_features, topic_size, replace=False)
                       for _ in range(num_classes)])
    is_topic = rng.random(num_draws) < topic_fraction
    topic_rank = np.searchsorted(_zipf_cdf(topic_size, zipf), rng.random(int(is_topic.sum())))
    cols[is_topic] = topics[y[rows[is_topic]], topic_rank]
    x = np.zeros((num_nodes, num_features), dtype=np.float32)
    x[rows, cols] = 1.0  # repeated draws of a word count once, as in binary bag-of-words

    train, val, test = random_split(num_nodes, train_fraction, val_fraction, seed=seed + 2)
    data = Data(x=torch.from_numpy(x), edge_index=edge_index, y=torch.from_numpy(y),
                train_mask=train, val_mask=val, test_mask=test, num_nodes=num_nodes)
    nnz = float((x != 0).mean())
    description = (
        f"synthetic: generated Chung-Lu power-law graph (degree exponent {exponent}, "
        f"homophily {homophily}) with {num_nodes:,} nodes and {edge_index.shape[1]:,} directed "
        f"edges; generated Cora-like sparse binary bag-of-words float32 features "
        f"{num_nodes:,} x {num_features:,} ({nnz:.2%} nonzero, Zipf column popularity); "
        f"{num_classes} classes; not real data")
    return GraphDataset(data=data, name=SYNTHETIC_NAME, description=description, synthetic=True,
                        info={"feature_kind": "synthetic binary bag-of-words",
                              "feature_density": nnz})


# ------------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------------
def random_split(num_nodes: int, train_fraction: float = 0.6, val_fraction: float = 0.2,
                 test_fraction: Optional[float] = None, seed: int = 0):
    """Seeded random node split -> (train_mask, val_mask, test_mask). The test set is the rest,
    or ``test_fraction`` of the nodes when given (useful to keep evaluation short on big graphs)."""
    if test_fraction is None:
        test_fraction = 1.0 - train_fraction - val_fraction
    fractions = (train_fraction, val_fraction, test_fraction)
    if min(fractions) < 0 or sum(fractions) > 1.0 + 1e-9:
        raise ValueError(f"bad split fractions train={train_fraction} val={val_fraction} "
                         f"test={test_fraction}: need non-negative values summing to <= 1")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(num_nodes))
    n_train = int(round(train_fraction * num_nodes))
    n_val = int(round(val_fraction * num_nodes))
    n_test = min(int(round(test_fraction * num_nodes)), num_nodes - n_train - n_val)
    masks = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_val),
                   (n_train + n_val, n_train + n_val + n_test)):
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[perm[lo:hi]] = True
        masks.append(m)
    return tuple(masks)


def _with_masks(data: Data, seed: int, **split) -> Data:
    if any(getattr(data, k, None) is None for k in ("train_mask", "val_mask", "test_mask")):
        data.train_mask, data.val_mask, data.test_mask = random_split(
            data.num_nodes, seed=seed, **split)
    for k in ("train_mask", "val_mask", "test_mask"):
        m = getattr(data, k)
        if m.dim() == 2:  # several published splits [N, S]: use the first
            setattr(data, k, m[:, 0].contiguous())
    return data


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def data_root() -> Path:
    """``$IBP_GNN_DATA`` if set, else ``../shared/datasets`` next to the repository."""
    env = os.environ.get("IBP_GNN_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def cache_root() -> Path:
    """Writable folder for PyG's ``processed/`` files (``$IBP_GNN_CACHE`` or ~/.cache/ibp_gnn)."""
    env = os.environ.get("IBP_GNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ibp_gnn"


def available_names() -> list[str]:
    root = data_root()
    names = [SYNTHETIC_NAME]
    for sub in ("normalized", "derived"):
        if (root / sub).is_dir():
            names += sorted(p.stem for p in (root / sub).glob("*.npz"))
    return names


def load_npz(path, seed: int = 0, **split) -> GraphDataset:
    """An ``.npz`` with ``x``, ``edge_index``, ``y`` and optional masks (no pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a dataset file must be an .npz holding x, edge_index and y")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x", "edge_index", "y") if k not in f.files]
        if missing:
            raise ValueError(f"{path} lacks array(s) {missing}; it has {f.files}")
        x = torch.from_numpy(np.ascontiguousarray(f["x"]))
        edge_index = torch.from_numpy(np.ascontiguousarray(f["edge_index"]).astype(np.int64))
        y = torch.from_numpy(np.ascontiguousarray(f["y"]).astype(np.int64)).reshape(-1)
        masks = {k: torch.from_numpy(f[k].astype(bool)) for k in
                 ("train_mask", "val_mask", "test_mask") if k in f.files}
    if x.dim() < 2 or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{path}: need x [N, d] and edge_index [2, E], got "
                         f"{tuple(x.shape)} and {tuple(edge_index.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: y has {y.shape[0]} entries for {x.shape[0]} nodes")
    if edge_index.numel() and int(edge_index.max()) >= x.shape[0]:
        raise ValueError(f"{path}: edge_index refers to node {int(edge_index.max())} "
                         f"but there are {x.shape[0]} nodes")
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=x.shape[0], **masks)
    split_note = "published split" if len(masks) == 3 else f"random split (seed {seed})"
    data = _with_masks(data, seed, **split)
    name = path.stem
    description = (f"{name}: real data from {path.name}, {x.shape[0]:,} nodes, "
                   f"{edge_index.shape[1]:,} directed edges, {str(x.dtype).replace('torch.', '')} "
                   f"features {x.shape[0]:,} x {x.shape[1]:,}, {int(y.max()) + 1} classes, "
                   f"{split_note}")
    return GraphDataset(data=data, name=name, description=description, synthetic=False,
                        info={"source": str(path)})


def load_pyg(spec: str, seed: int = 0, root=None, cache=None, **split) -> GraphDataset:
    """``Class/Name`` or ``Class`` of ``torch_geometric.datasets``, read offline.

    The dataset's folder under ``root`` (default :func:`data_root`) is copied to ``cache`` once,
    then the PyG class processes it there. Note PyG binarizes Amazon/Coauthor/CitationFull
    features (``x[x > 0] = 1``) where the normalized ``.npz`` copies keep the original values.
    """
    import torch_geometric.datasets as pyg_datasets
    parts = [p for p in spec.split("/") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"bad PyG dataset spec {spec!r}: use 'pyg:Class/Name' or 'pyg:Class'")
    cls_name, ds_name = parts[0], (parts[1] if len(parts) == 2 else None)
    cls = getattr(pyg_datasets, cls_name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"unknown PyG dataset class {cls_name!r} in {spec!r}")
    root = Path(root) if root is not None else data_root()
    folder = PYG_FOLDERS.get(cls_name, cls_name)
    src = root / folder
    if not src.is_dir():
        raise FileNotFoundError(f"no raw files for {spec!r}: {src} does not exist "
                                f"(set IBP_GNN_DATA to the datasets folder)")
    dst = (Path(cache) if cache is not None else cache_root()) / "pyg" / folder
    # Copy only what is missing: PyG reads raw/ and writes processed/ next to it.
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n == "processed"])
    kwargs = {"name": ds_name} if ds_name is not None else {}
    try:
        dataset = cls(root=str(dst), **kwargs)
    except ImportError as exc:  # PyG's readers need extras such as scipy
        raise RuntimeError(f"torch_geometric.datasets.{cls_name} needs a package that is not "
                           f"installed: {exc}; install it (e.g. pip install scipy) or load the "
                           f"normalized .npz copy by its short name instead") from exc
    except Exception as exc:  # a missing raw file makes PyG try to download
        raise RuntimeError(f"could not load {spec!r} offline from {dst}: {exc}") from exc
    data = dataset[0]
    data = Data(x=data.x, edge_index=data.edge_index, y=data.y.reshape(-1),
                num_nodes=data.num_nodes,
                **{k: data[k] for k in ("train_mask", "val_mask", "test_mask") if k in data})
    had_masks = "train_mask" in data
    data = _with_masks(data, seed, **split)
    x = data.x
    name = f"pyg:{spec}"
    description = (f"{name}: real data via torch_geometric.datasets.{cls_name}, "
                   f"{x.shape[0]:,} nodes, {data.edge_index.shape[1]:,} directed edges, "
                   f"features {x.shape[0]:,} x {x.shape[1]:,}, {int(data.y.max()) + 1} classes, "
                   f"{'published split' if had_masks else f'random split (seed {seed})'}")
    return GraphDataset(data=data, name=name, description=description, synthetic=False,
                        info={"source": str(src)})


# ------------------------------------------------------------------------------------------------
# Scale-up
# ------------------------------------------------------------------------------------------------
def scale_up(base: GraphDataset, num_nodes: int, avg_degree: float = 20.0, exponent: float = 2.5,
             train_fraction: float = 0.01, val_fraction: float = 0.0,
             test_fraction: float = 0.001, seed: int = 0,
             max_materialize_bytes: int = DEFAULT_MAX_MATERIALIZE_BYTES) -> GraphDataset:
    """Tile ``base``'s features and labels over a generated power-law graph of ``num_nodes``.

    Node ``i`` gets ``x_src[i % n_src]`` and ``y_src[i % n_src]``. The graph is new (Chung-Lu, no
    relation to the labels), the split is random with the given fractions (small by default so
    epochs over millions of nodes stay short). When the tiled matrix is larger than
    ``max_materialize_bytes``, ``data.x`` is None and ``features`` produces rows and row blocks
    on demand.
    """
    if num_nodes < 2:
        raise ValueError(f"scale_nodes must be >= 2, got {num_nodes}")
    x_src = base.data.x if base.data.x is not None else base.features.source
    features = TiledFeatures(x_src, num_nodes)
    n_src = x_src.shape[0]
    y = base.data.y[torch.arange(num_nodes) % n_src]
    edge_index = power_law_edge_index(num_nodes, avg_degree, exponent, seed=seed + 1)
    train, val, test = random_split(num_nodes, train_fraction, val_fraction, test_fraction,
                                    seed=seed + 2)
    materialize = features.nbytes <= max_materialize_bytes
    data = Data(x=features.materialize() if materialize else None, edge_index=edge_index, y=y,
                train_mask=train, val_mask=val, test_mask=test, num_nodes=num_nodes)
    description = (
        f"synthetic scale-up: real features and labels of {base.name} ({n_src:,} x "
        f"{x_src.shape[1]:,}, {str(x_src.dtype).replace('torch.', '')}) tiled as x[i] = "
        f"x_src[i % {n_src}] over a generated Chung-Lu power-law graph (degree exponent "
        f"{exponent}) with {num_nodes:,} nodes and {edge_index.shape[1]:,} directed edges; "
        f"random split {train_fraction}/{val_fraction}/{test_fraction}; "
        f"features {'materialized' if materialize else 'in row blocks (not materialized)'}")
    return GraphDataset(
        data=data, name=f"{base.name}@scale{num_nodes}", description=description, synthetic=True,
        features=features,
        info={"scale_source": base.name, "scale_source_rows": n_src,
              "features_materialized": materialize, **{f"source_{k}": v for k, v in
                                                       base.info.items()}})


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------
def load_dataset(name: str = SYNTHETIC_NAME, *, scale_nodes: Optional[int] = None, seed: int = 0,
                 synthetic: Optional[dict] = None, split: Optional[dict] = None,
                 scale: Optional[dict] = None) -> GraphDataset:
    """Resolve ``name`` and load it.

    Args:
        name: ``synthetic``; a path to an ``.npz``; a short name (``cora``, ``coauthor_cs``,
            ``amazon_computers_pca100``, ``derived/amazon_computers_pca100``) under
            :func:`data_root`; or ``pyg:<Class>/<Name>``.
        scale_nodes: tile the dataset's features over a generated graph of this many nodes.
        seed: seeds generation and random splits.
        synthetic: keyword arguments for :func:`synthetic_dataset`.
        split: ``train_fraction``/``val_fraction`` (/``test_fraction``) for datasets without
            masks.
        scale: keyword arguments for :func:`scale_up` (``avg_degree``, ``train_fraction``, ...).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    split = dict(split or {})
    if name == SYNTHETIC_NAME:
        dataset = synthetic_dataset(seed=seed, **(synthetic or {}))
    elif name.startswith("pyg:"):
        dataset = load_pyg(name[len("pyg:"):], seed=seed, **split)
    else:
        path = _resolve_npz(name)
        dataset = load_npz(path, seed=seed, **split)
    if scale_nodes:
        dataset = scale_up(dataset, int(scale_nodes), seed=seed, **(scale or {}))
    return dataset


def _resolve_npz(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".npz":
        raise FileNotFoundError(f"dataset file not found: {path}")
    root = data_root()
    candidates = [root / f"{name}.npz", root / "normalized" / f"{name}.npz",
                  root / "derived" / f"{name}.npz"]
    for c in candidates:
        if c.is_file():
            return c
    known = ", ".join(available_names())
    raise ValueError(f"unknown dataset {name!r}: not a file and not found under {root} "
                     f"(known: {known}; or use a path to an .npz or 'pyg:Class/Name')")
