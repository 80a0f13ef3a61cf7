"""MAAD-Face (Terhoerst et al., 2021): 47 binary attributes on VGGFace2's faces.

File: ``MAAD_Face.csv`` with header ``Filename,Identity,<47 attribute names>`` (pterhoer/MAAD-Face,
``annotations/info``), values 1 (true), -1 (false) and 0 (undefined -> masked label). ``Filename`` is VGGFace2's
``<identity>/<file>.jpg``; images are looked up under the first of ``image_dirs`` that holds them (VGGFace2 ships
``train/`` and ``test/`` trees). MAAD-Face has no official split: records are split by a hash of the identity, so
no identity crosses splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceinsight.data._io import (
    Split,
    Table,
    TableDataset,
    VerifyImages,
    binary_labels,
    column_order,
    existing,
    fixed_width,
    gc_paused,
    hash_split,
    int_matrix,
    read_csv,
)
from faceinsight.data.base import DataFormatError, OnError
from faceinsight.vocab import MAAD_ATTRIBUTES, SCHEMAS

CSV_FILE = "MAAD_Face.csv"
FILE_COLUMN, IDENTITY_COLUMN = "Filename", "Identity"
IMAGE_DIRS: tuple[str, ...] = (".", "train", "test", "data/train", "data/test")


def locate(root: Path, files: list[str], image_dirs: Sequence[str | Path]) -> list[str]:
    """Each file prefixed by the first of ``image_dirs`` that holds it (unfound files keep the first dir)."""
    dirs = [str(d) for d in image_dirs if (root / d).is_dir()] or [str(image_dirs[0])]
    out = [""] * len(files)
    todo = np.arange(len(files))
    for d in dirs:
        found = existing(root / d, [files[i] for i in todo])
        for i in todo[found]:
            out[i] = files[i] if d in (".", "") else f"{d}/{files[i]}"
        todo = todo[~found]
    first = dirs[0]
    for i in todo:
        out[i] = files[i] if first in (".", "") else f"{first}/{files[i]}"
    return out


class MAADFace(TableDataset):
    """MAAD-Face's 47 attributes; undefined (0) annotations are masked out."""

    schema = SCHEMAS["maad"]
    split_method = "hash of identity"

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
        csv_file: str = CSV_FILE,
        image_dirs: Sequence[str | Path] = IMAGE_DIRS,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
    ) -> None:
        root = Path(root)
        path = root / csv_file
        header, rows = read_csv(path)
        if FILE_COLUMN not in header:
            raise DataFormatError(path, 1, f"no {FILE_COLUMN!r} column in the header")
        attribute_columns = [i for i, h in enumerate(header) if h not in (FILE_COLUMN, IDENTITY_COLUMN)]
        order = column_order(path, 1, [header[i] for i in attribute_columns], MAAD_ATTRIBUTES)
        rows = fixed_width(path, rows, len(header), on_error)
        file_col = header.index(FILE_COLUMN)
        values, keep = int_matrix(
            path, [(n, [t[i] for i in attribute_columns]) for n, t in rows], len(MAAD_ATTRIBUTES), (-1, 0, 1), on_error
        )
        names = [t[file_col].replace("\\", "/") for _, t in rows]
        labels, mask = binary_labels(values[:, order])
        table = Table(
            files=locate(root, names, image_dirs) if images is not False else names,
            keys=names,
            lines=np.array([n for n, _ in rows], dtype=np.int64),
            labels=labels,
            mask=mask,
            split=hash_split([n.split("/")[0] for n in names], split_fractions, seed),
        ).select(keep)
        super().__init__(root, path, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / CSV_FILE).is_file()

    markers = f"{CSV_FILE}"
