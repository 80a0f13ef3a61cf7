"""The learning-rate schedule of every training run, the Lightning modules' and the pretraining stages': a linear
warm-up, then a cosine decay to 0 (transformers' ``get_cosine_schedule_with_warmup``)."""

from __future__ import annotations

import torch
from transformers import get_cosine_schedule_with_warmup


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate ``lr * step / warmup`` over the first ``warmup`` steps, then a cosine decay to 0 at ``steps``."""
    return get_cosine_schedule_with_warmup(optimizer, warmup, steps)
