"""Face-parsing maps (CelebAMask-HQ's 19 classes) for images that have none: parsers behind one interface, and a cache.

``make_source("landmarks")`` needs mediapipe (``requirements/landmarks.txt``); ``make_source("unet", checkpoint=...)``
needs a checkpoint from ``faceinsight segparser fit``; ``make_source("facer")``, the paper's parser (Pyfacer's
RetinaFace + FaRL), needs the ``facer`` extra and its weights (fetched on first use, or local files).
"""

from __future__ import annotations

from typing import Any, Literal

from faceinsight.data.segmentation.base import CLASSES, NUM_CLASSES, SegSource, resize_maps
from faceinsight.data.segmentation.cache import CachedMaps, SegmapCache
from faceinsight.data.segmentation.miou import miou

__all__ = ["CLASSES", "NUM_CLASSES", "CachedMaps", "SegSource", "SegmapCache", "make_source", "miou", "resize_maps"]


def make_source(kind: Literal["landmarks", "unet", "facer"], **kwargs: Any) -> SegSource:
    """``landmarks``: :class:`~faceinsight.data.segmentation.landmarks.LandmarkParser` (kwargs are its parameters);
    ``unet``: :meth:`~faceinsight.data.segmentation.unet.UNetSource.from_checkpoint` (``checkpoint=<path>``);
    ``facer``: :class:`~faceinsight.data.segmentation.facer.FacerParser` (kwargs are its parameters, e.g. ``device``,
    ``parser_weights``, ``detector_weights``)."""
    if kind == "landmarks":
        from faceinsight.data.segmentation.landmarks import LandmarkParser

        return LandmarkParser(**kwargs)
    if kind == "unet":
        from faceinsight.data.segmentation.unet import UNetSource

        return UNetSource.from_checkpoint(**kwargs)
    if kind == "facer":
        from faceinsight.data.segmentation.facer import FacerParser

        return FacerParser(**kwargs)
    raise ValueError(f"unknown segmentation source {kind!r}; choose 'landmarks', 'unet' or 'facer'")
