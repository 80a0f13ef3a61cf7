"""Metrics against brute-force per-sample / per-label references written out in plain Python."""

import math

import pytest
import torch

from faceinsight.eval.metrics import AgeMetrics, AttributeMetrics, ConsistencyMetrics, DatasetMetrics, GroupMetrics
from faceinsight.vocab import GROUPS, SCHEMAS


def average_precision(scores: list[float], truth: list[bool]) -> float:
    """AP as the mean precision at the rank of each positive (no ties in the test data)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if truth[i]:
            hits += 1
            total += hits / rank
    return total / hits


def test_attribute_metrics_match_brute_force():
    torch.manual_seed(1)
    b, k = 40, 5
    probs = torch.rand(b, k)
    target = (torch.rand(b, k) > 0.6).float()
    mask = torch.rand(b, k) > 0.2
    mask[0] = False  # a sample with no labels does not count
    preds = probs >= 0.5
    metric = AttributeMetrics(k)
    metric.update(probs[:20], preds[:20], target[:20], mask[:20])  # two batches accumulate
    metric.update(probs[20:], preds[20:], target[20:], mask[20:])
    out = metric.compute()

    acc = []
    for j in range(k):
        rows = [i for i in range(b) if mask[i, j]]
        acc.append(sum(bool(preds[i, j]) == bool(target[i, j]) for i in rows) / len(rows))
    assert out["accuracy"] == pytest.approx(sum(acc) / k)

    prec, rec, f1, n = 0.0, 0.0, 0.0, 0
    for i in range(b):
        cols = [j for j in range(k) if mask[i, j]]
        if not cols:
            continue
        tp = sum(bool(preds[i, j]) and bool(target[i, j]) for j in cols)
        fp = sum(bool(preds[i, j]) and not bool(target[i, j]) for j in cols)
        fn = sum(not bool(preds[i, j]) and bool(target[i, j]) for j in cols)
        prec += tp / (tp + fp) if tp + fp else 0.0
        rec += tp / (tp + fn) if tp + fn else 0.0
        f1 += 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        n += 1
    assert out["precision"] == pytest.approx(prec / n)
    assert out["recall"] == pytest.approx(rec / n)
    assert out["f1"] == pytest.approx(f1 / n)

    aps = []
    for j in range(k):
        rows = [i for i in range(b) if mask[i, j]]
        truth = [bool(target[i, j]) for i in rows]
        if any(truth):
            aps.append(average_precision([float(probs[i, j]) for i in rows], truth))
    assert out["mAP"] == pytest.approx(sum(aps) / len(aps), rel=1e-5)


def test_group_metrics_hand_computed():
    # 3 classes; truth 0,0,1,2,2 ; predicted 0,1,1,2,0 ; the last sample's class is unknown (masked).
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8], [0.6, 0.3, 0.1],
                          [0.9, 0.0, 0.0]])  # fmt: skip
    target = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]]).float()
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[5, 1] = False
    metric = GroupMetrics(3)
    metric.update(probs, target, mask)
    out = metric.compute()
    assert out["accuracy"] == pytest.approx(3 / 5)
    # per class: recall 1/2, 1/1, 1/2 ; precision 1/2, 1/2, 1/1 ; f1 1/2, 2/3, 2/3
    assert out["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert out["precision"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert out["f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_age_metrics_mae_and_cs5():
    metric = AgeMetrics([10.0, 30.0, 50.0])
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.2, 0.0]])  # estimates 10, 40, 20
    metric.update(probs, torch.tensor([12.0, 30.0, float("nan")]))  # the unknown age is left out
    out = metric.compute()
    assert out["mae"] == pytest.approx((2 + 10) / 2)
    assert out["cs@5"] == pytest.approx(1 / 2)


def test_consistency_separates_hard_and_soft_rules():
    metric = ConsistencyMetrics(torch.tensor([True, False]))
    satisfied = torch.tensor([[True, True], [True, False], [False, True], [False, False]])
    metric.update(satisfied)
    out = metric.compute()
    assert out["consistency"] == pytest.approx(2 / 4)  # hard rule 0 holds in samples 0 and 1
    assert out["consistency_all"] == pytest.approx(1 / 4)
    assert metric.per_rule() == pytest.approx([2 / 4, 2 / 4])


def test_dataset_metrics_split_tasks_by_schema():
    names = list(SCHEMAS["synthface"].characteristics)
    metrics = DatasetMetrics(SCHEMAS["synthface"], names, torch.zeros(0, dtype=torch.bool))
    assert metrics.attributes.num_labels == 40
    assert set(metrics.groups) == {"age", "gender", "expression"}
    probs = torch.rand(8, len(names))
    labels = torch.zeros(8, len(names))
    for group in GROUPS.values():  # one-hot labels for each group the schema has
        if group[0] in names:
            labels[:, names.index(group[0])] = 1
    metrics.update(probs, probs >= 0.5, labels, torch.ones_like(labels, dtype=torch.bool), torch.full((8,), 25.0))
    out = metrics.compute()
    assert {"attributes/mAP", "age/accuracy", "age/mae", "gender/f1", "expression/accuracy"} <= set(out)
    assert "consistency" not in out
    assert not math.isnan(out["age/mae"])
