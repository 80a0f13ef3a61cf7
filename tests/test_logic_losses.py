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


def logits(*values: float) -> torch.Tensor:
    """The logits whose sigmoids are ``values``: the losses take logits."""
    return torch.logit(probs(*values))


def test_paper_loss_weights_the_consequent_violation_by_the_antecedent() -> None:
    # Bald -> ~Bangs & ~Wavy_Hair: P(Bald) * P(Bangs | Wavy_Hair); plus a group rule's violation probability.
    rs = parse_rules("[soft 2] Bald -> ~Bangs & ~Wavy_Hair\nexactly_one(Male, Female)\n", NAMES)
    p = probs(0.8, 0.3, 0.4, 0.9, 0.2)
    x = torch.logit(p)
    consequent_violated = 1 - 0.7 * 0.6
    group_violated = 1 - (0.9 * 0.8 + 0.1 * 0.2)
    want = 2 * 0.8 * consequent_violated + group_violated
    assert math.isclose(LogicLoss(rs, "paper")(x).item(), want, rel_tol=1e-9)
    # with disjoint antecedent/consequent this is exactly the violation probability
    assert torch.allclose(LogicLoss(rs, "paper").per_rule(x), rs.violation_prob(p))


def test_paper_loss_with_shared_variables_is_the_product_form() -> None:
    rs = parse_rules("Bald & Bangs -> Bald & Wavy_Hair\n", NAMES)
    x = logits(0.6, 0.5, 0.3, 0.5, 0.5)
    want = (0.6 * 0.5) * (1 - 0.6 * 0.3)  # P(A) * P(~C), not P(A & ~C) = 0.6*0.5*0.7
    assert math.isclose(LogicLoss(rs, "paper")(x).item(), want, rel_tol=1e-9)


def test_semantic_loss_is_minus_log_probability_of_holding() -> None:
    rs = parse_rules("Bald -> ~Bangs\nat_most_one(Bald, Bangs, Wavy_Hair)\n", NAMES)
    x = logits(0.7, 0.6, 0.2, 0.5, 0.5)
    amo = 0.3 * 0.4 * 0.8 + 0.7 * 0.4 * 0.8 + 0.3 * 0.6 * 0.8 + 0.3 * 0.4 * 0.2
    want = -math.log(1 - 0.7 * 0.6) - math.log(amo)
    assert math.isclose(LogicLoss(rs, "semantic")(x).item(), want, rel_tol=1e-9)


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
    loss = LogicLoss(rs, semantics)(logits(a, b, c, 0.5, 0.5)).item()
    assert math.isclose(loss, 1 - truth(a, b, c), rel_tol=1e-9)


def test_fuzzy_groups_are_expanded_pairwise() -> None:
    rs = parse_rules("at_most_one(Bald, Bangs, Wavy_Hair)\n", NAMES)
    a, b, c = 0.8, 0.3, 0.4
    want = 1 - (1 - a * b) * (1 - a * c) * (1 - b * c)
    assert math.isclose(LogicLoss(rs, "product")(logits(a, b, c, 0.5, 0.5)).item(), want, rel_tol=1e-9)


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
        loss = loss_fn(logits) * len(logits)  # undo the batch mean: per-sample steps
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
        assert LogicLoss(rs, s)(torch.randn(3, len(NAMES))).item() == 0.0


def test_metrics_helpers() -> None:
    rs = parse_rules("Bald -> ~Bangs\nexactly_one(Male, Female)\n", NAMES)
    assign = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1], [1, 0, 1, 1, 0]], dtype=torch.bool)
    assert failed_ratio(rs, assign).tolist() == [0.25, 0.25]
    assert consistency_rate(rs, assign) == 0.5


@pytest.mark.parametrize("semantics", ["paper", "semantic"])
def test_confident_violations_keep_their_gradient(semantics: str) -> None:
    # Bald and Bangs both at logit +30 violate "Bald -> ~Bangs" as confidently as float32 can say; a loss computed
    # from probabilities clamped to [1e-6, 1 - 1e-6] has exactly zero gradient there.
    rs = parse_rules("Bald -> ~Bangs\nexactly_one(Male, Female)\n", NAMES)
    x = torch.tensor([[30.0, 30.0, -30.0, 30.0, 30.0]], requires_grad=True)
    LogicLoss(rs, semantics)(x).backward()
    assert (x.grad[0, [0, 1, 3, 4]] != 0).all()  # every variable of a violated rule is pushed
    clamped = torch.tensor([[30.0, 30.0, -30.0, 30.0, 30.0]], requires_grad=True)
    rs.violation_prob(torch.sigmoid(clamped)).sum().backward()  # the clamped-probability path, for contrast
    assert (clamped.grad == 0).all()


@pytest.mark.parametrize("semantics", ["paper", "semantic"])
def test_log_space_losses_match_the_probability_formulas_where_finite(semantics: str) -> None:
    rs = parse_rules("[soft 2] Bald -> ~Bangs & ~Wavy_Hair\nexactly_one(Male, Female)\nBangs -> Wavy_Hair\n", NAMES)
    torch.manual_seed(1)
    x = (torch.randn(32, len(NAMES), dtype=torch.float64) * 4).clamp(-12, 12)  # where the old clamp did not bite
    p = torch.sigmoid(x)
    loss = LogicLoss(rs, semantics).per_rule(x)
    if semantics == "paper":  # the reference: P(antecedent) * P(~consequent), or P(~rule), from clamped probabilities
        want = torch.stack([
            p[:, 0] * (1 - (1 - p[:, 1]) * (1 - p[:, 2])),
            rs.violation_prob(p)[:, 1],
            p[:, 1] * (1 - p[:, 2]),
        ], 1)  # fmt: skip
    else:
        want = -torch.log1p(-rs.violation_prob(p))
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-9)
