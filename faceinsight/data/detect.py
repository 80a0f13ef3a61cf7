"""Faces in any photo: an offline face detector, and each face cropped the way the model's training faces were.

**Detection.** :class:`MediaPipeDetector` runs the face detector that ships inside mediapipe 0.10.21's wheel (the
same install as the landmark face parser, no download, CPU). Web photos hold small faces, so it runs on the photo
upscaled to at least ``min_side`` pixels and, when ``tiles`` > 1, also on overlapping tiles of that upscaled copy
(a face a tenth of the photo wide fills a third of a tile); the detections of all passes are merged by
non-maximum suppression. Its settings were chosen on ExpW's training photos only (``benchmarks/detection_expw.py``;
docs/predict.md gives the figures). :class:`FacerDetector` is Pyfacer's RetinaFace, the paper's detector, for users
with the ``facer`` extra and a local weights file.

**Framing.** A detector's box is not the box the training faces were cut by: MediaPipe's box runs from the brows to
the chin, ExpW's annotated boxes (square, from ExpW's own detector) take in the forehead and more of the cheeks. A
:class:`Framing` maps a detector box to the training framing: centre shifted and side scaled in units of the
detector box's side, then made square. :data:`FRAMINGS` holds the framing of each training set, measured with
``benchmarks/detection_expw.py --calibrate`` (ExpW: matched detections on the training photos) and the chip
datasets' own frame around the detected face (UTKFace's and CelebA-HQ's aligned chips). The crop is that square,
padded with black where it runs off the photo, so the face is never squashed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from faceinsight.data.segmentation.landmarks import import_mediapipe

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # left, top, right, bottom in photo pixels


@dataclass(frozen=True)
class Face:
    """One detected face: its box in photo pixels and the detector's confidence."""

    box: Box
    score: float


class Detector(Protocol):
    """Finds faces in one RGB photo ``[H, W, 3]`` uint8; ``name`` names it and every setting that changes it."""

    name: str

    def __call__(self, image: np.ndarray) -> list[Face]: ...


# ----------------------------------------------------------------------------- geometry


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]`` (left, top, right, bottom): ``[N, M]``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left, top = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    right, bottom = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (right - left).clip(0) * (bottom - top).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each box of ``a`` ``[N, 4]`` that lies inside each box of ``b`` ``[M, 4]``: ``[N, M]``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    height = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    return width * height / np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-12)[:, None]


def nms(faces: Sequence[Face], threshold: float, contained: float = 0.7) -> list[Face]:
    """Faces kept by greedy non-maximum suppression, highest score first: a box is dropped when it overlaps a kept
    one by more than ``threshold`` IoU, or lies in it (or it in the box) by more than ``contained`` of its area (a
    part of a face found in a tile, inside the whole face). Returned in descending score."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        box, others = np.array([face.box]), np.array([k.box for k in kept])
        if kept and (
            iou(box, others).max() > threshold
            or inside(box, others).max() > contained
            or inside(others, box).max() > contained
        ):
            continue
        kept.append(face)
    return kept


@dataclass(frozen=True)
class Framing:
    """Where the training framing lies relative to a detector's box, in units of that box's side
    ``s = sqrt(w * h)``: a square of side ``scale * s`` centred at the box centre shifted by ``(dx, dy) * s``."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def square(self, box: Sequence[float]) -> Box:
        """The square crop box of a detector box, in photo pixels (it may run off the photo)."""
        left, top, right, bottom = (float(v) for v in box)
        side = float(np.sqrt(max(right - left, 1e-6) * max(bottom - top, 1e-6)))
        cx, cy = (left + right) / 2 + self.dx * side, (top + bottom) / 2 + self.dy * side
        half = self.scale * side / 2
        return (cx - half, cy - half, cx + half, cy + half)


# Measured with MediaPipe's full-range detector (benchmarks/detection_expw.py --calibrate; medians of matched
# faces). expw: ExpW's annotated boxes against matched detections on ExpW's training photos. utkface, celebahq: the
# frame of the aligned chips (UTKFace's 200 px release, celebahq64) around the face detected in them.
FRAMINGS: dict[str, Framing] = {
    "expw": Framing(scale=1.223, dx=-0.014, dy=-0.136),  # 2,015 matched faces in 2,182 training photos
    "utkface": Framing(scale=1.07, dx=0.003, dy=-0.006),  # 991 of 1,000 training chips, one face found
    "celebahq": Framing(scale=1.652, dx=-0.004, dy=-0.172),  # celebahq64: 999 of 1,000
}
# A model's training framing by the kind of its first dataset (kinds not listed use ExpW's, a web-photo framing).
FRAMING_OF_KIND = {"expw": "expw", "utkface": "utkface", "celebamaskhq": "celebahq", "celeba": "celebahq"}


