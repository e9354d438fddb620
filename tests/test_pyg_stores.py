"""Feature stores and the CSC graph store: the PyG store API, index forms, sizes, bad input."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData, TensorAttr

import ibp_gnn
from ibp_gnn.pyg import (CPUFeatureStore, CSCGraphStore, GPUFeatureStore, IBPFeatureStore,
                         UVAFeatureStore, from_data)

from conftest import assert_bits_equal

CPU_STORES = [CPUFeatureStore, IBPFeatureStore, GPUFeatureStore]


def features(n=500, d=64, seed=0):
    """Low-entropy float features (compressible) with a few special values."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randint(0, 4, (n, d), generator=g).float() * 0.25)
    x[0, 0], x[1, 1], x[2, 2] = float('nan'), -0.0, float('inf')
    return x


def test_exports():
    for name in ('IBPFeatureStore', 'CPUFeatureStore', 'UVAFeatureStore', 'GPUFeatureStore',
                 'CSCGraphStore', 'NeighborSampler', 'NeighborLoader', 'from_data'):
        assert getattr(ibp_gnn, name) is getattr(ibp_gnn.pyg, name)


@pytest.mark.parametrize('cls', CPU_STORES)
def test_put_get_all_index_forms(cls):
    x = features()
    y = torch.arange(500) % 7
    fs = cls('cpu')
    assert fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    fs[None, 'y', None] = y  # PyG's item syntax
    idx = torch.tensor([5, 3, 3, 499, 0])
    assert_bits_equal(fs.get_tensor(None, 'x', idx), x[idx])
    assert_bits_equal(fs.get_tensor(None, 'x', None), x)
    assert_bits_equal(fs.get_tensor(None, 'x', slice(10, 20)), x[10:20])
    assert_bits_equal(fs.get_tensor(None, 'x', slice(None, None, -3)), x.flip(0)[::3])
    assert_bits_equal(fs.get_tensor(None, 'x', 7), x[7])
    # PyG's get_tensor cannot check a multi-element np.ndarray index itself (TensorAttr
    # compares it with `!=`), so arrays are exercised one level down.
    arr = np.array([1, 2], dtype=np.int32)
    assert_bits_equal(fs._get_tensor(TensorAttr(None, 'x', arr)), x[[1, 2]])
    assert_bits_equal(fs.get_tensor(None, 'x', [4, 1]), x[[4, 1]])
    assert_bits_equal(fs.get_tensor(None, 'x', idx.to(torch.int32)), x[idx])
    assert_bits_equal(fs.get_tensor(None, 'x', torch.tensor([[1, 2], [3, 4]])),
                      x[torch.tensor([[1, 2], [3, 4]])])
    mask = torch.zeros(500, dtype=torch.bool)
    mask[[2, 9]] = True
    assert_bits_equal(fs.get_tensor(None, 'x', mask), x[mask])
    assert_bits_equal(fs.get_tensor(None, 'x', torch.empty(0, dtype=torch.long)), x[:0])
    assert_bits_equal(fs.get_tensor(None, 'y', idx), y[idx])
    assert_bits_equal(fs[None, 'x', idx], x[idx])  # PyG's item syntax
    # One call for a whole mini-batch, attributes sharing an index.
    attrs = fs.get_all_tensor_attrs()
    for a in attrs:
        a.index = idx
    got = fs.multi_get_tensor(attrs)
    assert {a.attr_name for a in attrs} == {'x', 'y'}
    for a, t in zip(attrs, got):
        assert_bits_equal(t, {'x': x, 'y': y}[a.attr_name][idx])


