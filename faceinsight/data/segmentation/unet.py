"""A trainable face parser: a ``segmentation-models-pytorch`` U-Net (ResNet-18 encoder by default).

It learns from any map source: ground truth (SynthFace, CelebAMask-HQ ``segmap``) or maps distilled from the
landmark parser (read through the segmentation-map cache). Encoders start from random weights
(``encoder_weights=None``): no hub is reachable. Command line::

    faceinsight segparser fit --source synthface|landmarks:<root>|gt:<root> --out parser.pt [--steps N] [--size 64]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from faceinsight.data.base import FaceDataset, Sample
from faceinsight.data.segmentation.base import NUM_CLASSES, SegSource, check_images, hflip, resize_maps
from faceinsight.data.segmentation.cache import SegmapCache

log = logging.getLogger(__name__)

# ImageNet statistics, the convention of smp's (and timm's) ResNet encoders.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass
class UNetConfig:
    """Architecture and input size; ``encoder`` is any smp encoder name (e.g. ``"resnet18"``, ``"mobilenet_v2"``)."""

    encoder: str = "resnet18"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)  # smp's default (256, ...) costs 1.6x the time at 64 px
    size: int = 64  # images are resized to size x size before the network; logits are resized back

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(self.decoder_channels)
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels {self.decoder_channels} needs one entry per encoder stage ({self.encoder_depth})"
            )


def build_unet(config: UNetConfig) -> nn.Module:
    return smp.Unet(
        encoder_name=config.encoder,
        encoder_weights=None,
        encoder_depth=config.encoder_depth,
        decoder_channels=config.decoder_channels,
        in_channels=3,
        classes=NUM_CLASSES,
    )


def preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> normalised float ``[B, 3, size, size]``."""
    x = images.float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - MEAN.to(x.device)) / STD.to(x.device)


