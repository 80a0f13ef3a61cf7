"""The logic loss L_c (eq. 9) and the alternative formulations it can be swapped for.

Every loss takes the model's logits ``[B, K]`` (``P(y_k) = sigmoid(logit_k)``, eq. 2). ``paper`` and
``semantic`` are computed in log space from ``logsigmoid``, with no clamp, so a confidently violated rule
keeps a gradient however large the logits; the fuzzy logics work on ``sigmoid(logits)``.

``paper`` (our reading of eq. 9, ``L_c = 1/N sum_i sum_j V_i(rule_j) * P(antecedent_ij)``):
for a rule whose top-level connective is an implication ``A -> C`` the loss is
``P(A) * P(~C)``: the probability that the consequent is violated, weighted by
the probability of the antecedent, each computed exactly over its own variables.
When A and C share no characteristic (every rule in rules/*.rules) this equals the
exact violation probability ``P(A & ~C)``. Any other rule has no antecedent and
its loss is its violation probability ``P(~rule)``.

``semantic``: ``-log P(rule holds)`` (semantic loss, Xu et al., ICML 2018).

``product`` / ``goedel`` / ``lukasiewicz``: ``1 - truth(rule)`` under a fuzzy
logic, as in Logic Tensor Networks (Badreddine et al., AIJ 2022): product t-norm
with probabilistic sum and the Reichenbach implication ``1 - a + a b`` (LTN's
default), Goedel min/max with its residuum (``1`` if ``a <= b`` else ``b``),
Lukasiewicz ``max(0, a + b - 1)`` / ``min(1, a + b)`` with its residuum
``min(1, 1 - a + b)``; negation ``1 - a`` throughout. Group constraints are
expanded (at_least_one = OR of members, at_most_one = AND of ``~(a & b)`` over pairs).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from faceinsight.logic.compile import EventTable, RuleSet, logit_logs
from faceinsight.logic.formula import Connectives, Formula, Implies, Not, evaluate

Semantics = Literal["paper", "semantic", "product", "goedel", "lukasiewicz"]

FUZZY: dict[str, Connectives[torch.Tensor]] = {
    "product": Connectives(
        neg=lambda a: 1 - a,
        conj=torch.mul,
        disj=lambda a, b: a + b - a * b,
        implies=lambda a, b: 1 - a + a * b,
    ),
    "goedel": Connectives(
        neg=lambda a: 1 - a,
        conj=torch.minimum,
        disj=torch.maximum,
        implies=lambda a, b: torch.where(a <= b, torch.ones_like(b), b),
    ),
    "lukasiewicz": Connectives(
        neg=lambda a: 1 - a,
        conj=lambda a, b: (a + b - 1).clamp(min=0),
        disj=lambda a, b: (a + b).clamp(max=1),
        implies=lambda a, b: (1 - a + b).clamp(max=1),
    ),
}


def _paper_events(f: Formula) -> tuple[Formula, ...]:
    """Events whose probabilities multiply to the paper's loss of one rule."""
    if isinstance(f, Implies):
        return f.left, Not(f.right)
    return (Not(f),)


class LogicLoss(nn.Module):
    """Weighted logic loss: ``1/B sum_i sum_j weight_j * loss_ij`` over a batch of logits ``[B, K]`` (eq. 9)."""

    def __init__(self, rules: RuleSet, semantics: Semantics = "paper") -> None:
        super().__init__()
        if semantics not in ("paper", "semantic", *FUZZY):
            raise ValueError(f"unknown logic-loss semantics {semantics!r}")
        self.rules = rules
        self.semantics = semantics
        if semantics in ("paper", "semantic"):
            per_rule = [_paper_events(r.formula) if semantics == "paper" else (r.formula,) for r in rules.rules]
            events = [e for evs in per_rule for e in evs]
            origins = [f"{r.source}:{r.line}" for r, evs in zip(rules.rules, per_rule, strict=True) for _ in evs]
            self.events = EventTable(events, rules.characteristics, origins)
            # Rule j's loss sums the log probabilities of its events (row j of a 0/1 matrix).
            owner = torch.tensor([j for j, evs in enumerate(per_rule) for _ in evs], dtype=torch.long)
            member = torch.zeros(len(per_rule), len(events))
            member[owner, torch.arange(len(events))] = 1.0
            self.register_buffer("member", member, persistent=False)

    def per_rule(self, logits: torch.Tensor) -> torch.Tensor:
        """Unweighted loss of each rule on each sample: ``[B, R]``."""
        if not self.rules.rules:
            return logits.new_zeros(len(logits), 0)
        if self.semantics in FUZZY:
            probs = torch.sigmoid(logits)
            values = {name: probs[:, k] for k, name in enumerate(self.rules.characteristics)}
            logic = FUZZY[self.semantics]
            return 1 - torch.stack([evaluate(r.formula, values, logic) for r in self.rules.rules], 1)
        log_events = self.events(*logit_logs(logits))
        log_joint = log_events @ self.member.to(log_events.dtype).T
        return log_joint.exp() if self.semantics == "paper" else -log_joint

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Scalar loss: sum over rules, mean over samples (eq. 9 for ``paper``)."""
        return (self.per_rule(logits) * self.rules.weights.to(logits.dtype)).sum(1).mean()
