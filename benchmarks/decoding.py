"""Threshold vs consistent decoding of one trained checkpoint on the test split.

    .venv/bin/python benchmarks/decoding.py runs/synthface/version_0/checkpoints/last.ckpt
    .venv/bin/python benchmarks/decoding.py <ckpt> -c configs/celebahq64.yaml

Runs ``faceinsight test --model.decoding {threshold,consistent}`` and prints every metric side by side:
consistent decoding satisfies every hard rule by construction; the table shows what it costs or gains.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("-c", "--config", default="configs/synthface.yaml")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for decoding in ("threshold", "consistent"):
        path = out / f"decoding_{decoding}.json"
        command = [str(ROOT / ".venv/bin/faceinsight"), "test", "-c", args.config, "--ckpt_path", args.checkpoint,
                   "--model.decoding", decoding, "--model.metrics_file", str(path), "--trainer.logger", "false",
                   "--trainer.enable_progress_bar", "false"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        reports[decoding] = json.loads(path.read_text())["model"]
    for dataset, threshold in reports["threshold"].items():
        consistent = reports["consistent"][dataset]
        print(f"\n{dataset}: {'metric':<24}{'threshold':>12}{'consistent':>12}")
        for key, value in threshold.items():
            print(f"{'':<{len(dataset) + 2}}{key:<24}{value:>12.4f}{consistent[key]:>12.4f}")


if __name__ == "__main__":
    main()
