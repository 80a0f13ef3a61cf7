"""Audit a rule set against real labels: how often do the annotations themselves break each rule?

``faceinsight rules audit rules/celeba.rules --data ../shared/data/celeba`` prints one
markdown table row per rule with its support (samples labelled for all of the
rule's characteristics), violations, rate, and the tag the rate suggests: a rule is
worth calling hard only when the labels break it in fewer than ``--hard-below``
(default 0.5%) of the supported samples. It reads the training split by default: tags chosen on test rows would
let the test labels shape the model (``--split all`` includes them and says so).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from faceinsight.logic.compile import RuleSet
from faceinsight.logic.parser import load_rules

HARD_BELOW = 0.005


def audit(rules: RuleSet, labels: torch.Tensor, mask: torch.Tensor) -> list[dict]:
    """Per rule: ``text``, ``tag``, ``support``, ``violations`` and ``rate`` (violations / support, NaN if 0)."""
    incidence = torch.zeros(len(rules), len(rules.characteristics), dtype=torch.bool)
    column = {c: i for i, c in enumerate(rules.characteristics)}
    for j, r in enumerate(rules.rules):
        incidence[j, [column[v] for v in r.variables]] = True
    # A sample supports a rule when none of the rule's characteristics is unlabelled.
    supported = ((~mask.bool()).float() @ incidence.float().T) == 0  # [N, R]
    violated = ~rules.satisfied(labels > 0.5) & supported
    support, violations = supported.sum(0).tolist(), violated.sum(0).tolist()
    return [
        {
            "text": r.text,
            "tag": r.tag,
            "support": s,
            "violations": v,
            "rate": v / s if s else float("nan"),
        }
        for r, s, v in zip(rules.rules, support, violations, strict=True)
    ]


def markdown_table(rows: Sequence[dict], hard_below: float = HARD_BELOW) -> str:
    """One row per rule; ``rate < x%`` says whether the labels allow calling the rule hard."""
    lines = [
        f"| rule | tag | support | violations | rate % | rate < {100 * hard_below:g}% |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        suggested = "yes" if row["support"] and row["rate"] < hard_below else "no"
        lines.append(
            f"| `{row['text'].replace('|', chr(92) + '|')}` | {row['tag']} | {row['support']} | {row['violations']} | "
            f"{100 * row['rate']:.2f} | {suggested} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """``faceinsight rules audit <rules...> --data <dataset folder> [--kind K] [--split train|val|all]
    [--hard-below R]``."""
    parser = argparse.ArgumentParser(prog="faceinsight rules audit", description=__doc__.splitlines()[0])
    parser.add_argument("rules", nargs="+", type=Path, help="rule files")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder in its native format")
    parser.add_argument("--kind", default=None, help="dataset kind (autodetected from the files when omitted)")
    parser.add_argument(
        "--split", default="train", choices=("train", "val", "all"), help="rows to audit (never test alone)"
    )
    parser.add_argument(
        "--hard-below", type=float, default=HARD_BELOW, help="violation rate below which to suggest hard"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from faceinsight.data import load_dataset  # the data package is optional for the rest of this module

    dataset = load_dataset(args.data, kind=args.kind, split=args.split)
    labels, mask = dataset.label_matrix()
    rules = load_rules(args.rules, list(dataset.schema.characteristics))
    split = f"split {args.split} ({getattr(dataset, 'split_method', 'unknown')})"
    print(f"{dataset.name} ({args.data}), {split}: {len(labels)} samples, {len(rules)} rules apply")
    if args.split == "all":
        print("note: --split all includes the test rows; choose tags on the training split")
    print()
    print(markdown_table(audit(rules, labels, mask), args.hard_below))
