"""The training sampler: balanced draws (floor or ceil of each item's expected count) against a brute-force count,
one dataset alone as a permutation per epoch, the mixture's shares, determinism per (seed, epoch), and DDP shards."""

from __future__ import annotations

import math

import pytest
import torch

from faceinsight.data.module import WeightedDraws, balanced_counts


@pytest.mark.parametrize("seed", range(5))
def test_balanced_counts_are_floor_or_ceil_of_the_expected_counts(seed):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(101, generator=generator, dtype=torch.float64) ** 3  # very unequal
    n = 1000
    expected = weights / weights.sum() * n
    counts = balanced_counts(expected, generator)
    assert int(counts.sum()) == n
    for c, e in zip(counts.tolist(), expected.tolist(), strict=True):
        assert c in (math.floor(e), math.ceil(e)), (c, e)


def test_balanced_counts_are_unbiased():
    """Averaged over many draws, each item's count approaches its expected count (brute force, 4,000 draws)."""
    expected = torch.tensor([0.2, 0.5, 1.0, 1.3, 2.5, 0.5], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    mean = torch.stack([balanced_counts(expected, generator) for _ in range(4000)]).double().mean(0)
    assert torch.allclose(mean, expected, atol=0.03)


def test_one_dataset_alone_is_a_permutation_every_epoch():
    n = 3954  # UTKFace's training split: with replacement, one epoch saw 2,537 distinct faces
    sampler = WeightedDraws(torch.full((n,), 1 / n, dtype=torch.float64), n, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        draws = list(sampler)
        assert sorted(draws) == list(range(n))
        epochs.append(draws)
    assert epochs[0] != epochs[1] != epochs[2]  # a new order each epoch
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # and the same order for the same (seed, epoch)

    old = WeightedDraws(torch.full((n,), 1 / n, dtype=torch.float64), n, seed=0, draws="replacement")
    assert len(set(old)) < 0.7 * n  # what the old sampler did: about 1 - 1/e of the faces


def test_mixture_shares_follow_the_weights_without_repeating_the_large_dataset():
    small, large = 50, 5000
    weights = torch.cat([torch.full((small,), 0.5 / small), torch.full((large,), 0.5 / large)]).double()
    sampler = WeightedDraws(weights, 2000, seed=3)
    draws = torch.tensor(list(sampler))
    counts = torch.bincount(draws, minlength=small + large)
    assert (counts[:small] == 20).all()  # the small dataset: each face exactly 1000 / 50 times
    assert set(counts[small:].tolist()) <= {0, 1}  # the large one: 1,000 distinct faces, none twice


def test_ddp_ranks_split_one_list():
    n = 103
    weights = torch.full((n,), 1.0, dtype=torch.float64)
    whole = list(WeightedDraws(weights, n, seed=7))
    shards = [list(WeightedDraws(weights, n, num_replicas=2, rank=r, seed=7)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 52
    padded = whole + whole[:1]
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2]


def test_unknown_draws_is_an_error():
    with pytest.raises(ValueError, match="draws must be"):
        WeightedDraws(torch.ones(3), 3, draws="sometimes")


@pytest.mark.parametrize(("mix", "power"), [("equal", 0.0), ("sqrt", 0.5), ("size", 1.0)])
def test_mix_shares_are_weight_times_size_to_the_power(mix, power):
    """Each dataset's share of the face weights, and of an epoch's draws, is ``weight * N ** a`` normalised."""
    from faceinsight.data.module import DatasetSpec, FaceDataModule

    sizes, weights = (16, 144), (3.0, 1.0)
    specs = [
        DatasetSpec("synthface", weight=w, options={"num_train": n, "num_val": 2, "num_test": 2, "seed": i, "size": 16})
        for i, (n, w) in enumerate(zip(sizes, weights, strict=True))
    ]
    dm = FaceDataModule(specs, with_segmaps=False, num_workers=0, mix=mix, samples_per_epoch=3200)
    raw = [w * n**power for n, w in zip(sizes, weights, strict=True)]
    expected = [r / sum(raw) for r in raw]
    assert dm.dataset_shares() == pytest.approx(expected, rel=1e-12)
    faces = dm.face_weights()
    assert float(faces[: sizes[0]].sum()) == pytest.approx(expected[0], rel=1e-12)
    assert float(faces.sum()) == pytest.approx(1.0, rel=1e-12)
    drawn = torch.tensor(list(WeightedDraws(faces, 3200, seed=0)))
    assert int((drawn < sizes[0]).sum()) == pytest.approx(3200 * expected[0], abs=1)  # balanced: floor or ceil


def test_unknown_mix_is_an_error():
    from faceinsight.data.module import FaceDataModule

    with pytest.raises(ValueError, match="mix must be one of"):
        FaceDataModule(mix="proportional")
