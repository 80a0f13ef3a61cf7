"""An on-disk cache of parsing maps: one uint8 ``[N, size, size]`` file per (dataset, parser, size).

Each map is computed at the image's own resolution and then resized to ``size`` (mode-pooling, see
:func:`~faceinsight.data.segmentation.base.resize_maps`): a parser sees the most detail that way (MediaPipe's detector
misses faces in tiny images), and a map drawn at full resolution and pooled keeps small parts better than one drawn
on a downscaled image. The file is written under a temporary name and renamed when complete, so a killed run never
leaves a partial cache that a later run would trust. For parsers that can miss a face (the landmark parser), the
JSON sidecar records how many images had none (``faces_missed``) and which (``missed_indices``, dataset order).

Under ``torch.distributed`` (DDP: every process opens the same datasets), the processes build a missing cache
together: global rank 0 decides whether it is missing and creates the temporary file, each process parses its own
contiguous share of the rows (:func:`shard`) into it, and rank 0 renames it into place once all have written theirs.
So the parser runs once per image on the node, not once per process, and one temporary file is written, not one per
process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from faceinsight.data.base import FaceDataset, Sample
from faceinsight.data.segmentation.base import SegSource, resize_maps

log = logging.getLogger(__name__)


def dataset_keys(dataset: FaceDataset) -> list[str]:
    """Every sample's ``key``: from a ``keys`` attribute or method when the dataset has one, else by iterating."""
    keys = getattr(dataset, "keys", None)
    if callable(keys):
        keys = keys()
    if isinstance(keys, Sequence) and len(keys) == len(dataset):
        return [str(k) for k in keys]
    log.info("%s has no keys(); reading all %d samples to identify it", dataset.name, len(dataset))
    out = []
    for i in range(len(dataset)):
        if "key" not in (sample := dataset[i]):
            raise ValueError(
                f"{dataset.name}[{i}] has no 'key': the segmentation-map cache cannot identify the dataset"
            )
        out.append(sample["key"])
    return out


def cache_identity(dataset: FaceDataset, source: SegSource, size: int) -> dict[str, Any]:
    """What a cache file is computed from: dataset name, length and a hash of all its keys; parser name; size."""
    keys_hash = hashlib.sha256("\n".join(dataset_keys(dataset)).encode()).hexdigest()
    return {
        "dataset": dataset.name,
        "length": len(dataset),
        "keys_sha256": keys_hash,
        "source": source.name,
        "size": size,
    }


def _collate(samples: list[Sample]) -> list[torch.Tensor]:
    return [s["image"] for s in samples]


def _parse(source: SegSource, images: list[torch.Tensor], size: int) -> tuple[torch.Tensor, list[int]]:
    """Maps ``[B, size, size]`` and the batch indices where the parser found no face; images of one shape go
    through the parser as one batch."""
    if all(img.shape == images[0].shape for img in images):
        return resize_maps(source(torch.stack(images)), size), list(source.last_missed or [])
    maps, missed = [], []
    for j, img in enumerate(images):
        maps.append(resize_maps(source(img[None]), size))
        missed += [j] if source.last_missed else []
    return torch.cat(maps), missed


