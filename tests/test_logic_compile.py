"""Compiled probabilities and truth values against brute-force enumeration (hypothesis)."""

from __future__ import annotations

import itertools
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_logic_parser import POOL, formulas

from faceinsight.logic import parse_rules
from faceinsight.logic.compile import EPS, count_log_probs
from faceinsight.logic.formula import And, Formula, Group, Iff, Implies, Not, Or, Var, render, variables


def holds(f: Formula, a: dict[str, bool]) -> bool:
    """Reference semantics in plain Python."""
    match f:
        case Var(n):
            return a[n]
        case Not(g):
            return not holds(g, a)
        case And(gs):
            return all(holds(g, a) for g in gs)
        case Or(gs):
            return any(holds(g, a) for g in gs)
        case Implies(g, h):
            return (not holds(g, a)) or holds(h, a)
        case Iff(g, h):
            return holds(g, a) == holds(h, a)
        case Group(kind, names):
            k = sum(a[n] for n in names)
            return {"at_least_one": k >= 1, "at_most_one": k <= 1, "exactly_one": k == 1}[kind]
    raise TypeError(f)


def brute_force_violation(f: Formula, p: dict[str, float]) -> float:
    names = variables(f)
    total = 0.0
    for bits in itertools.product([False, True], repeat=len(names)):
        a = dict(zip(names, bits, strict=True))
        if not holds(f, a):
            total += math.prod(p[n] if a[n] else 1 - p[n] for n in names)
    return total


probabilities = st.lists(st.floats(EPS, 1 - EPS), min_size=len(POOL), max_size=len(POOL))


@settings(max_examples=200, deadline=None)
@given(st.lists(formulas(), min_size=1, max_size=4), st.lists(probabilities, min_size=1, max_size=3))
def test_violation_probability_equals_enumeration(fs: list[Formula], rows: list[list[float]]) -> None:
    rs = parse_rules("".join(f"[soft] {render(f)}\n" for f in fs), POOL)
    probs = torch.tensor(rows, dtype=torch.float64)
    got = rs.violation_prob(probs)
    assert got.shape == (len(rows), len(fs))
    for b, row in enumerate(rows):
        p = dict(zip(POOL, row, strict=True))
        for j, f in enumerate(fs):
            assert math.isclose(got[b, j].item(), brute_force_violation(f, p), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(formulas(), min_size=1, max_size=4), st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1)
)
def test_satisfied_equals_python_evaluation(fs: list[Formula], rows: list[list[bool]]) -> None:
    rs = parse_rules("".join(f"[soft] {render(f)}\n" for f in fs), POOL)
    got = rs.satisfied(torch.tensor(rows))
    want = [[holds(f, dict(zip(POOL, row, strict=True))) for f in fs] for row in rows]
    assert got.tolist() == want


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
def test_count_recursion_equals_enumeration(ps: list[float]) -> None:
    p = torch.tensor(ps, dtype=torch.float64).clamp(EPS, 1 - EPS)
    got = count_log_probs(p.log()[None], torch.log1p(-p)[None])[0].exp()
    want = [0.0, 0.0, 0.0]
    for bits in itertools.product([0, 1], repeat=len(ps)):
        want[min(sum(bits), 2)] += math.prod(pk if b else 1 - pk for pk, b in zip(p.tolist(), bits, strict=True))
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-15)


def test_log_space_is_stable_at_saturated_probabilities() -> None:
    rs = parse_rules("Bald -> ~Bangs\nexactly_one(Male, Female)\nat_most_one(Bald, Bangs, Male)\n", [*POOL, "Female"])
    logits = torch.tensor([[30.0, -30.0, 30.0, -30.0, 0.0, 30.0, -30.0]], requires_grad=True)
    logp = rs.violation_log_prob(torch.sigmoid(logits))
    assert torch.isfinite(logp).all()
    logp.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # a rule that certainly holds has (clamped) violation probability ~ eps, not 0 - 1 round-off
    assert logp[0, 1] < math.log(1e-5)


def test_float32_matches_float64_and_buffers_follow_module() -> None:
    rs = parse_rules("Bald -> ~Bangs & ~Male\nat_least_one(Bald, Bangs, Male)\n", POOL)
    probs = torch.rand(16, len(POOL), dtype=torch.float64)
    lo = rs.to(torch.float32).violation_log_prob(probs.float())
    assert torch.allclose(lo.double(), rs.violation_log_prob(probs), atol=1e-5)
    assert {b.dtype for b in rs.buffers()} >= {torch.bool, torch.long}  # index/table buffers keep their dtype
