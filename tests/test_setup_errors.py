"""The data module at set-up: clear errors for empty splits and missing images, the no-face policy, describe()."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_data_loaders import COLORS, make_celeba

import faceinsight.data.segmentation
from faceinsight.data.module import DatasetSpec, FaceDataModule
from faceinsight.data.segmentation import SegSource

RED = COLORS[0]  # the fake parser finds no face in red images


class RedBlindParser(SegSource):
    """Class 1 everywhere, except in red images, where it finds no face (all background), like the landmark parser."""

    name = "red-blind"

    def __init__(self) -> None:
        self.last_missed: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.float().mean(dim=(2, 3))
        red = (mean[:, 0] > 200) & (mean[:, 1] < 100)
        self.last_missed = red.nonzero().flatten().tolist()
        return (~red).long()[:, None, None].expand(-1, *images.shape[2:]).clone()


@pytest.fixture
def celeba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """12 CelebA faces (every 4th red) in partition codes i % 3; segmentation sources are the fake parser."""
    monkeypatch.setattr(faceinsight.data.segmentation, "make_source", lambda kind, **kw: RedBlindParser())
    make_celeba(tmp_path / "celeba", n=12)
    return tmp_path / "celeba"


def module(root: Path, tmp_path: Path, **spec: object) -> FaceDataModule:
    datasets = [DatasetSpec("celeba", root=str(root), segmaps="landmarks", **spec)]  # type: ignore[arg-type]
    return FaceDataModule(datasets, batch_size=2, num_workers=0, segmap_cache=str(tmp_path / "cache"))


def test_empty_split_names_dataset_split_and_root(celeba: Path, tmp_path: Path) -> None:
    partition = celeba / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(" 2\n", " 0\n"))  # no test rows
    dm = module(celeba, tmp_path)
    dm.setup("fit")
    with pytest.raises(ValueError, match=rf"dataset celeba \(celeba at {celeba}\), split 'test' is empty"):
        dm.setup("test")


def test_empty_val_split_is_allowed_when_validation_is_off(celeba: Path, tmp_path: Path) -> None:
    partition = celeba / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(" 1\n", " 0\n"))  # no val rows
    dm = module(celeba, tmp_path)
    dm.trainer = SimpleNamespace(limit_val_batches=0)  # type: ignore[assignment]
    dm.setup("fit")
    assert set(dm.splits) == {"train"}
    dm.trainer = SimpleNamespace(limit_val_batches=1.0)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="split 'val' is empty"):
        dm.setup("fit")


def test_missing_image_folder_fails_at_setup(celeba: Path, tmp_path: Path) -> None:
    (celeba / "img_align_celeba").rename(celeba / "elsewhere")
    with pytest.raises(ValueError, match=rf"split 'train': no images at {celeba / 'img_align_celeba'}"):
        module(celeba, tmp_path).setup("fit")


@pytest.mark.parametrize("policy", ["background", "drop"])
def test_faces_without_a_face_are_counted_kept_or_dropped(celeba: Path, tmp_path: Path, policy: str) -> None:
    dm = module(celeba, tmp_path, no_face=policy)
    dm.setup("fit")
    train = dm.views("train")[0]  # rows 0, 3, 6, 9 (code i % 3 == 0); red: 0 (i % 4 == 0); val's red: 4
    report = dm.describe()
    assert report["celeba"]["train"] == {
        "size": 4 if policy == "background" else 3, "kind": "celeba", "root": str(celeba),
        "split_method": "official CelebA partition (list_eval_partition.txt)", "segmaps": "red-blind",
        "faces_missed": 1, "no_face": policy,
    }  # fmt: skip
    assert report["celeba"]["val"]["faces_missed"] == 1 and set(report["celeba"]) == {"train", "val"}
    json.dumps(report)
    keys = [train[i]["key"] for i in range(len(train))]
    labels, _ = train.dataset.label_matrix()
    for i in range(len(train)):  # labels, images and maps stay aligned after dropping
        item, n = train[i], int(keys[i].split("/")[-1][:6]) - 1
        assert torch.equal(labels[i], train.dataset[i]["labels"])
        assert bool((item["segmap"] == 0).all()) == (n % 4 == 0)
    assert ("img_align_celeba/000001.jpg" in keys) == (policy == "background")
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*.json")]
    assert sorted((s["faces_missed"], s["missed_indices"]) for s in sidecars) == [(1, [0]), (1, [1])]


def test_describe_own_maps_and_maps_off(tmp_path: Path) -> None:
    synth = DatasetSpec("synthface", options={"num_train": 4, "num_val": 2, "num_test": 2, "size": 32})
    dm = FaceDataModule([synth], num_workers=0)
    dm.setup("test")
    assert dm.describe() == {"synthface": {"test": {
        "size": 2, "kind": "synthface", "root": None, "split_method": "rendered with a seed per split",
        "segmaps": "dataset", "faces_missed": None, "no_face": "background"}}}  # fmt: skip
    off = FaceDataModule([synth], num_workers=0, with_segmaps=False)
    off.setup("validate")
    assert off.describe()["synthface"]["val"]["segmaps"] is None
    with pytest.raises(ValueError, match="no_face must be"):
        DatasetSpec("celeba", no_face="skip")  # type: ignore[arg-type]
