"""Rows loaded, rows skipped and index time of UTKFace with the loader's defaults (the real release's quirks).

Usage: python benchmarks/utkface_index.py [--root ../shared/data/utkface] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from faceinsight.data import load_dataset

DEFAULT_ROOT = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "utkface")
    parser.add_argument("--repeats", type=int, default=3, help="index runs per split; the fastest is reported")
    args = parser.parse_args()
    print("| split | rows loaded | rows skipped | index time (s) |\n|---|---:|---:|---:|")
    for split in ("all", "train"):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ds = load_dataset(args.root, kind="utkface", split=split)
            times.append(time.perf_counter() - start)
        skipped = len(ds.skipped_quirks)  # type: ignore[attr-defined]
        print(f"| {split} | {len(ds)} | {skipped} | {min(times):.3f} |")


if __name__ == "__main__":
    main()
