"""CelebAMask-HQ (Lee et al., CVPR 2020): CelebA-HQ faces, CelebA's 40 attributes and 19-class parsing maps.

Files: ``CelebA-HQ-img/<n>.jpg``, ``CelebAMask-HQ-attribute-anno.txt`` (CelebA's attribute format, rows ``<n>.jpg``)
and per-part binary masks ``CelebAMask-HQ-mask-anno/<n // 2000>/<n:05d>_<part>.png``. The parts are assembled
into one label map exactly as the dataset's own ``face_parsing/Data_preprocessing/g_mask.py`` does (parts overlaid in
its ``label_list`` order, class id = position + 1, later parts overwrite earlier ones), then resized to the image
with nearest-neighbour. Pre-assembled maps (``g_mask.py``'s output ``CelebAMaskHQ-mask/<n>.png``, or ``<n>.png``
beside the images) are read with ``masks="assembled"``.

Image numbers are taken from the annotation rows, never assumed: the official release numbers images from 0,
the project's resized copies (``celebahq64``, ``celebahq256``) from 1.

Splits (``split_by``): CelebA-HQ's faces are CelebA images, so CelebA's official, identity-disjoint partition
(``list_eval_partition.txt``) applies through the dataset's own ``CelebA-HQ-to-CelebA-mapping.txt`` (rows
``<idx> <orig_idx> <orig_file>``, header ``idx orig_idx orig_file`` optional). Row ``<n>.jpg`` is matched to the
mapping row whose ``idx`` is n, the number in the row's name: the official release names image idx n ``<n>.jpg``
(0..29999), and in the project's 1-based copies row ``<n>.jpg`` is also the image with idx n. Without a mapping
or partition file, splits are row ranges in file order, which put the same people in train and test.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from faceinsight.data._io import (
    NO_SPLIT,
    SPLITS,
    Split,
    Table,
    TableDataset,
    VerifyImages,
    binary_labels,
    existing,
    find_file,
    fixed_width,
    gc_paused,
    read_attribute_file,
    read_label_png,
    read_lines,
)
from faceinsight.data.base import DataFormatError, OnError, skip_or_raise
from faceinsight.data.celeba import PARTITION_FILE, read_partition
from faceinsight.vocab import CELEBA_ATTRIBUTES, SCHEMAS

log = logging.getLogger(__name__)

ATTR_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
# Where CelebA's partition file is looked for (relative to the dataset root) when ``partition_file`` is None:
# the root itself, then a sibling CelebA folder (flat or with the Google-Drive ``Eval/``), as in ../shared/data.
PARTITION_DIRS: tuple[str, ...] = (".", "Eval", "../celeba", "../celeba/Eval", "../CelebA", "../CelebA/Eval")
IMAGE_DIR = "CelebA-HQ-img"
PARTS_DIR = "CelebAMask-HQ-mask-anno"
ASSEMBLED_DIR = "CelebAMaskHQ-mask"  # where g_mask.py writes assembled maps
FOLDER_SIZE = 2000  # g_mask.py: folder_num = k / 2000
# g_mask.py's label_list ("list2"): overlay order; class id = index + 1, 0 = background.
PARTS: tuple[str, ...] = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
CLASSES: tuple[str, ...] = ("background", *PARTS)
NUM_CLASSES = len(CLASSES)  # 19
# Row ranges (1-based, inclusive, annotation-file order) of the project's 27,000-face preset (celebahq64).
DEFAULT_SPLIT_RANGES: dict[str, tuple[int, int]] = {"train": (1, 24000), "val": (24001, 25500), "test": (25501, 27000)}
MaskFormat = Literal["auto", "parts", "assembled", "none"]
SplitBy = Literal["auto", "official", "rows"]
OFFICIAL_SPLIT = f"official CelebA partition via {MAPPING_FILE}"
ROWS_SPLIT = "row ranges (not identity-disjoint)"
_warned_roots: set[Path] = set()  # the row-range fallback warns once per folder and process
_NUMBERED_JPG = re.compile(r"^(\d+)\.jpg$")


def range_codes(n_rows: int, split_ranges: dict[str, tuple[int, int]]) -> np.ndarray:
    """Split code per row from 1-based inclusive row ranges; rows outside every range are in no split."""
    codes = np.full(n_rows, NO_SPLIT, np.int8)
    for name, (first, last) in split_ranges.items():
        if name not in SPLITS or first < 1 or last < first:
            raise ValueError(f"bad split range {name!r}: ({first}, {last})")
        chosen = codes[first - 1 : last]
        if (chosen != NO_SPLIT).any():
            raise ValueError(f"split range {name!r} ({first}, {last}) overlaps another range")
        chosen[:] = SPLITS.index(name)
    return codes


def image_numbers(source: Path, names: list[str], lines: np.ndarray, on_error: OnError) -> tuple[list[int], np.ndarray]:
    """The image number n of each ``<n>.jpg`` row name, and a keep mask (False where the name is malformed)."""
    numbers, keep = [], np.ones(len(names), dtype=bool)
    for i, name in enumerate(names):
        match = _NUMBERED_JPG.match(name)
        numbers.append(int(match.group(1)) if match else -1)
        if match is None:
            msg = f"row name {name!r} is not '<number>.jpg'"
            skip_or_raise(on_error, DataFormatError(source, int(lines[i]) or None, msg))
            keep[i] = False
    return numbers, keep


@gc_paused
def read_mapping(path: Path, on_error: OnError) -> dict[int, tuple[str, int]]:
    """``CelebA-HQ-to-CelebA-mapping.txt``: image idx -> (CelebA file name, line). The header is optional."""
    rows = [(n, s.split()) for n, s in read_lines(path)]
    if rows and rows[0][1][:1] == ["idx"]:
        rows = rows[1:]
    out: dict[int, tuple[str, int]] = {}
    for line, (idx, _, orig_file) in fixed_width(path, rows, 3, on_error):
        if not idx.isdigit():
            skip_or_raise(on_error, DataFormatError(path, line, f"idx {idx!r} is not a number"))
        elif int(idx) in out:
            skip_or_raise(on_error, DataFormatError(path, line, f"idx {idx} repeats line {out[int(idx)][1]}"))
        else:
            out[int(idx)] = (orig_file, line)
    return out


def official_codes(
    source: Path, numbers: list[int], lines: np.ndarray, mapping_path: Path, partition_path: Path, on_error: OnError
) -> tuple[np.ndarray, np.ndarray]:
    """Split code of each row from CelebA's partition of its source image (row ``<n>.jpg`` = mapping idx n), and a
    keep mask: a number missing from the mapping, or a source image missing from the partition, is an error."""
    mapping, partition = read_mapping(mapping_path, on_error), read_partition(partition_path, on_error)
    codes, keep = np.full(len(numbers), NO_SPLIT, np.int8), np.ones(len(numbers), dtype=bool)
    for i, n in enumerate(numbers):
        if n < 0:  # a malformed row name, already reported by image_numbers
            continue
        if n not in mapping:
            error = DataFormatError(source, int(lines[i]) or None, f"image number {n} is not in {mapping_path}")
        elif (orig_file := mapping[n][0]) not in partition:
            msg = f"{orig_file!r} (source of image {n}) is not in {partition_path}"
            error = DataFormatError(mapping_path, mapping[n][1], msg)
        else:
            codes[i] = partition[orig_file]
            continue
        skip_or_raise(on_error, error)
        keep[i] = False
    return codes, keep


class CelebAMaskHQ(TableDataset):
    """CelebAMask-HQ's 40 attributes and, where the folder has them, 19-class parsing maps (``segmap``).

    ``split_by``: ``"official"`` = CelebA's identity-disjoint partition through the mapping file (an error when
    either file is missing); ``"rows"`` = ``split_ranges`` (default :data:`DEFAULT_SPLIT_RANGES`); ``"auto"``
    (default) = rows when ``split_ranges`` is given, else official when both files are found, else the default row
    ranges with a warning. ``partition_file``: CelebA's ``list_eval_partition.txt`` (a path relative to the working
    directory, like ``root``); None looks in :data:`PARTITION_DIRS` under the root. ``split_method`` says which.
    """

    schema = SCHEMAS["celebamaskhq"]

    @gc_paused
    def __init__(
        self,
        root: str | Path,
        split: Split = "all",
        on_error: OnError = "raise",
        images: bool | None = None,
        verify_images: VerifyImages | None = None,
        split_ranges: dict[str, tuple[int, int]] | None = None,
        masks: MaskFormat = "auto",
        image_dir: str | None = None,
        mask_dir: str | None = None,
        split_by: SplitBy = "auto",
        partition_file: str | None = None,
    ) -> None:
        root = Path(root)
        if image_dir is None:
            image_dir = IMAGE_DIR if (root / IMAGE_DIR).is_dir() or not _numbered_jpgs(root) else "."
        attr_path = find_file(root, ATTR_FILE)
        if attr_path is not None:
            attrs = read_attribute_file(attr_path, CELEBA_ATTRIBUTES, on_error)
            names, lines = attrs.names, attrs.lines
            labels, mask = binary_labels(attrs.values)
        else:  # a folder of images and maps without attributes (e.g. CelebAMask-HQ's samples): labels unknown
            names = sorted(_numbered_jpgs(root / image_dir), key=lambda n: int(n.split(".")[0]))
            if not names:
                raise DataFormatError(root, None, f"no {ATTR_FILE} and no <n>.jpg images: not a CelebAMask-HQ folder")
            lines = np.zeros(len(names), np.int64)
            labels = np.zeros((len(names), len(self.schema.characteristics)), np.float32)
            mask = np.zeros(labels.shape, dtype=bool)
        prefix = "" if image_dir in ("", ".") else f"{image_dir}/"
        table = Table(
            files=[prefix + n for n in names],
            keys=[prefix + n for n in names],
            lines=lines,
            labels=labels,
            mask=mask,
            split=range_codes(len(names), DEFAULT_SPLIT_RANGES if split_ranges is None else split_ranges),
        )
        self.masks, mask_dir = _resolve_masks(root, masks, mask_dir, prefix.rstrip("/") or ".")
        self.has_segmaps = self.masks != "none"
        self.mask_root = root / mask_dir
        numbers, keep = image_numbers(attr_path or root, names, lines, on_error)
        self._number_of = dict(zip(table.keys, numbers, strict=True))  # key -> image number, as the row names it
        official = _official_files(root, split_by, split_ranges, partition_file)
        self.split_method = ROWS_SPLIT
        if official is not None:
            table.split, found = official_codes(attr_path or root, numbers, lines, *official, on_error)
            keep &= found
            self.split_method = OFFICIAL_SPLIT
        table = table.select(keep)
        self._parts: dict[int, np.ndarray] = {}  # image number -> bool [18]: which part masks exist
        if self.has_segmaps:
            table = table.select(self._index_masks(table, on_error))
        super().__init__(root, attr_path, table, split, on_error, images, verify_images)

    def _part_file(self, n: int, part: str) -> str:
        return f"{n // FOLDER_SIZE}/{n:05d}_{part}.png"

    def _index_masks(self, table: Table, on_error: OnError) -> np.ndarray:
        """Find each row's mask files at index time (one listing per folder); a row with none is an error."""
        numbers = [self._number_of[k] for k in table.keys]
        if self.masks == "parts":
            files = [self._part_file(n, part) for n in numbers for part in PARTS]
            found = existing(self.mask_root, files).reshape(len(numbers), len(PARTS))
            self._parts = dict(zip(numbers, found, strict=True))
            has = found.any(axis=1)
        else:
            has = existing(self.mask_root, [f"{n}.png" for n in numbers])
        for i in np.flatnonzero(~has):
            n = numbers[i]
            what = self._part_file(n, "<part>") if self.masks == "parts" else f"{n}.png"
            msg = f"no parsing mask {what} for image {n} (row at line {table.lines[i]})"
            skip_or_raise(on_error, DataFormatError(self.mask_root, None, msg))
        return has

    def _segmap(self, index: int, size: tuple[int, int]) -> torch.Tensor | None:
        if not self.has_segmaps:
            return None
        n = self._number_of[self.keys[index]]
        if self.masks == "parts":
            seg = None
            for class_id, (part, present) in enumerate(zip(PARTS, self._parts[n], strict=True), start=1):
                if not present:
                    continue
                path = self.mask_root / self._part_file(n, part)
                binary = read_label_png(path)
                if seg is None:
                    seg = np.zeros(binary.shape, np.uint8)
                elif binary.shape != seg.shape:
                    raise DataFormatError(path, None, f"mask size {binary.shape} differs from {seg.shape}")
                seg[binary != 0] = class_id  # later parts overwrite earlier ones, as in g_mask.py
            assert seg is not None  # _index_masks keeps only rows with at least one part
        else:
            path = self.mask_root / f"{n}.png"
            seg = read_label_png(path)
            if seg.max(initial=0) >= NUM_CLASSES:
                raise DataFormatError(path, None, f"label {seg.max()} is not a class id 0..{NUM_CLASSES - 1}")
        if seg.shape != size:
            seg = np.asarray(Image.fromarray(seg).resize((size[1], size[0]), Image.Resampling.NEAREST))
        return torch.from_numpy(seg.astype(np.int64))

    @staticmethod
    def detect(root: Path) -> bool:
        if (root / ATTR_FILE).is_file():
            return True
        names = _numbered_jpgs(root)
        return bool(names) and all((root / n.replace(".jpg", ".png")).is_file() for n in names)

    markers = f"{ATTR_FILE} (with {IMAGE_DIR}/, {PARTS_DIR}/), or <n>.jpg images with <n>.png label maps"


