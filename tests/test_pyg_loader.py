"""NeighborLoader end to end: identical batches through every store, worker processes,
heterogeneous graphs, real data bit-exact, bad input."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

import ibp_gnn
from ibp_gnn.pyg import NeighborLoader, NeighborSampler, from_data

from conftest import SHARED_DATASETS, assert_bits_equal


def make_data(n=600, d=48, m=8000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, (n, d), generator=g).to(torch.float32) / 4
    x[3, 0] = float('nan')
    dst = (torch.rand(m, generator=g) ** 2 * n).long()
    src = torch.randint(0, n, (m,), generator=g)
    ei = torch.unique(torch.stack([src, dst]), dim=1)
    return Data(x=x, y=torch.randint(0, 6, (n,), generator=g), edge_index=ei,
                train_mask=torch.rand(n, generator=g) < 0.6)


def available_stores():
    stores = [('cpu', 'cpu'), ('ibp', 'cpu'), ('gpu', 'cpu')]
    if torch.cuda.is_available():
        stores += [('ibp', 'cuda'), ('uva', 'cuda'), ('gpu', 'cuda')]
    return stores


def batches(data, store, device, **kw):
    fs, gs = from_data(data, store=store, device=device)
    kw.setdefault('num_neighbors', [6, 3])
    kw.setdefault('batch_size', 64)
    kw.setdefault('input_nodes', data.train_mask.nonzero().view(-1))
    return list(NeighborLoader((fs, gs), shuffle=True, seed=kw.pop('seed', 7), **kw))


def check_batch(batch, data):
    """A batch against its source graph: bit-exact features, labels, real edges."""
    n_id = batch.n_id.cpu()
    assert_bits_equal(batch.x.cpu(), data.x[n_id])
    assert torch.equal(batch.y.cpu(), data.y[n_id])
    ei = batch.edge_index.cpu()
    src, dst = n_id[ei[0]], n_id[ei[1]]
    assert torch.equal(data.edge_index[0, batch.e_id.cpu()], src)
    assert torch.equal(data.edge_index[1, batch.e_id.cpu()], dst)
    assert batch.batch_size == batch.input_id.numel()


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert torch.equal(p.n_id.cpu(), q.n_id.cpu())
        assert torch.equal(p.edge_index.cpu(), q.edge_index.cpu())
        assert_bits_equal(p.x.cpu(), q.x.cpu())
        assert torch.equal(p.y.cpu(), q.y.cpu())
        assert p.batch_size == q.batch_size


def test_same_seed_identical_batches_through_every_store():
    data = make_data()
    ref = batches(data, 'cpu', 'cpu')
    assert sum(b.batch_size for b in ref) == int(data.train_mask.sum())
    seeds = torch.cat([b.n_id[:b.batch_size] for b in ref])
    assert sorted(seeds.tolist()) == data.train_mask.nonzero().view(-1).tolist()
    for b in ref:
        check_batch(b, data)
    for store, device in available_stores()[1:]:
        got = batches(data, store, device)
        assert got[0].x.device.type == torch.device(device).type
        assert_same_batches(ref, got)


def test_reproducible_and_new_samples_each_epoch():
    data = make_data()
    fs, gs = from_data(data, store='ibp')
    loader = NeighborLoader((fs, gs), num_neighbors=[6, 3], input_nodes=data.train_mask,
                            batch_size=64, shuffle=False, seed=1)
    first, second = list(loader), list(loader)
    assert torch.equal(first[0].n_id[:64], second[0].n_id[:64])  # unshuffled: same seeds
    assert not all(torch.equal(a.n_id, b.n_id) for a, b in zip(first, second))
    again = NeighborLoader((fs, gs), num_neighbors=[6, 3], input_nodes=data.train_mask,
                           batch_size=64, shuffle=False, seed=1)
    assert_same_batches(first, list(again))


def test_worker_processes_give_the_same_batches():
    data = make_data()
    one = batches(data, 'ibp', 'cpu', num_workers=0)
    two = batches(data, 'ibp', 'cpu', num_workers=2)
    assert_same_batches(one, two)
    for b in two:
        check_batch(b, data)


def test_input_node_forms_and_defaults():
    data = make_data(200, 8, 2000)
    fs, gs = from_data(data, store='cpu')
    everything = NeighborLoader((fs, gs), num_neighbors=[2], batch_size=500)
    (b,) = list(everything)
    assert torch.equal(b.n_id[:200], torch.arange(200))
    by_mask = list(NeighborLoader((fs, gs), num_neighbors=[2], input_nodes=data.train_mask,
                                  batch_size=500))[0]
    assert torch.equal(by_mask.n_id[:by_mask.batch_size], data.train_mask.nonzero().view(-1))
    assert torch.equal(by_mask.input_id, data.train_mask.nonzero().view(-1))
    listed = list(NeighborLoader((fs, gs), num_neighbors=[-1], input_nodes=[5, 1],
                                 batch_size=2))[0]
    assert listed.n_id[:2].tolist() == [5, 1]
    check_batch(listed, data)


def test_heterogeneous_loader():
    g = torch.Generator().manual_seed(0)
    h = HeteroData()
    h['paper'].x = torch.randint(0, 3, (120, 16), generator=g).float()
    h['paper'].y = torch.randint(0, 4, (120,), generator=g)
    h['author'].x = torch.randint(0, 3, (70, 8), generator=g).half()
    cites = torch.unique(torch.randint(0, 120, (2, 700), generator=g), dim=1)
    writes = torch.unique(torch.stack([torch.randint(0, 70, (300,), generator=g),
                                       torch.randint(0, 120, (300,), generator=g)]), dim=1)
    h['paper', 'cites', 'paper'].edge_index = cites
    h['author', 'writes', 'paper'].edge_index = writes
    h['paper', 'rev_writes', 'author'].edge_index = writes.flip(0)
    fs, gs = from_data(h, store='ibp', min_bytes=0)
    seeds = torch.arange(0, 120, 3)
    loader = NeighborLoader((fs, gs), num_neighbors=[4, 2], input_nodes=('paper', seeds),
                            batch_size=16, shuffle=True, seed=0)
    count = 0
    for batch in loader:
        assert isinstance(batch, HeteroData)
        b = batch['paper'].batch_size
        count += b
        for t in ('paper', 'author'):
            n_id = batch[t].n_id
            assert_bits_equal(batch[t].x, h[t].x[n_id])
        assert torch.equal(batch['paper'].y, h['paper'].y[batch['paper'].n_id])
        for et in h.edge_types:
            if et not in batch.edge_types:
                continue
            ei = batch[et].edge_index
            src = batch[et[0]].n_id[ei[0]]
            dst = batch[et[-1]].n_id[ei[1]]
            full = h[et].edge_index
            assert torch.equal(full[0, batch[et].e_id], src)
            assert torch.equal(full[1, batch[et].e_id], dst)
    assert count == seeds.numel()
    whole = list(NeighborLoader((fs, gs), num_neighbors=[1], input_nodes='author',
                                batch_size=100))
    assert sum(b['author'].batch_size for b in whole) == 70


def test_sampler_pickles_without_scratch_state():
    import pickle
    data = make_data(100, 4, 500)
    _, gs = from_data(data, store='cpu')
    sampler = NeighborSampler(gs, [3], seed=0)
    from torch_geometric.sampler import NodeSamplerInput
    inp = NodeSamplerInput(torch.arange(4), torch.tensor([1, 2, 3, 4]))
    a = sampler.sample_from_nodes(inp)
    clone = pickle.loads(pickle.dumps(sampler))
    b = clone.sample_from_nodes(inp)
    assert torch.equal(a.node, b.node) and torch.equal(a.edge, b.edge)


def test_loader_bad_input():
    data = make_data(100, 4, 500)
    fs, gs = from_data(data, store='cpu')
    with pytest.raises(TypeError, match='from_data'):
        NeighborLoader(data, num_neighbors=[2])
    with pytest.raises(IndexError):
        NeighborLoader((fs, gs), num_neighbors=[2], input_nodes=torch.tensor([0, 100]))
    with pytest.raises(ValueError, match='entries'):
        NeighborLoader((fs, gs), num_neighbors=[2], input_nodes=torch.ones(99, dtype=bool))
    with pytest.raises(TypeError):
        NeighborLoader((fs, gs), num_neighbors=[2], input_nodes=torch.tensor([0.5]))
    with pytest.raises(ValueError, match='homogeneous'):
        NeighborLoader((fs, gs), num_neighbors=[2], input_nodes=('paper', None))
    with pytest.raises(ValueError):
        NeighborLoader((fs, gs), num_neighbors=[-3])
    for option in ({'replace': True}, {'disjoint': True}, {'time_attr': 'time'},
                   {'input_time': torch.zeros(100)}, {'subgraph_type': 'induced'}):
        with pytest.raises(NotImplementedError, match=next(iter(option))):
            NeighborLoader((fs, gs), num_neighbors=[2], **option)
    # PyG's defaults are accepted.
    NeighborLoader((fs, gs), num_neighbors=[2], replace=False, disjoint=False, is_sorted=True,
                   subgraph_type='directional', directed=True)


def _real_dataset(name):
    path = SHARED_DATASETS / 'normalized' / f'{name}.npz'
    if not path.is_file():
        pytest.skip(f'{path} not present')
    with np.load(path) as f:
        return Data(**{k: torch.from_numpy(np.array(f[k])) for k in f.files})


def test_real_dataset_every_batch_bit_exact():
    """All training nodes of a real graph through the IBP store: each batch equals the source."""
    data = _real_dataset('amazon_photo')
    train = data.train_mask.nonzero().view(-1) if 'train_mask' in data else torch.arange(
        data.num_nodes)
    fs, gs = ibp_gnn.from_data(data, store='ibp', device='cpu')
    assert fs.attr_ratio('x') > 1.05  # the features really are compressed
    loader = ibp_gnn.NeighborLoader((fs, gs), num_neighbors=[25, 10], input_nodes=train,
                                    batch_size=1024, shuffle=True, num_workers=0, seed=0)
    seen = 0
    for batch in loader:
        check_batch(batch, data)
        seen += batch.batch_size
    assert seen == train.numel()


def test_bench_loader_small():
    from ibp_gnn.pyg.bench import bench_loader, format_bench
    r = bench_loader(make_data(), epochs=1, warmup=0, batch_size=128)
    assert set(r['stores']) == {'cpu', 'ibp'}
    assert r['stores']['cpu']['time_vs_cpu'] == 1.0
    assert r['sampler']['edges_per_second'] > 0
    assert r['stores']['ibp']['host_bytes'] < r['stores']['cpu']['host_bytes']
    assert 'M edges/s' in format_bench(r)


@pytest.mark.gpu
def test_cuda_sampler_loader():
    data = make_data()
    fs, gs = from_data(data, store='ibp', device='cuda', graph_device='cuda')
    loader = NeighborLoader((fs, gs), num_neighbors=[6, 3], batch_size=64,
                            input_nodes=data.train_mask, shuffle=True, seed=3)
    for batch in loader:
        assert batch.x.is_cuda and batch.n_id.is_cuda
        check_batch(batch, data)
    with pytest.raises(ValueError, match='num_workers=0'):
        NeighborLoader((fs, gs), num_neighbors=[2], num_workers=2)
