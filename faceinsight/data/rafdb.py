"""RAF-DB basic (Li et al., CVPR 2017): one of 7 basic expressions per face.

Files: ``EmoLabel/list_patition_label.txt`` (sic) with rows ``train_00001.jpg 5``, labels 1..7 = Surprise, Fear,
Disgust, Happiness, Sadness, Anger, Neutral; images ``Image/aligned/<name>_aligned.jpg`` or
``Image/original/<name>.jpg``. The split comes from the ``train_``/``test_`` prefix; ``val`` is a hashed
``val_fraction`` of the train images.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from faceinsight.data._io import (
    Split,
    Table,
    TableDataset,
    VerifyImages,
    carve_val,
    fixed_width,
    gc_paused,
    int_matrix,
    one_hot,
    read_lines,
)
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import EXPRESSIONS, SCHEMAS, expression_name

LABEL_FILE = "EmoLabel/list_patition_label.txt"
_NAME = re.compile(r"^(train|test)_(\d+)\.jpg$")


class RAFDB(TableDataset):
    """RAF-DB's basic expressions; ``aligned`` picks the 100x100 aligned crops or the original images."""

    schema = SCHEMAS["rafdb"]
    split_method = "official train_/test_ prefix; val hashed from train"

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
        aligned: bool = True,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        path = root / LABEL_FILE
        rows = fixed_width(path, [(n, s.split()) for n, s in read_lines(path)], 2, on_error)
        values, keep = int_matrix(path, [(n, t[1:]) for n, t in rows], 1, range(1, 8), on_error)
        files, lines, positives, codes = [], [], [], []
        for (line, (name, _)), value, ok in zip(rows, values[:, 0], keep, strict=True):
            match = _NAME.match(name)
            if match is None:
                msg = f"image name {name!r} is not train_<n>.jpg or test_<n>.jpg"
                skip_or_raise(on_error, DataFormatError(path, line, msg))
                continue
            if not ok:
                continue
            stem = name.removesuffix(".jpg")
            files.append(f"Image/aligned/{stem}_aligned.jpg" if aligned else f"Image/original/{name}")
            lines.append(line)
            positives.append([expression_name(EXPRESSIONS[value - 1])])
            codes.append(0 if match.group(1) == "train" else 2)
        labels = one_hot(self.schema, positives)
        table = Table(
            files=files,
            keys=files,
            lines=np.array(lines, dtype=np.int64),
            labels=labels,
            mask=np.ones(labels.shape, dtype=bool),
            split=carve_val(np.array(codes, dtype=np.int8), files, val_fraction, seed),
        )
        super().__init__(root, path, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / LABEL_FILE).is_file()

    markers = LABEL_FILE
