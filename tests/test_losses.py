"""The training loss as the paper writes it: eq. 3 (BCE), eq. 9 (logic) and eq. 4 (their sum)."""

from __future__ import annotations

import math

import pytest
import torch

from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.losses import masked_bce

NAMES = ["Bald", "Bangs", "Wavy_Hair"]
LOGITS = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]])
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
MASK = torch.tensor([[True, True, False], [False, True, True]])  # each sample labels two of the three


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x). Unlabelled entries contribute nothing.
SAMPLE_1 = softplus(-0.0) + softplus(2.0)  # Bald = 1 at logit 0, Bangs = 0 at logit 2
SAMPLE_2 = softplus(-3.0) + softplus(-0.5)  # Bangs = 0 at logit -3, Wavy_Hair = 1 at logit 0.5


def test_bce_sums_over_labelled_characteristics_and_averages_over_samples() -> None:
    assert math.isclose(masked_bce(LOGITS, LABELS, MASK, "sum").item(), (SAMPLE_1 + SAMPLE_2) / 2, rel_tol=1e-6)
    # the old reduction: a mean over the 4 labelled entries
    assert math.isclose(masked_bce(LOGITS, LABELS, MASK, "mean").item(), (SAMPLE_1 + SAMPLE_2) / 4, rel_tol=1e-6)


def test_loss_is_eq4_bce_plus_logic(tmp_path, monkeypatch) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text("Bald -> ~Bangs\nBald -> ~Wavy_Hair\n")
    module = FaceInsightModule(NAMES, rules=[str(rules)], use_seg=False, use_correlation=False)
    monkeypatch.setattr(module.model, "forward", lambda image, segmap=None, visual=None: LOGITS)
    batch = {"image": torch.zeros(2, 3, 64, 64), "labels": LABELS, "label_mask": MASK}
    loss, parts, _ = module.losses(batch)
    p = torch.sigmoid(LOGITS).double()
    # eq. 9: per sample, the sum over rules of P(antecedent) * P(consequent violated); then the mean over samples
    logic = (p[:, 0] * p[:, 1] + p[:, 0] * p[:, 2]).mean().item()
    assert math.isclose(parts["bce"].item(), (SAMPLE_1 + SAMPLE_2) / 2, rel_tol=1e-6)
    assert math.isclose(parts["logic"].item(), logic, rel_tol=1e-6)
    assert math.isclose(loss.item(), (SAMPLE_1 + SAMPLE_2) / 2 + logic, rel_tol=1e-6)  # logic_weight 1.0 = eq. 4


def test_unknown_reduction_is_refused() -> None:
    with pytest.raises(ValueError, match="bce_reduction"):
        FaceInsightModule(NAMES, use_logic=False, bce_reduction="avg")  # type: ignore[arg-type]
