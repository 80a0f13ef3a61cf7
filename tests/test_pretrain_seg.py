"""``faceinsight pretrain seg``: the masking and its loss, training on a few SynthFace maps, the checkpoint that
``seg_encoder.checkpoint`` loads, and the linear probe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceinsight.cli import TOOLS
from faceinsight.data.module import DatasetSpec
from faceinsight.model.encoders import SegEncoder, SegEncoderConfig
from faceinsight.train.pretrain import common, seg

TINY = [DatasetSpec(kind="synthface", options=dict(num_train=48, num_val=16, num_test=8, size=64))]


def tiny_config(tmp_path: Path, **overrides: object) -> seg.SegPretraining:
    settings: dict = dict(datasets=TINY, out=str(tmp_path / "seg"), batch_size=16, max_steps=4, lr=3e-3, warmup=0.0)
    return seg.SegPretraining(**(settings | overrides))


@pytest.fixture(scope="module")
def tiny_maps() -> seg.MapSet:
    data = common.open_data(TINY, batch_size=16, with_segmaps=True)
    return seg.map_set(data, data.views("train"), progress=False)


def test_masked_loss_is_the_cross_entropy_over_masked_pixels_only() -> None:
    """Brute force on a 4x4 map of 3 classes in 2x2 patches: the mean over every pixel of every masked patch."""
    gen = torch.Generator().manual_seed(1)
    b, s, p, c = 2, 4, 2, 3
    segmap = torch.randint(0, c, (b, s, s), generator=gen)
    logits = torch.randn(b, (s // p) ** 2, p * p * c, generator=gen)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    terms = []
    for i in range(b):
        for n in range(4):
            if mask[i, n]:
                row, col = divmod(n, s // p)  # patches row-major, as the ViT orders its tokens
                for y in range(p):
                    for x in range(p):
                        pixel = logits[i, n, (y * p + x) * c : (y * p + x + 1) * c]
                        target = segmap[i, row * p + y, col * p + x]
                        terms.append(F.cross_entropy(pixel[None], target[None]))
    expected = torch.stack(terms).mean()
    assert len(terms) == 3 * p * p
    assert torch.allclose(seg.masked_map_loss(logits, segmap, mask, p), expected, atol=1e-6)
    changed = segmap.clone()
    changed[0, 0:2, 2:4] = (changed[0, 0:2, 2:4] + 1) % c  # patch 1 of map 0: not masked
    changed[1, 2:4, :] = (changed[1, 2:4, :] + 1) % c  # patches 2 and 3 of map 1: not masked
    assert torch.equal(seg.masked_map_loss(logits, changed, mask, p), seg.masked_map_loss(logits, segmap, mask, p))


def test_patch_order_and_mask_count() -> None:
    encoder = SegEncoder(seg.SegPretraining().encoder_config())
    segmap = torch.zeros(1, 64, 64, dtype=torch.long)
    segmap[0, 16:32, 48:64] = 5  # grid row 1, column 3: token 7
    moved = encoder.vit.patch_embed(encoder.onehot(segmap)) - encoder.vit.patch_embed(encoder.onehot(segmap * 0))
    assert moved.abs().sum(-1)[0].nonzero().flatten().tolist() == [7]
    assert seg.patchify(segmap, 16)[0].float().mean(1).nonzero().flatten().tolist() == [7]
    mask = seg.random_patch_mask(50, 16, 0.6, np.random.default_rng(0))
    assert mask.sum(1).tolist() == [10] * 50 and len({tuple(r) for r in mask.tolist()}) > 40


def test_masked_patches_are_hidden_from_the_encoder(tiny_maps: seg.MapSet) -> None:
    """No mask: exactly SegEncoder's tokens; with a mask, what the masked patches hold changes nothing."""
    model = seg.build_objective(seg.SegPretraining(objective="masked")).eval()
    assert isinstance(model, seg.MaskedMaps)
    maps = tiny_maps.maps[:4]
    with torch.no_grad():
        none = torch.zeros(4, 16, dtype=torch.bool)
        assert torch.equal(model.tokens(maps, none), model.encoder(maps))
        mask = seg.random_patch_mask(4, 16, 0.5, np.random.default_rng(0))
        pixels = mask.reshape(4, 4, 4).repeat_interleave(16, 1).repeat_interleave(16, 2)  # [4, 64, 64]
        assert torch.equal(seg.patchify(pixels.long(), 16).amax(-1).bool(), mask)
        scrambled = maps.clone()
        scrambled[pixels] = torch.randint(0, 19, (int(pixels.sum()),), dtype=torch.uint8)
        assert not torch.equal(scrambled, maps)
        assert torch.equal(model.tokens(scrambled, mask), model.tokens(maps, mask))
        assert not torch.allclose(model.tokens(scrambled, none), model.tokens(maps, none))


