"""The faces of unlabelled photos, for ``faceinsight predict`` and ``describe`` on ``--data.predict_images``.

Every photo is read once at index time (upright, fully decoded) and then is one of three things, each a row:

* ``face``: one row per detected face (``crop: detect``, the default), numbered left to right; the face is the
  detector box mapped to the model's training framing (:mod:`faceinsight.data.detect`), cut as a square and padded
  where it runs off the photo. With ``crop: chips`` the photo is one face as it is (an already-cropped chip).
* ``no_face``: the detector found no face. One row, so the output says so.
* ``skipped``: the file could not be read (truncated, not an image, missing). Under ``on_error: skip`` (the default
  here) a warning names it and the run goes on; under ``raise`` the first such file stops the run, named.

Rows that are not faces carry a small black image that the writer never reports: every row goes through the
model's batches, so the output stays in photo order, and one line per row keeps labels and images aligned by key.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from faceinsight.data._io import read_rgb
from faceinsight.data.base import DataFormatError, FaceDataset, OnError, Sample, skip_or_raise
from faceinsight.data.detect import FRAMINGS, Detector, Face, crop_square, framing_for, make_detector
from faceinsight.data.images import ImageFiles, downscale

Crop = Literal["detect", "chips"]
Status = Literal["face", "no_face", "skipped"]
DETECT_MAX_SIDE = 1024  # photos are detected at most this large (boxes scaled back): a 24 MP photo costs no more
BLANK = torch.zeros(3, 8, 8, dtype=torch.uint8)  # the image of a row that is not a face (never reported)


@dataclass(frozen=True)
class Row:
    """One output line's identity: a face of a photo, or a photo with no face, or a photo that was skipped.

    ``box`` is the detector's (``[left, top, right, bottom]`` in the upright photo's pixels), ``crop`` the square
    the model sees; ``faces`` the number of faces in the photo; ``reason`` a skipped photo's short reason and
    ``error`` the full message."""

    photo: str
    status: Status
    faces: int = 0
    face: int | None = None
    box: tuple[float, float, float, float] | None = None
    crop: tuple[float, float, float, float] | None = None
    score: float | None = None
    reason: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row's fields for a JSON line; box coordinates to 0.1 px, the score to 4 digits, None left out."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        for name in ("box", "crop"):
            if name in out:
                out[name] = [round(v, 1) for v in out[name]]
        if "score" in out:
            out["score"] = round(out["score"], 4)
        return out


def skip_reason(error: DataFormatError) -> str:
    """A short, countable reason for an unreadable photo, from ``read_rgb``'s message."""
    text = str(error)
    if "missing" in text:
        return "missing"
    if "truncated" in text or "broken data stream" in text:
        return "truncated"
    if "cannot identify image file" in text:
        return "not an image"
    return "undecodable"


def detect_faces(detector: Detector, image: torch.Tensor) -> list[Face]:
    """The faces in photo ``image`` (uint8 ``[3, H, W]``), left to right, boxes in its pixels; detected on a copy
    downscaled to ``DETECT_MAX_SIDE``."""
    small = downscale(image, DETECT_MAX_SIDE)
    scale = image.shape[-1] / small.shape[-1]
    found = detector(small.permute(1, 2, 0).numpy())
    faces = [Face(tuple(v * scale for v in f.box), f.score) for f in found]  # type: ignore[arg-type]
    return sorted(faces, key=lambda f: f.box[0])


