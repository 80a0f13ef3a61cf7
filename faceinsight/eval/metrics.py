"""Evaluation metrics, as torchmetrics ``Metric`` objects that accumulate over batches.

* Binary attributes (paper Table 1): mean accuracy over characteristics; recall,
  precision and F1 computed per *sample* over its labelled characteristics and
  averaged over samples (sklearn's ``average="samples"`` with zero_division=0);
  and mAP (average precision per characteristic, averaged over those with a
  positive).
* Categorical groups (age bin, gender, race, expression): the prediction is the
  group member with the highest probability; accuracy and macro recall,
  precision and F1 from the confusion matrix.
* Age in years ("Beyond Specialization", Kuprashevich et al. 2024): MAE and
  CS@5, the share of absolute errors of at most 5 years.
* Logical consistency: share of samples whose predictions satisfy every hard
  rule (and every rule, soft ones included), and each rule's violation rate
  ("failed ratio", Wu and Bowyer, CVPR 2023).

Every metric honours the label mask: unlabelled characteristics never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision

from faceinsight.vocab import AGE_BINS, GROUPS, Schema, age_bin_name

# Representative years of each age bin, to turn bin probabilities into an age estimate.
AGE_BIN_YEARS: dict[str, float] = {
    age_bin_name(label): (low + high - 1) / 2 if high < 200 else 75.0 for label, low, high in AGE_BINS
}


def expected_age(bin_probs: Tensor, bin_years: Tensor) -> Tensor:
    """Age in years ``[B]`` from age-bin probabilities ``[B, bins]``: the probability-weighted mean of the bins'
    representative years (:data:`AGE_BIN_YEARS`)."""
    return (bin_probs * bin_years).sum(-1) / bin_probs.sum(-1).clamp_min(1e-12)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


class AttributeMetrics(Metric):
    """Masked multi-label metrics over binary characteristics."""

    full_state_update = False

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.add_state("correct", torch.zeros(num_labels, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("labelled", torch.zeros(num_labels, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("precision_sum", "recall_sum", "f1_sum", "samples"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("targets", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, preds: Tensor, target: Tensor, mask: Tensor) -> None:
        """``probs``, ``target`` float ``[B, k]``; ``preds``, ``mask`` bool ``[B, k]``."""
        truth = target > 0.5
        known = mask.double()
        self.correct += ((preds == truth).double() * known).sum(0)
        self.labelled += known.sum(0)
        tp = (preds & truth & mask).double().sum(1)
        fp = (preds & ~truth & mask).double().sum(1)
        fn = (~preds & truth & mask).double().sum(1)
        has_labels = mask.any(1)
        self.precision_sum += _ratio(tp, tp + fp)[has_labels].sum()
        self.recall_sum += _ratio(tp, tp + fn)[has_labels].sum()
        self.f1_sum += _ratio(2 * tp, 2 * tp + fp + fn)[has_labels].sum()
        self.samples += has_labels.sum()
        self.scores.append(probs.detach().float())
        self.targets.append(torch.where(mask, truth.long(), -1))

    def compute(self) -> dict[str, float]:
        has = self.labelled > 0
        accuracy = (self.correct[has] / self.labelled[has]).mean()
        n = self.samples.clamp_min(1)
        return {
            "accuracy": float(accuracy) if has.any() else math.nan,
            "precision": float(self.precision_sum / n),
            "recall": float(self.recall_sum / n),
            "f1": float(self.f1_sum / n),
            "mAP": self._mean_average_precision(),
        }

    def _average_precisions(self) -> list[float]:
        """AP of each label over the samples that label it (NaN for a label with no positive)."""
        scores = torch.cat(self.scores) if isinstance(self.scores, list) else self.scores
        targets = torch.cat(self.targets) if isinstance(self.targets, list) else self.targets
        return [
            float(binary_average_precision(scores[:, j], targets[:, j], ignore_index=-1))
            if (targets[:, j] == 1).any()
            else math.nan
            for j in range(self.num_labels)
        ]

    def _mean_average_precision(self) -> float:
        aps = [a for a in self._average_precisions() if not math.isnan(a)]
        return sum(aps) / len(aps) if aps else math.nan

    def per_label(self) -> dict[str, list[float]]:
        """Each label's accuracy and AP (NaN where a label was never seen): what an ablation compares per
        characteristic (the paper discusses "pointy nose", "oval face", "arched eyebrows")."""
        accuracy = torch.where(self.labelled > 0, self.correct / self.labelled.clamp_min(1), math.nan)
        return {"accuracy": accuracy.tolist(), "ap": self._average_precisions()}


class GroupMetrics(Metric):
    """Categorical metrics for one one-hot group; samples whose class is not fully known are left out."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor, mask: Tensor) -> None:
        """``probs``, ``target`` ``[B, C]`` for the group's members; ``mask`` bool ``[B, C]``."""
        known = mask.all(1) & ((target > 0.5).sum(1) == 1)
        truth = target[known].argmax(1)
        pred = probs[known].argmax(1)
        index = truth * self.num_classes + pred
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view_as(self.confusion).double()

    def compute(self) -> dict[str, float]:
        c = self.confusion
        tp = c.diagonal()
        support, predicted = c.sum(1), c.sum(0)
        present = support > 0
        recall = _ratio(tp, support)
        precision = _ratio(tp, predicted)
        f1 = _ratio(2 * tp, support + predicted)
        total = c.sum()
        return {
            "accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "recall": float(recall[present].mean()) if present.any() else math.nan,
            "precision": float(precision[present].mean()) if present.any() else math.nan,
            "f1": float(f1[present].mean()) if present.any() else math.nan,
        }


