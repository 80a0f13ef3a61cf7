"""The paper's per-task tables on real faces: one model trained on three datasets at once against the specialist on
the same mix and against one FaceInsight per dataset (issue 18).

    PYTHONPATH=. .venv/bin/python benchmarks/joint_tables.py --seeds 3 --jobs 2 --out runs/joint_tables

Models (each a real ``faceinsight fit`` in a subprocess, ``faceinsight.tools.ablate.run_cells``):
  joint             ``configs/joint_real.yaml``: celebahq64 + UTKFace + ExpW, one FaceInsight
  joint specialist  the same mix, ``configs/specialist.yaml`` (a ResNet-18 with a linear head)
  single            ``configs/celebahq64.yaml``, ``utkface.yaml``, ``expw.yaml``, one model each
The single-dataset models run for as many epochs as the joint run makes passes over their training split (its
``weight`` under ``mix: size``, one pass over CelebA-HQ), so every task sees the same faces equally often in both.
The tables are the paper's: Table 1 (attributes), Tables 2-3 (age, gender, race), Table 5 (expression), mean +-
sample std over the seeds, with the majority baseline (and chance for expression). Each task's "does joint help"
line is the joint model minus the single-dataset model, with Welch's p-value.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from faceinsight.tools.ablate import Cell, mean_std, run_cells, slug, step_test

ROOT = Path(__file__).resolve().parents[1]
JOINT = "configs/joint_real.yaml"
SINGLE = {"celebamaskhq": "configs/celebahq64.yaml", "utkface": "configs/utkface.yaml", "expw": "configs/expw.yaml"}
# (table title, dataset, task, extra metrics besides accuracy, recall, F1, precision)
TABLES = [
    ("Table 1: attributes (CelebA-HQ, 40 attributes)", "celebamaskhq", "attributes", ["mAP"]),
    ("Table 2: age (UTKFace, 9 bins)", "utkface", "age", ["mae", "cs@5"]),
    ("Table 3: gender (UTKFace)", "utkface", "gender", []),
    ("Table 3: race (UTKFace)", "utkface", "race", []),
    ("Table 5: expression (ExpW, 7 classes, photo-disjoint split)", "expw", "expression", []),
]
COLUMNS = ["accuracy", "recall", "f1", "precision"]
HEADLINE = {"attributes": "mAP", "age": "mae", "gender": "accuracy", "race": "accuracy", "expression": "accuracy"}
CHANCE = {"expression": 1 / 7}


def single_epochs() -> dict[str, int]:
    """Epochs of each single-dataset model: the joint run's passes over that dataset (its weight under mix: size)."""
    preset = yaml.safe_load((ROOT / JOINT).read_text())
    if preset["data"].get("mix") != "size":
        raise SystemExit(f"{JOINT}: the weights count passes only under data.mix: size")
    epochs = {d["kind"]: d.get("weight", 1) for d in preset["data"]["datasets"]}
    if any(w != int(w) or w < 1 for w in epochs.values()):
        raise SystemExit(f"{JOINT}: each weight must be a whole number of passes (>= 1), got {epochs}")
    return {kind: int(w) for kind, w in epochs.items()}


def cells(seeds: int, out: Path, extra: list[str]) -> list[Cell]:
    """Every model at seeds ``0..seeds-1``, seed by seed; ``extra`` overrides come after each model's presets."""
    models: dict[str, list[str]] = {
        "joint": ["-c", JOINT],
        "joint specialist": ["-c", JOINT, "-c", "configs/specialist.yaml"],
    }
    for kind, epochs in single_epochs().items():
        models[f"single {kind}"] = ["-c", SINGLE[kind], "--trainer.max_epochs", str(epochs)]
    return [Cell(name, seed, overrides + extra, out / slug(name) / f"seed{seed}")
            for seed in range(seeds) for name, overrides in models.items()]  # fmt: skip


def cell_text(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}"


def tables(records: list[dict]) -> str:
    """The markdown tables, the joint-vs-single verdicts and the wall times."""
    lines = []
    for title, dataset, task, extra in TABLES:
        metrics = COLUMNS + extra
        lines += [f"\n### {title}\n", "| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        groups = {
            name: [r for r in records if r["setting"] == name]
            for name in ("joint", "joint specialist", f"single {dataset}")
        }
        for name, group in groups.items():
            values = {m: [r["model"][dataset][f"{task}/{m}"] for r in group if dataset in r["model"]] for m in metrics}
            label = "single-dataset" if name.startswith("single") else name
            lines.append(
                f"| {label} ({len(group)} seeds) | " + " | ".join(cell_text(values[m]) for m in metrics) + " |"
            )
        base = next((r["majority_baseline"][dataset] for r in records if dataset in r["majority_baseline"]), {})
        lines.append(
            "| majority class | " + " | ".join(f"{base.get(f'{task}/{m}', float('nan')):.4f}" for m in metrics) + " |"
        )
        if task in CHANCE:
            lines.append(f"| chance | {CHANCE[task]:.4f} |" + " |" * (len(metrics) - 1))
        key = HEADLINE[task]
        joint = [r["model"][dataset][f"{task}/{key}"] for r in groups["joint"]]
        single = [r["model"][dataset][f"{task}/{key}"] for r in groups[f"single {dataset}"]]
        if joint and single:
            test = step_test(single, joint, lower_is_better=key == "mae")
            verdict = "helps" if test["delta"] > 0 else "hurts" if test["delta"] < 0 else "neither helps nor hurts"
            clear = abs(test["delta"]) > test["sd"]  # False when the std is NaN (one seed)
            lines.append(f"\nJoint minus single on {task} {key}: {test['delta']:+.4f} (better is positive; larger std "
                         f"{test['sd']:.4f}, Welch p = {test['p']:.2f}): training together {verdict} by this figure"
                         f"{'' if clear else ', within one std (or one seed)'}.")  # fmt: skip
    seconds = {
        name: [r["seconds"] for r in records if r["setting"] == name]
        for name in dict.fromkeys(r["setting"] for r in records)
    }
    lines.append("\nWall time per run (s, mean over seeds, the runs sharing the machine's cores): "
                 + ", ".join(f"{n} {mean_std(v)[0]:.0f}" for n, v in seconds.items()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (cores are split between them)")
    parser.add_argument("--out", default="runs/joint_tables")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides for every run (after --)")
    args = parser.parse_args()
    out = ROOT / args.out
    records, failures = run_cells(cells(args.seeds, out, args.overrides), [], [], args.jobs, ROOT)
    (out / "summary.json").write_text(json.dumps(records, indent=1))
    text = tables(records)
    (out / "tables.md").write_text(text + "\n")
    print(text)
    if failures:
        raise SystemExit("\n".join(failures))


if __name__ == "__main__":
    main()