@pytest.mark.parametrize('cls', CPU_STORES)
def test_fresh_attrs_size_remove_update(cls):
    x = features()
    fs = cls('cpu')
    fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    first = fs.get_all_tensor_attrs()
    first[0].index = torch.tensor([1])
    second = fs.get_all_tensor_attrs()
    assert first[0] is not second[0] and not second[0].is_set('index')
    assert fs.get_tensor_size(None, 'x') == (500, 64)
    assert fs.get_tensor_size(None, 'x', torch.tensor([1, 2, 3])) == (3, 64)
    assert fs.get_tensor_size(None, 'x', slice(0, 10)) == (10, 64)
    assert fs.get_tensor_size(None, 'missing') is None
    x2 = features(seed=1)
    assert fs.update_tensor(x2, group_name=None, attr_name='x', index=None)
    assert_bits_equal(fs.get_tensor(None, 'x', None), x2)
    assert fs.remove_tensor(None, 'x', None)
    assert not fs.remove_tensor(None, 'x', None)
    assert fs.get_all_tensor_attrs() == []
    with pytest.raises(KeyError, match='no attribute'):
        fs.get_tensor(None, 'x', None)


@pytest.mark.parametrize('cls', CPU_STORES)
def test_bad_input(cls):
    fs = cls('cpu')
    x = features(100, 16)
    fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    for bad in (torch.tensor([100]), torch.tensor([-1]), 100, -1, torch.zeros(99, dtype=bool)):
        with pytest.raises(IndexError):
            fs.get_tensor(None, 'x', bad)
    for bad in (torch.tensor([0.5]), 'abc', True, np.array([1.0, 2.0]), [0.5]):
        with pytest.raises(TypeError):
            fs._get_tensor(TensorAttr(None, 'x', bad))
    with pytest.raises(ValueError, match='edge'):
        fs.put_tensor(torch.ones(10, 2), group_name=('a', 'to', 'b'), attr_name='edge_attr',
                      index=None)
    with pytest.raises(ValueError, match='pyg#9566'):
        fs.put_tensor(torch.ones(10, 2), group_name=None, attr_name='edge_attr', index=None)
    with pytest.raises(ValueError, match='whole tensors'):
        fs.put_tensor(x[:5], group_name=None, attr_name='z', index=torch.arange(5))
    with pytest.raises(ValueError, match='share their rows'):
        fs.put_tensor(torch.ones(99), group_name=None, attr_name='y', index=None)
    with pytest.raises(ValueError, match='scalar'):
        fs.put_tensor(torch.tensor(1.0), group_name=None, attr_name='s', index=None)
    with pytest.raises(TypeError):
        fs.put_tensor([1, 2, 3], group_name=None, attr_name='s', index=None)
    with pytest.raises(ValueError, match='not fully specified'):
        fs.put_tensor(x, attr_name='w')


@pytest.mark.parametrize('cls', CPU_STORES)
def test_store_never_changes_or_aliases_user_data(cls):
    x = features(200, 32)
    before = x.clone()
    fs = cls('cpu')
    fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    out = fs.get_tensor(None, 'x', None)
    out.fill_(3.0)  # writing to a result must not reach the store or the caller's tensor
    assert_bits_equal(x, before)
    x[0, 0] = 42.0  # nor a later write by the caller
    assert_bits_equal(fs.get_tensor(None, 'x', None), before)
    arr = before.numpy().copy()
    arr.flags.writeable = False
    fs.put_tensor(arr, group_name=None, attr_name='x', index=None)  # read-only numpy works
    assert_bits_equal(fs.get_tensor(None, 'x', [3]), before[[3]])