class UNetSource(SegSource):
    """Runs a trained U-Net in batches; logits are resized to the input's H, W before the argmax."""

    def __init__(
        self, model: nn.Module, config: UNetConfig, name: str, batch_size: int = 256, device: str = "cpu"
    ) -> None:
        self.model = model.to(device).eval()
        self.config, self.name, self.batch_size, self.device = config, name, batch_size, device

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, batch_size: int = 256, device: str = "cpu") -> UNetSource:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"U-Net parser checkpoint {path} does not exist (train one: faceinsight segparser fit)"
            )
        blob = path.read_bytes()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
            raise ValueError(f"{path} is not a U-Net parser checkpoint (no 'config'/'state_dict')")
        config = UNetConfig(**state["config"])
        model = build_unet(config)
        model.load_state_dict(state["state_dict"])
        name = f"unet-{config.encoder}-{config.size}-{hashlib.sha256(blob).hexdigest()[:16]}"
        return cls(model, config, name, batch_size, device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        out = []
        for chunk in images.split(self.batch_size):
            logits = self.model(preprocess(chunk.to(self.device), self.config.size))
            if logits.shape[-2:] != chunk.shape[-2:]:
                logits = F.interpolate(logits, size=chunk.shape[-2:], mode="bilinear", align_corners=False)
            out.append(logits.argmax(1).cpu())
        return torch.cat(out) if out else torch.zeros((0, *images.shape[2:]), dtype=torch.long)


@dataclass
class FitConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    unet: UNetConfig = field(default_factory=UNetConfig)


def fit(images: torch.Tensor, maps: torch.Tensor, config: FitConfig, log_every: int = 100) -> nn.Module:
    """Train a U-Net on uint8 images ``[N, 3, S, S]`` and class maps ``[N, S, S]`` with cross-entropy.

    Random horizontal flips swap the left/right classes (see :func:`~faceinsight.data.segmentation.base.hflip`).
    One-cycle learning-rate schedule (AdamW), so a short CPU run still ends at a low learning rate.
    """
    if len(images) != len(maps) or len(images) == 0:
        raise ValueError(f"need as many maps as images (and at least one): {len(images)} images, {len(maps)} maps")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = build_unet(config.unet).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    size = config.unet.size
    maps = resize_maps(maps.long(), size) if maps.shape[-1] != size else maps
    start, running = time.perf_counter(), 0.0
    for step in range(1, config.steps + 1):
        idx = torch.randint(len(images), (config.batch_size,), generator=generator)
        x, y = images[idx], maps[idx].long()
        flip = torch.rand(len(idx), generator=generator) < 0.5
        x[flip], y[flip] = hflip(x[flip], y[flip])
        loss = F.cross_entropy(model(preprocess(x, size)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % log_every == 0 or step == config.steps:
            n = log_every if step % log_every == 0 else step % log_every
            log.info("step %d/%d loss %.4f (%.1f s)", step, config.steps, running / n, time.perf_counter() - start)
            running = 0.0
    return model.eval()


def save_checkpoint(model: nn.Module, config: FitConfig, path: str | Path, trained_on: str) -> None:
    """Write the checkpoint atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    state = {
        "config": asdict(config.unet),
        "state_dict": model.state_dict(),
        "trained_on": trained_on,
        "steps": config.steps,
    }
    torch.save(state, tmp)
    os.replace(tmp, path)


class FirstN(FaceDataset):
    """The first ``n`` samples of a dataset (keeps its name, schema and keys, so the segmap cache can key it)."""

    def __init__(self, dataset: FaceDataset, n: int) -> None:
        self.dataset, self.n = dataset, min(n, len(dataset))
        self.schema = dataset.schema
        self.has_segmaps = dataset.has_segmaps

    @property
    def name(self) -> str:
        return f"{self.dataset.name}[:{self.n}]"

    def keys(self) -> list[str]:
        from faceinsight.data.segmentation.cache import dataset_keys

        return dataset_keys(self.dataset)[: self.n] if self.n < len(self.dataset) else dataset_keys(self.dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.name}")
        return self.dataset[index]

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        labels, mask = self.dataset.label_matrix()
        return labels[: self.n], mask[: self.n]


def load_images(
    dataset: FaceDataset, size: int, with_segmaps: bool, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images resized to ``size``: uint8 ``[N, 3, size, size]``; with ``with_segmaps`` also maps ``[N, size, size]``."""

    def collate(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor | None]:
        imgs = torch.stack([preprocess_uint8(s["image"], size) for s in samples])
        if not with_segmaps:
            return imgs, None
        return imgs, torch.cat([resize_maps(s["segmap"][None], size) for s in samples])

    images, maps = [], []
    for imgs, segs in DataLoader(dataset, batch_size=256, num_workers=num_workers, collate_fn=collate):
        images.append(imgs)
        maps.append(segs)
    return torch.cat(images), (torch.cat(maps).to(torch.uint8) if with_segmaps else None)


def preprocess_uint8(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize one uint8 image ``[3, H, W]`` to ``[3, size, size]`` (antialiased bilinear), staying uint8."""
    if image.shape[-2:] == (size, size):
        return image
    x = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def training_data(
    source: str, size: int, num_samples: int, seed: int, cache_root: str, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and target maps for ``--source synthface | landmarks:<root> | gt:<root>``."""
    if source == "synthface":
        from faceinsight.data.synthface import SynthFace, SynthFaceConfig

        dataset: FaceDataset = SynthFace(num_samples, seed, SynthFaceConfig(size=size))
        images, maps = load_images(dataset, size, with_segmaps=True)
        assert maps is not None
        return images, maps
    kind, sep, root = source.partition(":")
    if not sep or kind not in ("landmarks", "gt"):
        raise ValueError(f"--source must be synthface, landmarks:<dataset root> or gt:<dataset root>, got {source!r}")
    from faceinsight.data import load_dataset

    dataset = FirstN(load_dataset(root, split=split), num_samples)
    if kind == "gt":
        if not dataset.has_segmaps:
            raise ValueError(f"{root} has no ground-truth parsing maps; use landmarks:{root}")
        images, maps = load_images(dataset, size, with_segmaps=True)
        assert maps is not None
        return images, maps
    from faceinsight.data.segmentation.landmarks import LandmarkParser

    maps = torch.from_numpy(np.array(SegmapCache(cache_root).get(dataset, LandmarkParser(), size)))
    images, _ = load_images(dataset, size, with_segmaps=False)
    return images, maps


def main(argv: list[str] | None = None) -> None:
    """``faceinsight segparser fit --source ... --out ckpt [--steps N] [--size 64] ...``: train and save a U-Net parser.

    ``argv`` is what follows ``segparser fit``.
    """
    p = argparse.ArgumentParser(
        prog="faceinsight segparser fit",
        description="train the U-Net face parser on SynthFace ground truth, a dataset's ground truth, or landmark maps",
    )
    p.add_argument("--source", required=True, help="synthface | landmarks:<dataset root> | gt:<dataset root>")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    p.add_argument("--steps", type=int, default=FitConfig.steps)
    p.add_argument("--size", type=int, default=UNetConfig.size)
    p.add_argument("--batch-size", type=int, default=FitConfig.batch_size)
    p.add_argument("--lr", type=float, default=FitConfig.lr)
    p.add_argument(
        "--encoder", default=UNetConfig.encoder, help="smp encoder name, e.g. resnet18, resnet34, mobilenet_v2"
    )
    p.add_argument(
        "--num-samples", type=int, default=4000, help="SynthFace images to render, or first N of the dataset"
    )
    p.add_argument("--split", default="train", help="dataset split for landmarks:/gt: sources")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--cache", default=".cache/segmaps", help="segmentation-map cache folder (landmarks: source)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = FitConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        unet=UNetConfig(encoder=args.encoder, size=args.size),
    )
    images, maps = training_data(args.source, args.size, args.num_samples, args.seed, args.cache, args.split)
    log.info("training on %d images from %s", len(images), args.source)
    model = fit(images, maps, config)
    save_checkpoint(model, config, args.out, trained_on=f"{args.source} n={len(images)} seed={args.seed}")
    log.info("wrote %s", args.out)


def describe(checkpoint: str | Path) -> dict[str, Any]:
    """The checkpoint's config and provenance, without its weights."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if k != "state_dict"}
