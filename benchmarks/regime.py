"""The paper's regime against the trainable preset: ablation folders side by side, with pretraining wall time.

Each folder is the ``--out`` of a ``faceinsight ablate ... --settings full`` run (docs/results.md, "The paper's regime
in miniature"); its cells' records are relabelled by folder, so the table, the one-std test and Welch's p are
``faceinsight ablate``'s own, between consecutive folders. ``--pretrain`` names the folders whose
``pretraining.json`` wall times the runs labelled by ``--loaded_by`` paid before training.

    .venv/bin/python benchmarks/regime.py trainable=runs/regime/trainable frozen=runs/regime/frozen_nocaption \
        frozen+caption=runs/regime/frozen --pretrain runs/pretrain/{clip,seg,lm}_celebamaskhq \
        --loaded_by frozen frozen+caption
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceinsight.tools.ablate import mean_std, summary_markdown


def records(label: str, folder: Path) -> list[dict]:
    found = sorted(folder.glob("*/seed*/record.json"))
    if not found:
        raise SystemExit(f"{folder}: no finished cells (*/seed*/record.json); run `faceinsight ablate --out {folder}`")
    return [{**json.loads(path.read_text()), "setting": label} for path in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=FOLDER", help="ablation output folders, in table order")
    parser.add_argument("--pretrain", nargs="*", default=[], type=Path, help="pretrained folders the regime loads")
    parser.add_argument("--loaded_by", nargs="*", default=[], metavar="LABEL", help="runs that load those folders")
    parser.add_argument("--json", type=Path, help="also write the records and pretraining times here")
    args = parser.parse_args()

    labelled = [spec.split("=", 1) for spec in args.runs]
    if any(len(pair) != 2 for pair in labelled):
        parser.error("each run is LABEL=FOLDER")
    rows = [r for label, folder in labelled for r in records(label, Path(folder))]
    labels = [label for label, _ in labelled]
    print(summary_markdown(rows, labels, "Regimes side by side", ordered=True))

    pretraining = {str(p): json.loads((p / "pretraining.json").read_text())["seconds"]["total"] for p in args.pretrain}
    total = sum(pretraining.values())
    if pretraining:
        print("pretraining: " + ", ".join(f"{p} {s:.0f} s" for p, s in pretraining.items()) + f"; {total:.0f} s in all")
    for label in labels:
        seconds = mean_std([r["seconds"] for r in rows if r["setting"] == label])
        print(f"{label}: training wall {seconds[0]:.0f} ± {seconds[1]:.0f} s per run", end="")
        print(f"; with pretraining {seconds[0] + total:.0f} s" if label in args.loaded_by else "")
    if args.json:
        args.json.write_text(json.dumps({"records": rows, "pretraining_seconds": pretraining}, indent=1, default=str))


if __name__ == "__main__":
    main()