def _official_files(
    root: Path, split_by: SplitBy, split_ranges: dict[str, tuple[int, int]] | None, partition_file: str | None
) -> tuple[Path, Path] | None:
    """(mapping file, partition file) when splitting by CelebA's official partition, None for row ranges."""
    if split_by not in ("auto", "official", "rows"):
        raise ValueError(f"split_by must be auto, official or rows, got {split_by!r}")
    if split_by == "rows" or (split_by == "auto" and split_ranges is not None):
        return None
    mapping = root / MAPPING_FILE
    if partition_file is not None:
        partition: Path | None = Path(partition_file)
        if not partition.is_file():
            raise DataFormatError(partition, None, "partition file not found (partition_file)")
    else:
        partition = find_file(root, PARTITION_FILE, PARTITION_DIRS)
    if mapping.is_file() and partition is not None:
        return mapping, partition
    missing = [str(mapping)] if not mapping.is_file() else []
    missing += [] if partition is not None else [f"{PARTITION_FILE} in {[str(root / d) for d in PARTITION_DIRS]}"]
    if split_by == "official":
        raise DataFormatError(root, None, f"split_by='official' needs {' and '.join(missing)}")
    if root.resolve() not in _warned_roots:
        _warned_roots.add(root.resolve())
        log.warning(
            "%s: no %s, so splitting by row ranges %s: NOT identity-disjoint (the same people are in train and "
            "test); add the mapping and CelebA's partition file for the official split", root, " or ".join(missing),
            DEFAULT_SPLIT_RANGES,
        )  # fmt: skip
    return None


def _numbered_jpgs(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return [n for n in (p.name for p in folder.iterdir()) if _NUMBERED_JPG.match(n)]


def _resolve_masks(root: Path, masks: MaskFormat, mask_dir: str | None, image_dir: str) -> tuple[MaskFormat, str]:
    """Which mask layout the folder has and where: per-part folders, assembled maps, or none."""
    if masks not in ("auto", "parts", "assembled", "none"):
        raise ValueError(f"masks must be auto, parts, assembled or none, got {masks!r}")
    if masks == "auto":
        if mask_dir is not None:
            masks = "parts" if (root / mask_dir / "0").is_dir() else "assembled"
        elif (root / PARTS_DIR).is_dir():
            masks = "parts"
        elif (root / ASSEMBLED_DIR).is_dir() or any((root / image_dir).glob("*.png")):
            masks = "assembled"
        else:
            masks = "none"
    if mask_dir is None:
        mask_dir = {"parts": PARTS_DIR, "none": "."}.get(masks, ASSEMBLED_DIR)
        if masks == "assembled" and not (root / mask_dir).is_dir():
            mask_dir = image_dir
    return masks, mask_dir
