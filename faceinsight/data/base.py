"""The contract every face dataset implements, and the sample it yields.

A dataset labels the characteristics of its :class:`~faceinsight.vocab.Schema`, in
that order. The data module maps those onto the model's global characteristic
list, so a loader never needs to know which other datasets it trains with.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Literal, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from faceinsight.vocab import Schema

log = logging.getLogger(__name__)

# What a loader does with a record it cannot read (missing or corrupt image,
# unparseable label): raise an error naming file, line and value, or skip the
# record with a logged warning. Skipping happens at index time, so labels and
# images stay aligned.
OnError = Literal["raise", "skip"]


class Sample(TypedDict, total=False):
    image: torch.Tensor  # uint8 [3, H, W], RGB
    labels: torch.Tensor  # float32 [k] in {0, 1}, in the dataset schema's order
    label_mask: torch.Tensor  # bool [k]: True where the label is known
    age: torch.Tensor  # float32 scalar, age in years, NaN when unknown
    segmap: torch.Tensor  # int64 [H, W], CelebAMask-HQ's 19 classes; only where the dataset has ground truth
    key: str  # stable identifier of the image (file name or index), used by the segmentation-map cache


class DataFormatError(ValueError):
    """A dataset file does not follow its native format. The message names file, line and value."""

    def __init__(self, path: object, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


class FaceDataset(Dataset, ABC):
    """A face dataset in its native on-disk format, or a generated one.

    Subclasses set :attr:`schema` and implement :meth:`__len__`, :meth:`__getitem__`
    and :meth:`label_matrix`. ``label_matrix`` must be cheap (no image decoding):
    the correlation module's co-occurrence statistics are computed from it.
    """

    schema: Schema
    has_segmaps: bool = False
    split_method: str = "unknown"  # how train/val/test were formed, for reports (e.g. "hash of file name")

    @property
    def name(self) -> str:
        return self.schema.name

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Sample: ...

    @abstractmethod
    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All labels at once: float ``[N, k]`` in {0, 1} and bool mask ``[N, k]``, row i = item i."""

    def label_arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`label_matrix` for reading only (the co-occurrence counts): datasets that hold their labels as
        arrays return them without a copy."""
        return self.label_matrix()

    def ages(self) -> torch.Tensor:
        """Ages in years, float ``[N]``, NaN where unknown. Datasets with ages override this."""
        return torch.full((len(self),), float("nan"))


class FaceSubset(FaceDataset):
    """Items ``indices`` of ``dataset``, labels and images together (e.g. without the faces a parser missed)."""

    def __init__(self, dataset: FaceDataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)
        self.schema, self.has_segmaps, self.split_method = dataset.schema, dataset.has_segmaps, dataset.split_method

    @property
    def keys(self) -> list[str]:
        keys = getattr(self.dataset, "keys", None)
        keys = keys() if callable(keys) else keys
        if keys is None:
            raise AttributeError(f"{self.dataset.name} has no keys")
        return [keys[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[int(self.indices[index])]

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        labels, mask = self.dataset.label_matrix()
        rows = torch.from_numpy(self.indices)
        return labels[rows], mask[rows]

    def ages(self) -> torch.Tensor:
        return self.dataset.ages()[torch.from_numpy(self.indices)]


def skip_or_raise(policy: OnError, error: DataFormatError) -> None:
    """Apply the loader's error policy to one bad record."""
    if policy == "raise":
        raise error
    log.warning("skipping record: %s", error)


def to_uint8_chw(array: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
