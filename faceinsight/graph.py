"""The correlation graph of a trained model, for inspection (e.g. in a notebook)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from faceinsight.correlation import CooccurrenceStats, CorrelationConfig


def load_graph(checkpoint: str | Path, tau: float | None = None, omega: float | None = None) -> dict[str, object]:
    """Names, counts, ``P`` (eq. 5), ``C`` (eq. 6) and ``C_hat`` (eq. 7) saved in a checkpoint.

    ``tau`` and ``omega`` default to the model's own; pass others to see how the graph would change.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    names = ckpt["hyper_parameters"]["characteristics"]
    config = ckpt["hyper_parameters"].get("correlation") or CorrelationConfig()
    if isinstance(config, dict):  # saved through the CLI as plain values
        config = CorrelationConfig(**config)
    stats = CooccurrenceStats(names)
    stats.load_state_dict({k.removeprefix("model.stats."): v for k, v in ckpt["state_dict"].items()
                           if k.startswith("model.stats.")})  # fmt: skip
    return stats.graph(config.tau if tau is None else tau, config.omega if omega is None else omega)


def export_main(argv: list[str]) -> None:
    """``faceinsight graph export <ckpt> [--out graph.json] [--tau T] [--omega W]``."""
    parser = argparse.ArgumentParser(prog="faceinsight graph export", description=export_main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="graph.json")
    parser.add_argument("--tau", type=float)
    parser.add_argument("--omega", type=float)
    args = parser.parse_args(argv)
    graph = load_graph(args.checkpoint, args.tau, args.omega)
    as_json = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in graph.items()}
    Path(args.out).write_text(json.dumps(as_json))
    c = graph["C"]
    print(
        f"{len(graph['names'])} characteristics, {int(c.sum())} directed edges (tau={graph['tau']}); wrote {args.out}"
    )
