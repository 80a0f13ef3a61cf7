"""Label co-occurrence in a training split (paper eq. 5): a statistic of the labels alone, so that data-side code
(SynthFace's prior fit) and the correlation module (:mod:`faceinsight.model.correlation`) count it one way.

:func:`streamed_counts` counts blocks of rows (each dataset of a mix, its labels at its own characteristics'
positions) in chunks of rows, so that 3.7 M faces never stand as one ``[N, K]`` float64 matrix (docs/scaling.md);
:func:`cooccurrence_counts` is the same count of one whole label matrix.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

# Rows counted at once by :func:`streamed_counts`. The chunk's float32 matmul sums at most CHUNK products of 0 and 1,
# exact below 2**24; the chunks' integer counts are added as int64.
CHUNK = 1 << 16


def cooccurrence_counts(labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise counts from a label matrix, counting only samples labelled for both characteristics.

    Args:
        labels: ``[N, K]`` in {0, 1}.
        mask: ``[N, K]`` bool, True where the label is known.

    Returns:
        float64 (counted by :func:`streamed_counts`, the matrix as one block):
        ``m [K, K]`` with ``m_ij`` = #samples labelled for i and j with both positive, and
        ``n [K, K]`` with ``n_ij`` = #samples labelled for i and j with i positive, so that
        ``P_ij = m_ij / n_ij`` is the conditional probability of eq. 5.
    """
    m, n, _ = streamed_counts([(labels, mask, torch.arange(labels.shape[-1]))], labels.shape[-1])
    return m.double(), n.double()


def streamed_counts(blocks: Iterable[tuple[Tensor, Tensor, Tensor]], k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``m``, ``n`` (as :func:`cooccurrence_counts`) and ``known`` (``known_ij`` = #samples labelled for i and j) as
    int64 ``[k, k]``, summed over blocks of rows.

    Args:
        blocks: ``(labels [N_b, k_b], mask [N_b, k_b], index [k_b])``: rows labelled for at most ``k_b`` of the ``k``
            characteristics, column ``c`` of the block being characteristic ``index[c]`` (distinct positions); the
            other characteristics are unlabelled in these rows, so they add nothing to any count.
        k: the number of characteristics.

    The integers equal those of :func:`cooccurrence_counts` on the whole ``[N, k]`` matrix exactly: both sum
    products of 0 and 1, and each chunk's float32 sum stays below 2**24.
    """
    m, n, known = (torch.zeros(k, k, dtype=torch.int64) for _ in range(3))
    for labels, mask, index in blocks:
        if labels.shape != mask.shape or labels.shape[-1] != len(index):
            raise ValueError(f"labels {tuple(labels.shape)}, mask {tuple(mask.shape)} and index {len(index)} differ")
        at = (index[:, None], index[None, :])
        for start in range(0, labels.shape[0], CHUNK):
            is_known = mask[start : start + CHUNK].bool()
            y = ((labels[start : start + CHUNK] > 0.5) & is_known).float()
            known_f = is_known.float()
            m[at] += (y.T @ y).long()
            n[at] += (y.T @ known_f).long()
            known[at] += (known_f.T @ known_f).long()
    return m, n, known


def conditional_probability(m: Tensor, n: Tensor) -> Tensor:
    """Eq. 5: ``P_ij = m_ij / n_ij`` (row i: probability of j given i); 0 where i was never positive."""
    return torch.where(n > 0, m / n.clamp_min(1), torch.zeros_like(m))
