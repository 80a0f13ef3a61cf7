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
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from faceinsight.data.base import FaceDataset, FaceSubset, OnError, Sample
from faceinsight.data.cooccurrence import streamed_counts
from faceinsight.vocab import SCHEMAS, Schema, union

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class DatasetSpec:
    """One dataset of the training mix.

    Attributes:
        kind: a key of ``faceinsight.vocab.SCHEMAS`` (``synthface``, ``celeba``, ``celebamaskhq``, ...).
        root: the dataset's folder in its native layout (unused for ``synthface``).
        weight: share of this dataset in the training mix (normalised over datasets); under ``FaceDataModule``'s
            ``mix: sqrt`` or ``size``, multiplied by the square root or the size of its training split first.
        segmaps: where parsing maps come from when the dataset has none of its own:
            ``"landmarks"``, ``"unet"``, ``"facer"`` (the paper's Pyfacer/FaRL parser; see
            ``faceinsight.data.segmentation``), or ``"dataset"`` to require its own.
        segmap_options: keyword arguments of the segmentation source (e.g. ``checkpoint`` for ``unet``, ``device``
            or ``parser_weights`` for ``facer``).
        options: keyword arguments of the loader; ``synthface`` takes ``num_train``, ``num_val``,
            ``num_test``, ``seed`` and any ``SynthFaceConfig`` field.
        no_face: what to do with the faces a computed-map source finds no face in (the landmark parser
            misses 83 of celebahq64's 27,000): ``"background"`` keeps them with an all-background map,
            ``"drop"`` removes them from the split (labels and image together).
    """

    kind: str = "synthface"
    root: str | None = None
    weight: float = 1.0
    segmaps: Literal["dataset", "landmarks", "unet", "facer"] = "dataset"
    segmap_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    no_face: Literal["background", "drop"] = "background"

    def __post_init__(self) -> None:
        if self.segmaps not in ("dataset", "landmarks", "unet", "facer"):
            raise ValueError(f"segmaps must be 'dataset', 'landmarks', 'unet' or 'facer', got {self.segmaps!r}")
        if self.no_face not in ("background", "drop"):
            raise ValueError(f"no_face must be 'background' or 'drop', got {self.no_face!r}")

    @property
    def schema(self) -> Schema:
        if self.kind not in SCHEMAS:
            raise ValueError(f"unknown dataset kind {self.kind!r}; known: {sorted(SCHEMAS)}")
        return SCHEMAS[self.kind]


def open_split(spec: DatasetSpec, split: str) -> FaceDataset:
    """Instantiate one split of a dataset."""
    if spec.kind == "synthface":
        from faceinsight.data.synthface import SynthFace, SynthFaceConfig

        opts = dict(spec.options)
        sizes = {s: opts.pop(f"num_{s}", d) for s, d in zip(SPLITS, (8000, 1000, 2000), strict=True)}
        seed = opts.pop("seed", 0)
        # Splits are disjoint by seed: the renderer is deterministic per (seed, index).
        synth = SynthFace(sizes[split], seed=seed * 10 + SPLITS.index(split), config=SynthFaceConfig(**opts))
        synth.split_method = "rendered with a seed per split"
        return synth
    if spec.root is None or not Path(spec.root).is_dir():
        raise FileNotFoundError(
            f"dataset {spec.kind!r}: folder {spec.root!r} not found; point its root at the dataset in its native "
            f"layout (--data.roots.<dataset name> <folder>, e.g. --data.roots.{spec.kind} /path/to/{spec.kind})"
        )
    from faceinsight.data.registry import load_dataset

    return load_dataset(spec.root, kind=spec.kind, split=split, **spec.options)


PREDICT_PARSERS = ("landmarks", "unet", "facer")  # the face parsers that draw maps for any image