def test_ibp_keeps_small_and_incompressible_raw():
    g = torch.Generator().manual_seed(0)
    fs = IBPFeatureStore('cpu')
    x = features(2000, 64)  # compressible, 512 KB
    noise = torch.randint(-2**31, 2**31 - 1, (2000, 64), generator=g, dtype=torch.int64)
    noise = noise.to(torch.int32)  # no invariant bits
    fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    fs.put_tensor(noise, group_name=None, attr_name='noise', index=None)
    fs.put_tensor(torch.arange(2000) % 5, group_name=None, attr_name='y', index=None)
    fs.put_tensor(torch.rand(2000, 2) > 0.5, group_name=None, attr_name='mask', index=None)
    s = fs.summary()['attrs']
    assert s["'y'"]['kind'] == 'raw' and s["'mask'"]['kind'] == 'raw'
    assert s["'noise'"]['kind'] == 'raw' and 'ratio_if_compressed' in s["'noise'"]
    assert s["'x'"]['kind'] == 'ibp' and s["'x'"]['ratio'] > 1.05
    assert fs.attr_ratio('x') == s["'x'"]['ratio'] and fs.attr_ratio('y') == 1.0
    assert fs.host_bytes < fs.raw_bytes and fs.ratio > 1.0
    cpu = CPUFeatureStore('cpu')
    cpu.put_tensor(x, group_name=None, attr_name='x', index=None)
    assert cpu.host_bytes == x.nbytes == cpu.raw_bytes
    idx = torch.randint(0, 2000, (300,), generator=g)
    assert_bits_equal(fs.get_tensor(None, 'noise', idx), noise[idx])
    assert_bits_equal(fs.get_tensor(None, 'x', idx), x[idx])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.uint8, torch.int64, torch.bool])
def test_ibp_dtypes_bit_exact(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 3, (1500, 24), generator=g)).to(dtype)
    fs = IBPFeatureStore('cpu', min_bytes=0, min_ratio=0.0)
    fs.put_tensor(x, group_name=None, attr_name='x', index=None)
    assert fs.summary()['attrs']["'x'"]['kind'] == 'ibp'
    idx = torch.randint(0, 1500, (100,), generator=g)
    assert_bits_equal(fs.get_tensor(None, 'x', idx), x[idx])


def test_store_device_rules():
    with pytest.raises(ValueError, match='CUDA'):
        UVAFeatureStore('cpu')
    with pytest.raises(ValueError, match='location'):
        IBPFeatureStore('cpu', location='disk')
    with pytest.raises(ValueError, match='store must be'):
        from_data(Data(x=torch.ones(3, 2), edge_index=torch.tensor([[0], [1]])), store='zip')
    gpu_on_cpu = GPUFeatureStore('cpu')
    gpu_on_cpu.put_tensor(torch.ones(4, 2), group_name=None, attr_name='x', index=None)
    assert gpu_on_cpu.host_bytes == 32 and gpu_on_cpu.device_bytes == 0


def test_heterogeneous_feature_store():
    fs = IBPFeatureStore('cpu')
    xp, xa = features(300, 40, 0), features(120, 8, 1)
    fs.put_tensor(xp, group_name='paper', attr_name='x', index=None)
    fs.put_tensor(xa, group_name='author', attr_name='x', index=None)
    fs.put_tensor(torch.arange(300), group_name='paper', attr_name='y', index=None)
    assert fs.node_types == ['paper', 'author']
    assert_bits_equal(fs['paper', 'x', torch.tensor([1, 2])], xp[[1, 2]])
    assert_bits_equal(fs['author'].x[torch.tensor([5])], xa[[5]])
    keys = {(a.group_name, a.attr_name) for a in fs.get_all_tensor_attrs()}
    assert keys == {('paper', 'x'), ('author', 'x'), ('paper', 'y')}
    with pytest.raises(ValueError, match='share their rows'):
        fs.put_tensor(torch.ones(100), group_name='author', attr_name='y', index=None)


