"""A cache of the frozen visual encoders' outputs: E_i's and E_s's tokens computed once per image, read by row.

In the paper's regime E_i and E_s are pretrained and frozen, and the data has no random augmentation (there is none
in this project: ``ModelView`` resizes every image the same way each epoch), so ``FaceInsight.encode`` gives the
same tokens for an image every epoch. :class:`FeatureCache` computes them once per (dataset view, split), stores them
as memory-mapped ``.npy`` arrays, and training runs the adapters, the GCN and the LLM from those rows. An augmentation
added one day makes the cache wrong: switch the cache off with it (``--model.feature_cache false``).

An entry is a folder named by a hash of everything its arrays depend on (:func:`view_identity`,
:func:`encoder_identity`): the dataset (kind, resolved root, loader options, no-face policy), the split, the samples'
keys, the image size, the parsing-map source, each encoder's config and a SHA-256 of its weights, the storage dtype
and :data:`VERSION`. A change in any of them names another folder, so a stale entry is never read. Beside the arrays,
``meta.json`` holds that identity and ``keys.json`` the key of every row; the keys are checked when an entry is
opened and again for every batch read, so features and labels cannot misalign.

Two processes asking for one entry at once (two DDP ranks, two runs) build it once: the build holds a file lock
(``<entry>.lock``) and writes a temporary folder that is renamed into place when complete; the other process waits
and reads the result. A killed build leaves no entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from filelock import FileLock
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from faceinsight.data.segmentation.cache import cache_name, dataset_keys
from faceinsight.model.faceinsight import Visual

if TYPE_CHECKING:
    from faceinsight.data.module import DatasetSpec, FaceDataModule, ModelView
    from faceinsight.model.faceinsight import FaceInsight

log = logging.getLogger(__name__)

# Bump when what the encoders compute from the same weights and inputs changes (``FaceInsight.encode``,
# ``ImageEncoder.forward``, ``SegEncoder.forward``, ``ModelView``'s resizing): every older entry is then unused.
VERSION = 1

StoreDtype = Literal["float32", "float16"]
STORE_DTYPES: dict[str, type] = {"float32": np.float32, "float16": np.float16}

Encode = Callable[[Tensor, Tensor | None], Visual]


def weights_sha256(module: nn.Module | None) -> str | None:
    """SHA-256 of every parameter and buffer of ``module``: names, dtypes, shapes and bytes (None: no module)."""
    if module is None:
        return None
    digest = hashlib.sha256()
    tensors = dict(module.named_parameters()) | dict(module.named_buffers())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_identity(model: FaceInsight) -> dict[str, Any]:
    """What the features depend on in the model: each visual encoder's config and weight hash (E_s: None if off)."""
    seg = None
    if model.seg_encoder is not None:
        seg = {"config": asdict(model.config.seg_encoder), "weights_sha256": weights_sha256(model.seg_encoder)}
    return {
        "image_encoder": {
            "config": asdict(model.config.image_encoder),
            "weights_sha256": weights_sha256(model.image_encoder),
        },
        "seg_encoder": seg,
    }


def view_identity(spec: DatasetSpec, view: ModelView, split: str, with_segmaps: bool) -> dict[str, Any]:
    """What the features depend on in the data: the dataset, its split, the image size and the parsing-map source
    (``view.about["segmaps"]``: a parser's name with its version and parameters, or ``"dataset"``; None when the
    model reads no maps). The samples' keys are added by :meth:`FeatureCache.entry`."""
    segmaps = None
    if with_segmaps:
        segmaps = {"source": view.about.get("segmaps"), "kind": spec.segmaps, "options": spec.segmap_options}
    return {
        "dataset": {
            "kind": spec.kind,
            "root": str(Path(spec.root).resolve()) if spec.root else None,
            "options": spec.options,
            "no_face": spec.no_face,
            "split": split,
        },
        "image_size": view.image_size,
        "segmaps": segmaps,
    }


def check_keys(path: Path, stored: Sequence[str], rows: Sequence[int], keys: Sequence[str]) -> None:
    """Raise naming ``path`` and the first row whose stored key is not the dataset's key for it."""
    for row, key in zip(rows, keys, strict=True):
        if stored[row] != key:
            raise ValueError(
                f"{path}: row {row} holds the features of {stored[row]!r} but the dataset's row {row} is {key!r}; "
                f"features and labels would misalign. Delete {path.parent} to rebuild it"
            )


@contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """The modules in eval mode (no dropout: the features a frozen encoder gives), then each submodule's own mode
    back (``train(mode)`` would set a frozen backbone inside a wrapper in training mode to the wrapper's)."""
    modes = {sub: sub.training for m in modules if m is not None for sub in m.modules()}
    for sub in modes:
        sub.training = False
    try:
        yield
    finally:
        for sub, mode in modes.items():
            sub.training = mode


@dataclass
class FeatureEntry:
    """One (dataset view, split) of the cache: ``image`` ``[N, Nv, Dv]`` and ``seg`` ``[N, Ns, Ds]`` (None without
    the segmentation modality), read-only memmaps whose row i holds the tokens of the sample keyed ``keys[i]``."""

    path: Path
    keys: list[str]
    image: np.ndarray
    seg: np.ndarray | None
    dtype: torch.dtype  # the encoders' output dtype: rows are cast back to it
    built: bool = False  # built by this process (False: found on disk)

    @classmethod
    def open(cls, path: Path, keys: Sequence[str], built: bool = False) -> FeatureEntry:
        """The entry at ``path``, its rows checked against the dataset's ``keys``."""
        meta = json.loads((path / "meta.json").read_text())
        stored = json.loads((path / "keys.json").read_text())
        if len(stored) != len(keys):
            raise ValueError(f"{path / 'keys.json'} lists {len(stored)} samples, the dataset has {len(keys)}")
        check_keys(path / "keys.json", stored, range(len(keys)), keys)
        arrays = {}
        for name in ("image", "seg"):
            file = path / f"{name}.npy"
            arrays[name] = np.load(file, mmap_mode="r") if file.exists() else None
            if arrays[name] is not None and len(arrays[name]) != len(keys):
                raise ValueError(f"{file} has {len(arrays[name])} rows, the dataset {len(keys)}")
        if arrays["image"] is None:
            raise FileNotFoundError(f"{path / 'image.npy'} is missing: delete {path} to rebuild it")
        return cls(path, stored, arrays["image"], arrays["seg"], getattr(torch, meta["encoder_dtype"]), built)


def read_rows(entries: Sequence[FeatureEntry], dataset: Tensor, index: Tensor, keys: Sequence[str]) -> Visual:
    """The cached tokens of a batch (on the CPU) whose item b is row ``index[b]`` of ``entries[dataset[b]]``, the
    batch's ``keys`` checked against the rows' (a training batch mixes datasets)."""
    dataset_of, row_of = dataset.cpu().numpy(), index.cpu().numpy()
    first = entries[int(dataset_of[0])]
    image = np.empty((len(row_of), *first.image.shape[1:]), first.image.dtype)
    seg = np.empty((len(row_of), *first.seg.shape[1:]), first.seg.dtype) if first.seg is not None else None
    for d in np.unique(dataset_of):
        at = np.flatnonzero(dataset_of == d)
        entry, rows = entries[int(d)], row_of[at]
        check_keys(entry.path / "keys.json", entry.keys, rows.tolist(), [keys[b] for b in at])
        image[at] = entry.image[rows]
        if seg is not None:
            seg[at] = entry.seg[rows]
    return Visual(
        torch.from_numpy(image).to(first.dtype), None if seg is None else torch.from_numpy(seg).to(first.dtype)
    )


