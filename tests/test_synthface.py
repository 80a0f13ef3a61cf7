"""SynthFace: determinism, shapes, map/label consistency, label noise, and the CelebA prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceinsight.data.synthface import SynthFace, SynthFaceConfig
from faceinsight.data.synthface.labels import (
    EXPR_SLICE,
    FEMALE,
    A,
    CleanLabels,
    add_label_noise,
    age_bin_index,
    apply_hard_fixes,
    sample_clean_labels,
)
from faceinsight.data.synthface.preview import main as preview_main
from faceinsight.data.synthface.prior import (
    conditional_cooccurrence,
    fit_mixture,
    fit_tree,
    load_prior,
    load_real_labels,
    prior_errors,
)
from faceinsight.data.synthface.render import EAR_R, EYE_G, HAIR, HAT, MOUTH, NECK_L, render_face
from faceinsight.vocab import AGE_BINS, SCHEMAS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def dataset() -> SynthFace:
    return SynthFace(300, seed=3, config=SynthFaceConfig(size=64, difficulty=0.6))


def test_shapes_dtypes_and_key(dataset: SynthFace) -> None:
    s = dataset[5]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 64, 64)
    assert s["segmap"].dtype == torch.int64 and s["segmap"].shape == (64, 64)
    assert s["labels"].dtype == torch.float32 and s["labels"].shape == (57,)
    assert s["label_mask"].dtype == torch.bool and bool(s["label_mask"].all())
    assert s["age"].dtype == torch.float32 and s["key"] == "synthface/3/5"
    assert len(SCHEMAS["synthface"].characteristics) == 57
    assert int(s["segmap"].min()) >= 0 and int(s["segmap"].max()) <= 18


def test_determinism_independent_of_order_and_length(dataset: SynthFace) -> None:
    forward = [dataset[i] for i in (0, 1, 2, 7)]
    again = SynthFace(2000, seed=3, config=SynthFaceConfig(size=64, difficulty=0.6))  # other length, other order
    for i, s in zip((7, 2, 1, 0), [again[i] for i in (7, 2, 1, 0)], strict=True):
        ref = forward[(0, 1, 2, 7).index(i)]
        assert torch.equal(ref["image"], s["image"]) and torch.equal(ref["segmap"], s["segmap"])
        assert torch.equal(ref["labels"], s["labels"]) and ref["key"] == s["key"]
    other = SynthFace(10, seed=4, config=SynthFaceConfig(size=64, difficulty=0.6))
    assert not torch.equal(other[0]["image"], forward[0]["image"])


def test_label_matrix_matches_items(dataset: SynthFace) -> None:
    labels, mask = dataset.label_matrix()
    assert labels.shape == (300, 57) and bool(mask.all())
    for i in (0, 17, 299):
        s = dataset[i]
        assert torch.equal(s["labels"], labels[i]) and s["age"] == dataset.ages()[i]


def test_groups_are_one_hot_and_consistent(dataset: SynthFace) -> None:
    labels, _ = dataset.label_matrix()
    assert torch.all(labels[:, 40:49].sum(1) == 1) and torch.all(labels[:, EXPR_SLICE].sum(1) == 1)
    assert torch.all(labels[:, FEMALE] == 1 - labels[:, A["Male"]])
    bins = torch.from_numpy(age_bin_index(dataset.ages().numpy()))
    assert torch.equal(labels[:, 40:49].argmax(1), bins)
    young = labels[:, A["Young"]] > 0
    assert dataset.ages()[young].mean() < dataset.ages()[~young].mean() - 10


def test_segmap_agrees_with_labels(dataset: SynthFace) -> None:
    c = dataset.clean
    checks = {"Bald": 0, "Eyeglasses": 0, "Wearing_Hat": 0, "Wearing_Earrings": 0, "Wearing_Necklace": 0}
    for i in range(len(dataset)):
        seg = dataset.render(i)[1]
        on = {n: bool(c.attributes[i, A[n]]) for n in checks}
        if on["Bald"]:  # no hair above the brows (sideburns may remain beside the ears)
            brow_rows = np.nonzero((seg == 6) | (seg == 7))[0]
            top = brow_rows.min() - 2 if len(brow_rows) else 64
            assert not (seg[:top] == HAIR).any(), f"bald face {i} has hair pixels above the brows"
            assert (seg == HAIR).sum() < 0.02 * seg.size
            checks["Bald"] += 1
        for name, cls in (("Eyeglasses", EYE_G), ("Wearing_Hat", HAT), ("Wearing_Necklace", NECK_L)):
            assert (seg == cls).any() == on[name] or not on[name], f"{name} face {i} lacks class {cls}"
            assert not (seg == cls).any() or on[name], f"face {i} has class {cls} without {name}"
            checks[name] += on[name]
        if on["Wearing_Earrings"]:
            checks["Wearing_Earrings"] += 1
        assert (seg == EAR_R).any() <= on["Wearing_Earrings"]
    assert all(v > 0 for v in checks.values()), checks


def test_clean_frontal_faces_have_all_parts() -> None:
    rng = np.random.default_rng(0)
    attrs = np.zeros(40, dtype=bool)
    attrs[[A["Mouth_Slightly_Open"], A["Male"], A["No_Beard"]]] = True
    image, seg = render_face(attrs, 30.0, 0, rng, SynthFaceConfig(difficulty=0.0))
    assert {0, 1, 2, 4, 5, 6, 7, 10, 11, 12, 13, 17, 18} <= set(np.unique(seg).tolist())
    # the image's left half holds the person's right eye (CelebAMask-HQ's convention)
    assert np.nonzero(seg == 5)[1].mean() < 32 < np.nonzero(seg == 4)[1].mean()
    assert (seg == MOUTH).sum() > 0 and image.std() > 10


def test_hard_fixes_enforce_rules() -> None:
    rng = np.random.default_rng(1)
    x = apply_hard_fixes(rng.random((5000, 40)) < 0.5, rng)
    hair_colours = x[:, [A[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")]]
    assert hair_colours.sum(1).max() <= 1
    assert not (x[:, A["Bald"]] & (x[:, A["Bangs"]] | x[:, A["Wavy_Hair"]] | hair_colours.any(1))).any()
    assert not (x[:, A["No_Beard"]] & (x[:, A["Goatee"]] | x[:, A["Mustache"]] | x[:, A["5_o_Clock_Shadow"]])).any()
    assert not (x[:, A["Straight_Hair"]] & x[:, A["Wavy_Hair"]]).any()
    assert not (~x[:, A["Male"]] & ~x[:, A["No_Beard"]]).any()


def test_label_noise_rate_and_one_hot() -> None:
    rng = np.random.default_rng(2)
    clean = sample_clean_labels(rng.random((20000, 40)) < 0.3, rng)
    noisy, age = add_label_noise(clean, 0.1, np.random.default_rng(3))
    exact, _ = add_label_noise(clean, 0.0, np.random.default_rng(3))
    flip = (noisy[:, :40] != exact[:, :40]).mean()
    assert abs(flip - 0.1) < 0.01
    assert np.all(noisy[:, 40:49].sum(1) == 1) and np.all(noisy[:, EXPR_SLICE].sum(1) == 1)
    assert abs((noisy[:, EXPR_SLICE].argmax(1) != clean.expression).mean() - 0.1) < 0.01
    assert np.array_equal(noisy[:, 40:49].argmax(1), age_bin_index(age))
    ds = SynthFace(50, seed=0, config=SynthFaceConfig(label_noise=0.5))
    ref = SynthFace(50, seed=0)
    assert torch.equal(ds[3]["image"], ref[3]["image"])  # the image is rendered from the clean labels
    assert not torch.equal(ds.label_matrix()[0], ref.label_matrix()[0])


def test_age_bins_match_vocab() -> None:
    ages = np.array([0.5, 2.99, 3.0, 19.5, 20.0, 69.9, 70.0, 94.0])
    expected = [next(k for k, (_, lo, hi) in enumerate(AGE_BINS) if lo <= a < hi) for a in ages]
    assert age_bin_index(ages).tolist() == expected


def test_prior_samples_match_json_marginals() -> None:
    model, doc = load_prior()
    x = model.sample(100_000, np.random.default_rng(0))
    # the JSON stores the real marginals; a good prior reproduces them within sampling noise + fit error
    assert np.abs(x.mean(0) - np.array(doc["real_marginals"])).max() < 0.02
    # and the SynthFace labels, after the hard fixes, stay close too
    labels, _ = SynthFace(5000, seed=0).label_matrix()
    assert np.abs(labels[:, :40].numpy().mean(0) - np.array(doc["real_marginals"])).mean() < 0.02
    assert (
        doc["comparison"][doc["selected"]]["cooccurrence_mae"] < doc["comparison"]["chow_liu_tree"]["cooccurrence_mae"]
    )


def test_chow_liu_recovers_a_chain_and_cooccurrence_is_brute_force() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    a = rng.random(n) < 0.5
    b = np.where(rng.random(n) < 0.9, a, ~a)  # a -> b -> c chain, d independent
    c = np.where(rng.random(n) < 0.8, b, ~b)
    d = rng.random(n) < 0.3
    x = np.stack([a, b, c, d], 1)
    tree = fit_tree(x, alpha=0.0)
    edges = {frozenset((j, int(tree.parent[j]))) for j in range(4) if tree.parent[j] >= 0}
    assert frozenset((0, 1)) in edges and frozenset((1, 2)) in edges
    j = 2 if tree.parent[2] == 1 else 1
    i = int(tree.parent[j])
    assert abs(tree.p[j, 1] - (x[:, j] & x[:, i]).sum() / x[:, i].sum()) < 1e-9
    p, cnt = conditional_cooccurrence(x)
    assert p[0, 1] == pytest.approx((a & b).sum() / a.sum()) and cnt[3] == d.sum()
    mix = fit_mixture(x, 2, edges=True, iters=5, names=("a", "b", "c", "d"))
    assert prior_errors(x, mix.sample(50000, rng))["cooccurrence_mae"] < 0.02


def test_preview_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    preview_main(["--out", str(out), "--n", "4", "--size", "32", "--difficulty", "1"])
    from PIL import Image

    assert Image.open(out).size[0] > 100


def test_prior_against_real_celeba() -> None:
    if not (DATA / "celeba" / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA label files absent under {DATA}")
    real = load_real_labels(DATA)
    model, doc = load_prior()
    rng = np.random.default_rng(0)
    err = prior_errors(real, apply_hard_fixes(model.sample(50_000, rng), rng))
    assert err["cooccurrence_mae"] < 0.025 and err["marginal_mae"] < 0.01
    assert doc["source"]["rows"] == len(real)
    assert json.dumps(doc).count(".jpg") == 0  # derived statistics only


def test_clean_labels_dataclass_roundtrip() -> None:
    rng = np.random.default_rng(5)
    clean = sample_clean_labels(rng.random((10, 40)) < 0.3, rng)
    assert isinstance(clean, CleanLabels) and clean.age.dtype == np.float32
