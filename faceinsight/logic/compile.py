"""Compile formulas once into batched tensor ops giving their exact probabilities (eq. 9).

Predictions are independent Bernoulli variables with ``P(y_k) = p_k``. The
probability of an event (a formula being true) is a sum over the assignments of
its own variables, computed in log space:

* general formulas (at most ``MAX_ENUM_VARS`` variables): the truth table is built
  at compile time; ``log P = logsumexp`` over the true rows of
  ``sum_k a_k log p_k + (1 - a_k) log(1 - p_k)``. Formulas of equal arity share
  one matmul + logsumexp.
* group constraints (and their negations): an O(n) recursion over the log
  probabilities that 0, 1 or >= 2 members are true; every step adds positive
  terms, so it is stable.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceinsight.logic.decode import ConsistentDecoder
from faceinsight.logic.formula import Formula, Group, Not, Rule, assignment_bits, truth, variables
from faceinsight.vocab import VOCAB

log = logging.getLogger(__name__)

MAX_ENUM_VARS = 12  # 4096 assignments per rule; larger rules should use group constraints or be split
NEG = -1.0e4  # log of "impossible": exp(NEG) == 0 in float32/64, but finite, so gradients stay NaN-free
EPS = 1e-6  # probabilities are clamped to [EPS, 1 - EPS] before taking logs

# Count classes of a group constraint (0 true, 1 true, >= 2 true) in which it holds.
_GROUP_CLASSES = {
    "at_least_one": (False, True, True),
    "at_most_one": (True, True, False),
    "exactly_one": (False, True, False),
}


def bernoulli_logs(probs: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log(1 - p))`` of clamped probabilities (for metrics on given probabilities; losses use logits)."""
    p = probs.clamp(eps, 1 - eps)
    return p.log(), torch.log1p(-p)


def logit_logs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log(1 - p))`` with ``p = sigmoid(logits)``, exact in log space: no clamp, so the gradient of a
    confident violation (|logit| >> 14, where a clamped probability would stop it) never vanishes."""
    return F.logsigmoid(logits), F.logsigmoid(-logits)


def count_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Log probabilities that 0, 1 and >= 2 of the n Bernoulli variables on the last axis are true: ``[..., 3]``."""
    c0 = torch.zeros_like(log_p[..., 0])
    c1 = torch.full_like(c0, NEG)
    c2 = torch.full_like(c0, NEG)
    for k in range(log_p.shape[-1]):
        lp, lq = log_p[..., k], log_q[..., k]
        # ">= 2" stays ">= 2" whatever y_k is (p + q = 1), or was 1 and y_k is true.
        c2 = torch.logaddexp(c2, c1 + lp)
        c1 = torch.logaddexp(c1 + lq, c0 + lp)
        c0 = c0 + lq
    return torch.stack([c0, c1, c2], -1)


def truth_table(f: Formula) -> torch.Tensor:
    """Truth of ``f`` on each row of ``assignment_bits(n)`` over ``variables(f)``: bool ``[2^n]``."""
    bits = assignment_bits(len(variables(f)))
    return truth(f, {v: bits[:, k] for k, v in enumerate(variables(f))})


def _closed_form(f: Formula) -> tuple[Group, tuple[bool, bool, bool]] | None:
    """A group constraint or its negation, with the count classes in which the event holds."""
    negated = isinstance(f, Not)
    g = f.arg if negated else f
    if not isinstance(g, Group):
        return None
    classes = _GROUP_CLASSES[g.kind]
    return g, tuple(not c for c in classes) if negated else classes  # type: ignore[return-value]


