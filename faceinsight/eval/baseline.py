"""The majority-class baseline scored next to every model, and the table that shows both: the test report of
``faceinsight fit``/``test`` and ``faceinsight eval-text`` print it."""

from __future__ import annotations

import math

from torch import Tensor

from faceinsight.model.correlation import CooccurrenceStats


def majority_baseline(stats: CooccurrenceStats, like: Tensor) -> tuple[Tensor, Tensor]:
    """The majority-class baseline's probabilities and decisions, shaped like ``like`` ``[B, K]``: each
    characteristic's positive rate in the training split (``stats``; 0.5 where it labels none), decided positive at
    0.5 or more. The test report and ``faceinsight eval-text`` score it next to a model."""
    prior = stats.positive_rate().float().expand_as(like)
    return prior, prior >= 0.5


def format_table(model: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> str:
    """Test metrics per dataset next to the majority-class baseline, as a plain-text table."""
    lines = [f"{'dataset':<14}{'metric':<28}{'model':>10}{'majority':>10}", "-" * 62]
    for name, values in model.items():
        for key, value in values.items():
            lines.append(f"{name:<14}{key:<28}{value:>10.4f}{baseline.get(name, {}).get(key, math.nan):>10.4f}")
    return "\n".join(lines)
