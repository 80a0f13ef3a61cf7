"""Runs averaged: each checkpoint's test figures, then those of every pair's (and all the runs') mean logits.

    .venv/bin/python benchmarks/average_runs.py -c configs/celebahq64.yaml -c configs/specialist.yaml \
        --ckpt_path <run 0>/last.ckpt --ckpt_path <run 1>/last.ckpt [--ckpt_path ...] [--split test] [--json out.json]

An ensemble of whole runs, each trained alone, is what a single model's ensemble inside one run (e.g. FaceInsight's
``--model.image_head_in_answers``, docs/learning.md, section 13) should be set beside when compute is not equal: two
runs cost twice one. Every checkpoint is built from the same configs (so the same model class and data), its logits
on ``--split`` are taken in evaluation mode, and averaging logits is the geometric mean of the odds. Scored with no
rules, thresholded at 0.5, as the diagnostics score probes (:func:`faceinsight.eval.metrics.score_probabilities`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch
from torch import Tensor

from faceinsight.cli import build
from faceinsight.eval.collect import collect
from faceinsight.eval.metrics import score_probabilities

SHOWN = ("attributes/accuracy", "attributes/f1", "attributes/mAP", "gender/accuracy", "age/mae", "age/cs@5")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True)
    parser.add_argument("--ckpt_path", action="append", required=True, help="two or more runs' checkpoints")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--json", help="write every figure here")
    args, rest = parser.parse_known_args(argv)
    if len(args.ckpt_path) < 2:
        parser.error("name two or more --ckpt_path to average")
    rest = [a for a in rest if a != "--"]
    cli = build([w for c in args.config for w in ("-c", c)] + ["--data.num_workers", "0"] + rest)
    module, data = cli.model, cli.datamodule
    data.setup("fit")  # the training split's statistics, as a checkpoint's own run had them
    data.setup("test")
    module.eval()
    logits: dict[str, list[Tensor]] = {}
    faces: list[dict[str, Tensor]] = []
    for i, path in enumerate(args.ckpt_path):
        module.load_weights(path)
        for dataset, view in zip(data.dataset_names, data.views(args.split), strict=True):
            run = collect(view, lambda batch: {"logits": module.logits(batch)}, f"run {i}, {dataset} {args.split}")
            logits.setdefault(dataset, []).append(run.pop("logits"))
            if i == 0:
                faces.append(run)
    report: dict[str, object] = {"checkpoints": args.ckpt_path, "split": args.split}
    names = module.model.characteristics
    for (dataset, runs), view, f in zip(logits.items(), data.views(args.split), faces, strict=True):
        groups = [(i,) for i in range(len(runs))] + list(itertools.combinations(range(len(runs)), 2))
        if len(runs) > 2:
            groups.append(tuple(range(len(runs))))
        scored = {}
        for group in groups:
            mean = torch.stack([runs[i] for i in group]).mean(0)
            values, _ = score_probabilities(view.dataset.schema, names, torch.sigmoid(mean), f["labels"], f["mask"],
                                            f["ages"])  # fmt: skip
            scored["+".join(map(str, group))] = values
        report[dataset] = scored
        shown = [k for k in SHOWN if k in next(iter(scored.values()))]
        print(f"\n{dataset}, {args.split} split: runs by index (0 = the first --ckpt_path), means by '+'")
        print("| runs | " + " | ".join(shown) + " |\n|---|" + "---:|" * len(shown))
        for group, values in scored.items():
            print(f"| {group} | " + " | ".join(f"{values[k]:.4f}" for k in shown) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
