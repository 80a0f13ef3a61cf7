"""Time to build (and to reuse) the parsing-map cache of a dataset, and the parser's face-detection rate.

    python benchmarks/segmap_cache.py [--root ../shared/data/celebahq64] [--source landmarks | unet:<ckpt>]
                                      [--limit N] [--size 64] [--cache-dir DIR]

Without ``--cache-dir`` the cache is built in a fresh temporary folder, so the build is always measured.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from faceinsight.data import load_dataset
from faceinsight.data.segmentation import NUM_CLASSES, SegmapCache, SegSource, make_source
from faceinsight.data.segmentation.base import CLASSES
from faceinsight.data.segmentation.unet import FirstN

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celebahq64"


def parse_source(spec: str) -> SegSource:
    """``landmarks`` or ``unet:<checkpoint>``."""
    if spec == "landmarks":
        return make_source("landmarks")
    kind, _, checkpoint = spec.partition(":")
    if kind != "unet" or not checkpoint:
        raise SystemExit(f"--source must be landmarks or unet:<checkpoint>, got {spec!r}")
    return make_source("unet", checkpoint=checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--source", default="landmarks")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.root.is_dir():
        raise SystemExit(f"dataset folder {args.root} not found (set --root)")

    dataset = load_dataset(args.root, kind="celebamaskhq", split="all")
    if args.limit:
        dataset = FirstN(dataset, args.limit)
    source = parse_source(args.source)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SegmapCache(args.cache_dir or tmp)
        start = time.perf_counter()
        maps = cache.get(dataset, source, args.size, batch_size=args.batch_size, num_workers=args.num_workers)
        build = time.perf_counter() - start
        start = time.perf_counter()
        cache.get(dataset, source, args.size)
        reuse = time.perf_counter() - start
        n = len(dataset)
        print(f"dataset {dataset.name} ({args.root}), {n} images, {args.size} px, source {source.name}")
        print(f"build: {build:.1f} s ({1000 * build / max(cache.built, 1):.1f} ms/image, computed {cache.built} maps)")
        print(f"reuse: {reuse:.2f} s (keys hashed, file mapped)")
        if hasattr(source, "faces_missed"):
            missed = source.faces_missed
            print(f"faces found: {n - missed}/{n} ({100 * (n - missed) / n:.2f}%)")
        empty = int((np.asarray(maps).reshape(n, -1).max(1) == 0).sum())
        print(f"all-background maps: {empty}")
        freq = np.bincount(np.asarray(maps).ravel(), minlength=NUM_CLASSES) / maps.size
        print("class pixel share: " + ", ".join(f"{CLASSES[c]} {100 * f:.1f}%" for c, f in enumerate(freq) if f > 0))


if __name__ == "__main__":
    main()
