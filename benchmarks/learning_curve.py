"""Validation metric against training step for several runs, from their CSV logs, as one figure.

    .venv/bin/python benchmarks/learning_curve.py --metric val/utkface/gender/accuracy \\
        --out docs/figures/learning_curve_utkface.png \\
        "FaceInsight before=runs/x/answer_words/seed0" "FaceInsight after=runs/x/full/seed0" ...

Each run is ``label=folder``: the folder (or any folder below it) holds Lightning's ``metrics.csv``; the points are
the rows that logged ``--metric`` (``--trainer.val_check_interval N`` validates every N steps). ``--majority`` draws
the majority-class baseline as a line. The values are also printed as a table, one column per run.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def curve(folder: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every row of the run's ``metrics.csv`` that logged ``metric``."""
    files = sorted(folder.rglob("metrics.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics.csv below {folder}")
    with files[-1].open() as f:
        return [(int(r["step"]), float(r[metric])) for r in csv.DictReader(f) if r.get(metric)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="label=folder")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--majority", type=float, default=None)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.6, 4.0))
    table: dict[str, dict[int, float]] = {}
    for run in args.runs:
        label, _, folder = run.partition("=")
        points = curve(Path(folder), args.metric)
        table[label] = dict(points)
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label,
                linestyle="--" if "before" in label else "-")  # fmt: skip
    if args.majority is not None:
        ax.axhline(args.majority, color="grey", linewidth=1, linestyle=":", label="majority")
    ax.set_xlabel("training step")
    ax.set_ylabel(args.metric)
    ax.set_title(args.title or args.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: curves stay visible
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    steps = sorted({s for values in table.values() for s in values})
    print("| step | " + " | ".join(table) + " |")
    print("|---:|" + "---:|" * len(table))
    for s in steps:
        print(f"| {s} | " + " | ".join(f"{v[s]:.4f}" if s in v else "" for v in table.values()) + " |")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