def test_graph_store_layouts():
    ei = torch.tensor([[0, 2, 1, 2, 3], [1, 0, 1, 3, 0]])
    gs = CSCGraphStore()
    gs.put_edge_index(ei, edge_type=None, layout='coo', size=(4, 4))
    (attr,) = gs.get_all_edge_attrs()
    assert attr.layout.value == 'csc' and attr.size == (4, 4) and attr.edge_type is None
    assert gs.get_all_edge_attrs()[0] is not attr
    row, colptr = gs.get_edge_index(None, 'csc')
    assert colptr.tolist() == [0, 2, 4, 4, 5]
    assert row.tolist() == [2, 3, 0, 1, 2]  # stable: in-edges keep input order
    csc = gs.get_csc()
    assert torch.equal(ei[0, csc.perm], row)
    row_coo, col_coo = gs.get_edge_index(None, 'coo')
    assert sorted(zip(row_coo.tolist(), col_coo.tolist())) == sorted(
        zip(ei[0].tolist(), ei[1].tolist()))
    rowptr, col = gs.get_edge_index(None, 'csr')
    assert rowptr.tolist() == [0, 1, 2, 4, 5]
    # Round trip through CSC and CSR inputs.
    for layout, value in (('csc', (row, colptr)), ('csr', (rowptr, col))):
        other = CSCGraphStore()
        other.put_edge_index(value, edge_type=None, layout=layout, size=(4, 4))
        r2, c2 = other.get_edge_index(None, 'csc')
        assert torch.equal(c2, colptr) and sorted(r2.tolist()) == sorted(row.tolist())
    # Inferred size for a homogeneous graph covers both ends.
    inferred = CSCGraphStore()
    inferred.put_edge_index((ei[0], ei[1]), edge_type=None, layout='coo')
    assert inferred.get_all_edge_attrs()[0].size == (4, 4)
    assert gs.remove_edge_index(None, 'csc') and gs.get_all_edge_attrs() == []
    # Already-sorted input is copied, not referenced: later writes by the caller don't leak in.
    srt = torch.tensor([[1, 0, 2], [0, 1, 1]])
    gs.put_edge_index(srt, edge_type=None, layout='coo', is_sorted=True, size=(3, 3))
    srt[0, 0] = 2
    assert gs.get_edge_index(None, 'csc')[0].tolist() == [1, 0, 2]


def test_graph_store_bad_input():
    gs = CSCGraphStore()
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match='outside'):
        gs.put_edge_index(ei, edge_type=None, layout='coo', size=(2, 2))
    with pytest.raises(ValueError, match='outside'):
        gs.put_edge_index(torch.tensor([[0, -1], [1, 0]]), edge_type=None, layout='coo',
                          size=(3, 3))
    with pytest.raises(TypeError, match='integer'):
        gs.put_edge_index(ei.float(), edge_type=None, layout='coo', size=(3, 3))
    with pytest.raises(ValueError, match=r'\[2, E\]'):
        gs.put_edge_index(torch.zeros(3, 4, dtype=torch.long), edge_type=None, layout='coo')
    with pytest.raises(ValueError, match='colptr'):
        gs.put_edge_index((torch.tensor([0, 1]), torch.tensor([0, 2, 1])), edge_type=None,
                          layout='csc', size=(2, 2))
    with pytest.raises(ValueError, match='not sorted'):
        gs.put_edge_index(torch.tensor([[0, 1], [2, 1]]), edge_type=None, layout='coo',
                          is_sorted=True, size=(3, 3))
    with pytest.raises(TypeError, match='edge_type'):
        gs.put_edge_index(ei, edge_type='cites', layout='coo', size=(3, 3))
    gs.put_edge_index(ei, edge_type=None, layout='coo', size=(3, 3))
    with pytest.raises(ValueError, match='mix'):
        gs.put_edge_index(ei, edge_type=('a', 'r', 'b'), layout='coo', size=(3, 3))
    with pytest.raises(KeyError):
        gs.get_edge_index(('a', 'r', 'b'), 'csc')
    with pytest.raises(KeyError, match='no edges'):
        gs.get_csc(('a', 'r', 'b'))


def test_from_data_homogeneous_and_hetero():
    x = features(50, 4)
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    data = Data(x=x, y=torch.arange(50), edge_index=ei, train_mask=torch.ones(50, dtype=bool),
                edge_attr=torch.ones(3, 2))
    before = {k: v.clone() for k, v in data.items()}
    with pytest.warns(UserWarning, match='edge_attr'):
        fs, gs = from_data(data, store='cpu')
    assert {a.attr_name for a in fs.get_all_tensor_attrs()} == {'x', 'y', 'train_mask'}
    assert gs.get_all_edge_attrs()[0].size == (50, 50)
    for k, v in data.items():
        assert_bits_equal(v, before[k])
    h = HeteroData()
    h['a'].x = features(30, 4)
    h['b'].x = features(20, 3)
    h['a', 'to', 'b'].edge_index = torch.tensor([[0, 29], [19, 0]])
    fs, gs = from_data(h, store='ibp')
    assert gs.get_all_edge_attrs()[0].size == (30, 20)
    assert_bits_equal(fs['b', 'x', torch.tensor([19])], h['b'].x[[19]])
    with pytest.raises(TypeError):
        from_data({'x': x})


