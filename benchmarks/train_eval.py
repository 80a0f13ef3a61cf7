"""Wall time, validation score and test metrics of named training runs, next to the majority-class baseline.

    .venv/bin/python benchmarks/train_eval.py                                  # the main job (synthface.yaml)
    .venv/bin/python benchmarks/train_eval.py --variants no_seg no_correlation no_logic   # one module off each
    .venv/bin/python benchmarks/train_eval.py --variants semantic product goedel lukasiewicz
    .venv/bin/python benchmarks/train_eval.py -c configs/celebahq64.yaml -- --trainer.max_epochs 2
    .venv/bin/python benchmarks/train_eval.py --sweep model.lr=1e-3,2e-3 model.logic_weight=1,4 --jobs 2
    .venv/bin/python benchmarks/train_eval.py -c configs/celebahq64.yaml --variants full resnet18_ei specialist \
        --seeds 3 --jobs 2 -- --trainer.max_time 00:00:08:00      # the specialist side by side, equal wall clock

The runs are ``faceinsight ablate``'s cells (``faceinsight.tools.ablate.run_cells``: the real ``faceinsight fit``
in a subprocess, its own folder, skipped when already done); this script adds named variants beside the paper's
four settings and prints every run's figures. ``--sweep`` adds the cartesian product of the given values;
choose among them by the ``val`` column (the checkpoint-selection metric on the validation split), never by
test figures. ``--jobs N`` runs N at a time with the cores split between them; ``--seeds N`` runs seeds
0..N-1 of every variant and prints mean +- sample standard deviation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faceinsight.tools.ablate import SHOWN, Cell, run_cells, slug, summary_markdown, sweep_points

ROOT = Path(__file__).resolve().parents[1]
NO_IMAGE_HEAD = ["--model.image_head_weight", "0"]
# Named variants: CLI overrides on top of the config.
VARIANTS: dict[str, list[str]] = {
    "full": [],
    **{f"no_{m}": [f"--model.use_{m}", "false"] for m in ("seg", "correlation", "logic")},
    **{s: ["--model.logic_semantics", s] for s in ("paper", "semantic", "product", "goedel", "lukasiewicz")},
    "mean_bce": ["--model.bce_reduction", "mean"],  # the reduction used before eq. 3 was followed
    # The specialist ("Beyond Specialization") and FaceInsight on its backbone: overlays composed on the preset.
    "specialist": ["-c", "configs/specialist.yaml"],
    "resnet18_ei": ["-c", "configs/specialist_backbone.yaml"],
    # Issue 17 (docs/learning.md): the old sampler, and the head's departures from the paper.
    "replacement_draws": ["--data.draws", "replacement"],
    "per_characteristic": ["--model.readout", "per_characteristic"],
    "answer_words": ["--model.readout", "answer_words"],  # eq. 2, where the preset departs from it
    "resnet18_ei_zero_start": ["-c", "configs/specialist_backbone.yaml", "--model.readout_start", "zero"],
    "zero_start": ["--model.readout_start", "zero"],
    "resnet18_ei_random_start": ["-c", "configs/specialist_backbone.yaml", "--model.readout_start", "random"],
    "random_start": ["--model.readout_start", "random"],
    "resnet18_ei_answer_words": ["-c", "configs/specialist_backbone.yaml", "--model.readout", "answer_words"],
    # eq. 2's head, the old sampler and no image head: the preset when issue 17 was filed
    "before_issue17": ["--model.readout", "answer_words", "--data.draws", "replacement", *NO_IMAGE_HEAD],
    "no_image_head": NO_IMAGE_HEAD,  # the paper's E_i training, where a preset adds the head
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/synthface.yaml")
    parser.add_argument("--variants", nargs="+", default=[], choices=sorted(VARIANTS), help="named runs to make")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="KEY=V1,V2", help="cartesian product of overrides")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of each variant (default 1: seed 0)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (cores are split between them)")
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides (after --)")
    args = parser.parse_args()
    out_dir = ROOT / args.out
    variants = {name: VARIANTS[name] for name in args.variants}
    for point in sweep_points(args.sweep) if args.sweep else []:
        name = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())
        variants[name] = [a for k, v in point.items() for a in (f"--{k}", v)]
    variants = variants or {"full": []}
    cells = [Cell(name, seed, extra, out_dir / slug(name) / f"seed{seed}")
             for name, extra in variants.items() for seed in range(args.seeds)]  # fmt: skip
    records, failures = run_cells(cells, [args.config], args.overrides, args.jobs, ROOT)
    (out_dir / "summary.json").write_text(json.dumps(records, indent=2))
    if not records:
        raise SystemExit("\n".join(failures))
    first = records[0]
    names = [f"{r['setting']} s{r['seed']}" for r in records]
    width = max(14, *(len(n) + 2 for n in names))
    for dataset, baseline in first["majority_baseline"].items():
        print(f"\n{dataset} ({args.config}); val = {first['monitor']} of the selected checkpoint")
        print(f"{'metric':<22}" + "".join(f"{n:>{width}}" for n in names) + f"{'majority':>14}")
        print(f"{'val':<22}" + "".join(f"{r['val']:>{width}.4f}" for r in records))
        for key in SHOWN:
            if key in baseline:
                row = "".join(f"{r['model'][dataset].get(key, float('nan')):>{width}.4f}" for r in records)
                print(f"{key:<22}{row}{baseline[key]:>14.4f}")
    if args.seeds > 1:
        print("\n" + summary_markdown(records, list(variants), f"{args.config}, {args.seeds} seeds", ordered=False))
    print("\nwall time: " + ", ".join(f"{n} {r['seconds']:.0f} s" for n, r in zip(names, records, strict=True)))
    print(f"details: {out_dir / 'summary.json'}", file=sys.stderr)
    if failures:
        raise SystemExit("\n".join(failures))


if __name__ == "__main__":
    main()
