"""NeighborSampler: correctness of every sampled edge, fan-outs, ordering, uniformity,
reproducibility, heterogeneous graphs and bad input."""
import math
from itertools import combinations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.sampler import HeteroSamplerOutput, NodeSamplerInput, SamplerOutput

from ibp_gnn.pyg import CSCGraphStore, NeighborSampler
from ibp_gnn.pyg.sampler import sample_uniform


def random_graph(num_nodes=300, num_edges=6000, seed=0):
    """A directed graph without duplicate edges or self-loops, with a wide degree spread."""
    g = torch.Generator().manual_seed(seed)
    # Skewed destinations so some nodes have degree far above the fan-out and some below.
    dst = (torch.rand(num_edges, generator=g) ** 2 * num_nodes).long()
    src = torch.randint(0, num_nodes, (num_edges,), generator=g)
    keep = src != dst
    pairs = torch.unique(torch.stack([src[keep], dst[keep]]), dim=1)
    pairs = pairs[:, torch.randperm(pairs.size(1), generator=g)]  # unsorted input
    return pairs, num_nodes


def graph_store(edge_index, n, device='cpu'):
    gs = CSCGraphStore(device)
    gs.put_edge_index(edge_index, edge_type=None, layout='coo', size=(n, n))
    return gs


def sample(sampler, seeds, input_id=None, input_type=None):
    seeds = torch.as_tensor(seeds)
    if input_id is None:
        input_id = torch.arange(seeds.numel())
    return sampler.sample_from_nodes(NodeSamplerInput(input_id, seeds, input_type=input_type))


def check_output(out, edge_index, num_nodes, seeds, fanouts):
    """Every property a PyG neighbor sampler promises, for a homogeneous output."""
    node, row, col = out.node, out.row, out.col
    b = seeds.numel()
    assert torch.equal(node[:b], seeds), "seeds first, in seed order"
    # Nodes after the seeds are new: unique and not seeds.
    rest = node[b:]
    assert rest.unique().numel() == rest.numel()
    assert not torch.isin(rest, seeds).any()
    assert sum(out.num_sampled_nodes) == node.numel()
    assert sum(out.num_sampled_edges) == row.numel() == col.numel() == out.edge.numel()
    assert len(out.num_sampled_nodes) == len(fanouts) + 1
    assert len(out.num_sampled_edges) == len(fanouts)
    # Every sampled edge exists, and `edge` names it in the input edge list.
    g_src, g_dst = node[row], node[col]
    assert torch.equal(edge_index[0, out.edge], g_src)
    assert torch.equal(edge_index[1, out.edge], g_dst)
    deg = torch.bincount(edge_index[1], minlength=num_nodes)
    node_start = [0]
    for c in out.num_sampled_nodes:
        node_start.append(node_start[-1] + c)
    e0 = 0
    for hop, (k, ne) in enumerate(zip(fanouts, out.num_sampled_edges)):
        c, e = col[e0:e0 + ne], out.edge[e0:e0 + ne]
        e0 += ne
        # Targets of hop h are exactly the nodes added in hop h - 1 (all seed positions first).
        lo, hi = node_start[hop], node_start[hop + 1]
        assert ((c >= lo) & (c < hi)).all()
        # No edge twice per target per hop, and the fan-out respected exactly.
        pair = c * (edge_index.size(1) + 1) + e
        assert pair.unique().numel() == pair.numel()
        counts = torch.bincount(c - lo, minlength=hi - lo)
        want = deg[node[lo:hi]]
        if k >= 0:
            want = want.clamp(max=k)
        assert torch.equal(counts, want)


@pytest.mark.parametrize('fanouts', [[5, 3], [25, 10], [-1, 2], [0, 4], [3, 3, 3], []])
def test_homogeneous_correctness(fanouts):
    edge_index, n = random_graph()
    sampler = NeighborSampler(graph_store(edge_index, n), fanouts, seed=1)
    for seeds in (torch.randperm(n)[:40], torch.tensor([7]), torch.arange(n)):
        out = sample(sampler, seeds)
        assert isinstance(out, SamplerOutput)
        check_output(out, edge_index, n, seeds, fanouts)


def test_duplicate_seeds_each_sample():
    edge_index, n = random_graph()
    sampler = NeighborSampler(graph_store(edge_index, n), [4, 2], seed=0)
    seeds = torch.tensor([5, 9, 5, 5])
    out = sample(sampler, seeds)
    assert torch.equal(out.node[:4], seeds)
    hop1 = out.col[:out.num_sampled_edges[0]]
    deg5 = int((edge_index[1] == 5).sum())
    for pos in (0, 2, 3):
        assert int((hop1 == pos).sum()) == min(deg5, 4)
    check_output(out, edge_index, n, seeds, [4, 2])


