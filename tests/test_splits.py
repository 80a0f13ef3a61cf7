"""CelebA-HQ's identity-disjoint split (CelebA's partition through the CelebA-HQ mapping) and pointing a preset's
dataset at another folder from the command line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_data_loaders import make_maskhq

from faceinsight.cli import run
from faceinsight.data.base import DataFormatError
from faceinsight.data.celebamaskhq import MAPPING_FILE, OFFICIAL_SPLIT, ROWS_SPLIT, CelebAMaskHQ
from faceinsight.data.module import DatasetSpec, FaceDataModule

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = list(range(1, 7))  # 1-based rows like celebahq64
# CelebA partition code of each image's source (0 train, 1 val, 2 test), deliberately not in row order.
CODES = {1: 2, 2: 0, 3: 0, 4: 1, 5: 0, 6: 2}
EXPECTED = {"train": [2, 3, 5], "val": [4], "test": [1, 6]}


def source_file(n: int) -> str:
    return f"{100 + n:06d}.jpg"


def make_official(root: Path, header: bool = True, partition_dir: str = "../celeba") -> Path:
    """A CelebA-HQ folder with its mapping (idx 0..7, as in the 0-based release) and CelebA's partition file."""
    make_maskhq(root, NUMBERS, parts=False)
    rows = [f"{n:<10d} {99 + n:<10d} {source_file(n)}" for n in range(8)]
    (root / MAPPING_FILE).write_text("\n".join(["idx         orig_idx    orig_file"] * header + rows) + "\n")
    partition = root / partition_dir / "list_eval_partition.txt"
    partition.parent.mkdir(parents=True, exist_ok=True)
    partition.write_text("".join(f"{source_file(n)} {CODES.get(n, 0)}\r\n" for n in range(8)))
    return partition


def numbers(ds: CelebAMaskHQ) -> list[int]:
    return [int(Path(k).stem) for k in ds.keys]


@pytest.mark.parametrize("header", [True, False])
def test_official_split_follows_celeba_partition_of_each_source_image(tmp_path: Path, header: bool) -> None:
    make_official(tmp_path / "hq", header=header)
    for split, expected in EXPECTED.items():
        ds = CelebAMaskHQ(tmp_path / "hq", split=split)
        assert numbers(ds) == expected and ds.split_method == OFFICIAL_SPLIT
    labels, _ = CelebAMaskHQ(tmp_path / "hq", split="test").label_matrix()
    whole, _ = CelebAMaskHQ(tmp_path / "hq").label_matrix()
    assert np.array_equal(labels.numpy(), whole.numpy()[[0, 5]])  # labels travel with their rows


def test_split_by_options(tmp_path: Path) -> None:
    partition = make_official(tmp_path / "hq", partition_dir="elsewhere")
    with pytest.raises(DataFormatError, match=r"split_by='official' needs list_eval_partition\.txt"):
        CelebAMaskHQ(tmp_path / "hq", split_by="official")
    ds = CelebAMaskHQ(tmp_path / "hq", split="val", partition_file=str(partition))
    assert numbers(ds) == EXPECTED["val"] and ds.split_method == OFFICIAL_SPLIT
    ranges = {"train": (1, 4), "val": (5, 5), "test": (6, 6)}
    for kwargs in ({"split_ranges": ranges}, {"split_by": "rows", "split_ranges": ranges}):
        ds = CelebAMaskHQ(tmp_path / "hq", split="train", partition_file=str(partition), **kwargs)
        assert numbers(ds) == [1, 2, 3, 4] and ds.split_method == ROWS_SPLIT
    (tmp_path / "hq" / MAPPING_FILE).unlink()
    with pytest.raises(DataFormatError, match=r"split_by='official' needs .*CelebA-HQ-to-CelebA-mapping\.txt"):
        CelebAMaskHQ(tmp_path / "hq", split_by="official", partition_file=str(partition))


def test_rows_missing_from_mapping_or_partition(tmp_path: Path) -> None:
    partition = make_official(tmp_path / "hq")
    mapping = tmp_path / "hq" / MAPPING_FILE
    lines = mapping.read_text().splitlines()
    mapping.write_text("\n".join(line for line in lines if not line.startswith("6 ")) + "\n")
    # image 6 is the 6th data row of the attribute file: line 8
    with pytest.raises(DataFormatError, match=r"attribute-anno\.txt:8: image number 6 is not in .*mapping\.txt"):
        CelebAMaskHQ(tmp_path / "hq")
    assert numbers(CelebAMaskHQ(tmp_path / "hq", split="test", on_error="skip")) == [1]
    mapping.write_text("\n".join(lines) + "\n")
    partition.write_text("".join(row for row in partition.read_text().splitlines(True) if "000104" not in row))
    with pytest.raises(DataFormatError, match=r"mapping\.txt:6: '000104\.jpg' \(source of image 4\) is not in"):
        CelebAMaskHQ(tmp_path / "hq")
    assert numbers(CelebAMaskHQ(tmp_path / "hq", on_error="skip")) == [1, 2, 3, 5, 6]


def test_without_mapping_row_ranges_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_maskhq(tmp_path / "hq", NUMBERS, parts=False)
    with caplog.at_level(logging.WARNING):
        for split in ("train", "val", "test"):
            ds = CelebAMaskHQ(tmp_path / "hq", split=split)
    assert ds.split_method == ROWS_SPLIT and numbers(CelebAMaskHQ(tmp_path / "hq", split="train")) == NUMBERS
    assert sum("NOT identity-disjoint" in r.getMessage() for r in caplog.records) == 1


def test_real_celebahq_official_split(shared_data: Path) -> None:
    sizes = {s: len(CelebAMaskHQ(shared_data / "celebahq64", split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 21732, "val": 2704, "test": 2564}
    small, big = CelebAMaskHQ(shared_data / "celebahq256"), CelebAMaskHQ(shared_data / "celebahq64")
    assert small.split_method == big.split_method == OFFICIAL_SPLIT
    assert np.array_equal(small.split_codes().numpy(), big.split_codes().numpy()[:2000])  # same face, same split


def test_preset_points_at_another_folder_from_the_command_line(tmp_path: Path, capsys) -> None:
    make_official(tmp_path / "hq", partition_dir=".")
    with pytest.raises(SystemExit):
        run(["fit", "-c", str(ROOT / "configs/celebahq64.yaml"), "--data.roots.celebamaskhq", str(tmp_path / "hq"),
             "--model.use_seg", "false", "--print_config"])  # fmt: skip
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["roots"] == {"celebamaskhq": str(tmp_path / "hq")}
    datasets = [DatasetSpec(**d) for d in data["datasets"]]  # with_segmaps (linked to use_seg) is not printed
    dm = FaceDataModule(**{**data, "datasets": datasets, "with_segmaps": False, "segmap_cache": str(tmp_path)})
    dm.setup("test")
    report = dm.describe()["celebamaskhq"]["test"]
    assert report["root"] == str(tmp_path / "hq") and report["size"] == 2 and report["split_method"] == OFFICIAL_SPLIT
    with pytest.raises(ValueError, match=r"data.roots names \['celeba'\].*use \['celebamaskhq'\] or 0..0"):
        FaceDataModule([DatasetSpec("celebamaskhq")], roots={"celeba": "x"})
