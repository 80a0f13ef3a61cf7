"""Consistency metrics of predicted assignments against a rule set.

``failed_ratio`` is the per-rule share of samples whose prediction breaks the rule,
and ``consistency_rate`` the share breaking none; the "failed" terminology follows
Wu et al., "Logical Consistency and Greater Descriptive Power for Facial Hair
Attribute Learning" (CVPR 2023).
"""

from __future__ import annotations

import torch

from faceinsight.logic.compile import RuleSet


def failed_ratio(rules: RuleSet, assign: torch.Tensor) -> torch.Tensor:
    """Per-rule violation rate of bool predictions ``[N, K]``: float ``[R]`` (NaN when N = 0)."""
    return (~rules.satisfied(assign)).float().mean(0)


def consistency_rate(rules: RuleSet, assign: torch.Tensor) -> float:
    """Share of samples whose prediction satisfies every rule."""
    return rules.satisfied(assign).all(1).float().mean().item()
