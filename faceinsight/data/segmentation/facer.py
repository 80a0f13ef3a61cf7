"""The paper's face parser: Pyfacer's RetinaFace detector and FaRL parser, mapped onto our CelebAMask-HQ class ids.

FaceInsight's maps come from Pyfacer (PyPI ``pyfacer``, import name ``facer``): ``facer.face_detector(
"retinaface/mobilenet", device=...)`` finds the faces, ``facer.face_parser("farl/celebm/448", device=...)`` parses
each one in a 448 px aligned crop and warps the logits back to the whole image. Install with ``pip install -e
'.[facer]'``. The weights are fetched by Pyfacer on first use (into torch.hub's ``checkpoints`` folder), or read from
local files (``parser_weights``, ``detector_weights``) on a machine without a network.

Pyfacer's interface, as read in FacePerceiver/facer (``facer/__init__.py``, ``facer/face_detection/retinaface.py``,
``facer/face_parsing/farl.py``):

* ``face_detector(name, device, **kw)`` -> ``RetinaFaceDetector(conf_name, model_path=None, threshold=0.8)``; called
  on uint8 RGB ``[B, 3, H, W]`` it returns ``{"rects": [n, 4] (x1, y1, x2, y2), "points": [n, 5, 2], "scores": [n],
  "image_ids": [n]}`` over all faces of the batch (empty tensors when there are none);
* ``face_parser(name, device, **kw)`` -> ``FaRLFaceParser(conf_name, model_path=None, device=None)`` (``model_path``:
  a TorchScript file, or the release URL when None); ``parser(images, faces)`` parses the faces listed in ``faces``
  (``images[faces["image_ids"]]``, aligned by ``faces["points"]``) and adds ``faces["seg"] = {"logits": [n, C, H, W]
  at the input resolution, "label_names": [...]}``.

**The class order is FaRL's, not ours, and its left/right names are the image's sides.** ``celebm/448``'s
``label_names`` (``facer/face_parsing/farl.py``) are

    background, neck, face, cloth, rr, lr, rb, lb, re, le, nose, imouth, llip, ulip, hair, eyeg, hat, earr, neck_l

(``glass`` and ``neckl`` instead of ``eyeg`` and ``neck_l`` in older Pyfacer releases and in FaRL's scorer). The
model was trained by FaRL (FacePerceiver/FaRL, ``farl/datasets/celebamask_hq.py``, label type ``all``) on labels
built from CelebAMask-HQ's part files in the order ``neck, skin, cloth, l_ear, r_ear, l_brow, r_brow, l_eye, r_eye,
nose, mouth, l_lip, u_lip, hair, eye_g, hat, ear_r, neck_l`` with class id = position + 1, no flip augmentation
(``farl/experiments/face_parsing/augmenters/celebm/train.yaml``). So FaRL's ``rr`` (id 4) is CelebAMask-HQ's
``l_ear``, ``rb`` is ``l_brow`` and ``re`` is ``l_eye``: CelebAMask-HQ's "l_" is the person's left, the image's right
(see :mod:`faceinsight.data.segmentation.base`), and FaRL names it by the image side. ``rr``/``lr`` are the ears,
``earr`` the earrings. Taking ``le`` for ``l_eye`` by its spelling would swap every left/right pair. Every one of the
19 classes has a counterpart in ours: :data:`FACER_TO_OURS`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from faceinsight.data.segmentation.base import CLASSES, SegSource, check_images

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the facer face parser needs Pyfacer (PyPI 'pyfacer', import name 'facer'): install the extra with "
    "pip install -c constraints.txt -e '.[facer]'; its weights need a network or local files (docs/segmentation.md)"
)
MAP_VERSION = 1  # bump when the glue (face choice, mapping) changes, so cached maps are rebuilt
ID = {name: i for i, name in enumerate(CLASSES)}

# FaRL celebm class name -> CelebAMask-HQ class name (see the module docstring for where each comes from).
FACER_TO_OURS: dict[str, str] = {
    "background": "background",
    "neck": "neck",
    "face": "skin",
    "cloth": "cloth",
    "rr": "l_ear",  # image-right ear = the person's left ear = CelebAMask-HQ l_ear
    "lr": "r_ear",
    "rb": "l_brow",
    "lb": "r_brow",
    "re": "l_eye",
    "le": "r_eye",
    "nose": "nose",
    "imouth": "mouth",  # inner mouth
    "llip": "l_lip",
    "ulip": "u_lip",
    "hair": "hair",
    "eyeg": "eye_g",
    "glass": "eye_g",  # older Pyfacer releases' name
    "hat": "hat",
    "earr": "ear_r",  # earring
    "neck_l": "neck_l",  # necklace
    "neckl": "neck_l",  # older Pyfacer releases' name
}
# celebm/448's label_names in Pyfacer's current source, in logit order (what the tests' stand-in returns).
CELEBM_LABELS: tuple[str, ...] = (
    "background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re",
    "le", "nose", "imouth", "llip", "ulip", "hair", "eyeg", "hat", "earr", "neck_l",
)  # fmt: skip


def import_facer() -> Any:
    """Import Pyfacer, or raise an ImportError that names the ``facer`` extra."""
    try:
        import facer
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return facer


def facer_version(module: Any) -> str:
    """Pyfacer's installed version (its default weights are pinned per release), else the module's own."""
    try:
        return importlib.metadata.version("pyfacer")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def class_lookup(label_names: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Our class id for each of the parser's classes, by name; a name with no entry is an error."""
    unknown = [n for n in label_names if n not in FACER_TO_OURS]
    if unknown:
        raise ValueError(
            f"facer parser classes {unknown} have no CelebAMask-HQ counterpart in FACER_TO_OURS "
            f"(the parser's classes: {list(label_names)}); only the celebm models are supported"
        )
    return torch.tensor([ID[FACER_TO_OURS[n]] for n in label_names], dtype=torch.long)


