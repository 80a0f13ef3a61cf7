"""The frozen-feature cache: training from it is training without it, any change of what it depends on makes a new
entry, rows are checked against the dataset's keys, and concurrent builds of one entry leave one valid entry."""

from __future__ import annotations

import copy
import json
import multiprocessing
import re
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader

from faceinsight.data.module import DatasetSpec, FaceDataModule
from faceinsight.model.encoders import ImageEncoderConfig, LLMConfig, SegEncoderConfig
from faceinsight.model.faceinsight import Visual
from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.features import FeatureCache, encoder_identity, read_rows, view_identity

ROOT = Path(__file__).resolve().parents[1]
RULES = [str(ROOT / f"rules/{r}.rules") for r in ("celeba", "demographics", "expression")]


def data(image_size: int = 64) -> FaceDataModule:
    """Two small SynthFace sets (so training batches mix datasets), their faces kept in memory."""
    specs = [
        DatasetSpec(kind="synthface", options={"num_train": 16, "num_val": 8, "num_test": 8, "size": 64, "seed": s})
        for s in (0, 1)
    ]
    return FaceDataModule(specs, batch_size=8, num_workers=0, image_size=image_size, cache_samples=True)


def module(trainable: str | None = None, **kwargs) -> FaceInsightModule:
    """A tiny FaceInsight with frozen encoders (``trainable`` names one to unfreeze), the same weights every call."""
    torch.manual_seed(0)
    image = ImageEncoderConfig(arch=dict(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64))  # fmt: skip
    seg = SegEncoderConfig(arch=dict(img_size=64, patch_size=16, embed_dim=24, depth=1, num_heads=2))
    llm = LLMConfig(arch=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              num_key_value_heads=2, max_position_embeddings=256))  # fmt: skip
    configs = {"image_encoder": image, "seg_encoder": seg}
    if trainable:
        configs[trainable].trainable = True
    return FaceInsightModule(data().characteristics, llm=llm, rules=RULES, **configs, **kwargs)


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)  # fmt: skip


def mixed_batch(dm: FaceDataModule, split: str) -> dict[str, Tensor]:
    """A batch drawn across the split's datasets, in a shuffled order."""
    loader = DataLoader(ConcatDataset(dm.views(split)), batch_size=12, shuffle=True,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    return next(iter(loader))


def test_training_and_evaluation_from_the_cache_match_encoding(tmp_path, monkeypatch):
    runs = {}
    for cached in (False, True):
        L.seed_everything(0)
        m = module(feature_cache=cached, feature_cache_dir=str(tmp_path / "features"),
                   metrics_file=str(tmp_path / f"metrics_{cached}.json"))  # fmt: skip
        dm = data()
        t = trainer(tmp_path, max_epochs=1, limit_val_batches=1, num_sanity_val_steps=0)
        t.fit(m, dm)
        fitted = {k: float(v) for k, v in t.callback_metrics.items()}
        t.test(m, dm)
        runs[cached] = m, dm, fitted, {k: float(v) for k, v in t.callback_metrics.items()}
    (plain, _, plain_fit, plain_test), (m, dm, fit, test) = runs[False], runs[True]
    assert {"train/loss", "val/synthface0/loss", "val/synthface1/loss"} <= set(fit)
    for key, value in [*fit.items(), *test.items()]:
        reference = plain_fit.get(key, plain_test.get(key))
        assert value == pytest.approx(reference, rel=1e-5, abs=1e-6), key
    for (name, p), q in zip(m.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)

    report = json.loads((tmp_path / "metrics_True.json").read_text())["run"]["features"]
    assert report["cache"] is True and set(report["entries"]) == {"train", "val", "test"}
    assert all(e["built"] and Path(e["path"]).is_dir() for entries in report["entries"].values() for e in entries)
    assert json.loads((tmp_path / "metrics_False.json").read_text())["run"]["features"] == {"cache": False}

    # The logits and losses of mixed batches of every split, from the cached rows and from the images.
    m.eval()
    for split in ("train", "val", "test"):
        m.prepare_features(split)
        batch = mixed_batch(dm, split)
        assert len(set(batch["dataset"].tolist())) == 2
        with torch.no_grad():
            cached = read_rows(m.feature_entries[split], batch["dataset"], batch["index"], batch["key"])
            encoded = m.model.encode(batch["image"], batch["segmap"])
            torch.testing.assert_close(
                m.model(None, visual=cached), m.model(None, visual=encoded), rtol=1e-5, atol=1e-5
            )
            losses = []
            for visual in (cached, encoded):
                monkeypatch.setattr(m, "visual", lambda batch, visual=visual: visual)
                losses.append(m.losses(batch)[0])
            torch.testing.assert_close(*losses, rtol=1e-5, atol=1e-5)

    # A second run finds the entries on disk.
    L.seed_everything(0)
    again = module(feature_cache=True, feature_cache_dir=str(tmp_path / "features"))
    trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0).fit(again, data())
    assert [e["built"] for e in again.feature_report()["entries"]["train"]] == [False, False]


