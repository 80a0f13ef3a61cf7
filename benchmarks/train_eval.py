"""Wall time, validation score and test metrics of training runs, next to the majority-class baseline.

    .venv/bin/python benchmarks/train_eval.py                                  # the main job (synthface.yaml)
    .venv/bin/python benchmarks/train_eval.py --variants no_seg no_correlation no_logic   # ablations
    .venv/bin/python benchmarks/train_eval.py --variants semantic product goedel lukasiewicz
    .venv/bin/python benchmarks/train_eval.py -c configs/celebahq64.yaml -- --trainer.max_epochs 2
    .venv/bin/python benchmarks/train_eval.py --sweep model.lr=1e-3,2e-3 model.logic_weight=1,4 --jobs 2
    .venv/bin/python benchmarks/train_eval.py -c configs/celebahq64.yaml --variants full resnet18_ei specialist \
        --seeds 3 --jobs 2 -- --trainer.max_time 00:00:08:00      # the specialist side by side, equal wall clock

Each run is the real command, ``faceinsight fit -c <config> [overrides]``, in a subprocess with its own
log folder; the figures come from the ``test_metrics.json`` it writes. ``--sweep`` runs the cartesian
product of the given values; choose among its runs by the ``val`` column (the checkpoint-selection metric
on the validation split), never by test figures. ``--jobs N`` runs N at a time with the machine's threads
split between them. ``--seeds N`` runs every variant with seeds 0..N-1 and prints mean +- standard deviation
(sample std, ddof 1) per variant.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Named variants: CLI overrides on top of the config.
VARIANTS: dict[str, list[str]] = {
    "full": [],
    **{f"no_{m}": [f"--model.use_{m}", "false"] for m in ("seg", "correlation", "logic")},
    **{s: ["--model.logic_semantics", s] for s in ("paper", "semantic", "product", "goedel", "lukasiewicz")},
    "mean_bce": ["--model.bce_reduction", "mean"],  # the reduction used before eq. 3 was followed
    # The specialist ("Beyond Specialization") and FaceInsight on its backbone: overlays composed on the preset.
    "specialist": ["-c", "configs/specialist.yaml"],
    "resnet18_ei": ["-c", "configs/specialist_backbone.yaml"],
}
SHOWN = ("attributes/accuracy", "attributes/f1", "attributes/mAP", "age/accuracy", "age/mae", "gender/accuracy",
         "expression/accuracy", "consistency")  # fmt: skip


def sweep_variants(specs: list[str]) -> dict[str, list[str]]:
    """``["model.lr=1e-3,2e-3", "model.logic_weight=1,4"]`` -> one named variant per combination."""
    if not specs:
        return {}
    axes = []
    for spec in specs:
        key, _, values = spec.partition("=")
        if not values:
            raise SystemExit(f"--sweep takes key=v1,v2,...; got {spec!r}")
        axes.append([(key, v) for v in values.split(",")])
    return {
        " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo): [a for k, v in combo for a in (f"--{k}", v)]
        for combo in itertools.product(*axes)
    }


def run(config: str, name: str, overrides: list[str], out_dir: Path, threads: int) -> dict:
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    metrics, logs = out_dir / f"{slug}.json", out_dir / slug
    command = [str(ROOT / ".venv/bin/faceinsight"), "fit", "-c", config, *overrides,
               "--trainer.enable_progress_bar", "false", "--model.metrics_file", str(metrics),
               "--trainer.default_root_dir", str(logs), "--trainer.logger.init_args.save_dir", str(logs)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    seconds = time.perf_counter() - start
    report = json.loads(metrics.read_text())
    selection = (report.get("run") or {}).get("selection") or {}
    return {"name": name, "seconds": seconds, "threads": threads, "command": " ".join(command[1:]),
            "val": selection.get("best", float("nan")), "monitor": selection.get("monitor"), **report}  # fmt: skip


def print_seed_summary(results: list[dict], config: str) -> None:
    """Mean +- std over seeds of each variant (runs named ``<variant> seed=<s>``), per dataset and metric."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["name"].rsplit(" seed=", 1)[0], []).append(r)
    width = max(22, *(len(n) + 4 for n in groups))
    for dataset in results[0]["majority_baseline"]:
        print(f"\n{dataset} ({config}): mean +- std over seeds (n per variant: "
              + ", ".join(f"{n} {len(g)}" for n, g in groups.items()) + ")")  # fmt: skip
        print(f"{'metric':<22}" + "".join(f"{name:>{width}}" for name in groups))
        for key in ("val", "seconds", *(k for k in SHOWN if k in results[0]["model"][dataset])):
            cells = []
            for runs in groups.values():
                values = [r["val"] if key == "val" else r["seconds"] if key == "seconds" else
                          r["model"][dataset].get(key, math.nan) for r in runs]  # fmt: skip
                if any(math.isnan(v) for v in values):  # e.g. no validation split: no selection score
                    cells.append("n/a")
                    continue
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                cells.append(f"{statistics.mean(values):.4f} +- {std:.4f}")
            print(f"{key:<22}" + "".join(f"{c:>{width}}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/synthface.yaml")
    parser.add_argument("--variants", nargs="+", default=[], choices=sorted(VARIANTS), help="named runs to make")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="KEY=V1,V2", help="cartesian product of overrides")
    parser.add_argument("--seeds", type=int, default=0, help="run each variant with seeds 0..N-1; report mean +- std")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (threads are split between them)")
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides (after --)")
    args = parser.parse_args()
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = {name: VARIANTS[name] for name in args.variants} | sweep_variants(args.sweep)
    variants = variants or {"full": []}
    if args.seeds:
        variants = {f"{name} seed={seed}": [*extra, "--seed_everything", str(seed)]
                    for name, extra in variants.items() for seed in range(args.seeds)}  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run, args.config, name, args.overrides + extra, out_dir, threads)
                for name, extra in variants.items()]  # fmt: skip
        results = [j.result() for j in jobs]

    (out_dir / "summary.json").write_text(json.dumps(results, indent=2))
    first = results[0]
    width = max(14, *(len(r["name"]) + 2 for r in results))
    for dataset, baseline in first["majority_baseline"].items():
        print(f"\n{dataset} ({args.config}); val = {first['monitor']} of the selected checkpoint")
        print(f"{'metric':<22}" + "".join(f"{r['name']:>{width}}" for r in results) + f"{'majority':>14}")
        print(f"{'val':<22}" + "".join(f"{r['val']:>{width}.4f}" for r in results))
        for key in SHOWN:
            if key in baseline:
                row = "".join(f"{r['model'][dataset].get(key, float('nan')):>{width}.4f}" for r in results)
                print(f"{key:<22}{row}{baseline[key]:>14.4f}")
    if args.seeds:
        print_seed_summary(results, args.config)
    print(f"\nwall time ({args.jobs} at a time, {threads} threads each): "
          + ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in results))  # fmt: skip
    print(f"details: {out_dir / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