class AgeMetrics(Metric):
    """MAE and CS@5 of age estimates in years: a model's ``sum_b p_b * years_b / sum_b p_b`` over the age bins
    (:meth:`update`, via :func:`expected_age`, which ``faceinsight predict``'s ``age_years`` also uses), or years read
    from free-text answers (:meth:`update_years`, ``faceinsight eval-text``); :meth:`update_years` scores both."""

    full_state_update = False

    def __init__(self, bin_years: Sequence[float] = (), threshold: float = 5.0) -> None:
        super().__init__()
        self.threshold = threshold
        self.register_buffer("bin_years", torch.tensor(list(bin_years)), persistent=False)
        for name in ("abs_error", "within", "count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, bin_probs: Tensor, years: Tensor) -> None:
        self.update_years(expected_age(bin_probs, self.bin_years), years)

    def update_years(self, estimate: Tensor, years: Tensor) -> None:
        """Estimated against true years; a face counts where both are known (not NaN)."""
        known = ~torch.isnan(years) & ~torch.isnan(estimate)
        error = (estimate - years)[known].abs().double()
        self.abs_error += error.sum()
        self.within += (error <= self.threshold).sum()
        self.count += known.sum()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"mae": math.nan, "cs@5": math.nan}
        return {"mae": float(self.abs_error / self.count), "cs@5": float(self.within / self.count)}