def choose_faces(faces: dict[str, Any], num_images: int, pick: Literal["largest", "score"]) -> dict[int, int]:
    """Image index -> row of ``faces`` of its one face: the largest box (ties: higher score) or the highest score."""
    ids = faces.get("image_ids")
    if ids is None or len(ids) == 0:
        return {}
    ids = torch.as_tensor(ids).long().cpu()
    scores = torch.as_tensor(faces["scores"]).float().cpu()
    rects = torch.as_tensor(faces["rects"]).float().cpu()
    areas = (rects[:, 2] - rects[:, 0]).clamp(min=0) * (rects[:, 3] - rects[:, 1]).clamp(min=0)
    best: dict[int, int] = {}
    for row, image in enumerate(ids.tolist()):
        if not 0 <= image < num_images:
            raise ValueError(f"the face detector returned image id {image} for a batch of {num_images}")
        key = (float(areas[row]), float(scores[row])) if pick == "largest" else (float(scores[row]),)
        current = best.get(image)
        if current is None:
            best[image] = row
            continue
        other = (float(areas[current]), float(scores[current])) if pick == "largest" else (float(scores[current]),)
        if key > other:
            best[image] = row
    return best


def select_rows(faces: dict[str, Any], rows: list[int], image_ids: list[int], device: Any) -> dict[str, Any]:
    """The detector's output restricted to ``rows`` (every per-face tensor), with ``image_ids`` set to ``image_ids``."""
    n = len(faces["image_ids"])
    index = torch.tensor(rows, dtype=torch.long)
    out: dict[str, Any] = {}
    for key, value in faces.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and len(value) == n:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    out["image_ids"] = torch.tensor(image_ids, dtype=torch.long, device=device)
    return out


