"""Epoch time with and without the frozen-feature cache (docs/feature_cache.md), on both presets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/feature_cache.py [--presets synthface celebahq64] [--repeats 2]
                                                                    [--epochs 3] [--json out.json]

Each preset trains with the real ``faceinsight fit``, in this process, with E_i, E_s and the LLM frozen as the paper
trains them (the presets' arch-built encoders, frozen, cost what pretrained ones of their size would), ``--repeats``
times with the cache off and on, alternately (off, on, off, on, ...), so that machine noise falls on both. The first
cached run builds the entries in a fresh folder (the one-time build time: the ``seconds`` of each entry's
``meta.json``); the later ones find them. Epoch time runs from the start of a training epoch to its end (its training
and validation batches); set-up (opening the data, the cache build) is outside it. The first epoch of a run also pays
one-time start-up costs, so the table shows the later epochs' median.

An epoch is 16 training batches of 64 and 4 validation batches: SynthFace with 1,024 training and 256 validation
faces; celebahq64's full splits (their parsing maps are cached, a subset would parse its maps again) with
``samples_per_epoch 1024`` and ``limit_val_batches 4``, and without decoding every face up front
(``cache_samples false``): the cache build still encodes the whole training and validation splits.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

from faceinsight.cli import run

ROOT = Path(__file__).resolve().parents[1]
SYNTHFACE = ("[{kind: synthface, options: {num_train: 1024, num_val: 256, num_test: 64, seed: 0, size: 64, "
             "difficulty: 0.5, label_noise: 0.02}}]")  # fmt: skip
PRESETS: dict[str, list[str]] = {
    "synthface": ["-c", "configs/synthface.yaml", "--data.datasets", SYNTHFACE],
    "celebahq64": ["-c", "configs/celebahq64.yaml", "--data.cache_samples", "false",
                   "--data.samples_per_epoch", "1024", "--trainer.limit_val_batches", "4"],
}  # fmt: skip
FROZEN = ["--model.image_encoder.trainable", "false", "--model.seg_encoder.trainable", "false",
          "--model.llm.trainable", "false"]  # fmt: skip


class EpochTimes(L.Callback):
    """Seconds from the start of each training epoch to its end (validation included)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def fit(preset: str, cached: bool, folder: Path, epochs: int) -> dict[str, Any]:
    """One ``faceinsight fit`` writing only under ``folder``: its epoch times, wall time, and the cache entries used."""
    args = [
        "fit", *PRESETS[preset], *FROZEN, "--model.feature_cache", str(cached).lower(),
        "--model.feature_cache_dir", str(folder / "features"), "--trainer.default_root_dir", str(folder / "run"),
        "--trainer.max_epochs", str(epochs), "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks", json.dumps([f"{__name__}.EpochTimes"]),
        "--test_after_fit", "false",
    ]  # fmt: skip
    start = time.perf_counter()
    cli = run(args)
    wall = time.perf_counter() - start
    times = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimes)).seconds
    entries = [e for split in cli.model.feature_folders.values() for e in split]
    return {
        "epoch_seconds": statistics.median(times[1:] or times),
        "all_epoch_seconds": times,
        "wall_seconds": wall,
        "built": [e["path"] for e in entries if e["built"]],
        "entries": [e["path"] for e in entries],
    }


def entry_figures(paths: list[str]) -> dict[str, float]:
    """Build seconds and disk bytes of cache entries, and their bytes per face, from their ``meta.json``."""
    metas = [json.loads((Path(p) / "meta.json").read_text()) for p in paths]
    disk = sum(f.stat().st_size for p in paths for f in Path(p).iterdir())
    faces = sum(m["keys"]["count"] for m in metas)
    return {"build_seconds": sum(m["seconds"] for m in metas), "disk_bytes": disk, "faces": faces,
            "bytes_per_face": disk / faces}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=sorted(PRESETS))
    parser.add_argument("--repeats", type=int, default=2, help="runs with the cache off, and on, per preset")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # the runs' arguments are LightningCLI's alone
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    results: dict[str, dict[str, Any]] = {}
    for preset in args.presets:
        (ROOT / ".cache").mkdir(exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="feature_cache_", dir=ROOT / ".cache"))
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        try:
            for _ in range(args.repeats):
                for cached in (False, True):
                    runs[cached].append(fit(preset, cached, folder, args.epochs))
            built = [p for r in runs[True] for p in r["built"]]
            off = [r["epoch_seconds"] for r in runs[False]]
            on = [r["epoch_seconds"] for r in runs[True]]
            results[preset] = {
                "epoch_seconds_off": off,
                "epoch_seconds_on": on,
                "speedup": statistics.median(off) / statistics.median(on),
                "wall_seconds_off": [r["wall_seconds"] for r in runs[False]],
                "wall_seconds_on": [r["wall_seconds"] for r in runs[True]],
                **entry_figures(built),
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'preset':<12}{'epoch, off (s)':>16}{'epoch, cached (s)':>19}{'speed-up':>10}{'build (s)':>11}"
          f"{'faces':>8}{'MB/1k faces':>13}")  # fmt: skip
    for preset, r in results.items():
        off = " ".join(f"{s:.1f}" for s in r["epoch_seconds_off"])
        on = " ".join(f"{s:.1f}" for s in r["epoch_seconds_on"])
        print(f"{preset:<12}{off:>16}{on:>19}{r['speedup']:>9.2f}x{r['build_seconds']:>11.1f}{r['faces']:>8}"
              f"{r['bytes_per_face'] / 1e3:>13.1f}")  # fmt: skip
    print(f"({args.repeats} runs each, alternated, {args.epochs} epochs of 16 training + 4 validation batches of 64; "
          "speed-up of the medians; build: encoding the training and validation splits once)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, **vars(args)}, indent=1))


if __name__ == "__main__":
    main()
