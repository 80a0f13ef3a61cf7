"""Every face of a dataset view through a function, for the diagnostics and benchmarks that score whole splits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


@torch.no_grad()
def collect(
    view: Dataset, outputs: Callable[[dict[str, Tensor]], dict[str, Tensor]], name: str, batch_size: int = 256
) -> dict[str, Tensor]:
    """``outputs(batch)``'s tensors for every batch of ``view``, concatenated along the faces, with the faces'
    ``labels``, ``mask`` (the label mask, boolean) and ``ages``: what
    :func:`faceinsight.eval.metrics.score_probabilities` reads besides the probabilities. Progress shows as
    ``name``."""
    out: dict[str, list[Tensor]] = {}
    for batch in tqdm(DataLoader(view, batch_size=batch_size), desc=name, unit="batch"):
        row = outputs(batch) | {"labels": batch["labels"], "mask": batch["label_mask"].bool(), "ages": batch["age"]}
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return {k: torch.cat(v) for k, v in out.items()}
