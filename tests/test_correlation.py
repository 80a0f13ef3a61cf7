import pytest
import torch

from faceinsight.data.cooccurrence import conditional_probability, cooccurrence_counts, streamed_counts
from faceinsight.model.correlation import CooccurrenceStats, CorrelationConfig, CorrelationGCN, binarize, reweight


def test_counts_only_use_samples_labelled_for_both():
    labels = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=torch.float)
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    m, n = cooccurrence_counts(labels, mask)
    # m_01: samples 0 (both positive, both labelled); sample 2 has attribute 1 unlabelled.
    assert m[0, 1] == 1 and m[1, 0] == 1
    # n_01: samples with 0 positive and labelled for 1: rows 0 and 1 (row 2 has 1 unlabelled).
    assert n[0, 1] == 2
    # n_10: samples with 1 positive and labelled for 0: rows 0 and 3.
    assert n[1, 0] == 2
    p = conditional_probability(m, n)
    assert p[0, 1] == pytest.approx(0.5) and p[1, 0] == pytest.approx(0.5)
    # m_02: rows 1 and 2; n_02 = 3 (rows 0, 1, 2) -> P(2|0) = 2/3; n_20 = rows 1, 2, 3 -> P(0|2) = 2/3.
    assert p[0, 2] == pytest.approx(2 / 3) and p[2, 0] == pytest.approx(2 / 3)


def test_eq6_eq7_against_hand_computed_values():
    p = torch.tensor([[1.0, 0.5, 0.3, 0.9], [0.2, 1.0, 0.1, 0.0], [0.4, 0.4, 1.0, 0.4], [0.0, 0.0, 0.0, 1.0]])
    c = binarize(p, tau=0.4)
    expected_c = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.float)
    assert torch.equal(c, expected_c)
    c_hat = reweight(c, omega=0.8)
    expected = torch.tensor(
        [
            [0.2, 0.4, 0.0, 0.4],  # two neighbours share omega = 0.8
            [0.0, 1.0, 0.0, 0.0],  # no neighbour: all weight on itself
            [0.8 / 3, 0.8 / 3, 0.2, 0.8 / 3],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    torch.testing.assert_close(c_hat, expected)
    torch.testing.assert_close(c_hat.sum(1), torch.ones(4))


def test_gcn_matches_dense_formula_on_asymmetric_graph():
    torch.manual_seed(0)
    k, d = 6, 5
    c_hat = reweight(binarize(torch.rand(k, k), 0.5), 0.8)
    assert not torch.allclose(c_hat, c_hat.T)  # the direction of messages matters
    gcn = CorrelationGCN(d, CorrelationConfig(num_layers=2, negative_slope=0.2))
    t0 = torch.randn(k, d)
    t = t0
    for layer in gcn.layers:  # eq. 8: T^l = rho(C_hat T^{l-1} W^{l-1}); PyG's lin computes x @ W^T
        t = torch.nn.functional.leaky_relu(c_hat @ (t @ layer.lin.weight.T), 0.2)
    torch.testing.assert_close(gcn(t0, c_hat), t0 + t)


def test_stats_roundtrip_and_graph_export():
    labels = (torch.rand(50, 4) > 0.5).float()
    mask = torch.rand(50, 4) > 0.1
    stats = CooccurrenceStats(list("abcd"))
    assert not stats.is_set
    stats.update(labels, mask)
    other = CooccurrenceStats(list("abcd"))
    other.load_state_dict(stats.state_dict())
    graph = other.graph(tau=0.4, omega=0.8)
    m, n = cooccurrence_counts(labels, mask)
    torch.testing.assert_close(graph["P"], conditional_probability(m, n))
    torch.testing.assert_close(graph["C_hat"].sum(1), torch.ones(4, dtype=torch.float64))
    rate = other.positive_rate()
    expected = (labels * mask).sum(0) / mask.sum(0)
    torch.testing.assert_close(rate.float(), expected)


def test_streamed_counts_equal_the_dense_counts_exactly(monkeypatch):
    """Blocks of rows labelled for different characteristics (two datasets of a mix), counted in chunks of 7 rows,
    give the integers of the dense float64 count over the whole placed matrix, missing labels included."""
    import faceinsight.data.cooccurrence as cooccurrence

    monkeypatch.setattr(cooccurrence, "CHUNK", 7)  # several chunks per block, the last one partial
    generator = torch.Generator().manual_seed(0)
    k = 9
    blocks, placed_labels, placed_masks = [], [], []
    for rows, index in ((40, torch.tensor([0, 3, 4, 8])), (23, torch.tensor([8, 1, 2, 3, 5, 6]))):
        labels = (torch.rand(rows, len(index), generator=generator) > 0.6).float()
        mask = torch.rand(rows, len(index), generator=generator) > 0.25
        blocks.append((labels, mask, index))
        full, full_mask = torch.zeros(rows, k), torch.zeros(rows, k, dtype=torch.bool)
        full[:, index], full_mask[:, index] = labels, mask
        placed_labels.append(full)
        placed_masks.append(full_mask)
    labels, mask = torch.cat(placed_labels), torch.cat(placed_masks)
    m, n, known = cooccurrence.streamed_counts(blocks, k)
    dense_m, dense_n = cooccurrence_counts(labels, mask)
    assert m.dtype == torch.int64 and m.sum() > 0 and (n > m).any()
    assert torch.equal(m.double(), dense_m) and torch.equal(n.double(), dense_n)
    assert torch.equal(known.double(), mask.double().T @ mask.double())
    stats = CooccurrenceStats([str(i) for i in range(k)])
    stats.update(labels, mask)  # the whole matrix as one block: the same buffers as the blocks
    assert torch.equal(stats.m, dense_m) and torch.equal(stats.n, dense_n)


def test_streamed_counts_name_a_block_whose_shapes_disagree():
    with pytest.raises(ValueError, match="differ"):
        streamed_counts([(torch.zeros(3, 2), torch.ones(3, 2, dtype=torch.bool), torch.tensor([0, 1, 2]))], 4)
