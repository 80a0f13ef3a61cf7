"""The characteristic loss of a training step (eq. 3); the logic loss (eq. 9) is :class:`faceinsight.logic.LogicLoss`
and their sum (eq. 4) :meth:`faceinsight.train.module.FaceModule.losses`."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor


def masked_bce(logits: Tensor, labels: Tensor, mask: Tensor, reduction: Literal["sum", "mean"] = "sum") -> Tensor:
    """BCE over the labelled characteristics (``mask``). ``sum``: eq. 3, summed over each sample's labelled
    characteristics and averaged over the samples; ``mean``: averaged over all labelled entries."""
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * mask
    if reduction == "sum":
        return bce.sum(1).mean()
    return bce.sum() / mask.sum().clamp_min(1)