class PhotoFaces(FaceDataset):
    """The face rows of a set of photos (see the module's docstring), unlabelled: every label is masked.

    Args:
        images: the photos (a folder or list file, as ``--data.predict_images`` reads them).
        crop: ``detect`` finds the faces in each photo; ``chips`` takes each photo as one already-cropped face.
        detector: the face detector for ``detect`` (default: :func:`~faceinsight.data.detect.make_detector`'s).
        framing: name of the training framing in :data:`~faceinsight.data.detect.FRAMINGS` that crops are cut to.
        on_error: ``skip`` an unreadable photo with a warning and a ``skipped`` row, or ``raise`` on the first.
    """

    def __init__(
        self,
        images: ImageFiles,
        crop: Crop = "detect",
        detector: Detector | None = None,
        framing: str = "expw",
        on_error: OnError = "skip",
    ) -> None:
        if crop not in ("detect", "chips"):
            raise ValueError(f"crop must be 'detect' or 'chips', got {crop!r}")
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; choose one of {sorted(FRAMINGS)}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.images, self.crop, self.on_error = images, crop, on_error
        self.schema, self.max_side = images.schema, images.max_side
        self.detector = (detector or make_detector()) if crop == "detect" else None
        self.framing = FRAMINGS[framing]
        how = f"{self.detector.name}-{framing}" if self.detector is not None else "chips"
        self._name = f"{images.name}-{hashlib.sha256(how.encode()).hexdigest()[:8]}"
        self.rows: list[Row] = []
        self._photo: list[int] = []  # the photo index of each row
        for i, key in enumerate(tqdm(images.keys, desc=f"finding faces ({how})", unit="photo")):
            found = self._photo_rows(i, key)
            self.rows += found
            self._photo += [i] * len(found)

    def _photo_rows(self, i: int, key: str) -> list[Row]:
        """The rows of photo ``i``: its faces, or one row saying it has none or was skipped."""
        try:
            image = self._read(i)
        except DataFormatError as e:
            skip_or_raise(self.on_error, e)
            return [Row(key, "skipped", reason=skip_reason(e), error=str(e))]
        h, w = image.shape[-2:]
        if self.detector is None:
            return [Row(key, "face", faces=1, face=0, box=(0.0, 0.0, float(w), float(h)), crop=None)]
        found = detect_faces(self.detector, image)
        if not found:
            return [Row(key, "no_face")]
        return [
            Row(key, "face", len(found), k, face.box, self.framing.square(face.box), face.score)
            for k, face in enumerate(found)
        ]

    def _read(self, i: int) -> torch.Tensor:
        """Photo ``i`` at full resolution, upright; an unreadable file raises DataFormatError naming it."""
        path = self.images.files[i]
        if self.images.list_file is None:
            return read_rgb(path, upright=True)
        try:
            return read_rgb(path, upright=True)
        except DataFormatError as e:
            raise DataFormatError(self.images.list_file, self.images.lines[i], str(e)) from None

    @property
    def name(self) -> str:
        return self._name

    @property
    def keys(self) -> list[str]:
        """``photo#face`` for a face of a detected photo, the photo's key otherwise."""
        return [r.photo if r.face is None or self.crop == "chips" else f"{r.photo}#{r.face}" for r in self.rows]

    def face_indices(self) -> list[int]:
        """The rows that are faces (what ``describe`` writes descriptions of)."""
        return [i for i, r in enumerate(self.rows) if r.status == "face"]

    def __len__(self) -> int:
        return len(self.rows)

    def face_image(self, index: int) -> torch.Tensor:
        """Row ``index``'s face as uint8 ``[3, H, W]``: the square crop (or whole chip), longer side at most
        ``max_side``; a black 8x8 image for a row that is not a face."""
        row = self.rows[index]
        if row.status != "face":
            return BLANK
        image = self._read(self._photo[index])
        if row.crop is not None:
            image = crop_square(image, row.crop)
        return downscale(image, self.max_side)

    def __getitem__(self, index: int) -> Sample:
        k = len(self.schema.characteristics)
        return Sample(
            image=self.face_image(index),
            labels=torch.zeros(k),
            label_mask=torch.zeros(k, dtype=torch.bool),
            age=torch.tensor(float("nan")),
            key=self.keys[index],
        )

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = len(self.schema.characteristics)
        return torch.zeros(len(self), k), torch.zeros(len(self), k, dtype=torch.bool)

    def summary(self) -> dict[str, Any]:
        """What was read: photos listed, read and skipped (by reason, with the files), faces found, photos with no
        face; JSON-ready."""
        photos = {r.photo: r for r in self.rows}  # the last row of each photo tells its status
        skipped = [r for r in photos.values() if r.status == "skipped"]
        return {
            "crop": self.crop,
            "detector": None if self.detector is None else self.detector.name,
            "photos": len(photos),
            "read": len(photos) - len(skipped),
            "faces": sum(r.status == "face" for r in self.rows),
            "photos_with_faces": sum(r.status == "face" for r in photos.values()),
            "photos_without_face": sum(r.status == "no_face" for r in photos.values()),
            "skipped": len(skipped),
            "skipped_by_reason": dict(Counter(r.reason for r in skipped)),
            "skipped_files": {r.photo: r.error for r in skipped},
        }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as one line for the console."""
    reasons = ", ".join(f"{n} {why}" for why, n in summary["skipped_by_reason"].items())
    return (
        f"{summary['photos']} photos: {summary['read']} read, {summary['skipped']} skipped"
        + (f" ({reasons})" if reasons else "")
        + f"; {summary['faces']} faces found in {summary['photos_with_faces']} photos, "
        f"{summary['photos_without_face']} with no face"
    )


def photo_faces(
    images: ImageFiles,
    crop: Crop,
    detector: str,
    detector_options: dict[str, Any] | None,
    framing: str | None,
    first_kind: str | None,
    on_error: OnError,
) -> PhotoFaces:
    """:class:`PhotoFaces` from the data module's ``predict_*`` options; the framing defaults to the one of the
    model's first dataset (:func:`~faceinsight.data.detect.framing_for`)."""
    found = make_detector(detector, **(detector_options or {})) if crop == "detect" else None
    return PhotoFaces(images, crop, found, framing or framing_for(first_kind), on_error)


def row_records(dataset: Any, indices: Sequence[int]) -> list[dict[str, Any]] | None:
    """The rows' fields of ``indices`` as dicts when ``dataset`` is a :class:`PhotoFaces`, else None."""
    if not isinstance(dataset, PhotoFaces):
        return None
    return [dataset.rows[int(i)].to_json() for i in indices]


def face_rows(dataset: Any, n: int) -> list[int]:
    """The rows of ``dataset`` that are faces: a :class:`PhotoFaces`'s face rows, else all ``n``."""
    return dataset.face_indices() if isinstance(dataset, PhotoFaces) else list(range(n))


def write_summary(dataset: Any, path: Path | None) -> dict[str, Any] | None:
    """Print the photos' summary, and write it as JSON to ``path`` unless None, when ``dataset`` is a
    :class:`PhotoFaces`."""
    if not isinstance(dataset, PhotoFaces):
        return None
    summary = dataset.summary()
    if path is None:
        print(summary_text(summary))
        return summary
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary_text(summary)}; summary written to {path}")
    return summary
