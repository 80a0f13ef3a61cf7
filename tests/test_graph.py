"""faceinsight.tools.graph against hand-computed references on a tiny label matrix, and graphs straight from data."""

import json
import math

import pytest
import torch
from test_data_loaders import make_celeba, values_for

from faceinsight.data.synthface import SynthFace
from faceinsight.tools import graph as fg
from faceinsight.vocab import CELEBA_ATTRIBUTES

# Faces x characteristics a, b, c, d; d is never positive.
#   n_a = n_b = n_c = 3, m_ab = 2, m_ac = 1, m_bc = 2
#   P(b|a) = P(a|b) = P(c|b) = P(b|c) = 2/3, P(c|a) = P(a|c) = 1/3, P(.|d) = P(d|.) = 0
LABELS = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]], dtype=torch.float)
NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def tiny() -> dict:
    return fg.graph_from_labels(LABELS, torch.ones_like(LABELS, dtype=torch.bool), NAMES, tau=0.5, omega=0.8)


def test_graph_from_labels_eq5_to_eq7(tiny):
    t = 2 / 3
    expected_p = torch.tensor([[1, t, 1 - t, 0], [t, 1, t, 0], [1 - t, t, 1, 0], [0, 0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(tiny["P"], expected_p)
    assert torch.equal(tiny["C"], torch.tensor([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0.0]]).double())
    expected_c_hat = torch.tensor([[0.2, 0.8, 0, 0], [0.4, 0.2, 0.4, 0], [0, 0.8, 0.2, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(tiny["C_hat"], expected_c_hat.double())
    assert tiny["names"] == NAMES and (tiny["tau"], tiny["omega"]) == (0.5, 0.8)
    assert set(tiny) == {"names", "tau", "omega", "m", "n", "P", "C", "C_hat"}  # load_graph's keys
    again = fg.with_threshold(tiny, tau=0.3, omega=0.5)
    assert int(again["C"].sum()) == 6 and again["C_hat"][0, 0] == 0.5 and again["C_hat"][0, 1] == 0.25


def test_edges_table_and_degrees(tiny):
    rows = fg.edges_table(tiny)
    assert [(r["source"], r["target"]) for r in rows] == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")]
    assert rows[0] == {"source": "a", "target": "b", "P": pytest.approx(2 / 3), "P_reverse": pytest.approx(2 / 3),
                       "m": 2, "n": 3, "weight": pytest.approx(0.8)}  # fmt: skip
    assert rows[1]["weight"] == pytest.approx(0.4)  # b shares omega between a and c
    d = fg.degrees(tiny)
    assert d["out"].tolist() == [1, 2, 1, 0] and d["in"].tolist() == [1, 2, 1, 0] and d["isolated"] == ["d"]


def test_communities_and_colours(tiny):
    # Directed modularity: {a, b, c} scores 0, {a, b} + {c} -1/8, all apart -3/8; d has no edge.
    groups = fg.communities(tiny)
    assert groups == [["a", "b", "c"], ["d"]]
    colors = fg.community_colors(groups)
    assert colors["a"] == colors["b"] == colors["c"] != colors["d"] == fg.SINGLETON_COLOR
    no_edges = fg.with_threshold(tiny, tau=0.9)
    assert fg.communities(no_edges) == [["a"], ["b"], ["c"], ["d"]]


def test_sweep_over_tau_and_omega(tiny):
    s = fg.sweep(tiny, taus=[0.3, 0.5, 0.7], omegas=[0.0, 0.8], layers=2)
    assert s["edges"] == [6, 4, 0] and s["mutual"] == [3, 2, 0] and s["no_out_edge"] == [1, 1, 4]
    assert s["max_degree"] == [2, 2, 0] and s["clusters"] == [1, 1, 0]
    assert s["degree_counts"][1] == [1, 2, 1, 0]  # out-degrees 1, 2, 1, 0 at tau 0.5
    assert s["mean_degree"][1] == pytest.approx(1.0)
    # Diagonal of C_hat^2 at tau 0.5, omega 0.8: a 0.2^2 + 0.8*0.4 = 0.36, b 0.4*0.8*2 + 0.2^2 = 0.68, c 0.36, d 1.
    assert s["self_share"][1] == [pytest.approx(1.0), pytest.approx((0.36 + 0.68 + 0.36 + 1) / 4)]
    assert s["self_share"][2] == [pytest.approx(1.0), pytest.approx(1.0)]  # no edges: nothing propagates
    json.dumps(s)  # plain values, for summary.json


def test_cosine_similarity_and_change():
    t0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t_hat = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(fg.cosine_similarity(t0)[0], torch.tensor([1.0, 0.0, 2**-0.5]).double())
    c = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]]).double()
    s = fg.similarity_change({"t0": t0, "t_hat": t_hat, "C": c})
    assert s["edges"] == 2
    assert s["mean_before"] == {"edges": pytest.approx(0.0), "non_edges": pytest.approx(2**-0.5)}
    assert s["mean_after"] == {"edges": pytest.approx(1.0), "non_edges": pytest.approx(1.0)}
    torch.testing.assert_close(s["change"], s["after"] - s["before"])
    no_edges = fg.similarity_change({"t0": t0, "t_hat": t_hat, "C": torch.zeros(3, 3)})
    assert no_edges["edges"] == 0 and math.isnan(no_edges["mean_after"]["edges"])


def brute_force_counts(rows: list[list[float]]) -> tuple[list[list[int]], list[list[int]]]:
    """m_ij and n_ij (eq. 5) by counting faces one at a time (every label known)."""
    k = len(rows[0])
    m = [[sum(r[i] == 1 and r[j] == 1 for r in rows) for j in range(k)] for i in range(k)]
    n = [[sum(r[i] == 1 for r in rows)] * k for i in range(k)]
    return m, n


def test_dataset_graph_of_a_labels_only_folder_uses_the_training_split(tmp_path):
    make_celeba(tmp_path, n=9, images=False)  # partition i % 3: faces 0, 3, 6 train
    graph = fg.dataset_graph("celeba", tmp_path, tau=0.5, omega=0.8)
    assert graph["names"] == list(CELEBA_ATTRIBUTES)
    m, n = brute_force_counts([[float(v == 1) for v in values_for(i)] for i in (0, 3, 6)])
    assert graph["m"].tolist() == m and graph["n"].tolist() == n
    labels, mask, names = fg.train_labels("celeba", tmp_path, max_samples=2)
    assert labels.shape == (2, 40) and mask.all() and names == list(CELEBA_ATTRIBUTES)


def test_dataset_graph_of_synthface_is_its_label_matrix():
    graph = fg.dataset_graph(options={"num_train": 30}, tau=0.3, omega=0.6)
    labels, _ = SynthFace(30, seed=0).label_matrix()  # split train of seed 0
    m, n = brute_force_counts(labels.tolist())
    assert graph["m"].tolist() == m and graph["n"].tolist() == n
    assert (graph["tau"], graph["omega"]) == (0.3, 0.6)
    first = fg.dataset_graph(options={"num_train": 60}, max_samples=30)
    assert torch.equal(first["m"], graph["m"])  # labels of face i depend on (seed, i) only


def test_dataset_graph_of_real_celebahq_training_split(shared_data):
    root = shared_data / "celebahq64"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    labels, mask, names = fg.train_labels("celebamaskhq", root, {"split_by": "official"})
    assert labels.shape == (21732, 40) and mask.all()  # CelebA's identity-disjoint training split
    graph = fg.graph_from_labels(labels, mask, names, 0.4, 0.8)
    p_male_given_goatee = labels[:, names.index("Goatee")].bool() & labels[:, names.index("Male")].bool()
    assert graph["P"][names.index("Goatee"), names.index("Male")] == pytest.approx(
        float(p_male_given_goatee.sum() / labels[:, names.index("Goatee")].sum())
    )