class FeatureCache:
    """Entries of encoder outputs under ``root``, one folder per identity (see the module docstring).

    Args:
        root: the cache folder.
        dtype: ``float32`` (default: exact, training from the cache gives the losses of training without it) or
            ``float16`` (half the disk and memory; the tokens are rounded to 11 significant bits, so losses differ
            slightly from an uncached run's).
    """

    def __init__(self, root: str | Path = ".cache/features", dtype: StoreDtype = "float32") -> None:
        if dtype not in STORE_DTYPES:
            raise ValueError(f"feature cache dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
        self.root = Path(root)
        self.dtype = dtype

    def folder(self, name: str, identity: dict[str, Any]) -> Path:
        """The entry folder of ``identity``: a readable ``name`` and a hash of the whole identity."""
        return self.root / cache_name(name, identity)

    def split_entries(
        self, model: FaceInsight, data: FaceDataModule, split: str, device: torch.device | str = "cpu"
    ) -> list[FeatureEntry]:
        """One entry per dataset of ``data``'s ``split`` for ``model``'s E_i (and E_s when it has one), encoding those
        not cached yet: in the data module's batches, without gradients, the encoders in eval mode."""
        encoders = encoder_identity(model)
        entries = []
        with eval_mode(model.image_encoder, model.seg_encoder):
            for spec, name, view in zip(data.specs, data.dataset_names, data.views(split), strict=True):
                identity = {**view_identity(spec, view, split, model.seg_encoder is not None), **encoders}
                keys = dataset_keys(view.dataset)
                entry = self.entry(f"{name}-{split}-{view.image_size}px", identity, keys, view, model.encode, device,
                                   data.batch_size, data.num_workers)  # fmt: skip
                entries.append(entry)
        return entries

    def entry(
        self,
        name: str,
        identity: dict[str, Any],
        keys: Sequence[str],
        data: Dataset,
        encode: Encode,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> FeatureEntry:
        """The entry of ``data`` (items with ``image``, ``segmap`` when the model reads maps, and ``key``, in the
        order of ``keys``) under ``identity``, encoded with ``encode`` in batches on ``device`` if not cached yet."""
        keys = [str(k) for k in keys]
        keys_sha256 = hashlib.sha256("\n".join(keys).encode()).hexdigest()
        identity = {**identity, "keys": {"count": len(keys), "sha256": keys_sha256}, "dtype": self.dtype,
                    "version": VERSION}  # fmt: skip
        path = self.folder(name, identity)
        if path.is_dir():
            log.info("feature cache hit: %s", path)
            return FeatureEntry.open(path, keys)
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(f"{path.name}.lock")):
            if path.is_dir():  # another process built it while this one waited for the lock
                log.info("feature cache %s built by another process", path)
                return FeatureEntry.open(path, keys)
            built = self._build(path, identity, keys, lambda folder: self._encode(
                folder, path.name, keys, data, encode, device, batch_size, num_workers))  # fmt: skip
        return FeatureEntry.open(path, keys, built)

    def _build(
        self, path: Path, identity: dict[str, Any], keys: list[str], fill: Callable[[Path], tuple[dict, str]]
    ) -> bool:
        """Fill a temporary folder (``fill``: :meth:`_encode` into it) and rename it to ``path``; False if another
        process's entry was renamed there first (possible only where the file lock does not hold, e.g. some network
        file systems)."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
        tmp.mkdir()
        try:
            start = time.perf_counter()
            shapes, encoder_dtype = fill(tmp)
            seconds = time.perf_counter() - start
            (tmp / "keys.json").write_text(json.dumps(keys))
            meta = {**identity, "shapes": shapes, "encoder_dtype": encoder_dtype, "seconds": round(seconds, 2),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            try:
                os.rename(tmp, path)
            except OSError:
                if not path.is_dir():
                    raise
                log.info("feature cache %s was built by another process first: using it", path)
                return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("feature cache %s: %d samples encoded in %.1f s", path, len(keys), seconds)
        return True

    def _encode(
        self,
        folder: Path,
        name: str,
        keys: list[str],
        data: Dataset,
        encode: Encode,
        device: torch.device | str,
        batch_size: int,
        num_workers: int,
    ) -> tuple[dict[str, list[int]], str]:
        """Write ``image.npy`` (and ``seg.npy``) in ``folder``; their shapes and the encoders' output dtype."""
        arrays: dict[str, np.ndarray] = {}
        encoder_dtype, done = "float32", 0
        # Its own generator: a loader draws a seed, and a build must not shift the run's global random stream.
        loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, generator=torch.Generator())
        with torch.no_grad(), tqdm(total=len(keys), desc=f"encoding {name}", unit="img") as bar:
            for batch in loader:
                segmap = batch.get("segmap")
                visual = encode(batch["image"].to(device), None if segmap is None else segmap.to(device))
                b = visual.image.shape[0]
                check_keys(folder / "keys.json", keys, range(done, done + b), list(batch["key"]))
                for field, tokens in visual._asdict().items():
                    if tokens is None:
                        continue
                    if field not in arrays:
                        encoder_dtype = str(tokens.dtype).removeprefix("torch.")
                        arrays[field] = np.lib.format.open_memmap(
                            folder / f"{field}.npy", mode="w+", dtype=STORE_DTYPES[self.dtype],
                            shape=(len(keys), *tokens.shape[1:]),
                        )  # fmt: skip
                    arrays[field][done : done + b] = tokens.float().cpu().numpy()
                done += b
                bar.update(b)
        if done != len(keys):
            raise ValueError(f"{name}: the data gave {done} samples, its keys list {len(keys)}")
        for field, array in arrays.items():
            array.flush()
            with open(folder / f"{field}.npy", "rb+") as f:  # on disk before the folder is renamed into place
                os.fsync(f.fileno())
        return {field: list(array.shape) for field, array in arrays.items()}, encoder_dtype