@pytest.mark.parametrize(("objective", "lr"), [("masked", 3e-3), ("caption", 3e-4)])
def test_training_lowers_the_loss(tmp_path: Path, tiny_maps: seg.MapSet, objective: str, lr: float) -> None:
    """Overfitting 16 maps, drawn with replacement in batches of 16 (the caption tower collapses to ln 16 at 3e-3)."""
    config = tiny_config(tmp_path, objective=objective, max_steps=40, lr=lr)
    few = seg.MapSet(tiny_maps.maps[:16], tiny_maps.labels[:16], tiny_maps.mask[:16], tiny_maps.ages[:16],
                     tiny_maps.names)  # fmt: skip
    _, losses = seg.train(config, few, torch.full((16,), 1 / 16, dtype=torch.float64), progress=False)
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5


def test_checkpoint_loads_unchanged_as_the_seg_encoder(tmp_path: Path, tiny_maps: seg.MapSet) -> None:
    config = tiny_config(tmp_path)
    model, _ = seg.train(config, tiny_maps, torch.full((48,), 1 / 48, dtype=torch.float64), progress=False)
    path = seg.save(model.encoder, tmp_path / "out")
    loaded = SegEncoder(SegEncoderConfig(checkpoint=str(path), arch=seg.preset_arch()))
    trained, reloaded = model.encoder.vit.state_dict(), loaded.vit.state_dict()
    assert trained.keys() == reloaded.keys()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)
    initial = seg.build_encoder(config).vit.state_dict()
    assert not torch.equal(initial["patch_embed.proj.weight"], reloaded["patch_embed.proj.weight"])
    model.encoder.eval()
    with torch.no_grad():
        assert torch.equal(loaded(tiny_maps.maps), model.encoder(tiny_maps.maps))


def test_probe_on_hand_checkable_features() -> None:
    # Features that say nothing: every face gets the training positive rate (3 of 4), masked labels not counted.
    labels = torch.tensor([[1.0], [1.0], [1.0], [0.0], [0.0]])
    mask = torch.tensor([[True], [True], [True], [True], [False]])
    constant = seg.fit_probe(torch.ones(5, 3), labels, mask, l2=1e-3)
    assert torch.allclose(constant(torch.randn(7, 3)), torch.full((7, 1), 0.75), atol=1e-6)
    # One informative feature: positives above 0.5 and negatives below, in order; the noise feature weighs little.
    x = torch.tensor([[-2.0, 0.3], [-1.0, -0.1], [1.0, 0.2], [2.0, -0.4]])
    y = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    fitted = seg.fit_probe(x, y, torch.ones_like(y, dtype=torch.bool), l2=0.1)
    probs = fitted(x)[:, 0]
    assert probs[0] < probs[1] < 0.5 < probs[2] < probs[3]
    assert abs(fitted.weight[0, 0]) > 5 * abs(fitted.weight[1, 0])
    # A strong penalty leaves only the bias: the positive rate.
    flat = seg.fit_probe(x, y, torch.ones_like(y, dtype=torch.bool), l2=1e6)
    assert torch.allclose(flat(x), torch.full((4, 1), 0.5), atol=1e-4)


def test_command_writes_a_checkpoint_and_a_probe_report(tmp_path: Path) -> None:
    assert TOOLS["pretrain"].commands["seg"].target == "faceinsight.train.pretrain.seg:main"
    argv = ["--out", str(tmp_path / "seg"), "--max_steps", "3", "--batch_size", "16"]
    argv += ["--datasets", json.dumps([vars(s) for s in TINY])]
    config = common.parse(seg.SegPretraining, argv, "faceinsight pretrain seg", "")
    report = seg.run(config, progress=False)
    saved = json.loads((tmp_path / "seg" / common.REPORT).read_text())
    assert saved["train"]["steps"] == 3 and (tmp_path / "seg" / seg.CHECKPOINT).is_file()
    assert saved["data"]["synthface"]["train"]["segmaps"] == "dataset"
    evaluation = report["evaluation"]
    assert evaluation["split"] == "val" and evaluation["probe"]["train_faces"] == 48
    for column in ("trained", "untrained", "majority_baseline"):
        assert 0 < evaluation[column]["synthface"]["attributes/mAP"] <= 1
    assert "Eyeglasses" in evaluation["per_characteristic"]["synthface"]
    assert set(saved["seconds"]) == {"setup", "train", "evaluate", "total"}
    assert "linear probe" in seg.format_table(evaluation)
