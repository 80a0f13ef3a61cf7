"""Shared machinery of the native-format loaders: label-file parsing, image reading, splits, the table dataset.

Error policy (see docs/datasets.md): label files are parsed and validated fully at index time; image files are
checked at index time for existence (one directory listing per folder) and, with ``verify_images="decode"`` (the
default under ``on_error="skip"``), decoded once so that a corrupt image is dropped together with its labels. A
read error at ``__getitem__`` always raises: a loader never substitutes another sample for a bad one.
"""

from __future__ import annotations

import csv
import functools
import gc
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

from faceinsight.data.base import DataFormatError, FaceDataset, OnError, Sample, skip_or_raise, to_uint8_chw
from faceinsight.vocab import Schema

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test", "all"]
SPLITS: tuple[str, ...] = ("train", "val", "test")  # split code = index here; -1 = in no split ("all" only)
NO_SPLIT = -1
VerifyImages = Literal["exists", "decode"]
Line = tuple[int, list[str]]
P = ParamSpec("P")
R = TypeVar("R")  # (1-based line number, whitespace-separated tokens)


# ----------------------------------------------------------------------------- text and label files


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic garbage collector paused: building 10^5-10^6 small lists and tuples otherwise
    triggers repeated full collections (measured 5x slower on CelebA's 202,599-row partition file)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


@gc_paused
def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; LF or CRLF endings, a UTF-8 BOM and trailing spaces are tolerated."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, f"not UTF-8 text ({e})") from None
    return [(n, s) for n, line in enumerate(text.splitlines(), 1) if (s := line.strip())]


@gc_paused
def read_csv(path: Path) -> tuple[list[str], list[Line]]:
    """Header and rows of a comma-separated file, each row with its 1-based line number."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(path, None, f"not a readable CSV file ({e})") from None
    if not header:
        raise DataFormatError(path, 1, "empty file: expected a header row")
    return header, rows


@gc_paused
def fixed_width(path: Path, rows: Sequence[Line], n_fields: int, on_error: OnError) -> list[Line]:
    """Rows with exactly ``n_fields`` tokens; any other row is an error (or skipped)."""
    good = []
    for line, tokens in rows:
        if len(tokens) == n_fields:
            good.append((line, tokens))
        else:
            shown = " ".join(tokens)
            msg = f"expected {n_fields} columns, got {len(tokens)}: {shown[:120]!r}"
            skip_or_raise(on_error, DataFormatError(path, line, msg))
    return good


@gc_paused
def int_matrix(
    path: Path, rows: Sequence[Line], k: int, allowed: Sequence[int], on_error: OnError
) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows of ``k`` integer tokens each, all of which must lie in ``allowed``.

    Returns int8 values ``[N, k]`` and a keep mask ``[N]`` (False for skipped rows). Fast path: one vectorised
    conversion; only when it fails (or finds out-of-range values) are rows checked one by one to name the culprit.
    """
    n = len(rows)
    allowed_set = frozenset(allowed)
    try:
        values = np.array([tokens for _, tokens in rows], dtype=np.int8).reshape(n, k)
        bad = np.flatnonzero(~np.isin(values, list(allowed_set)).all(axis=1)).tolist()
    except (ValueError, OverflowError):
        values = np.zeros((n, k), np.int8)
        bad = []
        for i, (_, tokens) in enumerate(rows):
            if all(_int_or_none(t) in allowed_set for t in tokens):
                values[i] = [int(t) for t in tokens]
            else:
                bad.append(i)
    keep = np.ones(n, dtype=bool)
    for i in bad:
        line, tokens = rows[i]
        column, token = next((c, t) for c, t in enumerate(tokens) if _int_or_none(t) not in allowed_set)
        msg = f"value {token!r} in value column {column + 1} is not one of {sorted(allowed_set)}"
        skip_or_raise(on_error, DataFormatError(path, line, msg))
        keep[i] = False
    return values, keep


def _int_or_none(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def column_order(path: Path, line: int, header: Sequence[str], names: Sequence[str]) -> list[int]:
    """Index in ``header`` of each of ``names``: the file must name exactly these columns, once each."""
    unknown = [h for h in header if h not in names]
    missing = [n for n in names if n not in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or repeated:
        parts = [f"unknown {unknown}" if unknown else "", f"missing {missing}" if missing else "",
                 f"repeated {repeated}" if repeated else ""]  # fmt: skip
        problems = "; ".join(p for p in parts if p)
        raise DataFormatError(path, line, f"attribute names do not match the format: {problems}")
    return [header.index(n) for n in names]


@dataclass
class AttributeFile:
    """A CelebA-style attribute file, values reordered to the requested attribute names."""

    path: Path
    names: list[str]  # first column of each kept row (the image file name)
    lines: np.ndarray  # int [N] line numbers
    values: np.ndarray  # int8 [N, k] in {-1, 1}


@gc_paused
def read_attribute_file(path: Path, attributes: Sequence[str], on_error: OnError) -> AttributeFile:
    """Parse ``list_attr_celeba.txt`` / ``CelebAMask-HQ-attribute-anno.txt``.

    Format (Liu et al., CelebA README): line 1 the row count, line 2 the attribute names, then one row per image:
    the file name and one value in {-1, 1} per attribute, separated by runs of spaces.
    """
    lines = read_lines(path)
    if len(lines) < 2:
        raise DataFormatError(path, None, "expected a row-count line and an attribute-name line")
    (count_line, count_text), (names_line, names_text) = lines[0], lines[1]
    if not count_text.isdigit():
        raise DataFormatError(path, count_line, f"line 1 must be the row count, got {count_text[:40]!r}")
    order = column_order(path, names_line, names_text.split(), attributes)
    data = lines[2:]
    if int(count_text) != len(data):
        msg = f"header says {int(count_text)} rows but the file has {len(data)}"
        skip_or_raise(on_error, DataFormatError(path, count_line, msg))
    rows = fixed_width(path, [(n, s.split()) for n, s in data], len(attributes) + 1, on_error)
    values, keep = int_matrix(path, [(n, t[1:]) for n, t in rows], len(attributes), (-1, 1), on_error)
    keep_idx = np.flatnonzero(keep)
    return AttributeFile(
        path=path,
        names=[rows[i][1][0] for i in keep_idx],
        lines=np.array([rows[i][0] for i in keep_idx], dtype=np.int64),
        values=values[keep_idx][:, order],
    )


def listing(items: Sequence[str], limit: int = 10) -> str:
    """``items`` comma-separated for a log message, the first ``limit`` of them and how many more."""
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def binary_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """{-1, 0, 1} attribute values -> float32 labels (1 where positive) and a mask (False where 0 = undefined)."""
    return (values == 1).astype(np.float32), values != 0


def find_file(root: Path, name: str, subdirs: Sequence[str] = ("",)) -> Path | None:
    """First existing ``root/<subdir>/<name>``: datasets ship both flat and nested (``Anno/``, ``Eval/``) layouts."""
    return next((p for d in subdirs if (p := root / d / name).is_file()), None)


# ----------------------------------------------------------------------------- labels, splits


def one_hot(schema: Schema, positives: Sequence[Sequence[str]]) -> np.ndarray:
    """float32 labels ``[N, k]``: row i is 1 at the characteristics named in ``positives[i]``, 0 elsewhere."""
    index = {c: j for j, c in enumerate(schema.characteristics)}
    labels = np.zeros((len(positives), len(index)), np.float32)
    for i, names in enumerate(positives):
        labels[i, [index[n] for n in names]] = 1.0
    return labels


def choice(path: Path, line: int, column: str, value: str, options: dict[str, str], on_error: OnError) -> str | None:
    """Look up a categorical value; an unknown one is an error naming file, line and value (or a skip -> None)."""
    if value in options:
        return options[value]
    msg = f"{column} value {value!r} is not one of {sorted(options)}"
    skip_or_raise(on_error, DataFormatError(path, line, msg))
    return None


def unit_hash(text: str, seed: int = 0) -> float:
    """A deterministic number in [0, 1) for ``text`` (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@gc_paused
def hash_split(groups: Sequence[str], fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) from a hash of each record's group name, with the given fractions.

    Records that share a group (an identity, a photo holding several faces) land in the same split.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    edges = np.cumsum(fractions)[:2]
    unique = {g: int(np.searchsorted(edges, unit_hash(g, seed), side="right")) for g in dict.fromkeys(groups)}
    return np.array([unique[g] for g in groups], dtype=np.int8)


def carve_val(codes: np.ndarray, groups: Sequence[str], val_fraction: float, seed: int = 0) -> np.ndarray:
    """Move a hashed ``val_fraction`` of the train records (code 0) to val (code 1)."""
    carved = hash_split(groups, (1.0 - val_fraction, val_fraction, 0.0), seed)
    out = codes.copy()
    out[(codes == 0) & (carved == 1)] = 1
    return out


# ----------------------------------------------------------------------------- images


def read_rgb(path: Path, box: Sequence[int] | None = None, upright: bool = False) -> torch.Tensor:
    """Decode an image fully to uint8 ``[3, H, W]`` RGB, optionally cropped to ``box`` = (left, top, right, bottom)
    clipped to the image. ``upright`` applies the EXIF orientation (phone photos store it there; dataset images
    are stored upright). A missing, truncated or undecodable file raises DataFormatError naming it."""
    try:
        with Image.open(path) as im:
            rgb = (ImageOps.exif_transpose(im) if upright else im).convert("RGB")  # a full decode: errors raise here
    except FileNotFoundError:
        raise DataFormatError(path, None, "image file is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataFormatError(path, None, f"cannot decode image ({e})") from None
    if box is not None:
        left, top = max(box[0], 0), max(box[1], 0)
        right, bottom = min(box[2], rgb.width), min(box[3], rgb.height)
        if right <= left or bottom <= top:
            msg = f"face box {tuple(box)} lies outside the {rgb.width}x{rgb.height} image"
            raise DataFormatError(path, None, msg)
        rgb = rgb.crop((left, top, right, bottom))
    return to_uint8_chw(np.asarray(rgb))


def read_label_png(path: Path) -> np.ndarray:
    """A label or binary mask PNG as uint8 ``[H, W]``: palette/grey values as stored, RGB(A) via its first channel
    (CelebAMask-HQ's ``g_mask.py`` reads channel 0)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA"):
                return np.asarray(im)[..., 0].copy()
            if im.mode == "1":
                return np.asarray(im).astype(np.uint8)
            if im.mode not in ("L", "P"):
                raise DataFormatError(path, None, f"unexpected PNG mode {im.mode!r} for a label map")
            return np.asarray(im).copy()
    except FileNotFoundError:
        raise DataFormatError(path, None, "label map file is missing") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(path, None, f"cannot decode label map ({e})") from None


def existing(root: Path, files: Sequence[str]) -> np.ndarray:
    """Which of ``files`` (relative to ``root``, '/'-separated) exist, listing each folder once instead of a stat
    per file (large datasets hold 10^5-10^6 images)."""
    listings: dict[str, frozenset[str]] = {}
    out = np.zeros(len(files), dtype=bool)
    for i, f in enumerate(files):
        parent, _, name = f.rpartition("/")
        if parent not in listings:
            try:
                listings[parent] = frozenset(os.listdir(root / parent))
            except (FileNotFoundError, NotADirectoryError):
                listings[parent] = frozenset()
        out[i] = name in listings[parent]
    return out


# ----------------------------------------------------------------------------- the table dataset


@dataclass
class Table:
    """One row per face, built at index time. ``files`` are relative to the dataset's image root."""

    files: list[str]
    keys: list[str]
    lines: np.ndarray  # int [N]: line in ``source`` each row came from (0 when the row is not from a text file)
    labels: np.ndarray  # float32 [N, k]
    mask: np.ndarray  # bool [N, k]
    split: np.ndarray  # int8 [N]: index into SPLITS, or NO_SPLIT
    ages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # float32 [N] years, NaN unknown
    boxes: np.ndarray | None = None  # int [N, 4] (left, top, right, bottom) face crops
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # int8 [N]: which label file

    def __post_init__(self) -> None:
        if self.ages.size == 0:
            self.ages = np.full(len(self.files), np.nan, np.float32)
        if self.source.size == 0:
            self.source = np.zeros(len(self.files), np.int8)

    def select(self, keep: np.ndarray) -> Table:
        """Rows where the bool mask or index array ``keep`` selects."""
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        new = {}
        for f in fields(self):
            value = getattr(self, f.name)
            new[f.name] = [value[i] for i in idx] if isinstance(value, list) else None if value is None else value[idx]
        return replace(self, **new)


class TableDataset(FaceDataset):
    """A dataset held as a :class:`Table`; images are decoded lazily in ``__getitem__``.

    Subclasses parse their native files into a Table and call ``__init__``; CelebAMask-HQ adds :meth:`_segmap`.
    """

    def __init__(
        self,
        image_root: Path,
        sources: Path | Sequence[Path] | None,
        table: Table,
        split: Split,
        on_error: OnError,
        images: bool | None,
        verify_images: VerifyImages | None,
    ) -> None:
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.image_root, self.on_error, self.split = Path(image_root), on_error, split
        self.sources: list[Path] = [] if sources is None else [sources] if isinstance(sources, Path) else list(sources)
        table = table.select(self._unique(table))
        if split != "all":
            table = table.select(table.split == SPLITS.index(split))
        if images is None:  # labels-only folders (e.g. CelebA's label files without img_align_celeba/)
            images = bool(table.files) and (self.image_root / table.files[0]).parent.is_dir()
        self.images = images
        self._table = table
        if images:
            self._check_images(verify_images or ("decode" if on_error == "skip" else "exists"))
        if not len(self):
            log.warning("%s: split %r of %s is empty", self.name, split, self.image_root)

    # -- index-time checks

    def _where(self, table: Table, i: int) -> str:
        """Where row i's labels came from, for error messages: ``file:line``, or the file name itself."""
        if not self.sources:
            return str(self.image_root / table.files[i])
        source = self.sources[table.source[i]]
        return f"{source}:{table.lines[i]}" if table.lines[i] else str(source)

    def _unique(self, table: Table) -> np.ndarray:
        """Keep mask dropping repeated keys: a repeated row would silently double-count a face."""
        seen: dict[str, int] = {}
        keep = np.ones(len(table.keys), dtype=bool)
        for i, key in enumerate(table.keys):
            if key in seen:
                msg = f"{key!r} repeats the row at {self._where(table, seen[key])}"
                skip_or_raise(self.on_error, DataFormatError(self._where(table, i), None, msg))
                keep[i] = False
            else:
                seen[key] = i
        return keep

    def _check_images(self, verify: VerifyImages) -> None:
        t = self._table
        present = existing(self.image_root, t.files)
        for i in np.flatnonzero(~present):
            msg = f"image file is missing (labels at {self._where(t, i)})"
            skip_or_raise(self.on_error, DataFormatError(self.image_root / t.files[i], None, msg))
        self._table = t.select(present)
        if verify == "decode":
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                errors = list(pool.map(self._decode_error, range(len(self))))
            for error in errors:
                if error is not None:
                    skip_or_raise(self.on_error, error)
            self._table = self._table.select(np.array([e is None for e in errors], dtype=bool))
        elif verify != "exists":
            raise ValueError(f"verify_images must be 'exists' or 'decode', got {verify!r}")

    def _decode_error(self, index: int) -> DataFormatError | None:
        try:
            self._read(index)
        except DataFormatError as e:
            return e
        return None

    # -- reading

    @property
    def keys(self) -> list[str]:
        return self._table.keys

    @property
    def image_dir(self) -> Path:
        """The folder the first record's image is expected in (what a labels-only open did not find)."""
        return (self.image_root / self._table.files[0]).parent if len(self) else self.image_root

    def __len__(self) -> int:
        return len(self._table.files)

    def _read(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self._table
        path = self.image_root / t.files[index]
        if not self.images:
            raise DataFormatError(path, None, f"this {self.name} folder has no images (opened labels-only)")
        try:
            image = read_rgb(path, None if t.boxes is None else t.boxes[index].tolist())
            segmap = self._segmap(index, (image.shape[1], image.shape[2]))
        except DataFormatError as e:
            e.add_note(f"labels at {self._where(t, index)}; under on_error='skip' use "
                       "verify_images='decode' to drop such records at index time")  # fmt: skip
            raise
        return image, segmap

    def _segmap(self, index: int, size: tuple[int, int]) -> torch.Tensor | None:
        """Ground-truth parsing map ``[H, W]`` at the image's size; only CelebAMask-HQ has one."""
        return None

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        image, segmap = self._read(index)
        t = self._table
        sample: Sample = {
            "image": image,
            "labels": torch.from_numpy(t.labels[index].copy()),
            "label_mask": torch.from_numpy(t.mask[index].copy()),
            "age": torch.tensor(t.ages[index], dtype=torch.float32),
            "key": t.keys[index],
        }
        if segmap is not None:
            sample["segmap"] = segmap
        return sample

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self._table.labels.copy()), torch.from_numpy(self._table.mask.copy())

    def label_arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self._table.labels), torch.from_numpy(self._table.mask)

    def ages(self) -> torch.Tensor:
        return torch.from_numpy(self._table.ages.copy())

    def split_codes(self) -> torch.Tensor:
        """Split of each item as an index into ("train", "val", "test"), -1 for none: for inspecting splits."""
        return torch.from_numpy(self._table.split.astype(np.int64))