def test_metadata_and_empty_batch():
    edge_index, n = random_graph()
    sampler = NeighborSampler(graph_store(edge_index, n), [3], seed=0)
    ids = torch.tensor([10, 11])
    out = sampler.sample_from_nodes(NodeSamplerInput(ids, torch.tensor([1, 2])))
    assert out.metadata[0] is ids and out.metadata[1] is None
    out = sample(sampler, torch.empty(0, dtype=torch.long))
    assert out.node.numel() == 0 and out.row.numel() == 0
    assert out.num_sampled_nodes == [0, 0] and out.num_sampled_edges == [0]


def test_same_seed_same_sample_different_epoch_differs():
    edge_index, n = random_graph()
    gs = graph_store(edge_index, n)
    seeds = torch.randperm(n)[:64]
    a = sample(NeighborSampler(gs, [5, 5], seed=3), seeds)
    b = sample(NeighborSampler(gs, [5, 5], seed=3), seeds)
    for key in ('node', 'row', 'col', 'edge'):
        assert torch.equal(getattr(a, key), getattr(b, key))
    other = NeighborSampler(gs, [5, 5], seed=3)
    other.epoch = 1
    c = sample(other, seeds)
    assert not torch.equal(a.edge, c.edge)
    d = sample(NeighborSampler(gs, [5, 5], seed=4), seeds)
    assert not torch.equal(a.edge, d.edge)


def test_uniform_over_neighbors_chi_square():
    """A node with 12 in-neighbors and fan-out 4: each neighbor is drawn with probability 1/3;
    over many batches the counts pass a chi-square test, and each draw has distinct nodes."""
    deg, k, draws = 12, 4, 3000
    src = torch.arange(1, deg + 1)
    edge_index = torch.stack([src, torch.zeros(deg, dtype=torch.long)])
    sampler = NeighborSampler(graph_store(edge_index, deg + 1), [k], seed=11)
    counts = torch.zeros(deg + 1)
    for i in range(draws):
        out = sample(sampler, torch.tensor([0]), input_id=torch.tensor([i]))
        picked = out.node[out.row]
        assert picked.unique().numel() == k
        counts[picked] += 1
    expected = draws * k / deg
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < chi2_critical(deg - 1), chi2