def framing_for(kind: str | None) -> str:
    """The name of the framing that matches a dataset kind's training crops."""
    return FRAMING_OF_KIND.get(kind or "", "expw")


def crop_square(image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
    """uint8 ``[3, H, W]`` cut to ``box`` (rounded to whole pixels), black where the box runs off the image."""
    left, top, right, bottom = (round(float(v)) for v in box)
    h, w = image.shape[-2:]
    out = torch.zeros((image.shape[0], max(bottom - top, 1), max(right - left, 1)), dtype=image.dtype)
    src_l, src_t, src_r, src_b = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if src_r > src_l and src_b > src_t:
        out[:, src_t - top : src_b - top, src_l - left : src_r - left] = image[:, src_t:src_b, src_l:src_r]
    return out


# ----------------------------------------------------------------------------- detectors


def upscaled(image: np.ndarray, min_side: int) -> tuple[np.ndarray, float]:
    """``image`` ``[H, W, 3]`` enlarged (bicubic) so that its longer side is at least ``min_side``, and the factor."""
    h, w = image.shape[:2]
    scale = max(1.0, min_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (round(w * scale), round(h * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC)), scale


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` of a tile shared."""
    if tile >= length:
        return [0]
    count = int(np.ceil((length - tile) / (tile * (1 - overlap)))) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


class MediaPipeDetector:
    """MediaPipe's BlazeFace detector: ``model_selection`` 1 is the full-range model (faces up to 5 m away, 192 px
    input), 0 the short-range one (2 m, 128 px).

    Args:
        model_selection: 0 short range, 1 full range, or a list of both to run each and merge.
        min_confidence: detections scoring below are dropped.
        min_side: photos whose longer side is smaller are upscaled (bicubic) to it first.
        tiles: grids to run on besides the whole photo: ``n`` is an ``n`` x ``n`` grid of tiles of the (upscaled)
            photo overlapping by half, for small faces; ``[]`` or ``[1]`` runs on the whole photo only.
        nms_threshold: IoU above which two detections of the passes are one face.
    """

    def __init__(
        self,
        model_selection: int | Sequence[int] = 1,
        min_confidence: float = 0.5,
        min_side: int = 0,
        tiles: int | Sequence[int] = (),
        nms_threshold: float = 0.3,
    ) -> None:
        self.models = (model_selection,) if isinstance(model_selection, int) else tuple(model_selection)
        self.tiles = tuple(t for t in ((tiles,) if isinstance(tiles, int) else tiles) if t != 1)
        if not self.models or any(m not in (0, 1) for m in self.models):
            raise ValueError(f"model_selection must be 0 (short range), 1 (full range) or both, got {model_selection}")
        if any(t < 1 for t in self.tiles):
            raise ValueError(f"tiles must be grid sizes of at least 1, got {tiles}")
        self.mp = import_mediapipe()
        self.min_confidence, self.min_side, self.nms_threshold = min_confidence, min_side, nms_threshold
        models, grids = "".join(map(str, self.models)), "".join(map(str, self.tiles)) or "1"
        self.name = f"mediapipe-m{models}-c{min_confidence}-s{min_side}-t{grids}-n{nms_threshold}"
        self._graphs: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # MediaPipe graphs do not pickle: rebuild lazily (DataLoader workers)
        return {k: v for k, v in self.__dict__.items() if k not in ("mp", "_graphs")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, mp=import_mediapipe(), _graphs={})

    def _pass(self, image: np.ndarray, left: float, top: float, scale: float, cut: Sequence[bool] = ()) -> list[Face]:
        """Detections of every model in ``image`` (a view of the upscaled photo at ``left``, ``top``), in photo
        pixels. ``cut`` says which of the view's sides (left, top, right, bottom) cut through the photo: a detection
        touching such a side is a cut face, which another tile or the whole photo holds whole, and is dropped."""
        h, w = image.shape[:2]
        margin = 0.01 * max(h, w)
        image = np.ascontiguousarray(image)
        faces = []
        for model in self.models:
            if model not in self._graphs:
                self._graphs[model] = self.mp.solutions.face_detection.FaceDetection(
                    model_selection=model, min_detection_confidence=self.min_confidence
                )
            for d in self._graphs[model].process(image).detections or []:
                if d.score[0] < self.min_confidence:  # mediapipe 0.10.21 lets some below its own threshold through
                    continue
                r = d.location_data.relative_bounding_box
                box = np.array([r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h])
                at_side = (box[0] < margin, box[1] < margin, box[2] > w - margin, box[3] > h - margin)
                if any(c and s for c, s in zip(cut, at_side, strict=False)):
                    continue
                box = (box + np.array([left, top, left, top])) / scale
                faces.append(Face(tuple(float(v) for v in box), float(d.score[0])))
        return faces

    def __call__(self, image: np.ndarray) -> list[Face]:
        big, scale = upscaled(image, self.min_side)
        faces = self._pass(big, 0, 0, scale)
        h, w = big.shape[:2]
        for grid in self.tiles:
            th, tw = int(np.ceil(h * 2 / (grid + 1))), int(np.ceil(w * 2 / (grid + 1)))  # tiles overlap by half
            for y in tile_origins(h, th, 0.5):
                for x in tile_origins(w, tw, 0.5):
                    cut = (x > 0, y > 0, x + tw < w, y + th < h)
                    faces += self._pass(big[y : y + th, x : x + tw], x, y, scale, cut)
        h, w = image.shape[:2]
        clipped = [Face(_clip(f.box, w, h), f.score) for f in faces]
        return nms([f for f in clipped if f.box[2] > f.box[0] and f.box[3] > f.box[1]], self.nms_threshold)

    def close(self) -> None:
        for graph in self._graphs.values():
            graph.close()
        self._graphs = {}


def _clip(box: Box, width: int, height: int) -> Box:
    left, top, right, bottom = box
    return (max(left, 0.0), max(top, 0.0), min(right, float(width)), min(bottom, float(height)))


class FacerDetector:
    """Pyfacer's RetinaFace (the paper's detector): needs the ``facer`` extra and a local weights file.

    Args:
        weights: path of the RetinaFace weights (``retinaface/mobilenet`` or ``retinaface/resnet50``).
        model: Pyfacer's detector name.
        device: torch device.
        min_confidence: detections scoring below are dropped.
    """

    def __init__(
        self, weights: str, model: str = "retinaface/mobilenet", device: str = "cpu", min_confidence: float = 0.8
    ) -> None:
        try:
            import facer
        except ImportError as e:
            raise ImportError("the RetinaFace detector needs Pyfacer: pip install -c constraints.txt pyfacer") from e
        if not Path(weights).is_file():
            raise FileNotFoundError(f"RetinaFace weights {weights} not found (no network: give a local file)")
        self.device, self.min_confidence = device, min_confidence
        self.model = facer.face_detector(model, device=device, model_path=weights, threshold=min_confidence)
        self.name = f"facer-{model.replace('/', '-')}-c{min_confidence}"

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> list[Face]:
        batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(self.device)
        found = self.model(batch)
        if "rects" not in found:
            return []
        return [
            Face(tuple(float(v) for v in rect), float(score))
            for rect, score in zip(found["rects"].tolist(), found["scores"].tolist(), strict=True)
        ]


DETECTORS = {"mediapipe": MediaPipeDetector, "facer": FacerDetector}
# The settings chosen on ExpW's training photos (benchmarks/detection_expw.py --split train; docs/predict.md).
# MediaPipe: the short-range model on the whole photo and on a 3 x 3 grid of half-overlapping tiles, at confidence
# 0.6: the highest recall at IoU 0.5 with at most one false detection per photo on ExpW's training photos.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "mediapipe": {"model_selection": 0, "tiles": (3,), "min_confidence": 0.6},
    "facer": {},
}


def make_detector(kind: str = "mediapipe", **options: Any) -> Detector:
    """A detector by name (``mediapipe`` or ``facer``) with its options over the defaults chosen on ExpW's train
    split."""
    if kind not in DETECTORS:
        raise ValueError(f"unknown face detector {kind!r}; choose one of {sorted(DETECTORS)}")
    return DETECTORS[kind](**(DEFAULT_OPTIONS[kind] | options))


def timed(detector: Detector, image: np.ndarray) -> tuple[list[Face], float]:
    """The detector's faces in ``image`` and the seconds it took."""
    start = time.perf_counter()
    faces = detector(image)
    return faces, time.perf_counter() - start
