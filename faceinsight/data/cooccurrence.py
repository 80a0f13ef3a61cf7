"""Label co-occurrence in a training split (paper eq. 5): a statistic of the labels alone, so that data-side code
(SynthFace's prior fit) and the correlation module (:mod:`faceinsight.model.correlation`) count it one way."""

from __future__ import annotations

import torch
from torch import Tensor


def cooccurrence_counts(labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise counts from a label matrix, counting only samples labelled for both characteristics.

    Args:
        labels: ``[N, K]`` in {0, 1}.
        mask: ``[N, K]`` bool, True where the label is known.

    Returns:
        ``m [K, K]`` with ``m_ij`` = #samples labelled for i and j with both positive, and
        ``n [K, K]`` with ``n_ij`` = #samples labelled for i and j with i positive, so that
        ``P_ij = m_ij / n_ij`` is the conditional probability of eq. 5.
    """
    y = (labels > 0.5) & mask
    y, known = y.double(), mask.double()
    return y.T @ y, y.T @ known


def conditional_probability(m: Tensor, n: Tensor) -> Tensor:
    """Eq. 5: ``P_ij = m_ij / n_ij`` (row i: probability of j given i); 0 where i was never positive."""
    return torch.where(n > 0, m / n.clamp_min(1), torch.zeros_like(m))
