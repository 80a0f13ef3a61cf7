"""How many distinct things the K characteristics teach the image encoder (issue 17, docs/learning.md).

E_i learns only from the gradients that reach its tokens. A specialist's linear head sends each characteristic's
error back along its own row, so the K gradients span many directions. FaceInsight's reach E_i through the LLM and
the readout; if they all point the same way, the backbone learns as if from a single label, however many
characteristics there are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from faceinsight.model.faceinsight import FaceInsight, Visual


def participation_ratio(rows: Tensor) -> Tensor:
    """``(sum s^2)^2 / sum s^4`` of the singular values ``s`` of each ``K x D`` matrix of ``rows`` ``[..., K, D]``:
    1 when the K rows are one direction, K when they are orthogonal and equally long."""
    s2 = torch.linalg.svdvals(rows.double()) ** 2
    return (s2.sum(-1) ** 2 / (s2**2).sum(-1)).float()


def mean_abs_cosine(rows: Tensor) -> Tensor:
    """Mean ``|cos|`` between distinct rows of each ``K x D`` matrix of ``rows`` ``[..., K, D]``."""
    unit = torch.nn.functional.normalize(rows.double(), dim=-1)
    cos = (unit @ unit.transpose(-1, -2)).abs()
    k = rows.shape[-2]
    return ((cos.sum((-1, -2)) - cos.diagonal(dim1=-2, dim2=-1).sum(-1)) / (k * (k - 1))).float()


def characteristic_gradients(model: FaceInsight, visual: Visual) -> Tensor:
    """``[B, K, Nv * Dv]``: row k of image b is ``d logit_k / d (E_i's tokens of image b)``. (For a linear head on
    E_i's mean-pooled tokens, as the specialist's, row k is the head's row k over Nv, the same for every image.)"""
    tokens = visual.image.detach().requires_grad_()
    logits = model(None, visual=visual._replace(image=tokens))
    rows = [
        torch.autograd.grad(logits[:, k].sum(), tokens, retain_graph=k + 1 < logits.shape[1])[0].flatten(1)
        for k in range(logits.shape[1])
    ]  # each image's logits depend on its own tokens only, so the batch sum gives every image's row k at once
    return torch.stack(rows, 1)


def gradient_participation_ratio(model: FaceInsight, visual: Visual) -> Tensor:
    """Per image ``[B]``: the :func:`participation_ratio` of its :func:`characteristic_gradients`."""
    return participation_ratio(characteristic_gradients(model, visual))
