"""mIoU of each face parser against ground truth: the 4 real CelebAMask-HQ samples (at 512 and 64 px) and held-out
SynthFace faces.

    python benchmarks/segmentation_miou.py [--unet NAME=CKPT ...] [--no-landmarks] [--synth-n 500] [--synth-seed 777]

Real samples: ``<data>/celebamaskhq-samples/{0..3}.jpg`` (1024 px) and ``{0..3}.png`` (512 px maps). Images are
resized with Lanczos, maps with mode pooling (``resize_maps``). mIoU pools pixels over all images and averages over
the classes present in the prediction or the ground truth (``faceinsight.data.segmentation.miou``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faceinsight.data.segmentation import SegSource, make_source, resize_maps
from faceinsight.data.segmentation.base import CLASSES, NUM_CLASSES
from faceinsight.data.segmentation.miou import confusion_matrix, iou_from_confusion

DATA = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def real_samples(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[4, 3, size, size]`` and maps ``[4, size, size]`` of the CelebAMask-HQ samples."""
    images, maps = [], []
    for jpg in sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem)):
        img = Image.open(jpg).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        images.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))
        seg = torch.from_numpy(np.array(Image.open(jpg.with_suffix(".png"))).astype(np.int64))
        maps.append(resize_maps(seg[None], size)[0])
    return torch.stack(images), torch.stack(maps)


def synthface(n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from faceinsight.data.synthface import SynthFace, SynthFaceConfig

    dataset = SynthFace(n, seed, SynthFaceConfig(size=size))
    samples = [dataset[i] for i in range(n)]
    return torch.stack([s["image"] for s in samples]), torch.stack([s["segmap"] for s in samples])


def evaluate(source: SegSource, images: torch.Tensor, target: torch.Tensor, batch: int = 100) -> dict[str, Any]:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    missed0 = getattr(source, "faces_missed", 0)
    for i in range(0, len(images), batch):
        confusion += confusion_matrix(source(images[i : i + batch]), target[i : i + batch], NUM_CLASSES)
    mean, per_class = iou_from_confusion(confusion)
    result: dict[str, Any] = {
        "miou": round(mean, 4),
        "per_class": {CLASSES[c]: round(float(v), 3) for c, v in enumerate(per_class) if not np.isnan(v)},
        "images": len(images),
    }
    if hasattr(source, "faces_missed"):
        result["faces_missed"] = source.faces_missed - missed0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", action="append", default=[], help="NAME=CHECKPOINT of a trained U-Net parser")
    parser.add_argument("--no-landmarks", action="store_true")
    parser.add_argument("--synth-n", type=int, default=500)
    parser.add_argument("--synth-seed", type=int, default=777, help="a seed no parser was trained on")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    sources: dict[str, SegSource] = {}
    if not args.no_landmarks:
        sources["landmarks"] = make_source("landmarks")
    for spec in args.unet:
        name, _, checkpoint = spec.partition("=")
        sources[name] = make_source("unet", checkpoint=checkpoint)

    sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    folder = DATA / "celebamaskhq-samples"
    if folder.is_dir():
        sets["celebamaskhq-samples@512"] = real_samples(folder, 512)
        sets["celebamaskhq-samples@64"] = real_samples(folder, 64)
    else:
        print(f"skipping real samples: {folder} not found")
    if args.synth_n:
        sets[f"synthface-seed{args.synth_seed}-n{args.synth_n}@64"] = synthface(args.synth_n, args.synth_seed, 64)

    results: dict[str, dict[str, Any]] = {}
    for sname, source in sources.items():
        for dname, (images, target) in sets.items():
            r = evaluate(source, images, target)
            results[f"{sname} on {dname}"] = r
            missed = f", no face in {r['faces_missed']}/{r['images']}" if "faces_missed" in r else ""
            print(f"{sname:>12} on {dname:<32} mIoU {r['miou']:.4f}{missed}")
            print(f"{'':>14}{r['per_class']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
