"""Images per second reading celebahq64 (64 px JPEG decode + label lookup) through a torch DataLoader.

Usage: python benchmarks/loader_speed.py [--root ../shared/data/celebahq64] [--workers 0 2] [--batches 100]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from faceinsight.data import load_dataset

DEFAULT_ROOT = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def images_per_second(root: Path, workers: int, batch_size: int, batches: int) -> float:
    """Throughput after one warm-up batch (worker start-up excluded)."""
    ds = load_dataset(root)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _, batch in zip(range(batches), it, strict=False):
        seen += batch["image"].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "celebahq64")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} is absent: point --root or FACEINSIGHT_DATA at the celebahq64 folder")
    start = time.perf_counter()
    n = len(load_dataset(args.root))
    print(f"index {n} rows in {time.perf_counter() - start:.2f} s")
    for workers in args.workers:
        rate = images_per_second(args.root, workers, args.batch_size, args.batches)
        print(f"workers={workers} batch={args.batch_size}: {rate:,.0f} images/s")


if __name__ == "__main__":
    main()
