"""Correlation constraint module (paper eq. 5-8).

The K characteristic prompts, embedded by a frozen text encoder (``T0``), are
refined by a GCN over a fixed graph built from label co-occurrence in the
training split:

* eq. 5  ``P_ij = m_ij / n_i``: probability of characteristic j given i;
* eq. 6  ``C_ij = 1[P_ij >= tau]`` for i != j;
* eq. 7  ``C_hat_ii = 1 - omega``, ``C_hat_ij = omega * C_ij / sum_{j' != i} C_ij'``;
* eq. 8  ``T^l = rho(C_hat T^{l-1} W^{l-1})``, and ``T_hat = T0 + T^L``.

The recipe follows ML-GCN (Chen et al., CVPR 2019), whose paper uses t = 0.4 and
p = 0.25; FaceInsight's best omega is 0.8 (Fig. 8b). Unlike ML-GCN's public code
(column sums plus I), this module implements the equations as written.

The co-occurrence counts are buffers of :class:`CooccurrenceStats`, so they travel
with the checkpoint and can be exported for inspection (:meth:`CooccurrenceStats.graph`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from faceinsight.data.cooccurrence import conditional_probability, streamed_counts


@dataclass
class CorrelationConfig:
    """Hyper-parameters of the correlation module."""

    tau: float = 0.4  # eq. 6 threshold (ML-GCN's t)
    omega: float = 0.8  # eq. 7 neighbour weight (FaceInsight Fig. 8b)
    num_layers: int = 2  # L in eq. 8 (ML-GCN uses 2)
    negative_slope: float = 0.2  # rho = LeakyReLU(0.2), as in ML-GCN


def binarize(p: Tensor, tau: float) -> Tensor:
    """Eq. 6: ``C_ij = 1[P_ij >= tau]`` off the diagonal, 0 on it."""
    c = (p >= tau).to(p.dtype)
    return c.fill_diagonal_(0)


def reweight(c: Tensor, omega: float) -> Tensor:
    """Eq. 7: keep ``1 - omega`` on the node itself and spread ``omega`` evenly over its neighbours.

    A node without neighbours keeps all its weight on itself (row of the identity).
    """
    degree = c.sum(dim=1, keepdim=True)
    has_neighbours = degree > 0
    c_hat = torch.where(has_neighbours, omega * c / degree.clamp_min(1), torch.zeros_like(c))
    self_weight = torch.where(has_neighbours.squeeze(1), 1.0 - omega, 1.0).to(c.dtype)
    return c_hat + torch.diag(self_weight)


def correlation_matrix(m: Tensor, n: Tensor, tau: float, omega: float) -> Tensor:
    """``C_hat`` from co-occurrence counts (eq. 5-7)."""
    return reweight(binarize(conditional_probability(m, n), tau), omega)


class CooccurrenceStats(nn.Module):
    """Label statistics of the training split, kept as buffers so they are saved with the checkpoint."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        k = len(names)
        for buffer in ("m", "n", "known"):
            self.register_buffer(buffer, torch.zeros(k, k, dtype=torch.float64))

    @property
    def is_set(self) -> bool:
        return bool(self.known.diagonal().sum() > 0)

    def update(self, labels: Tensor, mask: Tensor) -> None:
        """Set the counts from the training split's labels ``[N, K]`` and mask ``[N, K]``."""
        index = torch.arange(labels.shape[-1])
        self.set_counts(*streamed_counts([(labels.cpu(), mask.cpu(), index)], len(self.names)))

    def set_counts(self, m: Tensor, n: Tensor, known: Tensor) -> None:
        """Set the counts ``m``, ``n`` and ``known`` (``[K, K]`` integers, :func:`streamed_counts`); the buffers
        stay float64, which holds every count below 2**53 exactly."""
        for buffer, counts in (("m", m), ("n", n), ("known", known)):
            getattr(self, buffer).copy_(counts)

    def positive_rate(self) -> Tensor:
        """Marginal P(y_k = 1) over the samples labelled for k (0.5 where none are)."""
        known = self.known.diagonal()
        return torch.where(known > 0, self.m.diagonal() / known.clamp_min(1), torch.full_like(known, 0.5))

    def conditional(self) -> Tensor:
        return conditional_probability(self.m, self.n)

    def graph(self, tau: float, omega: float) -> dict[str, object]:
        """Everything needed to inspect the graph: names, counts, P (eq. 5), C (eq. 6) and C_hat (eq. 7)."""
        p = self.conditional()
        return {
            "names": self.names,
            "tau": tau,
            "omega": omega,
            "m": self.m.cpu(),
            "n": self.n.cpu(),
            "P": p.cpu(),
            "C": binarize(p, tau).cpu(),
            "C_hat": reweight(binarize(p, tau), omega).cpu(),
        }


class CorrelationGCN(nn.Module):
    """GCN over ``C_hat`` refining characteristic embeddings (eq. 8), with the residual ``T0 + T^L``."""

    def __init__(self, dim: int, config: CorrelationConfig | None = None) -> None:
        super().__init__()
        self.config = config or CorrelationConfig()
        # eq. 8's W^l has no bias. PyG's GCNConv without normalisation or added self-loops computes exactly
        # out_i = sum_j w_ji (x_j W) over edges j -> i; the self weight 1 - omega is an explicit edge.
        self.layers = nn.ModuleList(
            GCNConv(dim, dim, normalize=False, add_self_loops=False, bias=False) for _ in range(self.config.num_layers)
        )
        self.act = nn.LeakyReLU(self.config.negative_slope)

    def adjacency(self, stats: CooccurrenceStats) -> Tensor:
        """``C_hat [K, K]`` (eq. 5-7) from the counts and the configured tau and omega."""
        return correlation_matrix(stats.m, stats.n, self.config.tau, self.config.omega)

    def forward(self, t0: Tensor, c_hat: Tensor) -> Tensor:
        """``T_hat = T0 + T^L`` for prompt embeddings ``t0 [K, D]`` over the graph ``c_hat [K, K]``."""
        c_hat = c_hat.to(t0.dtype)
        target, source = c_hat.nonzero(as_tuple=True)  # row i gathers from column j: message j -> i
        edge_index = torch.stack([source, target])
        edge_weight = c_hat[target, source]
        t = t0
        for layer in self.layers:
            t = self.act(layer(t, edge_index, edge_weight))
        return t0 + t
