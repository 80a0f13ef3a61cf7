"""A compact prior over CelebA's 40 binary attributes: a mixture of Chow-Liu trees.

One representation covers the three models the fitting script compares:
independent Bernoullis (one component, no edges), a Chow-Liu tree (Chow and Liu,
IEEE Trans. Inf. Theory 1968: the maximum-mutual-information spanning tree) and a
mixture of trees fitted by EM (Meila and Jordan, JMLR 2000). A latent-class model
(mixture of independent Bernoullis) is a mixture of edgeless trees.

Each component stores a topological ``order``, a ``parent`` per attribute (-1 for
none) and ``p[j] = (P(x_j=1 | parent=0), P(x_j=1 | parent=1))``. Only these derived
probabilities are committed (``celeba_prior.json``), never label rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from faceinsight.data.base import DataFormatError
from faceinsight.vocab import CELEBA_ATTRIBUTES

PRIOR_FILE = "celeba_prior.json"


@dataclass(frozen=True)
class TreeComponent:
    """One tree-structured Bernoulli distribution over the attributes."""

    order: np.ndarray  # int [A], parents come before children
    parent: np.ndarray  # int [A], -1 for a root / edgeless attribute
    p: np.ndarray  # float [A, 2], P(x_j = 1 | x_parent = v); both columns equal without a parent


@dataclass(frozen=True)
class TreeMixture:
    """A mixture of tree components: the attribute prior's sampler and likelihood."""

    names: tuple[str, ...]
    weights: np.ndarray  # float [K]
    components: tuple[TreeComponent, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` attribute vectors, bool ``[n, A]``, by ancestral sampling (vectorised per component)."""
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        uniform = rng.random((n, len(self.names)))
        out = np.zeros((n, len(self.names)), dtype=bool)
        for k, comp in enumerate(self.components):
            rows = np.flatnonzero(which == k)
            x = np.zeros((len(rows), len(self.names) + 1), dtype=bool)  # last column: constant 0 parent
            u = uniform[rows]
            for j in comp.order:
                pv = x[:, comp.parent[j]].astype(np.int64)  # parent -1 reads the constant column
                x[:, j] = u[:, j] < comp.p[j, pv]
            out[rows] = x[:, :-1]
        return out

    def component_log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """``log w_k + log P_k(x)`` for every row and component, float ``[N, K]``."""
        xp = np.concatenate([x, np.zeros((len(x), 1), dtype=bool)], axis=1)
        out = np.empty((len(x), len(self.components)))
        xf = x.astype(np.float64)
        for k, comp in enumerate(self.components):
            if (comp.parent < 0).all():  # edgeless: one matrix product
                out[:, k] = np.log(self.weights[k]) + xf @ np.log(comp.p[:, 0]) + (1 - xf) @ np.log1p(-comp.p[:, 0])
                continue
            q = comp.p[np.arange(x.shape[1]), xp[:, comp.parent].astype(np.int64)]  # [N, A]
            out[:, k] = np.log(self.weights[k]) + np.where(x, np.log(q), np.log1p(-q)).sum(1)
        return out

    def log_likelihood(self, x: np.ndarray) -> float:
        """Mean log-likelihood per row (nats)."""
        return float(np.mean(_logsumexp(self.component_log_likelihood(x))))

    def to_json(self) -> dict:
        return {
            "attributes": list(self.names),
            "weights": [round(float(w), 6) for w in self.weights],
            "components": [_component_json(comp) for comp in self.components],
        }

    @classmethod
    def from_json(cls, data: dict) -> TreeMixture:
        comps = tuple(_component_from_json(c) for c in data["components"])
        weights = np.asarray(data["weights"], dtype=np.float64)
        return cls(tuple(data["attributes"]), weights / weights.sum(), comps)


def _component_json(comp: TreeComponent) -> dict:
    """An edgeless component stores only ``p1``: P(x_j = 1) per attribute."""
    if (comp.parent < 0).all():
        return {"p1": np.round(comp.p[:, 0], 5).tolist()}
    return {"order": comp.order.tolist(), "parent": comp.parent.tolist(), "p": np.round(comp.p, 5).tolist()}


def _component_from_json(c: dict) -> TreeComponent:
    if "p1" in c:
        p1 = np.asarray(c["p1"], dtype=np.float64)
        return TreeComponent(np.arange(len(p1)), np.full(len(p1), -1), np.repeat(p1[:, None], 2, axis=1))
    return TreeComponent(np.asarray(c["order"]), np.asarray(c["parent"]), np.asarray(c["p"], dtype=np.float64))


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


def fit_tree(x: np.ndarray, weight: np.ndarray | None = None, edges: bool = True, alpha: float = 1.0) -> TreeComponent:
    """Fit one component to weighted rows: a Chow-Liu tree, or independent Bernoullis if ``edges`` is False.

    ``alpha`` is a Laplace pseudo-count per cell of each pairwise table.
    """
    n, a = x.shape
    w = np.ones(n) if weight is None else weight
    xf = x.astype(np.float64)
    total = w.sum() + 4 * alpha
    p11 = ((xf * w[:, None]).T @ xf + alpha) / total  # [A, A] P(i=1, j=1)
    p1 = (w @ xf + 2 * alpha) / total  # P(i=1)
    parent = np.full(a, -1)
    if not edges:
        p = np.repeat(p1[:, None], 2, axis=1)
        return TreeComponent(np.arange(a), parent, p)
    joint = np.stack(
        [1 - p1[:, None] - p1[None, :] + p11, p1[None, :] - p11, p1[:, None] - p11, p11]
    )  # ab = 00,01,10,11
    marg_i = np.stack([1 - p1, 1 - p1, p1, p1])[:, :, None]
    marg_j = np.stack([1 - p1, p1, 1 - p1, p1])[:, None, :]
    joint = np.clip(joint, 1e-12, None)
    mi = (joint * np.log(joint / (marg_i * marg_j))).sum(0)
    np.fill_diagonal(mi, -np.inf)
    # Prim's algorithm for the maximum spanning tree; insertion order is a topological order.
    root = int(np.argmax(p1 * (1 - p1)))
    order = [root]
    best = mi[root].copy()
    best_from = np.full(a, root)
    in_tree = np.zeros(a, dtype=bool)
    in_tree[root] = True
    for _ in range(a - 1):
        cand = np.where(in_tree, -np.inf, best)
        j = int(np.argmax(cand))
        order.append(j)
        parent[j] = best_from[j]
        in_tree[j] = True
        better = mi[j] > best
        best = np.where(better, mi[j], best)
        best_from = np.where(better, j, best_from)
    p = np.empty((a, 2))
    for j in range(a):
        i = parent[j]
        if i < 0:
            p[j] = p1[j]
        else:  # P(j=1 | i=0) and P(j=1 | i=1)
            p[j] = [(p1[j] - p11[i, j]) / (1 - p1[i]), p11[i, j] / p1[i]]
    return TreeComponent(np.asarray(order), parent, np.clip(p, 1e-6, 1 - 1e-6))


def fit_mixture(
    x: np.ndarray, k: int, edges: bool, iters: int = 60, seed: int = 0, names: tuple[str, ...] = CELEBA_ATTRIBUTES
) -> TreeMixture:
    """EM for a mixture of ``k`` trees (or of independent Bernoullis when ``edges`` is False)."""
    rng = np.random.default_rng(seed)
    resp = rng.dirichlet(np.ones(k), size=len(x))
    model = None
    for _ in range(iters):
        weights = resp.sum(0) / len(x)
        comps = tuple(fit_tree(x, resp[:, c], edges) for c in range(k))
        model = TreeMixture(names, weights, comps)
        ll = model.component_log_likelihood(x)
        resp = np.exp(ll - _logsumexp(ll)[:, None])
    assert model is not None
    return model


def conditional_cooccurrence(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P[i, j] = m_ij / n_i`` (probability of j given i, eq. 5, as the correlation module computes it)
    and the counts ``n_i``, for a fully labelled bool matrix ``[N, K]``."""
    from faceinsight.data.cooccurrence import conditional_probability, cooccurrence_counts

    labels = torch.from_numpy(np.asarray(x, dtype=np.float64))
    m, n = cooccurrence_counts(labels, torch.ones_like(labels, dtype=torch.bool))
    return conditional_probability(m, n).numpy(), n.diagonal().numpy().copy()


def prior_errors(real: np.ndarray, sampled: np.ndarray) -> dict[str, float]:
    """Mean absolute errors of P(j|i) over ordered pairs i != j with n_i > 0, and of the marginals."""
    p_real, n_real = conditional_cooccurrence(real)
    p_samp, _ = conditional_cooccurrence(sampled)
    pairs = (n_real[:, None] > 0) & ~np.eye(len(n_real), dtype=bool)
    return {
        "cooccurrence_mae": float(np.abs(p_real - p_samp)[pairs].mean()),
        "marginal_mae": float(np.abs(real.mean(0) - sampled.mean(0)).mean()),
    }


def default_data_dir() -> Path:
    """``$FACEINSIGHT_DATA`` or ``../shared/data`` beside the project root."""
    import os

    env = os.environ.get("FACEINSIGHT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"


# The real label sets the prior is fitted to: (folder under the data dir, loader kind).
CELEBA_LABEL_SETS = (("celeba", "celeba"), ("celebahq64", "celebamaskhq"))


def load_real_labels(data_dir: str | Path | None = None) -> np.ndarray:
    """CelebA's and CelebAMask-HQ's labels stacked, bool ``[N, 40]``; raises FileNotFoundError when absent.

    Read with the project's native-format loaders (labels only), so the format is parsed in one place.
    """
    from faceinsight.data.registry import load_dataset

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    missing = [str(root / folder) for folder, _ in CELEBA_LABEL_SETS if not (root / folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"CelebA label folders not found: {missing}")
    matrices = []
    for folder, kind in CELEBA_LABEL_SETS:
        dataset = load_dataset(root / folder, kind=kind, images=False)
        labels, _ = dataset.label_matrix()
        index = [dataset.schema.characteristics.index(a) for a in CELEBA_ATTRIBUTES]
        matrices.append(labels[:, index].numpy() > 0.5)
    return np.concatenate(matrices)


def load_prior(path: str | Path | None = None) -> tuple[TreeMixture, dict]:
    """The committed prior (the package's ``celeba_prior.json``) and the whole JSON document."""
    if path is None:
        text = resources.files("faceinsight.data.synthface").joinpath(PRIOR_FILE).read_text()
    else:
        text = Path(path).read_text()
    doc = json.loads(text)
    model = TreeMixture.from_json(doc["model"])
    if model.names != CELEBA_ATTRIBUTES:
        raise DataFormatError(path or PRIOR_FILE, None, "prior attributes differ from CelebA's 40")
    return model, doc
