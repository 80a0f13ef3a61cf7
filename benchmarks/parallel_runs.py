"""Independent training runs: one at a time with every core, or several at once with the cores split?

    .venv/bin/python benchmarks/parallel_runs.py                    # 4 small SynthFace runs, --jobs 1 vs 2
    .venv/bin/python benchmarks/parallel_runs.py --runs 4 --num-train 3200 --epochs 2

Runs ``faceinsight ablate`` (the real command) on the same cells twice, in fresh output folders: with
``--jobs 1`` (each run gets all cores as threads) and with ``--jobs N`` (N runs at once, cores split), and
prints the wall time of each and their ratio. ``faceinsight ablate``'s default ``--jobs`` follows from this.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4, help="runs per arm (seeds 0..runs-1 of the full model)")
    parser.add_argument("--num-train", type=int, default=1920)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="runs at once in arm 2")
    parser.add_argument("--out", default="runs/benchmarks/parallel_runs")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    data = f"[{{kind: synthface, options: {{num_train: {args.num_train}, num_val: 320, num_test: 320, size: 64}}}}]"
    results = {}
    for jobs in (1, args.jobs):
        out = ROOT / args.out / f"jobs{jobs}"
        shutil.rmtree(out, ignore_errors=True)
        command = [str(Path(sys.executable).with_name("faceinsight")), "ablate", "-c", "configs/synthface.yaml",
                   "--settings", "full", "--seeds", str(args.runs), "--jobs", str(jobs), "--out", str(out), "--",
                   "--data.datasets", data, "--trainer.max_epochs", str(args.epochs)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        results[jobs] = time.perf_counter() - start
        print(f"--jobs {jobs}: {results[jobs]:.0f} s for {args.runs} runs", flush=True)
    one, many = results[1], results[args.jobs]
    print(f"{args.jobs} at a time is {one / many:.2f}x the throughput of one at a time "
          f"({os.cpu_count()} cores, {args.runs} runs of {args.num_train} faces x {args.epochs} epochs)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": results, "speedup": one / many, **vars(args)}, indent=1))


if __name__ == "__main__":
    main()