def weights_fingerprint(path: str | Path | None) -> str:
    """``default`` (Pyfacer's release weights) or the first 16 hex digits of the file's SHA-256."""
    if path is None:
        return "default"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class FacerParser(SegSource):
    """Pyfacer detection + FaRL parsing of each image's one chosen face, as CelebAMask-HQ class ids.

    ``parser`` / ``detector``: Pyfacer model names. ``parser_weights`` / ``detector_weights``: local weight files
    (the parser's TorchScript ``face_parsing.farl.celebm.main_ema_181500_jit.pt``, the detector's
    ``mobilenet0.25_Final.pth``); None lets Pyfacer fetch its release weights on first use. ``device``: ``cpu``,
    ``cuda`` (``cuda:N``) or ``auto`` (cuda when available). ``threshold``: the detector's score threshold (None:
    Pyfacer's default, 0.8). ``pick``: which face of an image to parse, the ``largest`` box or the best ``score``.
    ``batch_size``: images per detector/parser call (the parser returns ``[faces, 19, H, W]`` float logits at full
    resolution, 80 MB per face at 1024 px). Images with no face get an all-background map and are listed in
    :attr:`last_missed`. The models load on the first call, so a cache hit needs neither weights nor network.
    """

    def __init__(
        self,
        parser: str = "farl/celebm/448",
        detector: str = "retinaface/mobilenet",
        parser_weights: str | Path | None = None,
        detector_weights: str | Path | None = None,
        device: str = "auto",
        threshold: float | None = None,
        pick: Literal["largest", "score"] = "largest",
        batch_size: int = 8,
    ) -> None:
        if pick not in ("largest", "score"):
            raise ValueError(f"pick must be 'largest' or 'score', got {pick!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for what, path in (("parser_weights", parser_weights), ("detector_weights", detector_weights)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"facer {what} {path} does not exist (omit it to let Pyfacer fetch them)")
        self.facer = import_facer()
        self.parser, self.detector = parser, detector
        self.parser_weights = None if parser_weights is None else str(parser_weights)
        self.detector_weights = None if detector_weights is None else str(detector_weights)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.threshold, self.pick, self.batch_size = threshold, pick, batch_size
        # Everything that changes the maps is in the name (the cache keys on it): the Pyfacer release (its default
        # weights and alignment), both models and their weights, the detector threshold and the face choice.
        self.name = (
            f"facer{facer_version(self.facer)}-r{MAP_VERSION}-{parser}@{weights_fingerprint(parser_weights)}"
            f"-{detector}@{weights_fingerprint(detector_weights)}"
            f"-t{'default' if threshold is None else threshold}-{pick}"
        )
        self.images_seen = 0
        self.faces_missed = 0
        self.last_missed: list[int] = []
        self._detector: Any = None
        self._parser: Any = None
        self._lookup: dict[tuple[str, ...], torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:  # modules and networks are rebuilt lazily after unpickling
        return {k: v for k, v in self.__dict__.items() if k not in ("facer", "_detector", "_parser")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, facer=import_facer(), _detector=None, _parser=None)

    def _models(self) -> tuple[Any, Any]:
        if self._detector is None:
            detector_kwargs: dict[str, Any] = {}
            if self.detector_weights is not None:
                detector_kwargs["model_path"] = self.detector_weights
            if self.threshold is not None:
                detector_kwargs["threshold"] = self.threshold
            parser_kwargs = {} if self.parser_weights is None else {"model_path": self.parser_weights}
            log.info("loading facer %s and %s on %s", self.detector, self.parser, self.device)
            self._detector = self.facer.face_detector(self.detector, device=self.device, **detector_kwargs)
            self._parser = self.facer.face_parser(self.parser, device=self.device, **parser_kwargs)
        return self._detector, self._parser

    def _classes(self, label_names: list[str] | tuple[str, ...], channels: int) -> torch.Tensor:
        if len(label_names) != channels:
            raise ValueError(f"facer parser returned {channels} logit channels for {len(label_names)} label names")
        key = tuple(label_names)
        if key not in self._lookup:
            self._lookup[key] = class_lookup(key)
        return self._lookup[key]

    def _parse_chunk(self, chunk: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Maps ``[b, H, W]`` of a uint8 chunk and the indices (within it) of the images with no face."""
        detector, parser = self._models()
        b, _, h, w = chunk.shape
        out = torch.zeros((b, h, w), dtype=torch.long)
        with torch.inference_mode():
            images = chunk.to(self.device)
            faces = detector(images)
            chosen = choose_faces(faces, b, self.pick)
            if not chosen:
                return out, list(range(b))
            image_ids = sorted(chosen)
            faces = parser(images, select_rows(faces, [chosen[i] for i in image_ids], image_ids, images.device))
            logits = faces["seg"]["logits"]
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
            predicted = logits.argmax(1).cpu()  # facer class ids [faces, H, W]
            rows = torch.as_tensor(faces["image_ids"]).long().cpu()
        lookup = self._classes(faces["seg"]["label_names"], logits.shape[1])
        out[rows] = lookup[predicted]
        return out, [i for i in range(b) if i not in chosen]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        maps, self.last_missed = [], []
        for start in range(0, len(images), self.batch_size):
            chunk_maps, missed = self._parse_chunk(images[start : start + self.batch_size])
            maps.append(chunk_maps)
            self.last_missed += [start + i for i in missed]
        self.images_seen += len(images)
        self.faces_missed += len(self.last_missed)
        if self.last_missed:  # per batch at debug level; the cache logs the total when a build ends
            log.debug(
                "no face in %d of %d images (%d of %d so far)",
                len(self.last_missed), len(images), self.faces_missed, self.images_seen,
            )  # fmt: skip
        return torch.cat(maps) if maps else torch.zeros((0, *images.shape[2:]), dtype=torch.long)
