"""How many distinct things the K characteristics teach the image encoder (issue 17, docs/learning.md).

E_i learns only from the gradients that reach its tokens. A specialist's linear head sends each characteristic's
error back along its own random row, so the K gradients span many directions from the first step. FaceInsight's
reach E_i through the LLM and the readout; if they all point the same way, the backbone learns as if from a single
label, however many characteristics there are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from faceinsight.model.faceinsight import FaceInsight, Visual


def gradient_participation_ratio(model: FaceInsight, visual: Visual) -> Tensor:
    """Per image ``[B]``: the participation ratio ``(sum s^2)^2 / sum s^4`` of the singular values ``s`` of the
    ``K x (Nv * Dv)`` matrix whose row k is ``d logit_k / d (E_i's tokens)``. 1 when every characteristic's gradient
    is the same direction, K when they are orthogonal and equally strong."""
    tokens = visual.image.detach().requires_grad_()
    logits = model(None, visual=visual._replace(image=tokens))
    rows = [
        torch.autograd.grad(logits[:, k].sum(), tokens, retain_graph=k + 1 < logits.shape[1])[0].flatten(1)
        for k in range(logits.shape[1])
    ]  # each image's logits depend on its own tokens only, so the batch sum gives every image's row k at once
    s2 = torch.linalg.svdvals(torch.stack(rows, 1).double()) ** 2
    return (s2.sum(1) ** 2 / (s2**2).sum(1)).float()
