"""Consistent decoding: the most probable assignment that satisfies every hard rule.

Under independent Bernoulli predictions the log probability of an assignment is
``sum_k a_k log p_k + (1 - a_k) log(1 - p_k)``, which separates over the connected
components of the hard-rule graph (characteristics linked when a rule names both).
Each component's satisfying assignments are enumerated once at build time; decoding
is then one ``[B, n] @ [n, V]`` score and an argmax per component. Characteristics
in no hard rule are thresholded at 0.5 (``p >= 0.5`` -> True).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from faceinsight.logic.formula import Rule, assignment_bits, truth

log = logging.getLogger(__name__)

MAX_COMPONENT_VARS = 20  # 2^20 assignments enumerated once per component
_CHUNK = 1 << 16  # assignments scored at once while decoding


class UnsatisfiableRules(ValueError):
    """Hard rules that no assignment satisfies together."""


@dataclass(frozen=True)
class Component:
    names: tuple[str, ...]
    rules: tuple[Rule, ...]

    def describe(self) -> str:
        where = ", ".join(f"{r.source}:{r.line} `{r.text}`" for r in self.rules)
        return f"component of {len(self.names)} characteristics {list(self.names)} from rules {where}"


def components(rules: Sequence[Rule], characteristics: Sequence[str]) -> list[Component]:
    """Connected components of the rule graph, names in characteristic order (union-find)."""
    parent = {v: v for r in rules for v in r.variables}

    def find(v: str) -> str:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for r in rules:
        for v in r.variables[1:]:
            parent[find(v)] = find(r.variables[0])
    order = {c: i for i, c in enumerate(characteristics)}
    roots: dict[str, list[str]] = {}
    for v in sorted(parent, key=order.__getitem__):
        roots.setdefault(find(v), []).append(v)
    return [Component(tuple(vs), tuple(r for r in rules if find(r.variables[0]) == root)) for root, vs in roots.items()]


def satisfying_assignments(component: Component) -> torch.Tensor:
    """Every assignment of the component's characteristics satisfying all its rules: bool ``[V, n]``."""
    n = len(component.names)
    bits = assignment_bits(n)
    columns = {v: bits[:, k] for k, v in enumerate(component.names)}
    ok = torch.ones(2**n, dtype=torch.bool)
    for r in component.rules:
        ok &= truth(r.formula, columns)
    return bits[ok]


class ConsistentDecoder(nn.Module):
    """Exact MAP decoding under the hard rules, vectorised over the batch (requirement 3 of docs/logic.md)."""

    def __init__(self, hard_rules: Sequence[Rule], characteristics: Sequence[str], max_vars: int = MAX_COMPONENT_VARS):
        super().__init__()
        column = {c: i for i, c in enumerate(characteristics)}
        self.components = components(hard_rules, characteristics)
        self.too_large: list[Component] = []
        self.num_enumerated = 0
        for comp in self.components:
            if len(comp.names) > max_vars:
                log.warning(
                    "cannot check or decode the hard-rule %s: more than %d characteristics", comp.describe(), max_vars
                )
                self.too_large.append(comp)
                continue
            valid = satisfying_assignments(comp)
            if len(valid) == 0:
                raise UnsatisfiableRules(f"no assignment satisfies the hard rules of the {comp.describe()}")
            i = self.num_enumerated
            self.register_buffer(f"vars_{i}", torch.tensor([column[v] for v in comp.names]), persistent=False)
            self.register_buffer(f"valid_{i}", valid, persistent=False)
            self.num_enumerated += 1
        self.max_vars = max_vars

    def forward(self, probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Bool ``[B, K]``: the most probable assignment satisfying every hard rule (first one on ties)."""
        if self.too_large:
            raise ValueError(
                f"consistent decoding enumerates at most {self.max_vars} characteristics per hard-rule component; "
                f"the {self.too_large[0].describe()} is too large: make some of its rules soft"
            )
        p = probs.detach().clamp(eps, 1 - eps)
        logit = p.log() - torch.log1p(-p)  # score of an assignment = a . logit + const
        out = probs.detach() >= 0.5
        for i in range(self.num_enumerated):
            idx, valid = self.get_buffer(f"vars_{i}"), self.get_buffer(f"valid_{i}")
            best_score = logit.new_full((len(p),), -torch.inf)
            best = torch.zeros(len(p), dtype=torch.long, device=p.device)
            for start in range(0, len(valid), _CHUNK):
                score = logit[:, idx] @ valid[start : start + _CHUNK].to(logit.dtype).T  # [B, chunk]
                value, arg = score.max(1)
                better = value > best_score
                best_score = torch.where(better, value, best_score)
                best = torch.where(better, arg + start, best)
            out[:, idx] = valid[best]
        return out