def chi2_critical(dof, z=3.29):
    """Upper critical value of chi-square (alpha about 5e-4), Wilson-Hilferty approximation."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize('floyd_max', [64, 0])  # Floyd's algorithm, and random-key sorting
def test_sample_uniform_subsets_chi_square(floyd_max):
    """Every k-subset of [0, d) equally likely, for both ways of drawing."""
    d, k, rows = 7, 3, 35 * 400
    gen = torch.Generator().manual_seed(5)
    deg = torch.full((rows,), d, dtype=torch.long)
    chosen = sample_uniform(deg, k, gen, floyd_max_fanout=floyd_max).sort(1).values
    assert chosen.shape == (rows, k)
    assert (chosen[:, 1:] > chosen[:, :-1]).all(), "distinct"
    assert ((chosen >= 0) & (chosen < d)).all()
    subsets = {s: i for i, s in enumerate(combinations(range(d), k))}
    ids = torch.tensor([subsets[tuple(r)] for r in chosen.tolist()])
    counts = torch.bincount(ids, minlength=len(subsets)).double()
    expected = rows / len(subsets)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < chi2_critical(len(subsets) - 1), chi2


def test_random_key_path_matches_contract():
    edge_index, n = random_graph()
    sampler = NeighborSampler(graph_store(edge_index, n), [30, 6], seed=2)
    sampler.floyd_max_fanout = 0
    seeds = torch.randperm(n)[:50]
    check_output(sample(sampler, seeds), edge_index, n, seeds, [30, 6])


def test_sampler_accepts_other_graph_stores_and_data():
    from torch_geometric.data import Data
    from torch_geometric.testing import MyGraphStore
    edge_index, n = random_graph(100, 800)
    ref = MyGraphStore()
    ref.put_edge_index((edge_index[0], edge_index[1]), edge_type=None, layout='coo',
                       size=(n, n))
    seeds = torch.arange(10)
    for data in (ref, Data(edge_index=edge_index, num_nodes=n)):
        out = sample(NeighborSampler(data, [3, 2], seed=0), seeds)
        check_output(out, edge_index, n, seeds, [3, 2])


def hetero_graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = {'paper': 80, 'author': 50, 'inst': 5}

    def rand_edges(src, dst, m):
        e = torch.stack([torch.randint(0, n[src], (m,), generator=g),
                         torch.randint(0, n[dst], (m,), generator=g)])
        return torch.unique(e, dim=1)

    data = HeteroData()
    for t, c in n.items():
        data[t].x = torch.randn(c, 8, generator=g)
        data[t].num_nodes = c
    data['paper', 'cites', 'paper'].edge_index = rand_edges('paper', 'paper', 600)
    writes = rand_edges('author', 'paper', 300)
    data['author', 'writes', 'paper'].edge_index = writes
    data['paper', 'rev_writes', 'author'].edge_index = writes.flip(0)
    data['author', 'in', 'inst'].edge_index = rand_edges('author', 'inst', 60)
    return data


def test_heterogeneous_sampling():
    data = hetero_graph()
    from ibp_gnn.pyg import graph_store_from_data
    gs = graph_store_from_data(data)
    fanouts = {('paper', 'cites', 'paper'): [4, 2], ('author', 'writes', 'paper'): [3, 2],
               ('paper', 'rev_writes', 'author'): [2, 2], 'author__in__inst': [1, 1]}
    sampler = NeighborSampler(gs, fanouts, seed=0)
    seeds = torch.tensor([3, 1, 4, 15, 9])
    out = sample(sampler, seeds, input_type='paper')
    assert isinstance(out, HeteroSamplerOutput)
    assert torch.equal(out.node['paper'][:5], seeds)
    for t, nodes in out.node.items():
        assert nodes.unique().numel() == nodes.numel() or t == 'paper'
        assert sum(out.num_sampled_nodes[t]) == nodes.numel()
    total = 0
    for et, ei in data.edge_index_dict.items():
        row, col, edge = out.row[et], out.col[et], out.edge[et]
        src, dst = out.node[et[0]][row], out.node[et[-1]][col]
        assert torch.equal(ei[0, edge], src) and torch.equal(ei[1, edge], dst)
        assert sum(out.num_sampled_edges[et]) == row.numel()
        pair = col * (ei.size(1) + 1) + edge
        assert pair.unique().numel() == pair.numel()
        total += row.numel()
    assert total > 0
    # Hop 1 starts from papers only: nothing samples into 'inst' before authors exist.
    assert out.num_sampled_edges[('author', 'in', 'inst')][0] == 0
    # A single list applies to every edge type.
    out = sample(NeighborSampler(gs, [2, 2], seed=0), seeds, input_type='paper')
    assert all(len(v) == 2 for v in out.num_sampled_edges.values())


def test_bad_input():
    edge_index, n = random_graph(50, 200)
    gs = graph_store(edge_index, n)
    with pytest.raises(ValueError, match='-1'):
        NeighborSampler(gs, [5, -2])
    with pytest.raises(TypeError):
        NeighborSampler(gs, [5, 2.5])
    with pytest.raises(TypeError):
        NeighborSampler(gs, 5)
    with pytest.raises(TypeError):
        NeighborSampler(gs, {'a__b__c': [1]})
    with pytest.raises(TypeError):
        NeighborSampler(gs, [1], seed='x')
    with pytest.raises(TypeError):
        NeighborSampler(torch.zeros(3), [1])
    with pytest.raises(ValueError, match='no edges'):
        NeighborSampler(CSCGraphStore(), [1])
    sampler = NeighborSampler(gs, [2])
    with pytest.raises(IndexError):
        sample(sampler, torch.tensor([0, n]))
    with pytest.raises(IndexError):
        sample(sampler, torch.tensor([-1]))
    with pytest.raises(TypeError):
        sample(sampler, torch.tensor([0.5]))
    with pytest.raises(ValueError, match='homogeneous'):
        sample(sampler, torch.tensor([0]), input_type='paper')
    with pytest.raises(NotImplementedError):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([0]),
                                                   time=torch.tensor([1])))
    with pytest.raises(NotImplementedError):
        sampler.sample_from_edges(None)
    hetero = NeighborSampler(__import__('ibp_gnn').pyg.graph_store_from_data(hetero_graph()),
                             [1])
    with pytest.raises(ValueError, match='input node type'):
        sample(hetero, torch.tensor([0]), input_type='venue')
    with pytest.raises(ValueError, match='does not have'):
        NeighborSampler(hetero.graph, {('paper', 'x', 'paper'): [1]})
    with pytest.raises(ValueError, match='same number of hops'):
        NeighborSampler(hetero.graph, {('paper', 'cites', 'paper'): [1],
                                       ('author', 'writes', 'paper'): [1, 1]})


def test_sampler_does_not_change_its_input():
    edge_index, n = random_graph(60, 300)
    before = edge_index.clone()
    sampler = NeighborSampler(graph_store(edge_index, n), [3])
    seeds = torch.tensor([4, 2, 4], dtype=torch.int32)
    seeds_before = seeds.clone()
    sample(sampler, seeds)
    assert torch.equal(edge_index, before) and torch.equal(seeds, seeds_before)


@pytest.mark.gpu
def test_cuda_sampler_matches_contract():
    edge_index, n = random_graph()
    sampler = NeighborSampler(graph_store(edge_index, n, 'cuda'), [5, 3], seed=1)
    seeds = torch.randperm(n)[:40]
    out = sample(sampler, seeds)
    assert out.node.is_cuda
    out = SamplerOutput(out.node.cpu(), out.row.cpu(), out.col.cpu(), out.edge.cpu(),
                        num_sampled_nodes=out.num_sampled_nodes,
                        num_sampled_edges=out.num_sampled_edges)
    check_output(out, edge_index, n, seeds, [5, 3])