class EventTable(nn.Module):
    """``log P(formula_e is true)`` for a fixed list of formulas, batched: ``[B, K] -> [B, E]``."""

    def __init__(self, events: Sequence[Formula], characteristics: Sequence[str], origins: Sequence[str]) -> None:
        super().__init__()
        column = {name: i for i, name in enumerate(characteristics)}
        enum: dict[int, list[int]] = defaultdict(list)
        groups: dict[int, list[int]] = defaultdict(list)
        for e, f in enumerate(events):
            closed = _closed_form(f)
            n = len(closed[0].names) if closed else len(variables(f))
            if closed is None and n > MAX_ENUM_VARS:
                raise ValueError(
                    f"{origins[e]}: rule has {n} variables; enumerated rules are limited to {MAX_ENUM_VARS} "
                    "(split it, or use at_least_one/at_most_one/exactly_one)"
                )
            (groups if closed else enum)[n].append(e)
        self.enum_arities = sorted(enum)
        self.group_arities = sorted(groups)
        order: list[int] = []
        for n in self.enum_arities:
            idx = [[column[v] for v in variables(events[e])] for e in enum[n]]
            self.register_buffer(f"enum_idx_{n}", torch.tensor(idx).view(len(idx), n), persistent=False)
            self.register_buffer(
                f"enum_table_{n}", torch.stack([truth_table(events[e]) for e in enum[n]]), persistent=False
            )
            self.register_buffer(f"bits_{n}", assignment_bits(n), persistent=False)
            order += enum[n]
        for n in self.group_arities:
            closed = [_closed_form(events[e]) for e in groups[n]]
            idx = [[column[v] for v in g.names] for g, _ in closed]  # type: ignore[misc]
            self.register_buffer(f"group_idx_{n}", torch.tensor(idx), persistent=False)
            self.register_buffer(f"group_classes_{n}", torch.tensor([c for _, c in closed]), persistent=False)  # type: ignore[misc]
            order += groups[n]
        self.register_buffer("inverse", torch.argsort(torch.tensor(order, dtype=torch.long)), persistent=False)
        self.num_events = len(events)

    def _buffer(self, kind: str, n: int) -> torch.Tensor:
        return self.get_buffer(f"{kind}_{n}")

    def forward(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """Exact ``log P(event)`` ``[B, E]`` from per-characteristic ``log p``, ``log(1 - p)`` ``[B, K]``."""
        parts = []
        for n in self.enum_arities:
            idx, table, bits = self._buffer("enum_idx", n), self._buffer("enum_table", n), self._buffer("bits", n)
            lp, lq = log_p[:, idx], log_q[:, idx]  # [B, R, n]
            joint = (lp - lq) @ bits.to(lp.dtype).T + lq.sum(-1, keepdim=True)  # [B, R, 2^n]
            parts.append(torch.logsumexp(joint.masked_fill(~table, NEG), -1))
        for n in self.group_arities:
            idx, classes = self._buffer("group_idx", n), self._buffer("group_classes", n)
            counts = count_log_probs(log_p[:, idx], log_q[:, idx])  # [B, R, 3]
            parts.append(torch.logsumexp(counts.masked_fill(~classes, NEG), -1))
        if not parts:
            return log_p.new_zeros(log_p.shape[0], 0)
        return torch.cat(parts, 1)[:, self.inverse]

    def holds(self, assign: torch.Tensor) -> torch.Tensor:
        """Whether each event is true under bool assignments ``[B, K]``: ``[B, E]``."""
        parts = []
        for n in self.enum_arities:
            idx, table = self._buffer("enum_idx", n), self._buffer("enum_table", n)
            row = (assign[:, idx].long() << torch.arange(n, device=assign.device)).sum(-1)  # [B, R]
            parts.append(table[torch.arange(table.shape[0], device=assign.device), row])
        for n in self.group_arities:
            idx, classes = self._buffer("group_idx", n), self._buffer("group_classes", n)
            count = assign[:, idx].long().sum(-1).clamp(max=2)
            parts.append(classes[torch.arange(classes.shape[0], device=assign.device), count])
        if not parts:
            return assign.new_zeros(assign.shape[0], 0, dtype=torch.bool)
        return torch.cat(parts, 1)[:, self.inverse]


class RuleSet(nn.Module):
    """Compiled rules over the model's ordered characteristics (eq. 9). Buffers follow ``.to(device)``."""

    def __init__(self, rules: Sequence[Rule], characteristics: Sequence[str], eps: float = EPS) -> None:
        super().__init__()
        self.characteristics = list(characteristics)
        unknown = [c for c in self.characteristics if c not in VOCAB]
        if unknown or len(set(self.characteristics)) != len(self.characteristics):
            raise ValueError(f"characteristics must be distinct names from VOCAB; unknown: {unknown}")
        self.rules = list(rules)
        self.dropped: list[str] = []  # rules of the source files left out (they name unpredicted characteristics)
        for r in self.rules:
            if missing := [v for v in r.variables if v not in self.characteristics]:
                raise ValueError(f"{r.source}:{r.line}: rule {r.text!r} names characteristics not predicted: {missing}")
        self.eps = eps
        origins = [f"{r.source}:{r.line}" for r in self.rules]
        self.violations = EventTable([Not(r.formula) for r in self.rules], self.characteristics, origins)
        self.register_buffer(
            "weights", torch.tensor([r.weight for r in self.rules], dtype=torch.float32), persistent=False
        )
        self.register_buffer("hard", torch.tensor([r.hard for r in self.rules], dtype=torch.bool), persistent=False)
        self.decoder = ConsistentDecoder([r for r in self.rules if r.hard], self.characteristics)
        self._warn_trivial()

    def _warn_trivial(self) -> None:
        """Log rules no assignment violates, and soft rules no assignment satisfies (hard ones fail in the decoder)."""
        for r in self.rules:
            if isinstance(r.formula, Group) or len(r.variables) > MAX_ENUM_VARS:
                continue  # groups of >= 2 members are neither; large rules were rejected above
            table = truth_table(r.formula)
            if table.all():
                log.warning("%s:%d: rule %r can never be violated", r.source, r.line, r.text)
            elif not table.any() and not r.hard:
                log.warning("%s:%d: soft rule %r can never hold", r.source, r.line, r.text)

    def __len__(self) -> int:
        return len(self.rules)

    def extra_repr(self) -> str:
        return f"{len(self.rules)} rules ({int(self.hard.sum())} hard) over {len(self.characteristics)} characteristics"

    def to_text(self) -> str:
        """Self-contained rule text (includes expanded) that ``parse_rules`` turns back into this rule set."""
        header = f"# FaceInsight rule set: {len(self.rules)} rules\n"
        return header + "".join(r.to_line() + "\n" for r in self.rules)

    def violation_log_prob(self, probs: torch.Tensor) -> torch.Tensor:
        """Exact ``log P(rule j violated)`` ``[B, R]`` under independent Bernoulli predictions ``probs [B, K]``."""
        return self.violations(*bernoulli_logs(probs, self.eps))

    def violation_log_prob_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``violation_log_prob(sigmoid(logits))`` computed in log space, without clamping."""
        return self.violations(*logit_logs(logits))

    def violation_prob(self, probs: torch.Tensor) -> torch.Tensor:
        return self.violation_log_prob(probs).exp()

    def satisfied(self, assign: torch.Tensor) -> torch.Tensor:
        """Whether each rule holds for bool assignments ``[B, K]``: bool ``[B, R]``."""
        return ~self.violations.holds(assign.bool())

    def decode(self, probs: torch.Tensor) -> torch.Tensor:
        """Most probable assignment satisfying every hard rule (see ConsistentDecoder): bool ``[B, K]``."""
        return self.decoder(probs)
