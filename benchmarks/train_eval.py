"""Wall time and test metrics of training runs, next to the majority-class baseline.

    .venv/bin/python benchmarks/train_eval.py                                  # the main job (synthface.yaml)
    .venv/bin/python benchmarks/train_eval.py --variants no_seg no_correlation no_logic   # ablations
    .venv/bin/python benchmarks/train_eval.py --variants semantic product goedel lukasiewicz
    .venv/bin/python benchmarks/train_eval.py -c configs/celebahq64.yaml -- --trainer.max_epochs 2

Each run is the real command, ``faceinsight fit -c <config> [overrides]``, in a subprocess;
the figures come from the ``test_metrics.json`` it writes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Named variants: CLI overrides on top of the config.
VARIANTS: dict[str, list[str]] = {
    "full": [],
    **{f"no_{m}": [f"--model.use_{m}", "false"] for m in ("seg", "correlation", "logic")},
    **{s: ["--model.logic_semantics", s] for s in ("paper", "semantic", "product", "goedel", "lukasiewicz")},
}
SHOWN = ("attributes/accuracy", "attributes/f1", "attributes/mAP", "age/accuracy", "age/mae", "gender/accuracy",
         "expression/accuracy", "consistency")  # fmt: skip


def run(config: str, name: str, overrides: list[str], out_dir: Path) -> dict:
    metrics = out_dir / f"{name}.json"
    command = [str(ROOT / ".venv/bin/faceinsight"), "fit", "-c", config, *overrides,
               "--trainer.enable_progress_bar", "false", "--model.metrics_file", str(metrics)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return {"name": name, "seconds": seconds, "command": " ".join(command[1:]), **json.loads(metrics.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/synthface.yaml")
    parser.add_argument("--variants", nargs="+", default=["full"], choices=sorted(VARIANTS), help="runs to make")
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides (after --)")
    args = parser.parse_args()
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [run(args.config, name, args.overrides + VARIANTS[name], out_dir) for name in args.variants]

    first = results[0]
    for dataset, baseline in first["majority_baseline"].items():
        print(f"\n{dataset} ({args.config})")
        print(f"{'metric':<22}" + "".join(f"{r['name']:>14}" for r in results) + f"{'majority':>14}")
        for key in SHOWN:
            if key in baseline:
                row = "".join(f"{r['model'][dataset].get(key, float('nan')):>14.4f}" for r in results)
                print(f"{key:<22}{row}{baseline[key]:>14.4f}")
    print("\nwall time: " + ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in results))
    (out_dir / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"details: {out_dir / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