def test_a_change_of_weights_image_size_or_map_source_makes_a_new_entry(tmp_path):
    m, dm = module(), data()
    cache = FeatureCache(tmp_path)
    modes = [sub.training for sub in m.model.modules()]  # frozen backbones in eval mode inside wrappers in training
    first = cache.split_entries(m.model, dm, "val")[0]
    assert first.built and first.image.shape[0] == 8 and first.seg is not None
    assert [sub.training for sub in m.model.modules()] == modes  # the build's eval mode is undone module by module
    reused = FeatureCache(tmp_path).split_entries(m.model, dm, "val")[0]
    assert reused.path == first.path and not reused.built

    changed = copy.deepcopy(m.model)
    with torch.no_grad():
        next(changed.image_encoder.parameters()).view(-1)[0] += 1e-4
    assert cache.split_entries(changed, dm, "val")[0].path != first.path

    view = dm.views("val")[0]
    view.about["segmaps"] = "unet-another-parser"
    assert cache.split_entries(m.model, dm, "val")[0].path not in (first.path, reused.path)

    def folder(dm: FaceDataModule) -> Path:  # a 32 px entry cannot be encoded by a 64 px ViT: compare its folder
        identity = {**view_identity(dm.specs[0], dm.views("val")[0], "val", True), **encoder_identity(m.model)}
        return cache.folder("val", identity)

    assert folder(data(32)) != folder(data(64))
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 5  # 2 datasets, 2 with new weights, 1 new map


def test_misaligned_rows_are_an_error_naming_the_file_and_the_row(tmp_path):
    m, dm = module(), data()
    entry = FeatureCache(tmp_path).split_entries(m.model, dm, "test")[0]
    keys_file = entry.path / "keys.json"
    with pytest.raises(ValueError, match=re.escape(f"{keys_file}: row 1 holds the features of 'synthface/2/1'")):
        read_rows([entry], torch.tensor([0, 0]), torch.tensor([0, 1]), ["synthface/2/0", "synthface/2/5"])
    keys = json.loads(keys_file.read_text())
    keys[3], keys[5] = keys[5], keys[3]
    keys_file.write_text(json.dumps(keys))
    with pytest.raises(ValueError, match=re.escape(f"{keys_file}: row 3 holds the features of 'synthface/2/5'")):
        FeatureCache(tmp_path).split_entries(m.model, dm, "test")


@pytest.mark.parametrize("encoder", ["image_encoder", "seg_encoder"])
def test_the_cache_with_a_trainable_encoder_is_an_error(encoder):
    with pytest.raises(ValueError, match=rf"\({encoder}\) is trainable.*--model\.{encoder}\.trainable false"):
        module(trainable=encoder, feature_cache=True)


ITEMS = [{"image": torch.full((3, 4, 4), float(i)), "key": f"face{i}"} for i in range(12)]


def slow_encode(image: Tensor, segmap: Tensor | None) -> Visual:
    time.sleep(0.05)  # a build long enough for the other process to arrive while it runs
    return Visual(image.flatten(2).transpose(1, 2) * 2, None)


def build_race_entry(root: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    torch.set_num_threads(1)  # a forked child: no OpenMP pool inherited half-way
    start.wait()
    entry = FeatureCache(root).entry("race", {"test": "race"}, [i["key"] for i in ITEMS], ITEMS, slow_encode,
                                     batch_size=4)  # fmt: skip
    out.put((str(entry.path), entry.built, entry.image[5].tolist()))


def test_two_processes_building_one_entry_leave_one_valid_entry(tmp_path):
    context = multiprocessing.get_context("fork")  # "spawn" works too, but re-imports torch and lightning: 20 s
    start, out = context.Barrier(2), context.Queue()
    workers = [context.Process(target=build_race_entry, args=(str(tmp_path), start, out)) for _ in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    paths, built, rows = zip(*results, strict=True)
    assert paths[0] == paths[1] and sorted(built) == [False, True]
    assert rows[0] == rows[1] == [[10.0] * 3] * 16
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [Path(paths[0]).name]  # no temporary folder left

    # Without a working lock both build: the second rename fails, and it reads the first's entry.
    cache = FeatureCache(tmp_path)
    identity = {"test": "race", "keys": "x"}
    keys = [i["key"] for i in ITEMS]
    late = cache._build(
        Path(paths[0]), identity, keys, lambda f: cache._encode(f, "race", keys, ITEMS, slow_encode, "cpu", 4, 0)
    )
    assert late is False
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [Path(paths[0]).name]
