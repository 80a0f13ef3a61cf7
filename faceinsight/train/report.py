"""Pieces of the run report written with the test metrics: how the evaluated checkpoint was chosen, and a checksum
of each backbone (:meth:`faceinsight.train.module.FaceModule.run_report` composes the report)."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import Tensor


def selection(trainer: L.Trainer | None) -> dict[str, Any] | None:
    """How the evaluated checkpoint was chosen: the monitored validation metric and its best value."""
    callback = trainer.checkpoint_callback if trainer is not None else None
    if callback is None or callback.best_model_score is None:
        return None
    return {"monitor": callback.monitor, "best": float(callback.best_model_score), "path": callback.best_model_path}


def fingerprint(tensors: list[Tensor]) -> float:
    """A cheap checksum of a backbone's weights (sum of the first and last tensors), to notice a changed source."""
    if not tensors:
        return 0.0
    return round(float(tensors[0].double().sum() + tensors[-1].double().sum()), 6)
