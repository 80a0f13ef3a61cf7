"""Several datasets at once: label placement, sampling weights, per-dataset metrics, computed parsing maps."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from faceinsight.cli import run
from faceinsight.data.module import DatasetSpec, FaceDataModule, resize_image
from faceinsight.vocab import SCHEMAS, union

ROOT = Path(__file__).resolve().parents[1]
AGES = ["0-2", "3-9", "20-29", "30-39", "50-59", "more than 70"]
RACES = ["White", "Black", "East Asian", "Indian", "Latino_Hispanic", "Middle Eastern", "Southeast Asian"]


def make_fairface(root: Path, n_train: int = 24, n_val: int = 8) -> None:
    """A FairFace folder in its native layout: two CSVs and face crops."""
    for split, n in (("train", n_train), ("val", n_val)):
        rows = ["file,age,gender,race,service_test"]
        for i in range(n):
            name = f"{split}/{i + 1}.jpg"
            rows.append(f"{name},{AGES[i % len(AGES)]},{('Male', 'Female')[i % 2]},{RACES[i % len(RACES)]},False")
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), (20 * (i % 12), 100, 200 - 10 * (i % 12))).save(root / name)
        (root / f"fairface_label_{split}.csv").write_text("\n".join(rows) + "\n")


def test_labels_are_placed_at_model_positions_and_weights_set_the_mix(tmp_path):
    make_fairface(tmp_path / "fairface")
    dm = FaceDataModule(
        [
            DatasetSpec("synthface", weight=3.0, options={"num_train": 40, "num_val": 8, "num_test": 8}),
            DatasetSpec("fairface", root=str(tmp_path / "fairface"), weight=1.0, options={"val_fraction": 0.25}),
        ],
        batch_size=8,
        num_workers=0,
        with_segmaps=False,
        samples_per_epoch=4000,
    )
    assert dm.characteristics == union([SCHEMAS["synthface"], SCHEMAS["fairface"]])
    dm.setup("fit")
    loader = dm.train_dataloader()
    drawn = torch.tensor(list(iter(loader.sampler)))
    share = (drawn < len(dm.views("train")[0])).float().mean()
    assert share == pytest.approx(0.75, abs=0.03)  # weights 3:1, whatever the datasets' sizes

    fair = dm.views("train")[1]
    item = fair[0]
    names = dm.characteristics
    labelled = {names[i] for i in item["label_mask"].nonzero().flatten().tolist()}
    assert labelled == set(SCHEMAS["fairface"].characteristics)
    own_labels, _ = fair.dataset.label_matrix()
    for j, name in enumerate(SCHEMAS["fairface"].characteristics):
        assert item["labels"][names.index(name)] == own_labels[0, j]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32


def test_fit_reports_metrics_per_dataset_and_task(tmp_path):
    make_fairface(tmp_path / "fairface")
    datasets = json.dumps(
        [
            {"kind": "synthface", "weight": 1.0, "options": {"num_train": 32, "num_val": 16, "num_test": 16}},
            {"kind": "fairface", "root": str(tmp_path / "fairface"), "weight": 1.0, "options": {"val_fraction": 0.25}},
        ]
    )
    run(
        [
            "fit", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", datasets,
            "--data.batch_size", "8", "--model.use_seg", "false", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.metrics_file", str(tmp_path / "m.json"),
            "--model.rules", json.dumps([str(ROOT / "rules/demographics.rules")]),
        ]
    )  # fmt: skip
    report = json.loads((tmp_path / "m.json").read_text())["model"]
    assert set(report) == {"synthface", "fairface"}
    fair = report["fairface"]
    assert not any(k.startswith(("attributes/", "expression/")) for k in fair)
    assert {"age/accuracy", "age/f1", "gender/recall", "race/precision", "race/f1"} <= set(fair)
    assert "age/mae" not in fair  # FairFace gives age bins, not years
    assert {"attributes/mAP", "expression/accuracy", "age/mae", "age/cs@5"} <= set(report["synthface"])


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="mediapipe (landmarks extra) not installed")
def test_parsing_maps_are_computed_and_cached_for_datasets_without_masks(tmp_path):
    make_fairface(tmp_path / "fairface", n_train=8, n_val=4)
    spec = DatasetSpec("fairface", root=str(tmp_path / "fairface"), segmaps="landmarks", options={"val_fraction": 0.25})
    dm = FaceDataModule([spec], batch_size=4, num_workers=0, segmap_cache=str(tmp_path / "cache"))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["segmap"].shape == (4, 64, 64) and batch["segmap"].dtype == torch.int64
    assert list((tmp_path / "cache").rglob("*")), "the maps were written to the on-disk cache"
    with pytest.raises(ValueError, match="no parsing maps of its own"):
        FaceDataModule([DatasetSpec("fairface", root=str(tmp_path / "fairface"))], num_workers=0).setup("fit")


def test_roots_replace_dataset_folders_by_name_or_index():
    specs = [DatasetSpec("fairface", root="a"), DatasetSpec("fairface", root="b"), DatasetSpec("celeba", root="c")]
    dm = FaceDataModule(specs, roots={"fairface1": "/new/b", "2": "/new/c"})
    assert dm.dataset_names == ["fairface0", "fairface1", "celeba"]
    assert [s.root for s in dm.specs] == ["a", "/new/b", "/new/c"] and specs[1].root == "b"
    with pytest.raises(ValueError, match="names one dataset twice"):
        FaceDataModule(specs, roots={"celeba": "x", "2": "y"})


def test_in_memory_cache_filled_by_worker_processes_matches_the_dataset():
    """cache_samples decodes the split at set-up in worker processes; every cached item must be the dataset's
    own item at the same index (images, maps, labels, keys), in the order the loader saw them."""
    dm = FaceDataModule(
        [DatasetSpec("synthface", options={"num_train": 600, "num_val": 8, "num_test": 8})],
        batch_size=8,
        num_workers=0,
        cache_samples=True,
    )
    dm.setup("fit")
    view = dm.views("train")[0]
    assert sorted(view.cache) == list(range(600))  # 600 >= 512: filled by the worker path
    for i in (0, 63, 64, 321, 599):
        ref, got = view.dataset[i], view.cache[i]
        assert got["key"] == ref["key"]
        assert got["segmap"].dtype == torch.uint8 and torch.equal(got["segmap"].long(), ref["segmap"])
        assert torch.equal(got["image"], ref["image"]) and torch.equal(got["labels"], ref["labels"])
        assert torch.equal(view[i]["image"], resize_image(ref["image"], view.image_size))