def predict_parser(first: DatasetSpec, kind: str | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The face parser (kind, keyword arguments for ``make_source``) that draws the maps of unlabelled images.

    ``kind`` and ``options`` are the data module's ``predict_segmaps`` and ``predict_segmap_options``; by default
    the first dataset's ``segmaps`` and ``segmap_options``. Ground-truth maps (``dataset``, SynthFace's rendered
    ones) exist only for their own images, so they are an error naming the parsers to choose from.
    """
    if kind is None:
        kind = "synthface" if first.kind == "synthface" else first.segmaps
    if kind not in PREDICT_PARSERS:
        described = {"dataset": "the dataset's own maps, segmaps: dataset", "synthface": "SynthFace's rendered maps"}
        raise ValueError(
            f"--data.predict_images: the model reads parsing maps, but their configured source "
            f"({described.get(kind, repr(kind))}) cannot parse other images. Choose a face parser: "
            "--data.predict_segmaps landmarks (needs mediapipe), --data.predict_segmaps facer (the paper's "
            "Pyfacer/FaRL parser, needs the facer extra), or --data.predict_segmaps unet "
            "--data.predict_segmap_options '{checkpoint: parser.ckpt}' (`faceinsight segparser fit` trains one); "
            "a model trained with --model.use_seg false needs none"
        )
    if options is None:
        options = first.segmap_options if kind == first.segmaps else {}
    return kind, dict(options)


def with_roots(specs: list[DatasetSpec], names: list[str], roots: dict[str, str]) -> list[DatasetSpec]:
    """``specs`` with the folders of ``roots`` (keyed by dataset name, as in ``names``, or list index)."""
    index = {n: i for i, n in enumerate(names)} | {str(i): i for i in range(len(specs))}
    unknown = sorted(set(roots) - set(index))
    if unknown:
        raise ValueError(f"data.roots names {unknown}, which are not in this mix: use {names} or 0..{len(specs) - 1}")
    targets = [index[key] for key in roots]
    if len(set(targets)) < len(targets):
        raise ValueError(f"data.roots {sorted(roots)} names one dataset twice")
    out = list(specs)
    for target, root in zip(targets, roots.values(), strict=True):
        out[target] = replace(out[target], root=root)
    return out


class RowsOf:
    """Rows ``index`` of an array, read lazily: a subset of a memory-mapped segmap cache without copying it."""

    def __init__(self, array: np.ndarray, index: np.ndarray) -> None:
        self.array, self.index = array, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.array[self.index[i]]


class ModelView(Dataset):
    """A dataset seen by the model: labels at global positions, common image size, a parsing map."""

    def __init__(
        self,
        dataset: FaceDataset,
        characteristics: list[str],
        image_size: int,
        dataset_index: int,
        segmaps: np.ndarray | RowsOf | None = None,
        with_segmaps: bool = True,
        cache: bool = False,
    ) -> None:
        self.about: dict[str, Any] = {}  # what FaceDataModule.describe reports about this view
        self.dataset = dataset
        self.image_size = image_size
        self.dataset_index = dataset_index
        self.segmaps = segmaps
        self.with_segmaps = with_segmaps
        position = {name: i for i, name in enumerate(characteristics)}
        missing = [n for n in dataset.schema.characteristics if n not in position]
        if missing:
            raise ValueError(f"the model does not predict {missing}, which {dataset.name} labels")
        self.index = torch.tensor([position[n] for n in dataset.schema.characteristics], dtype=torch.long)
        self.k = len(characteristics)
        self.cache: dict[int, Sample] | None = {} if cache else None

    def sample(self, i: int) -> Sample:
        """The dataset's item ``i``, from the in-memory cache when it is on (per process)."""
        if self.cache is None:
            return self.dataset[i]
        if i not in self.cache:
            self.cache[i] = _compact(self.dataset[i])
        return self.cache[i]

    def fill_cache(self, workers: int) -> None:
        """Decode every item not yet cached now, in ``workers`` DataLoader processes, showing progress.

        SynthFace then renders its faces on every core before the first step (8,000 faces: 16 s on one
        core) instead of one at a time on the training thread. Does nothing when the cache is off.
        """
        if self.cache is None:
            return
        todo = [i for i in range(len(self.dataset)) if i not in self.cache]
        if not todo:
            return
        loader = DataLoader(
            Subset(self.dataset, todo),
            batch_size=64,
            num_workers=workers if len(todo) >= 512 else 0,
            collate_fn=_as_arrays,
        )
        done = iter(todo)
        with tqdm(total=len(todo), desc=f"decoding {self.dataset.name} into memory", unit="img") as bar:
            for samples in loader:
                for sample in samples:
                    self.cache[next(done)] = {
                        k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in sample.items()
                    }
                bar.update(len(samples))

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
            "index": torch.tensor(i),  # the row of this item in its view: where the feature cache keeps its tokens
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


