"""CelebA (Liu et al., ICCV 2015) in its native layout: 40 binary attributes per aligned face.

Files: ``list_attr_celeba.txt`` (row count, attribute names, then ``000001.jpg`` and 40 values in {-1, 1}; CRLF,
space-aligned), ``list_eval_partition.txt`` (``<file> <0|1|2>`` = train/val/test) and ``img_align_celeba/*.jpg``.
Both the flat layout and the Google-Drive one (``Anno/``, ``Eval/``, ``Img/img_align_celeba/``) are accepted.
A folder with only the label files opens labels-only (``images=None`` detects it), enough for ``label_matrix``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceinsight.data._io import (
    NO_SPLIT,
    Split,
    Table,
    TableDataset,
    VerifyImages,
    binary_labels,
    find_file,
    fixed_width,
    gc_paused,
    int_matrix,
    read_attribute_file,
    read_lines,
)
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import CELEBA_ATTRIBUTES, SCHEMAS

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
LABEL_DIRS = ("", "Anno", "Eval")  # flat, or the official Google-Drive folders
IMAGE_DIRS = (IMAGE_DIR, f"Img/{IMAGE_DIR}")


@gc_paused
def read_partition(path: Path, on_error: OnError) -> dict[str, int]:
    """``list_eval_partition.txt``: image file -> 0 (train), 1 (val) or 2 (test)."""
    rows = fixed_width(path, [(n, s.split()) for n, s in read_lines(path)], 2, on_error)
    codes, keep = int_matrix(path, [(n, t[1:]) for n, t in rows], 1, (0, 1, 2), on_error)
    return {rows[i][1][0]: int(codes[i, 0]) for i in np.flatnonzero(keep)}


class CelebA(TableDataset):
    """CelebA's 40 attributes; ``split`` follows the official partition file."""

    schema = SCHEMAS["celeba"]
    split_method = f"official CelebA partition ({PARTITION_FILE})"

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
    ) -> None:
        root = Path(root)
        attr_path = find_file(root, ATTR_FILE, LABEL_DIRS)
        if attr_path is None:
            raise DataFormatError(root, None, f"no {ATTR_FILE} here or in Anno/: not a CelebA folder")
        attrs = read_attribute_file(attr_path, CELEBA_ATTRIBUTES, on_error)
        codes = np.full(len(attrs.names), NO_SPLIT, np.int8)
        keep = np.ones(len(attrs.names), dtype=bool)
        partition_path = find_file(root, PARTITION_FILE, LABEL_DIRS)
        if partition_path is not None:
            partition = read_partition(partition_path, on_error)
            for i, name in enumerate(attrs.names):
                if name in partition:
                    codes[i] = partition[name]
                else:
                    msg = f"{name!r} is not in {partition_path}"
                    skip_or_raise(on_error, DataFormatError(attr_path, int(attrs.lines[i]), msg))
                    keep[i] = False
        elif split != "all":
            raise DataFormatError(root, None, f"split {split!r} needs {PARTITION_FILE}, which is missing")
        else:
            self.split_method = f"none ({PARTITION_FILE} is missing)"
        image_dir = next((d for d in IMAGE_DIRS if (root / d).is_dir()), IMAGE_DIR)
        labels, mask = binary_labels(attrs.values)
        table = Table(
            files=[f"{image_dir}/{n}" for n in attrs.names],
            keys=[f"{IMAGE_DIR}/{n}" for n in attrs.names],  # the same key for either layout
            lines=attrs.lines,
            labels=labels,
            mask=mask,
            split=codes,
        ).select(keep)
        super().__init__(root, attr_path, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        return find_file(root, ATTR_FILE, LABEL_DIRS) is not None

    markers = f"{ATTR_FILE} (optionally {PARTITION_FILE}, {IMAGE_DIR}/)"