@pytest.mark.gpu
@pytest.mark.parametrize('store', ['ibp', 'uva', 'gpu'])
def test_cuda_stores_bit_exact(store):
    x = features(3000, 64)
    data = Data(x=x, y=torch.arange(3000), edge_index=torch.tensor([[0, 1], [1, 0]]))
    fs, _ = from_data(data, store=store, device='cuda')
    idx = torch.randint(0, 3000, (500,))
    for index in (idx, idx.cuda(), idx.cuda().int()):
        out = fs.get_tensor(None, 'x', index)
        assert out.is_cuda
        assert_bits_equal(out, x[idx])
        assert_bits_equal(fs.get_tensor(None, 'y', index), data.y[idx])
    if store in ('ibp', 'uva'):
        assert fs.host_bytes > 0
    if store == 'gpu':
        assert fs.host_bytes == 0 and fs.device_bytes > 0
    with pytest.raises(IndexError):
        fs.get_tensor(None, 'x', torch.tensor([3000], device='cuda'))


def test_ibp_store_takes_a_compressed_matrix():
    from ibp_gnn.codec import compress, tile_rows
    x = (torch.rand(50, 300) < 0.05).float()
    tiled = tile_rows(compress(x), 120)
    fs = IBPFeatureStore()
    fs.put_tensor(tiled, group_name=None, attr_name='x', index=None)
    idx = torch.tensor([0, 119, 50, 7])
    got = fs.get_tensor(group_name=None, attr_name='x', index=idx)
    assert torch.equal(got.view(torch.int32), x[idx % 50].view(torch.int32))
    assert fs.host_bytes == tiled.host_bytes
    with pytest.raises(ValueError, match="share their rows"):
        fs.put_tensor(torch.zeros(7), group_name=None, attr_name='y', index=None)
    with pytest.raises(TypeError, match="holds raw tensors"):
        CPUFeatureStore().put_tensor(tiled, group_name=None, attr_name='x', index=None)


def test_too_little_gain_is_held_raw_for_tensors_and_compressed_matrices():
    """Dense floats compress ~1.1x: below ``min_ratio`` (default 1.25) they are served raw,
    whether put as a tensor or already compressed; ``min_ratio=1.0`` keeps them compressed."""
    from ibp_gnn.codec import compress
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 64, generator=g)
    cm = compress(x)
    assert 1.0 < cm.ratio < 1.25
    idx = torch.tensor([5, 399, 0, 5])
    for value in (x, cm):
        fs = IBPFeatureStore(min_bytes=0)
        fs.put_tensor(value, group_name=None, attr_name='x', index=None)
        attr = fs.summary()['attrs']["'x'"]
        assert attr['kind'] == 'raw' and attr['ratio_if_compressed'] == pytest.approx(cm.ratio)
        assert fs.attr_ratio('x') == 1.0
        got = fs.get_tensor(group_name=None, attr_name='x', index=idx)
        assert torch.equal(got.view(torch.int32), x[idx].view(torch.int32))
        kept = IBPFeatureStore(min_bytes=0, min_ratio=1.0)
        kept.put_tensor(value, group_name=None, attr_name='x', index=None)
        assert kept.summary()['attrs']["'x'"]['kind'] == 'ibp'
        got = kept.get_tensor(group_name=None, attr_name='x', index=idx)
        assert torch.equal(got.view(torch.int32), x[idx].view(torch.int32))
