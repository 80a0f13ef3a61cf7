"""Finished runs side by side, and where their mAP differs: per characteristic, the AP of each against the first.

    .venv/bin/python benchmarks/compare_runs.py "specialist=runs/c17/specialist" \
        "FaceInsight=runs/r18i/resnet18_ei" [--top 10] [--probe "probe on FaceInsight's E_i=probe.json"]

Each ``label=folder`` names a setting's folder of ``benchmarks/train_eval.py`` (or ``faceinsight ablate``): its
``seed*/record.json`` files (or the folder's own) are read, nothing is run. Printed: the summary table of those
tools (mean ± sample std over seeds, wall time, the majority), then per dataset the characteristics whose mean AP
differs most between the first setting and each other one, with each difference's share of the mAP difference
(AP difference / number of characteristics). ``--probe label=file`` adds the per-characteristic AP of
``benchmarks/frozen_probe.py --json file`` (its ``trained`` encoder) as a column: what the backbone holds, next to
what the run's head reads (docs/learning.md, "What is left after the initial scale").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from faceinsight.tools.ablate import mean_std, summary_markdown


def records(label: str, folder: Path) -> list[dict[str, Any]]:
    """The ``record.json`` of every seed under ``folder``, relabelled ``label``."""
    paths = sorted(folder.glob("*/record.json")) or sorted(folder.glob("record.json"))
    if not paths:
        raise SystemExit(f"{folder}: no record.json in it or in its sub-folders (is the run finished?)")
    return [{**json.loads(p.read_text()), "setting": label} for p in paths]


def mean_ap(runs: list[dict[str, Any]], dataset: str) -> dict[str, float]:
    """Per characteristic, the mean AP over ``runs``."""
    names = runs[0]["per_characteristic"].get(dataset, {})
    return {n: mean_std([r["per_characteristic"][dataset][n]["ap"] for r in runs])[0] for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="label=folder, the first is the reference")
    parser.add_argument("--top", type=int, default=10, help="characteristics shown each way")
    parser.add_argument("--probe", action="append", default=[], help="label=frozen_probe.py --json file")
    args = parser.parse_args()

    settings = [spec.split("=", 1) for spec in args.runs]
    groups = {label: records(label, Path(folder)) for label, folder in settings}
    everything = [r for runs in groups.values() for r in runs]
    print(summary_markdown(everything, list(groups), "Runs compared", ordered=False))
    probes = {}
    for spec in args.probe:
        label, path = spec.split("=", 1)
        probes[label] = json.loads(Path(path).read_text())
    (reference, first), *others = groups.items()
    for dataset in first[0]["per_characteristic"]:
        base = mean_ap(first, dataset)
        columns = {label: mean_ap(runs, dataset) for label, runs in others}
        columns |= {
            label: {n: v["ap"] for n, v in report[dataset]["per_characteristic"]["trained"].items()}
            for label, report in probes.items()
        }
        for label, _ in others:
            diff = {n: columns[label][n] - base[n] for n in base}
            ranked = sorted(diff, key=diff.get)
            # the most negative and the most positive, each once
            shown = ranked[: args.top] + ranked[max(args.top, len(ranked) - args.top) :]
            print(f"\n## {dataset}: AP of {label} minus {reference}, mean over seeds "
                  f"(mAP difference {sum(diff.values()) / len(diff):+.4f})\n")  # fmt: skip
            header = ["characteristic", reference, *columns, "difference", "share of the mAP difference"]
            print("| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1))
            for n in shown:
                values = [base[n], *(c[n] for c in columns.values())]
                cells = [f"{v:.3f}" for v in values] + [f"{diff[n]:+.3f}", f"{diff[n] / len(diff):+.4f}"]
                print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
