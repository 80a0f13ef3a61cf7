"""ExpW, Expression in-the-Wild (Zhang et al., IJCV 2018): 7 expressions per face box in web photos.

File ``label/label.lst``, one face per line: ``image_name face_id_in_image face_box_top face_box_left
face_box_right face_box_bottom face_box_confidence expression_label`` with labels 0 angry, 1 disgust, 2 fear,
3 happy, 4 sad, 5 surprise, 6 neutral (the dataset's README). Images are ``image/origin/<image_name>``; each
sample is the face box cropped from its photo. A photo can hold several faces, so keys are
``image/origin/<image_name>#<face_id>`` and the hashed split groups by photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceinsight.data._io import (
    Split,
    Table,
    TableDataset,
    VerifyImages,
    fixed_width,
    gc_paused,
    hash_split,
    one_hot,
    read_lines,
)
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import SCHEMAS, expression_name

LABEL_FILE = "label/label.lst"
IMAGE_DIR = "image/origin"
# ExpW label id -> the RAF-DB-ordered expression of the vocabulary.
EXPRESSIONS: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")


def parse_face(tokens: list[str]) -> tuple[int, tuple[int, int, int, int], int]:
    """(face_id, box as (left, top, right, bottom), label) of one row; ValueError says which field is wrong."""
    face_id, top, left, right, bottom = (_int(name, t) for name, t in zip(FIELDS, tokens[1:6], strict=True))
    try:
        float(tokens[6])
    except ValueError:
        raise ValueError(f"face_box_confidence {tokens[6]!r} is not a number") from None
    label = _int("expression_label", tokens[7])
    if not 0 <= label < len(EXPRESSIONS):
        raise ValueError(f"expression_label {label} is not in 0..6")
    if right <= left or bottom <= top or face_id < 0:
        raise ValueError(f"face box top={top} left={left} right={right} bottom={bottom} is empty")
    return face_id, (left, top, right, bottom), label


FIELDS = ("face_id_in_image", "face_box_top", "face_box_left", "face_box_right", "face_box_bottom")


def _int(name: str, token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{name} {token!r} is not an integer") from None


class ExpW(TableDataset):
    """ExpW's expressions on face crops; split by a hash of the photo name."""

    schema = SCHEMAS["expw"]
    split_method = "hash of photo name"

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
        image_dir: str = IMAGE_DIR,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
    ) -> None:
        root = Path(root)
        path = root / LABEL_FILE
        rows = fixed_width(path, [(n, s.split()) for n, s in read_lines(path)], 8, on_error)
        files, keys, lines, boxes, positives, photos = [], [], [], [], [], []
        for line, tokens in rows:
            try:
                face_id, box, label = parse_face(tokens)
            except ValueError as e:
                skip_or_raise(on_error, DataFormatError(path, line, str(e)))
                continue
            files.append(f"{image_dir}/{tokens[0]}")
            keys.append(f"{image_dir}/{tokens[0]}#{face_id}")
            lines.append(line)
            boxes.append(box)
            positives.append([expression_name(EXPRESSIONS[label])])
            photos.append(tokens[0])
        labels = one_hot(self.schema, positives)
        table = Table(
            files=files,
            keys=keys,
            lines=np.array(lines, dtype=np.int64),
            labels=labels,
            mask=np.ones(labels.shape, dtype=bool),
            split=hash_split(photos, split_fractions, seed),
            boxes=np.array(boxes, dtype=np.int64).reshape(-1, 4),
        )
        super().__init__(root, path, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / LABEL_FILE).is_file()

    markers = LABEL_FILE