class ConsistencyMetrics(Metric):
    """Share of samples whose predictions satisfy every hard rule (``consistency``) and every rule, soft ones
    included (``consistency_all``), and the violation rate of each rule."""

    full_state_update = False

    def __init__(self, hard: Tensor) -> None:
        super().__init__()
        self.register_buffer("hard", hard.bool().clone(), persistent=False)
        self.add_state("violations", torch.zeros(len(hard), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("consistent", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("consistent_all", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, satisfied: Tensor) -> None:
        """``satisfied`` bool ``[B, R]``."""
        self.violations += (~satisfied).double().sum(0)
        self.consistent += satisfied[:, self.hard].all(1).sum()
        self.consistent_all += satisfied.all(1).sum()
        self.count += satisfied.shape[0]

    def compute(self) -> dict[str, float]:
        n = self.count.clamp_min(1)
        return {
            "consistency": float(self.consistent / n),
            "consistency_all": float(self.consistent_all / n),
            "mean_rule_violation": float((self.violations / n).mean()),
        }

    def per_rule(self) -> list[float]:
        """Each rule's violation rate, over the samples of every process (under DDP, like ``compute``)."""
        with self.sync_context():
            return (self.violations / self.count.clamp_min(1)).tolist()


class DatasetMetrics(torch.nn.Module):
    """All metrics of one dataset, per task of its schema; indices refer to the model's K characteristics."""

    def __init__(self, schema: Schema, characteristics: list[str], hard_rules: Tensor) -> None:
        super().__init__()
        position = {name: i for i, name in enumerate(characteristics)}
        # A binary attribute counts here even when it also belongs to a group (CelebA's Male is both the
        # 40-attribute metric's and the gender task's).
        attrs = [position[n] for n in schema.attributes if n in position]
        self.attribute_names = [n for n in schema.attributes if n in position]
        self.register_buffer("attribute_index", torch.tensor(attrs, dtype=torch.long), persistent=False)
        self.attributes = AttributeMetrics(len(attrs)) if attrs else None
        self.groups = torch.nn.ModuleDict()
        for group in schema.groups:
            self.register_buffer(f"{group}_index", torch.tensor([position[n] for n in GROUPS[group]]), persistent=False)
            self.groups[group] = GroupMetrics(len(GROUPS[group]))
        self.age = AgeMetrics([AGE_BIN_YEARS[n] for n in GROUPS["age"]]) if "age" in schema.groups else None
        self.consistency = ConsistencyMetrics(hard_rules) if len(hard_rules) else None

    def update(
        self,
        probs: Tensor,
        preds: Tensor,
        labels: Tensor,
        mask: Tensor,
        ages: Tensor | None = None,
        satisfied: Tensor | None = None,
    ) -> None:
        """All tensors over the model's K characteristics; ``satisfied`` is ``[B, R]`` for the rules."""
        if self.attributes is not None:
            i = self.attribute_index
            self.attributes.update(probs[:, i], preds[:, i], labels[:, i], mask[:, i])
        for group, metric in self.groups.items():
            i = getattr(self, f"{group}_index")
            metric.update(probs[:, i], labels[:, i], mask[:, i])
            if group == "age" and self.age is not None and ages is not None:
                self.age.update(probs[:, i], ages)
        if self.consistency is not None and satisfied is not None:
            self.consistency.update(satisfied)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.attributes is not None:
            out.update({f"attributes/{k}": v for k, v in self.attributes.compute().items()})
        for group, metric in self.groups.items():
            out.update({f"{group}/{k}": v for k, v in metric.compute().items()})
        if self.age is not None:  # only datasets that give ages in years: compute's count is over every process
            age = self.age.compute()
            if not math.isnan(age["mae"]):
                out.update({f"age/{k}": v for k, v in age.items()})
        if self.consistency is not None:
            out.update(self.consistency.compute())
        return out

    def per_characteristic(self) -> dict[str, dict[str, float]]:
        """Binary attributes' own accuracy and AP, by name (call before ``reset``)."""
        if self.attributes is None:
            return {}
        per = self.attributes.per_label()
        return {n: {k: v[j] for k, v in per.items()} for j, n in enumerate(self.attribute_names)}

    def reset(self) -> None:
        for m in self.modules():
            if isinstance(m, Metric):
                m.reset()


def score_probabilities(
    schema: Schema, names: Sequence[str], probs: Tensor, labels: Tensor, mask: Tensor, ages: Tensor
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One dataset's metrics for probabilities ``[N, K]`` thresholded at 0.5, with no rules, and each binary
    attribute's accuracy and AP by name: how a linear probe (or a constant baseline) is scored."""
    metrics = DatasetMetrics(schema, list(names), torch.zeros(0, dtype=torch.bool))
    metrics.update(probs, probs >= 0.5, labels, mask, ages)
    return metrics.compute(), metrics.per_characteristic()
