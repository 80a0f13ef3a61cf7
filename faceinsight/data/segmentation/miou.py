"""Mean intersection-over-union of parsing maps, for comparing face parsers with ground truth."""

from __future__ import annotations

import numpy as np
import torch

from faceinsight.data.segmentation.base import NUM_CLASSES


def confusion_matrix(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int
) -> np.ndarray:
    """``[C, C]`` pixel counts, row = target class, column = predicted class, over all pixels of all maps."""
    p = np.asarray(pred, dtype=np.int64).ravel()
    t = np.asarray(target, dtype=np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in size: {np.shape(pred)} vs {np.shape(target)}")
    for what, a in (("pred", p), ("target", t)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{what} has class ids outside 0..{num_classes - 1}: min {a.min()}, max {a.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean IoU over classes present in prediction or target, and per-class IoU (NaN where absent from both)."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, tp / union, np.nan)
    present = union > 0
    return (float(per_class[present].mean()) if present.any() else float("nan")), per_class


def miou(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int = NUM_CLASSES
) -> tuple[float, np.ndarray]:
    """IoU_c = |pred=c and target=c| / |pred=c or target=c|, pooled over all pixels of all maps.

    Returns the mean over the classes that occur in ``pred`` or ``target`` and the per-class IoU ``[num_classes]``
    (NaN for classes that occur in neither).
    """
    return iou_from_confusion(confusion_matrix(pred, target, num_classes))
