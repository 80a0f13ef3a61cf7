"""FairFace (Karkkainen and Joo, WACV 2021): age bin, gender and 7-way race per face.

Files: ``fairface_label_train.csv`` and ``fairface_label_val.csv`` with header ``file,age,gender,race,service_test``;
``file`` is the image path relative to the dataset root (``train/1.jpg``). FairFace ships no test set, so its
``val`` file is our ``test`` split and ``val`` is a hashed ``val_fraction`` carved from its train file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceinsight.data._io import (
    SPLITS,
    Split,
    Table,
    TableDataset,
    VerifyImages,
    carve_val,
    choice,
    gc_paused,
    one_hot,
    read_csv,
)
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import AGE_BINS, RACES, SCHEMAS, age_bin_name, race_name

LABEL_FILES: dict[str, str] = {"train": "fairface_label_train.csv", "test": "fairface_label_val.csv"}
COLUMNS = ("file", "age", "gender", "race")
OPTIONAL_COLUMNS = ("service_test",)
AGES = {label: age_bin_name(label) for label, _, _ in AGE_BINS}
GENDERS = {"Male": "Male", "Female": "Female"}
RACE_NAMES = {r: race_name(r) for r in RACES}
NEEDED: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("train",), "test": ("test",)}
NEEDED["all"] = ("train", "test")


class FairFace(TableDataset):
    """FairFace's age bin (9), gender (2) and race (7), all labelled."""

    schema = SCHEMAS["fairface"]
    split_method = "official label files (val file = test); val hashed from the train file"

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        sources, files, lines, positives, codes, source_ids = [], [], [], [], [], []
        for file_split in NEEDED.get(split, ()):
            path = root / LABEL_FILES[file_split]
            header, rows = read_csv(path)
            bad = [h for h in header if h not in COLUMNS + OPTIONAL_COLUMNS] + [c for c in COLUMNS if c not in header]
            if bad:
                raise DataFormatError(path, 1, f"header {header} does not match {list(COLUMNS + OPTIONAL_COLUMNS)}")
            col = {c: header.index(c) for c in COLUMNS}
            for line, cells in rows:
                if len(cells) != len(header):
                    msg = f"expected {len(header)} columns, got {len(cells)}: {','.join(cells)[:120]!r}"
                    skip_or_raise(on_error, DataFormatError(path, line, msg))
                    continue
                picked = [
                    choice(path, line, c, cells[col[c]], table, on_error)
                    for c, table in (("age", AGES), ("gender", GENDERS), ("race", RACE_NAMES))
                ]
                if None in picked:
                    continue
                files.append(cells[col["file"]])
                lines.append(line)
                positives.append(picked)
                codes.append(SPLITS.index(file_split))  # FairFace's val file is our test split
                source_ids.append(len(sources))
            sources.append(path)
        labels = one_hot(self.schema, positives)
        table = Table(
            files=files,
            keys=files,
            lines=np.array(lines, dtype=np.int64),
            labels=labels,
            mask=np.ones(labels.shape, dtype=bool),
            split=carve_val(np.array(codes, dtype=np.int8), files, val_fraction, seed),
            source=np.array(source_ids, dtype=np.int8),
        )
        super().__init__(root, sources, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        return any((root / f).is_file() for f in LABEL_FILES.values())

    markers = " or ".join(LABEL_FILES.values())
