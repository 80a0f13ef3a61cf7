"""The one data path: datasets -> model characteristics -> batches.

Each dataset labels its own schema; :class:`ModelView` places those labels at
the model's K characteristic positions (the rest are masked), resizes the face
to a common size and attaches a parsing map (the dataset's own or one from a
cached segmentation source). Training draws from all datasets at once with
per-dataset sampling weights; validation and test keep one loader per dataset
so that metrics are reported per dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler

from faceinsight.data.base import FaceDataset, Sample
from faceinsight.vocab import SCHEMAS, Schema, union

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class DatasetSpec:
    """One dataset of the training mix.

    Attributes:
        kind: a key of ``faceinsight.vocab.SCHEMAS`` (``synthface``, ``celeba``, ``celebamaskhq``, ...).
        root: the dataset's folder in its native layout (unused for ``synthface``).
        weight: share of this dataset in the training mix (normalised over datasets).
        segmaps: where parsing maps come from when the dataset has none of its own:
            ``"landmarks"``, ``"unet"`` (see ``faceinsight.segmentation``), or ``"dataset"`` to require its own.
        segmap_options: keyword arguments of the segmentation source (e.g. ``checkpoint`` for ``unet``).
        options: keyword arguments of the loader; ``synthface`` takes ``num_train``, ``num_val``,
            ``num_test``, ``seed`` and any ``SynthFaceConfig`` field.
    """

    kind: str = "synthface"
    root: str | None = None
    weight: float = 1.0
    segmaps: str = "dataset"
    segmap_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        if self.kind not in SCHEMAS:
            raise ValueError(f"unknown dataset kind {self.kind!r}; known: {sorted(SCHEMAS)}")
        return SCHEMAS[self.kind]


def open_split(spec: DatasetSpec, split: str) -> FaceDataset:
    """Instantiate one split of a dataset."""
    if spec.kind == "synthface":
        from faceinsight.synthface import SynthFace, SynthFaceConfig

        opts = dict(spec.options)
        sizes = {s: opts.pop(f"num_{s}", d) for s, d in zip(SPLITS, (8000, 1000, 2000), strict=True)}
        seed = opts.pop("seed", 0)
        # Splits are disjoint by seed: the renderer is deterministic per (seed, index).
        return SynthFace(sizes[split], seed=seed * 10 + SPLITS.index(split), config=SynthFaceConfig(**opts))
    if spec.root is None or not Path(spec.root).is_dir():
        raise FileNotFoundError(
            f"dataset {spec.kind!r}: folder {spec.root!r} not found; point data.datasets[i].root at the dataset "
            f"in its native layout (e.g. --data.datasets.0.root /path/to/{spec.kind})"
        )
    from faceinsight.data.registry import load_dataset

    return load_dataset(spec.root, kind=spec.kind, split=split, **spec.options)


class ModelView(Dataset):
    """A dataset seen by the model: labels at global positions, common image size, a parsing map."""

    def __init__(
        self,
        dataset: FaceDataset,
        characteristics: list[str],
        image_size: int,
        dataset_index: int,
        segmaps: np.ndarray | None = None,
        with_segmaps: bool = True,
        cache: bool = False,
    ) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self.dataset_index = dataset_index
        self.segmaps = segmaps
        self.with_segmaps = with_segmaps
        position = {name: i for i, name in enumerate(characteristics)}
        missing = [n for n in dataset.schema.characteristics if n not in position]
        if missing:
            raise ValueError(f"the model does not predict {missing}, which {dataset.name} labels")
        self.index = torch.tensor([position[n] for n in dataset.schema.characteristics])
        self.k = len(characteristics)
        self.cache: dict[int, Sample] | None = {} if cache else None

    def sample(self, i: int) -> Sample:
        """The dataset's item ``i``, from the in-memory cache when it is on (per process)."""
        if self.cache is None:
            return self.dataset[i]
        if i not in self.cache:
            sample = self.dataset[i]
            if "segmap" in sample:  # class ids fit a byte: 8x less memory than int64
                sample["segmap"] = sample["segmap"].to(torch.uint8)
            self.cache[i] = sample
        return self.cache[i]

    def __len__(self) -> int:
        return len(self.dataset)

    def place(self, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Dataset-order labels ``[..., k]`` -> model-order ``[..., K]`` with everything else masked."""
        out = labels.new_zeros(*labels.shape[:-1], self.k)
        out_mask = mask.new_zeros(*mask.shape[:-1], self.k)
        out[..., self.index] = labels
        out_mask[..., self.index] = mask
        return out, out_mask

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        sample = self.sample(i)
        labels, mask = self.place(sample["labels"], sample["label_mask"])
        item = {
            "image": resize_image(sample["image"], self.image_size),
            "labels": labels,
            "label_mask": mask,
            "age": torch.as_tensor(sample.get("age", float("nan")), dtype=torch.float32),
            "dataset": torch.tensor(self.dataset_index),
            "key": sample.get("key", str(i)),
        }
        if self.with_segmaps:
            segmap = sample.get("segmap")
            if segmap is None:
                if self.segmaps is None:
                    raise ValueError(f"{self.dataset.name} has no parsing maps: choose a segmaps source")
                segmap = torch.from_numpy(np.asarray(self.segmaps[i], dtype=np.int64))
            item["segmap"] = resize_segmap(segmap, self.image_size)
        return item


def resize_image(image: Tensor, size: int) -> Tensor:
    """uint8 ``[3, H, W]`` -> float ``[3, size, size]`` in [0, 1] (bilinear, antialiased)."""
    x = image.float().div_(255)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x


def resize_segmap(segmap: Tensor, size: int) -> Tensor:
    """int ``[H, W]`` -> int64 ``[size, size]`` (nearest)."""
    if segmap.shape[-1] != size or segmap.shape[-2] != size:
        segmap = F.interpolate(segmap[None, None].float(), size=(size, size), mode="nearest")[0, 0]
    return segmap.long()


class FaceDataModule(L.LightningDataModule):
    """Several face datasets at once (the paper trains on six), with per-dataset sampling weights.

    Args:
        datasets: the datasets of the mix.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: side of the square faces in a batch; the model resizes to its encoders' sizes.
        samples_per_epoch: training samples drawn per epoch (default: the sum of the training splits).
        with_segmaps: attach parsing maps (off when the model's segmentation modality is off).
        segmap_cache: folder of the on-disk cache of computed parsing maps.
        cache_samples: keep decoded samples in memory after their first use (for data that fits in RAM,
            such as SynthFace, whose rendering then happens once instead of every epoch). Each worker
            process holds its own cache, so pair it with ``num_workers: 0`` or persistent workers.
    """

    def __init__(
        self,
        datasets: list[DatasetSpec] | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        image_size: int = 64,
        samples_per_epoch: int | None = None,
        with_segmaps: bool = True,
        segmap_cache: str = ".cache/segmaps",
        cache_samples: bool = False,
    ) -> None:
        super().__init__()
        self.specs = datasets or [DatasetSpec()]
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.samples_per_epoch = samples_per_epoch
        self.with_segmaps = with_segmaps
        self.segmap_cache = segmap_cache
        self.cache_samples = cache_samples
        self.splits: dict[str, list[ModelView]] = {}

    @property
    def characteristics(self) -> list[str]:
        """The model's K characteristics: the union of the datasets' schemas."""
        return union([s.schema for s in self.specs])

    @property
    def dataset_names(self) -> list[str]:
        names = [s.kind for s in self.specs]
        return [f"{n}{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    def views(self, split: str) -> list[ModelView]:
        """The datasets of one split, opened on first use."""
        if split not in self.splits:
            self.splits[split] = [self._view(i, spec, split) for i, spec in enumerate(self.specs)]
        return self.splits[split]

    def _view(self, i: int, spec: DatasetSpec, split: str) -> ModelView:
        dataset = open_split(spec, split)
        segmaps = None
        if self.with_segmaps and not dataset.has_segmaps:
            if spec.segmaps == "dataset":
                raise ValueError(
                    f"{spec.kind} at {spec.root} has no parsing maps of its own: set its segmaps source "
                    "to 'landmarks' or 'unet', or switch the modality off with --model.use_seg false"
                )
            from faceinsight.segmentation import SegmapCache, make_source

            source = make_source(spec.segmaps, **spec.segmap_options)
            segmaps = SegmapCache(self.segmap_cache).get(dataset, source, size=self.image_size)
        return ModelView(
            dataset, self.characteristics, self.image_size, i, segmaps, self.with_segmaps, self.cache_samples
        )

    def train_label_matrix(self) -> tuple[Tensor, Tensor]:
        """Labels ``[N, K]`` and mask of the whole training split: the correlation module's statistics."""
        labels, masks = [], []
        for view in self.views("train"):
            y, m = view.place(*view.dataset.label_matrix())
            labels.append(y.float())
            masks.append(m.bool())
        return torch.cat(labels), torch.cat(masks)

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            self.views(split)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        views = self.views("train")
        mix = ConcatDataset(views)
        total = sum(s.weight for s in self.specs)
        weights = torch.cat(
            [torch.full((len(v),), s.weight / total / len(v)) for s, v in zip(self.specs, views, strict=True)]
        )
        sampler = WeightedRandomSampler(weights.double(), self.samples_per_epoch or len(mix), replacement=True)
        return self._loader(mix, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(v) for v in self.views("val")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(v) for v in self.views("test")]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()
