"""Find and open a face dataset by kind, or by recognising its native files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceinsight.data._io import Split, TableDataset
from faceinsight.data.base import FaceDataset
from faceinsight.data.celeba import CelebA
from faceinsight.data.celebamaskhq import CelebAMaskHQ
from faceinsight.data.expw import ExpW
from faceinsight.data.fairface import FairFace
from faceinsight.data.maad import MAADFace
from faceinsight.data.rafdb import RAFDB
from faceinsight.data.utkface import UTKFace

# Detection order matters only for folders that look like several datasets; the markers are disjoint.
_LOADERS: tuple[type[TableDataset], ...] = (CelebA, CelebAMaskHQ, MAADFace, FairFace, RAFDB, ExpW, UTKFace)
DATASETS: dict[str, type[FaceDataset]] = {cls.schema.name: cls for cls in _LOADERS}


def detect_kind(root: str | Path) -> str:
    """Name of the dataset whose native files ``root`` holds; a ValueError lists what was looked for otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    found = [cls.schema.name for cls in _LOADERS if cls.detect(root)]
    if len(found) == 1:
        return found[0]
    looked = "\n".join(f"  {cls.schema.name}: {cls.markers}" for cls in _LOADERS)
    if found:
        raise ValueError(f"{root} matches several datasets {found}; pass kind=. Markers:\n{looked}")
    raise ValueError(f"cannot tell which dataset {root} holds; looked for:\n{looked}")


def load_dataset(root: str | Path, kind: str | None = None, split: Split = "all", **kwargs: Any) -> FaceDataset:
    """Open the dataset at ``root`` in its native format; ``kind`` (a key of DATASETS) skips detection."""
    kind = kind or detect_kind(root)
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {sorted(DATASETS)}")
    return DATASETS[kind](root, split=split, **kwargs)
