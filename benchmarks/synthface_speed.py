"""Images/s of SynthFace at 64 px on one core (image + parsing map), the issue's target being >= 500.

Usage: python benchmarks/synthface_speed.py [--n 2000] [--size 64] [--difficulty 0.5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy/torch load their thread pools

import argparse
import time

import torch

from faceinsight.data.synthface import SynthFace, SynthFaceConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--difficulty", type=float, default=0.5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    dataset = SynthFace(args.n, seed=0, config=SynthFaceConfig(size=args.size, difficulty=args.difficulty))
    build = time.perf_counter() - start
    dataset[0]  # warm-up
    start = time.perf_counter()
    for i in range(args.n):
        sample = dataset[i]
        assert sample["segmap"].shape == (args.size, args.size)
    elapsed = time.perf_counter() - start
    print(f"labels for {args.n} samples: {build * 1000:.1f} ms")
    print(f"{args.n / elapsed:.0f} images/s at {args.size}px, difficulty {args.difficulty}, 1 thread (image + segmap)")


if __name__ == "__main__":
    main()
