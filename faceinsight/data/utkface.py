"""UTKFace (Zhang et al., CVPR 2017): age in years, gender and 5-way race, all encoded in the file name.

Names are ``<age>_<gender>_<race>_<date&time>.jpg`` (the aligned-and-cropped release appends ``.chip.jpg``);
gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others (susanqq.github.io/UTKFace). A few
released names lack a field (e.g. ``61_1_20170109142408075.jpg.chip.jpg``); they follow ``on_error``.

Races map onto FairFace's 7 with partial masks: UTKFace's Asian may be East or Southeast Asian and its Others
Latino/Hispanic or Middle Eastern, so those two races stay unlabelled (masked) while the rest are labelled negative.
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path

import numpy as np

from faceinsight.data._io import Split, Table, TableDataset, VerifyImages, gc_paused, hash_split, one_hot
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import SCHEMAS, age_to_bin, race_name

_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$")
GENDERS = ("Male", "Female")
# UTKFace race id -> (FairFace races it is, FairFace races it may be = masked); the others are labelled negative.
RACE_MAP: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    0: (("White",), ()),
    1: (("Black",), ()),
    2: ((), ("East Asian", "Southeast Asian")),
    3: (("Indian",), ()),
    4: ((), ("Latino_Hispanic", "Middle Eastern")),
}
MAX_AGE = 116  # the oldest age in UTKFace's documentation


def parse_name(path: Path) -> tuple[int, int, int]:
    """(age, gender, race) from a UTKFace file name, or DataFormatError naming the file and what is wrong."""
    match = _NAME.match(path.name)
    if match is None:
        raise DataFormatError(path, None, f"file name {path.name!r} is not <age>_<gender>_<race>_<date>.jpg")
    age, gender, race = (int(g) for g in match.groups()[:3])
    for field, value, valid in (("age", age, range(MAX_AGE + 1)), ("gender", gender, (0, 1)), ("race", race, RACE_MAP)):
        if value not in valid:
            raise DataFormatError(path, None, f"{field} {value} in the file name is not one of {list(valid)[:5]}...")
    return age, gender, race


class UTKFace(TableDataset):
    """UTKFace's age (years, and its FairFace age bin), gender and race, split by a hash of the file name."""

    schema = SCHEMAS["utkface"]

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = True,
        verify_images: VerifyImages | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
    ) -> None:
        root = Path(root)
        files, ages, positives, masked = [], [], [], []
        for path in sorted(root.rglob("*.jpg")):
            try:
                age, gender, race = parse_name(path)
            except DataFormatError as e:
                skip_or_raise(on_error, e)
                continue
            is_race, may_be = RACE_MAP[race]
            files.append(path.relative_to(root).as_posix())
            ages.append(age)
            positives.append([age_to_bin(age), GENDERS[gender], *(race_name(r) for r in is_race)])
            masked.append([race_name(r) for r in may_be])
        if not files:
            raise DataFormatError(root, None, "no <age>_<gender>_<race>_<date>.jpg images: not a UTKFace folder")
        labels = one_hot(self.schema, positives)
        table = Table(
            files=files,
            keys=files,
            lines=np.zeros(len(files), np.int64),
            labels=labels,
            mask=one_hot(self.schema, masked) == 0,
            split=hash_split([Path(f).name for f in files], split_fractions, seed),
            ages=np.array(ages, dtype=np.float32),
        )
        super().__init__(root, None, table, split, on_error, images, verify_images)

    @staticmethod
    def detect(root: Path) -> bool:
        """UTKFace-named images directly in ``root`` or one folder down (``UTKFace/``, ``part1/``)."""
        return any(_NAME.match(p.name) for pattern in ("*.jpg", "*/*.jpg") for p in islice(root.glob(pattern), 50))

    markers = "<age>_<gender>_<race>_<date>.jpg images"
