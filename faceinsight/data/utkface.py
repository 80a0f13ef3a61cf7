"""UTKFace (Zhang et al., CVPR 2017): age in years, gender and 5-way race, all encoded in the file name.

Names are ``<age>_<gender>_<race>_<date&time>.jpg`` (the aligned-and-cropped release appends ``.chip.jpg``);
gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others (susanqq.github.io/UTKFace).

Known faults of the release's names, as reported by its users (aicip/UTKFace issue #1 for the in-the-wild parts;
public loaders of the aligned-and-cropped ``UTKFace.tar.gz`` list the same names):
- three names lack the gender or race field (``39_1_20170116174525125``, ``61_1_20170109142408075`` and
  ``61_1_20170109150557335`` ``.jpg.chip.jpg``; in-the-wild also ``53__0_20170116184028385.jpg``, an empty field).
  Which field is missing is a guess (loaders "correct" them differently), so with ``known_quirks="skip"`` (default)
  such names are left out with one warning listing them; ``"raise"`` hands them to ``on_error``;
- ``24_0_1_20170116220224657 .jpg.chip.jpg`` (a space) and ``55_0_0_20170116232725357jpg.chip.jpg`` (no dot)
  carry all three labels and are read as they are.
Any other malformed name (an age above 116, gender 7, no fields at all) is unexpected and follows ``on_error``.

Races map onto FairFace's 7 with partial masks: UTKFace's Asian may be East or Southeast Asian and its Others
Latino/Hispanic or Middle Eastern, so those two races stay unlabelled (masked) while the rest are labelled negative.
"""

from __future__ import annotations

import logging
import re
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np

from faceinsight.data._io import Split, Table, TableDataset, VerifyImages, gc_paused, hash_split, listing, one_hot
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.vocab import SCHEMAS, age_to_bin, race_name

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+) ?\.?jpg(\.chip\.jpg)?$")  # tolerates the release's " .jpg", "jpg"
# The release's missing-field fault: age, then one of gender/race (or an empty field), then the 17-digit date.
_MISSING_FIELD = re.compile(r"^\d+_(\d+|\d*_\d*)_\d{17}\.jpg(\.chip\.jpg)?$")
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


def is_known_quirk(name: str) -> bool:
    """Whether ``name`` has the release's known fault (a missing or empty gender/race field)."""
    return _NAME.match(name) is None and _MISSING_FIELD.match(name) is not None


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
    """UTKFace's age (years, and its FairFace age bin), gender and race, split by a hash of the file name.

    ``known_quirks``: what to do with the release's known faulty names (see the module docstring); the names
    skipped are in :attr:`skipped_quirks`.
    """

    schema = SCHEMAS["utkface"]
    split_method = "hash of file name"

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
        known_quirks: Literal["skip", "raise"] = "skip",
    ) -> None:
        if known_quirks not in ("skip", "raise"):
            raise ValueError(f"known_quirks must be 'skip' or 'raise', got {known_quirks!r}")
        root = Path(root)
        files, ages, positives, masked, quirks = [], [], [], [], []
        for path in sorted(root.rglob("*.jpg")):
            try:
                age, gender, race = parse_name(path)
            except DataFormatError as e:
                if known_quirks == "skip" and is_known_quirk(path.name):
                    quirks.append(path.relative_to(root).as_posix())
                else:
                    skip_or_raise(on_error, e)
                continue
            is_race, may_be = RACE_MAP[race]
            files.append(path.relative_to(root).as_posix())
            ages.append(age)
            positives.append([age_to_bin(age), GENDERS[gender], *(race_name(r) for r in is_race)])
            masked.append([race_name(r) for r in may_be])
        if quirks:
            msg = "%s: skipped %d image(s) whose names lack a label field (a known UTKFace fault): %s"
            log.warning(msg, root, len(quirks), listing(quirks))
        self.skipped_quirks = quirks
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
