"""The face-parser contract and the label-map helpers every parser shares.

A :class:`SegSource` turns a batch of RGB images into CelebAMask-HQ parsing maps (19 classes, ids in
:data:`CLASSES` order) at the images' own resolution. Its :attr:`~SegSource.name` identifies the parser and
every parameter that changes its output; the segmentation-map cache keys on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from faceinsight.data.celebamaskhq import CLASSES, NUM_CLASSES

__all__ = ["CLASSES", "FLIP_PERMUTATION", "NUM_CLASSES", "SegSource", "check_images", "hflip", "resize_maps"]

# CelebAMask-HQ's "l_" parts are the person's left, which is the image's right in an unmirrored photo
# (checked on the 4 ground-truth maps in shared/data/celebamaskhq-samples: l_eye's mean x is ~320 of 512).
# A horizontal flip therefore swaps each left/right pair.
_PAIRS = (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear"))


def _flip_permutation() -> torch.Tensor:
    perm = torch.arange(NUM_CLASSES)
    for left, right in _PAIRS:
        i, j = CLASSES.index(left), CLASSES.index(right)
        perm[i], perm[j] = j, i
    return perm


FLIP_PERMUTATION = _flip_permutation()  # class id -> its id in the mirrored image


class SegSource(ABC):
    """A face parser: uint8 RGB images ``[B, 3, H, W]`` -> int64 class maps ``[B, H, W]``.

    A parser that can fail to find a face (and then returns an all-background map) sets :attr:`last_missed` to the
    indices, within its last batch, of the images it found none in; None means it cannot miss.
    """

    name: str
    last_missed: list[int] | None = None

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def check_images(images: torch.Tensor) -> None:
    """Raise a ValueError unless ``images`` is a uint8 batch ``[B, 3, H, W]``."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")


def hflip(images: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror images ``[..., H, W]`` and their maps ``[..., H, W]``, swapping left/right classes."""
    return images.flip(-1), FLIP_PERMUTATION.to(maps.device)[maps.flip(-1)]


def resize_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Resize int maps ``[B, H, W]`` to ``[B, size, size]``.

    Downsampling takes the most frequent class in each output cell (one-hot, area-average, argmax), which keeps
    small parts such as eyes that nearest-neighbour sampling can miss; upsampling is nearest-neighbour.
    One image at a time, so a 1024-px batch never needs a ``[B, 19, H, W]`` float tensor.
    """
    if maps.shape[-2:] == (size, size):
        return maps.long()
    if min(maps.shape[-2:]) < size:
        return F.interpolate(maps[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    out = torch.empty((maps.shape[0], size, size), dtype=torch.long)
    for i, m in enumerate(maps):
        onehot = F.one_hot(m.long(), NUM_CLASSES).permute(2, 0, 1)[None].float()
        out[i] = F.interpolate(onehot, size=(size, size), mode="area")[0].argmax(0)
    return out