def shard(n: int, rank: int, world: int) -> range:
    """The rows of ``n`` that process ``rank`` of ``world`` parses: contiguous, sizes differing by at most one, every
    row in exactly one shard."""
    return range(n * rank // world, n * (rank + 1) // world)


def process_group() -> tuple[int, int]:
    """(global rank, world size) of ``torch.distributed`` when it is initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_rank0(value: Any) -> Any:
    """Global rank 0's ``value`` on every process (itself without a process group)."""
    if process_group()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gathered(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (``[value]`` without a process group)."""
    world = process_group()[1]
    if world == 1:
        return [value]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@dataclass
class CachedMaps:
    """Parsing maps of a dataset and, for parsers that can miss a face, the rows where they found none."""

    maps: np.ndarray  # uint8 [N, size, size], read-only memmap
    missed: list[int] | None  # dataset indices of all-background maps for want of a face; None: cannot miss
    path: Path | None = None

    @property
    def faces_missed(self) -> int | None:
        return None if self.missed is None else len(self.missed)


def cache_name(stem: str, identity: dict[str, Any]) -> str:
    """``<stem>-<hash>``: a readable, filename-safe ``stem`` and 24 hex digits of the SHA-256 of ``identity`` (as
    sorted JSON), so that every identity names its own cache file or folder."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}-{digest}"


class SegmapCache:
    """Parsing maps of a whole dataset, computed once per (dataset identity, ``source.name``, ``size``) and reused
    across runs and processes. :attr:`built` counts the maps this object computed (the tests use it)."""

    def __init__(self, root: str | Path = ".cache/segmaps") -> None:
        self.root = Path(root)
        self.built = 0

    def path(self, identity: dict[str, Any]) -> Path:
        stem = f"{identity['dataset']}-{identity['size']}px"
        return self.root / f"{cache_name(stem, identity)}.u8"

    def get(
        self, dataset: FaceDataset, source: SegSource, size: int, batch_size: int = 64, num_workers: int = 0
    ) -> np.ndarray:
        """uint8 ``[N, size, size]`` (read-only memmap); row i = parsing map of ``dataset[i]["image"]``."""
        return self.load(dataset, source, size, batch_size, num_workers).maps

    def load(
        self, dataset: FaceDataset, source: SegSource, size: int, batch_size: int = 64, num_workers: int = 0
    ) -> CachedMaps:
        """The maps of :meth:`get` with the rows where the parser found no face (from the sidecar)."""
        identity = cache_identity(dataset, source, size)
        path, n = self.path(identity), len(dataset)
        can_miss = source.last_missed is not None
        if n == 0:
            return CachedMaps(np.zeros((0, size, size), np.uint8), [] if can_miss else None)
        expected, on_disk = n * size * size, path.stat().st_size if path.exists() else None
        on_disk = from_rank0(on_disk)  # one decision for all processes: they build it together or all read it
        if on_disk == expected:
            log.info("segmap cache hit: %s (%s, %s, %d px)", path, dataset.name, source.name, size)
        else:
            if on_disk is not None:
                log.warning("segmap cache %s has %d bytes, expected %d: rebuilding", path, on_disk, expected)
            self._build(dataset, source, size, batch_size, num_workers, path, identity)
        maps = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, size, size))
        return CachedMaps(maps, self._missed(path, maps) if can_miss else None, path)

    @staticmethod
    def _missed(path: Path, maps: np.ndarray) -> list[int]:
        """Rows the parser found no face in: from the sidecar, or (sidecars written before it recorded them) the
        all-background maps, which is what such a parser returns for a miss."""
        sidecar = path.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        if "missed_indices" in meta:
            return [int(i) for i in meta["missed_indices"]]
        log.info("%s records no missed faces: taking the all-background maps", sidecar)
        return np.flatnonzero(~maps.reshape(len(maps), -1).any(axis=1)).tolist()

    def _build(
        self,
        dataset: FaceDataset,
        source: SegSource,
        size: int,
        batch_size: int,
        num_workers: int,
        path: Path,
        identity: dict[str, Any],
    ) -> None:
        """Parse every map into a temporary file and rename it into place; under ``torch.distributed`` each process
        parses its :func:`shard` of the rows into the one file that global rank 0 created."""
        n, (rank, world) = len(dataset), process_group()
        rows = shard(n, rank, world)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
        if rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, size, size)).flush()  # every process writes into it
        tmp = from_rank0(tmp)
        share = f", rows {rows.start}-{rows.stop - 1} on process {rank} of {world}" if world > 1 else ""
        log.info("building segmap cache %s: %d images of %s with %s at %d px%s", path, n, dataset.name, source.name,
                 size, share)  # fmt: skip
        loader = DataLoader(Subset(dataset, rows), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
        start = time.perf_counter()
        missed: list[int] = []
        try:
            out = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, size, size))
            done = rows.start
            # A landmark parser takes minutes on a large split: show it (tqdm writes to stderr, not the log).
            desc = f"parsing maps: {dataset.name} ({source.name}, {size} px{', process ' + str(rank) if share else ''})"
            with tqdm(total=len(rows), desc=desc, unit="img") as bar:
                for images in loader:
                    maps, batch_missed = _parse(source, images, size)
                    missed += [done + j for j in batch_missed]
                    out[done : done + len(images)] = maps.numpy().astype(np.uint8)
                    done += len(images)
                    self.built += len(images)
                    bar.update(len(images))
            out.flush()
            del out
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            missed = sorted(i for part in gathered(missed) for i in part)  # also: every process has written its rows
            seconds = time.perf_counter() - start
            meta = {**identity, "seconds": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if world > 1:
                meta["processes"] = world
            if source.last_missed is not None:  # parsers that can fail to find a face (the landmark parser)
                meta |= {"faces_missed": len(missed), "missed_indices": missed}
            if rank == 0:
                _write_json(path.with_suffix(".json"), meta)
                os.replace(tmp, path)
            from_rank0(None)  # the others read the file once rank 0 has renamed it
        finally:
            if rank == 0:
                tmp.unlink(missing_ok=True)
        missed = f", no face found in {meta['faces_missed']} of {n} images" if "faces_missed" in meta else ""
        log.info("segmap cache %s written in %.1f s%s", path, seconds, missed)