def _compact(sample: Sample) -> Sample:
    """A sample as the in-memory cache keeps it: parsing-map class ids fit a byte (8x less than int64)."""
    if "segmap" in sample:
        sample["segmap"] = sample["segmap"].to(torch.uint8)
    return sample


def _as_arrays(samples: list[Sample]) -> list[dict[str, Any]]:
    """Compact samples with numpy arrays for tensors: they cross from a worker process as pickled bytes,
    about 3x faster here than torch's one shared-memory segment per tensor."""
    return [{k: v.numpy() if isinstance(v, Tensor) else v for k, v in _compact(s).items()} for s in samples]


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


Draws = Literal["balanced", "replacement"]
Mix = Literal["equal", "sqrt", "size"]
MIX_POWERS: dict[str, float] = {"equal": 0.0, "sqrt": 0.5, "size": 1.0}  # a in weight * N ** a


def balanced_counts(expected: Tensor, generator: torch.Generator) -> Tensor:
    """How often each item is drawn when item ``i`` is expected ``expected[i]`` times: ``floor`` or ``ceil`` of it,
    never anything else, summing to ``round(expected.sum())``.

    Systematic sampling over a random order of the items: one uniform offset ``u`` and the running sums ``S_i`` in that
    order give item ``i`` the count ``floor(S_i + u) - floor(S_{i-1} + u)``. So an item expected once is drawn exactly
    once (an epoch of one dataset is a permutation of it), one expected 0.2 times is drawn in a random 20% of epochs,
    and one expected 50 times exactly 50 times; multinomial draws with replacement would instead draw 37% of a single
    dataset's faces not at all in an epoch (``(1 - 1/N)^N``) and repeat others.
    """
    order = torch.randperm(len(expected), generator=generator)
    ends = torch.cumsum(expected[order].double(), 0)
    u = torch.rand((), generator=generator, dtype=torch.float64)
    marks = torch.floor(torch.cat([ends.new_zeros(1), ends]) + u)
    counts = torch.empty(len(expected), dtype=torch.long)
    counts[order] = (marks[1:] - marks[:-1]).long()
    return counts


