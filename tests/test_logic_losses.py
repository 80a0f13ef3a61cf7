"""Logic losses: hand-computed values, gradients, and that minimising them removes violations."""

from __future__ import annotations

import math

import pytest
import torch

from faceinsight.logic import LogicLoss, consistency_rate, failed_ratio, parse_rules

NAMES = ["Bald", "Bangs", "Wavy_Hair", "Male", "Female"]
SEMANTICS = ["paper", "semantic", "product", "goedel", "lukasiewicz"]


def probs(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


def test_paper_loss_weights_the_consequent_violation_by_the_antecedent() -> None:
    # Bald -> ~Bangs & ~Wavy_Hair: P(Bald) * P(Bangs | Wavy_Hair); plus a group rule's violation probability.
    rs = parse_rules("[soft 2] Bald -> ~Bangs & ~Wavy_Hair\nexactly_one(Male, Female)\n", NAMES)
    p = probs(0.8, 0.3, 0.4, 0.9, 0.2)
    consequent_violated = 1 - 0.7 * 0.6
    group_violated = 1 - (0.9 * 0.8 + 0.1 * 0.2)
    want = 2 * 0.8 * consequent_violated + group_violated
    assert math.isclose(LogicLoss(rs, "paper")(p).item(), want, rel_tol=1e-9)
    # with disjoint antecedent/consequent this is exactly the violation probability
    assert torch.allclose(LogicLoss(rs, "paper").per_rule(p), rs.violation_prob(p))


def test_paper_loss_with_shared_variables_is_the_product_form() -> None:
    rs = parse_rules("Bald & Bangs -> Bald & Wavy_Hair\n", NAMES)
    p = probs(0.6, 0.5, 0.3, 0.5, 0.5)
    want = (0.6 * 0.5) * (1 - 0.6 * 0.3)  # P(A) * P(~C), not P(A & ~C) = 0.6*0.5*0.7
    assert math.isclose(LogicLoss(rs, "paper")(p).item(), want, rel_tol=1e-9)


def test_semantic_loss_is_minus_log_probability_of_holding() -> None:
    rs = parse_rules("Bald -> ~Bangs\nat_most_one(Bald, Bangs, Wavy_Hair)\n", NAMES)
    p = probs(0.7, 0.6, 0.2, 0.5, 0.5)
    amo = 0.3 * 0.4 * 0.8 + 0.7 * 0.4 * 0.8 + 0.3 * 0.6 * 0.8 + 0.3 * 0.4 * 0.2
    want = -math.log(1 - 0.7 * 0.6) - math.log(amo)
    assert math.isclose(LogicLoss(rs, "semantic")(p).item(), want, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("semantics", "truth"),
    [
        ("product", lambda a, b, c: 1 - a + a * ((1 - b) * (1 - c))),
        ("goedel", lambda a, b, c: 1.0 if a <= min(1 - b, 1 - c) else min(1 - b, 1 - c)),
        ("lukasiewicz", lambda a, b, c: min(1.0, 1 - a + max(0.0, (1 - b) + (1 - c) - 1))),
    ],
)
def test_fuzzy_losses_match_hand_computed_truth(semantics: str, truth) -> None:
    rs = parse_rules("Bald -> ~Bangs & ~Wavy_Hair\n", NAMES)
    a, b, c = 0.8, 0.3, 0.4
    loss = LogicLoss(rs, semantics)(probs(a, b, c, 0.5, 0.5)).item()
    assert math.isclose(loss, 1 - truth(a, b, c), rel_tol=1e-9)


def test_fuzzy_groups_are_expanded_pairwise() -> None:
    rs = parse_rules("at_most_one(Bald, Bangs, Wavy_Hair)\n", NAMES)
    a, b, c = 0.8, 0.3, 0.4
    want = 1 - (1 - a * b) * (1 - a * c) * (1 - b * c)
    assert math.isclose(LogicLoss(rs, "product")(probs(a, b, c, 0.5, 0.5)).item(), want, rel_tol=1e-9)


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_minimising_each_loss_removes_violations(semantics: str) -> None:
    rules = "Bald -> ~Bangs & ~Wavy_Hair\nexactly_one(Male, Female)\nBangs -> Wavy_Hair\n"
    rs = parse_rules(rules, NAMES)
    torch.manual_seed(0)
    logits = torch.randn(64, len(NAMES), dtype=torch.float64) * 2
    logits[:, 0] += 2  # many bald faces with bangs: lots of violations to start with
    logits.requires_grad_(True)
    loss_fn = LogicLoss(rs, semantics)
    before = rs.violation_prob(torch.sigmoid(logits)).sum().item()
    assert consistency_rate(rs, torch.sigmoid(logits) >= 0.5) < 0.9
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(torch.sigmoid(logits)) * len(logits)  # undo the batch mean: per-sample steps
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        opt.step()
    after = rs.violation_prob(torch.sigmoid(logits)).sum().item()
    assert after < 0.5 * before
    assert consistency_rate(rs, torch.sigmoid(logits) >= 0.5) > 0.95


def test_unknown_semantics_and_empty_rule_sets() -> None:
    rs = parse_rules("", NAMES)
    with pytest.raises(ValueError, match="semantics"):
        LogicLoss(rs, "fuzzy")  # type: ignore[arg-type]
    for s in SEMANTICS:
        assert LogicLoss(rs, s)(torch.rand(3, len(NAMES))).item() == 0.0


def test_metrics_helpers() -> None:
    rs = parse_rules("Bald -> ~Bangs\nexactly_one(Male, Female)\n", NAMES)
    assign = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1], [1, 0, 1, 1, 0]], dtype=torch.bool)
    assert failed_ratio(rs, assign).tolist() == [0.25, 0.25]
    assert consistency_rate(rs, assign) == 0.5