class WeightedDraws(DistributedSampler):
    """The training mix's sampler: ``num_draws`` dataset indices per epoch, item ``i`` in proportion to
    ``weights[i]``; process ``rank`` of ``num_replicas`` takes the draws rank, rank + W, ... (the list padded to a
    multiple of W, as torch pads).

    ``draws="balanced"`` (default) draws without replacement as far as the weights allow (:func:`balanced_counts`:
    each item ``floor`` or ``ceil`` of its expected count, in a random order), so one dataset trained alone is seen
    once per epoch, every face. ``"replacement"`` is ``torch.multinomial`` with replacement, the sampler of this
    project before it (kept to reproduce older figures): one epoch of UTKFace's 3,954 training faces then saw 2,537
    distinct ones.

    Every process draws the same list: its generator is seeded with ``seed + epoch`` (Lightning calls ``set_epoch``),
    the seed is ``seed_everything``'s, as for Lightning's own DistributedSampler. So W processes at batch b train on the
    global batches of one process at batch W * b, and the draws depend on the seed and the epoch alone (not on how much
    of the global RNG a run used before: model size, DDP's re-seeding, a resumed run). Being a DistributedSampler,
    Lightning keeps it under DDP instead of wrapping it in one that would shuffle the draws again.
    """

    def __init__(
        self,
        weights: Tensor,
        num_draws: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int | None = None,
        draws: Draws = "balanced",
    ) -> None:
        if draws not in ("balanced", "replacement"):
            raise ValueError(f"draws must be 'balanced' or 'replacement', got {draws!r}")
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        super().__init__(range(num_draws), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        self.weights = weights
        self.draws = draws

    def epoch_draws(self) -> Tensor:
        """This epoch's ``num_draws`` indices, in training order (the same on every process)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.dataset)
        if self.draws == "replacement":
            return torch.multinomial(self.weights, n, replacement=True, generator=generator)
        counts = balanced_counts(self.weights.double() / self.weights.double().sum() * n, generator)
        items = torch.repeat_interleave(torch.arange(len(self.weights)), counts)
        return items[torch.randperm(len(items), generator=generator)]

    def __iter__(self) -> Iterator[int]:
        draws = self.epoch_draws().tolist()
        draws += draws[: self.total_size - len(draws)]
        return iter(draws[self.rank : self.total_size : self.num_replicas])


class FaceDataModule(L.LightningDataModule):
    """Several face datasets at once (the paper trains on six), with per-dataset sampling weights.

    Args:
        datasets: the datasets of the mix.
        roots: dataset folders that replace the ``root`` of ``datasets``, keyed by dataset name
            (:attr:`dataset_names`: the kind, or kind + index when a kind repeats) or list index, e.g.
            ``--data.roots.celebamaskhq /path/to/celebahq64`` to point a preset at one's own copy.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: side of the square faces in a batch; the model resizes to its encoders' sizes.
        samples_per_epoch: training samples drawn per epoch (default: the sum of the training splits).
        draws: how the training sampler draws them (:class:`WeightedDraws`): ``balanced`` (default; without
            replacement as far as the weights allow: one dataset alone is a permutation of it each epoch) or
            ``replacement`` (multinomial with replacement, this project's sampler before; for older figures).
        mix: each dataset's share of an epoch, in proportion to its ``weight`` times ``N ** a``, ``N`` its training
            split's size: ``equal`` (default, ``a = 0``: the weights alone, as before this option; one dataset alone
            is unaffected), ``sqrt`` (``a = 0.5``, the tempered mix of multilingual corpora) or ``size``
            (``a = 1``: every face equally likely, so that an epoch of the default ``samples_per_epoch`` is one
            pass over every face, as over the datasets concatenated; ``configs/paper.yaml``; with weights, passes per
            dataset: ``configs/joint_real.yaml``).
        with_segmaps: attach parsing maps (off when the model's segmentation modality is off).
        segmap_cache: folder of the on-disk cache of computed parsing maps.
        cache_samples: keep decoded samples in memory (for data that fits in RAM, such as SynthFace, whose
            rendering then happens once instead of every epoch). The splits are decoded at set-up, in one
            process per core. Each DataLoader worker holds its own copy, so pair it with ``num_workers: 0``.
        predict_images: ``predict`` on these unlabelled images instead of the test splits: a folder (searched
            recursively) or a text file with one image path per line (see ``faceinsight.data.images``).
        predict_segmaps: the face parser, ``landmarks``, ``unet`` or ``facer``, that draws their parsing maps
            (default: the first dataset's ``segmaps``); unused when the model has no segmentation modality.
        predict_segmap_options: its keyword arguments, e.g. ``{checkpoint: parser.ckpt}`` for ``unet`` (default:
            the first dataset's ``segmap_options`` when the parser is the same).
        predict_crop: ``detect`` (default) finds every face in each photo and predicts each, cropped as the
            training faces were; ``chips`` takes each image as one already-cropped face (see
            ``faceinsight.data.faces``).
        predict_detector: the face detector of ``detect``: ``mediapipe`` (offline, the default) or ``facer``.
        predict_detector_options: its keyword arguments (default: the settings chosen on ExpW's training photos).
        predict_framing: the training framing crops are cut to, a name in ``faceinsight.data.detect.FRAMINGS``
            (default: the first dataset's, e.g. ``expw`` for ExpW and kinds without a measured framing).
        predict_on_error: ``skip`` an unreadable photo (a warning, a ``skipped`` line, the run goes on) or
            ``raise`` on the first one.
    """

    def __init__(
        self,
        datasets: list[DatasetSpec] | None = None,
        roots: dict[str, str] | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        image_size: int = 64,
        samples_per_epoch: int | None = None,
        draws: Draws = "balanced",
        mix: Mix = "equal",
        with_segmaps: bool = True,
        segmap_cache: str = ".cache/segmaps",
        cache_samples: bool = False,
        predict_images: str | None = None,
        predict_segmaps: str | None = None,
        predict_segmap_options: dict[str, Any] | None = None,
        predict_crop: Literal["detect", "chips"] = "detect",
        predict_detector: str = "mediapipe",
        predict_detector_options: dict[str, Any] | None = None,
        predict_framing: str | None = None,
        predict_on_error: OnError = "skip",
    ) -> None:
        super().__init__()
        self.specs = datasets or [DatasetSpec()]
        if roots:
            self.specs = with_roots(self.specs, self.dataset_names, roots)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.samples_per_epoch = samples_per_epoch
        self.draws = draws
        if mix not in MIX_POWERS:
            raise ValueError(f"mix must be one of {sorted(MIX_POWERS)}, got {mix!r}")
        self.mix = mix
        self.with_segmaps = with_segmaps
        self.segmap_cache = segmap_cache
        self.cache_samples = cache_samples
        self.predict_images = predict_images
        self.predict_segmaps = predict_segmaps
        self.predict_segmap_options = predict_segmap_options
        self.predict_crop, self.predict_framing, self.predict_on_error = predict_crop, predict_framing, predict_on_error
        self.predict_detector, self.predict_detector_options = predict_detector, predict_detector_options
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
        where = f"dataset {self.dataset_names[i]} ({spec.kind} at {spec.root}), split {split!r}"
        if len(dataset) == 0:
            raise ValueError(f"{where} is empty: check the folder and the loader's split options")
        if not getattr(dataset, "images", True):  # the loader found labels but no image folder
            image_dir = getattr(dataset, "image_dir", spec.root)
            raise ValueError(f"{where}: no images at {image_dir}; training and evaluation need the images")
        about: dict[str, Any] = {"kind": spec.kind, "root": spec.root, "split_method": dataset.split_method,
                                 "segmaps": None, "faces_missed": None, "no_face": spec.no_face}  # fmt: skip
        segmaps: np.ndarray | RowsOf | None = None
        if self.with_segmaps and not dataset.has_segmaps:
            if spec.segmaps == "dataset":
                raise ValueError(
                    f"{spec.kind} at {spec.root} has no parsing maps of its own: set its segmaps source "
                    "to 'landmarks', 'unet' or 'facer', or switch the modality off with --model.use_seg false"
                )
            from faceinsight.data.segmentation import SegmapCache, make_source

            source = make_source(spec.segmaps, **spec.segmap_options)
            cached = SegmapCache(self.segmap_cache).load(dataset, source, size=self.image_size)
            segmaps, missed = cached.maps, cached.missed
            about |= {"segmaps": source.name, "faces_missed": cached.faces_missed}
            if missed is not None:
                fate = "dropped" if spec.no_face == "drop" else "kept with all-background maps"
                log.info("%s: no face found in %d of %d images by %s: %s", where, len(missed), len(dataset),
                         source.name, fate)  # fmt: skip
            if missed and spec.no_face == "drop":
                keep = np.setdiff1d(np.arange(len(dataset)), missed)
                dataset, segmaps = FaceSubset(dataset, keep), RowsOf(cached.maps, keep)
        elif self.with_segmaps:
            about["segmaps"] = "dataset"
        view = ModelView(
            dataset, self.characteristics, self.image_size, i, segmaps, self.with_segmaps, self.cache_samples
        )
        view.about = {"size": len(view), **about}
        return view

    def describe(self) -> dict[str, dict[str, dict[str, Any]]]:
        """What data ran, JSON-ready: per dataset name and opened split, its size, root, kind, split_method,
        segmaps (``"dataset"``, a parser's name, or None when off), faces_missed (None when the maps cannot
        miss a face) and no_face policy."""
        return {
            name: {split: self.splits[split][i].about for split in SPLITS if split in self.splits}
            for i, name in enumerate(self.dataset_names)
        }

    def train_label_matrix(self) -> tuple[Tensor, Tensor]:
        """Labels ``[N, K]`` and mask of the whole training split: the correlation module's statistics."""
        labels, masks = [], []
        for view in self.views("train"):
            y, m = view.place(*view.dataset.label_matrix())
            labels.append(y.float())
            masks.append(m.bool())
        return torch.cat(labels), torch.cat(masks)

    def train_counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """Co-occurrence counts ``m``, ``n``, ``known`` (int64 ``[K, K]``, eq. 5) of the whole training split: the
        correlation module's statistics, counted dataset by dataset in chunks of rows
        (:func:`~faceinsight.data.cooccurrence.streamed_counts`), never as one ``[N, K]`` matrix of the mix."""
        views = tqdm(self.views("train"), desc="co-occurrence counts", unit="dataset")
        return streamed_counts(((*v.dataset.label_arrays(), v.index) for v in views), len(self.characteristics))

    def setup(self, stage: str) -> None:
        if stage == "predict" and self.predict_images:
            self.image_views()
            return
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        validating = self.trainer is None or self.trainer.limit_val_batches != 0
        for split in splits:
            if split != "val" or validating:  # with validation off, Lightning never asks for the val split
                for view in self.views(split):
                    view.fill_cache(workers=len(os.sched_getaffinity(0)))

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def dataset_shares(self) -> list[float]:
        """Each dataset's share of a training epoch (summing to 1): ``weight * N ** a`` normalised, ``a`` set by
        :attr:`mix` and ``N`` the dataset's training split size."""
        power = MIX_POWERS[self.mix]
        raw = [s.weight * len(v) ** power for s, v in zip(self.specs, self.views("train"), strict=True)]
        return [r / sum(raw) for r in raw]

    def face_weights(self) -> Tensor:
        """Each training face's share of the mix (float64, summing to 1): its dataset's share
        (:meth:`dataset_shares`), shared equally by the dataset's faces. The training sampler and the pretraining
        stages draw by it."""
        views = self.views("train")
        shares = [share / len(v) for share, v in zip(self.dataset_shares(), views, strict=True)]
        return torch.cat(
            [torch.full((len(v),), share, dtype=torch.float64) for v, share in zip(views, shares, strict=True)]
        )

    def train_dataloader(self) -> DataLoader:
        mix = ConcatDataset(self.views("train"))
        shards = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        num_draws = self.samples_per_epoch or len(mix)
        sampler = WeightedDraws(self.face_weights(), num_draws, draws=self.draws, **(shards or {}))
        return self._loader(mix, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._evaluation_loader(v) for v in self.views("val")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._evaluation_loader(v) for v in self.views("test")]

    def _evaluation_loader(self, view: ModelView) -> DataLoader:
        """Under DDP, each face once: process r scores faces r, r + W, ... Lightning's own DistributedSampler
        would pad the split to a multiple of W with repeated faces, and the metrics, summed over processes,
        would count those twice."""
        shards = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not shards or shards.get("num_replicas", 1) <= 1:
            return self._loader(view)
        return self._loader(view, sampler=UnrepeatedDistributedSampler(view, shuffle=False, **shards))

    def predict_dataloader(self) -> list[DataLoader]:
        views = self.image_views() if self.predict_images else self.views("test")
        return [self._loader(v) for v in views]  # under DDP, Lightning shards them without repeats

    def image_views(self) -> list[ModelView]:
        """``predict_images`` as the one predict dataset: a row per face found (or per chip), per photo with no face
        and per unreadable photo (``faceinsight.data.faces``), with parsing maps from ``predict_segmaps`` (cached)."""
        if "images" not in self.splits:
            from faceinsight.data.faces import photo_faces
            from faceinsight.data.images import ImageFiles

            images = photo_faces(
                ImageFiles(self.predict_images, self.characteristics), self.predict_crop, self.predict_detector,
                self.predict_detector_options, self.predict_framing, self.specs[0].kind, self.predict_on_error,
            )  # fmt: skip
            segmaps = None
            if self.with_segmaps:
                from faceinsight.data.segmentation import SegmapCache, make_source

                kind, options = predict_parser(self.specs[0], self.predict_segmaps, self.predict_segmap_options)
                # Small batches: photos are parsed at up to 512 px, where a U-Net's full-size logits are large.
                cache = SegmapCache(self.segmap_cache)
                segmaps = cache.get(images, make_source(kind, **options), size=self.image_size, batch_size=8)
            view = ModelView(images, self.characteristics, self.image_size, 0, segmaps, self.with_segmaps)
            self.splits["images"] = [view]
        return self.splits["images"]
