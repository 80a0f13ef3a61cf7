"""Native-format dataset loaders: tiny fixtures written in each dataset's exact format, bad input, real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceinsight.data import DATASETS, detect_kind, load_dataset
from faceinsight.data._io import hash_split
from faceinsight.data.base import DataFormatError
from faceinsight.data.celeba import CelebA
from faceinsight.data.celebamaskhq import PARTS, CelebAMaskHQ
from faceinsight.data.expw import ExpW
from faceinsight.data.fairface import FairFace
from faceinsight.data.maad import MAADFace
from faceinsight.data.rafdb import RAFDB
from faceinsight.data.utkface import UTKFace
from faceinsight.vocab import CELEBA_ATTRIBUTES, MAAD_ATTRIBUTES, SCHEMAS

DATA = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
K = len(CELEBA_ATTRIBUTES)


# ----------------------------------------------------------------------------- fixture writers


def jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG", quality=95)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def attr_text(rows: list[tuple[str, list[int]]], names=CELEBA_ATTRIBUTES, count: int | None = None, sep="\r\n") -> str:
    """CelebA's attribute format: count line, names line (trailing space), space-aligned values."""
    lines = [str(len(rows) if count is None else count), " ".join(names) + " "]
    lines += [name + " " + " ".join(f"{v:2d}" for v in values) for name, values in rows]
    return sep.join(lines) + sep


def values_for(i: int) -> list[int]:
    """A distinct {-1, 1} row per index: attribute j is positive where bit j % 8 of i+1 is set."""
    return [1 if ((i + 1) >> (j % 8)) & 1 else -1 for j in range(K)]


COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]


def make_celeba(root: Path, n: int = 4, images: bool = True) -> list[str]:
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_bytes(attr_text([(m, values_for(i)) for i, m in enumerate(names)]).encode())
    (root / "list_eval_partition.txt").write_text("".join(f"{m} {i % 3}\n" for i, m in enumerate(names)))
    if images:
        for i, m in enumerate(names):
            jpeg(root / "img_align_celeba" / m, COLORS[i % 4])
    return names


def mean_color(image: torch.Tensor) -> tuple[int, ...]:
    return tuple(round(v) for v in image.float().mean(dim=(1, 2)).tolist())


def close(color_a: tuple[int, ...], color_b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(color_a, color_b, strict=True))


# ----------------------------------------------------------------------------- CelebA


def test_celeba_labels_images_and_split(tmp_path: Path) -> None:
    names = make_celeba(tmp_path)
    ds = CelebA(tmp_path)
    assert len(ds) == 4 and ds.keys == [f"img_align_celeba/{m}" for m in names]
    labels, mask = ds.label_matrix()
    expected = torch.tensor([[1.0 if v == 1 else 0.0 for v in values_for(i)] for i in range(4)])
    assert torch.equal(labels, expected) and bool(mask.all())
    for i in range(4):
        s = ds[i]
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 16, 16)
        assert close(mean_color(s["image"]), COLORS[i])
        assert torch.equal(s["labels"], expected[i]) and torch.isnan(s["age"])
    assert [k.split("/")[1] for k in CelebA(tmp_path, split="val").keys] == [names[1]]  # partition code 1
    assert [k.split("/")[1] for k in CelebA(tmp_path, split="train").keys] == [names[0], names[3]]


def test_celeba_columns_are_mapped_by_name(tmp_path: Path) -> None:
    names = make_celeba(tmp_path, images=False)
    rows = [(m, values_for(i)[::-1]) for i, m in enumerate(names)]  # columns written in reverse order
    (tmp_path / "list_attr_celeba.txt").write_text(attr_text(rows, names=CELEBA_ATTRIBUTES[::-1]))
    labels, _ = CelebA(tmp_path).label_matrix()
    assert torch.equal(labels[2], torch.tensor([1.0 if v == 1 else 0.0 for v in values_for(2)]))


def test_celeba_labels_only_folder(tmp_path: Path) -> None:
    make_celeba(tmp_path, images=False)
    ds = CelebA(tmp_path)  # images=None: no img_align_celeba/ -> labels only
    assert not ds.images and ds.label_matrix()[0].shape == (4, K)
    with pytest.raises(DataFormatError, match=r"img_align_celeba/000001\.jpg.*no images"):
        ds[0]
    with pytest.raises(DataFormatError, match=r"000001\.jpg: image file is missing"):
        CelebA(tmp_path, images=True)


BAD_ATTR_CASES = {
    # name: (edit of the attribute file's lines, line number and text the error must name)
    "count": (lambda ls: ["7", *ls[1:]], "list_attr_celeba.txt:1", "header says 7 rows but the file has 4"),
    "value": (lambda ls: [*ls[:3], ls[3].replace(" 1", " 2", 1), *ls[4:]], "list_attr_celeba.txt:4", "'2'"),
    "name": (lambda ls: [ls[0], ls[1].replace("Bangs", "Fringe"), *ls[2:]], "list_attr_celeba.txt:2", "Fringe"),
    "columns": (lambda ls: [*ls[:4], ls[4] + " 1", *ls[5:]], "list_attr_celeba.txt:5", "expected 41 columns, got 42"),
}


@pytest.mark.parametrize("case", BAD_ATTR_CASES)
def test_celeba_bad_label_file(tmp_path: Path, case: str) -> None:
    names = make_celeba(tmp_path)
    edit, where, what = BAD_ATTR_CASES[case]
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text("\r\n".join(edit(path.read_text().splitlines())) + "\r\n")
    with pytest.raises(DataFormatError) as err:
        CelebA(tmp_path)
    assert where in str(err.value) and what in str(err.value)
    if case == "name":  # a file-level error cannot be skipped
        with pytest.raises(DataFormatError):
            CelebA(tmp_path, on_error="skip")
        return
    ds = CelebA(tmp_path, on_error="skip")
    dropped = {"count": set(), "value": {names[1]}, "columns": {names[2]}}[case]
    assert {k.split("/")[1] for k in ds.keys} == set(names) - dropped
    labels, _ = ds.label_matrix()
    for row, key in enumerate(ds.keys):  # survivors keep their own labels and images
        i = names.index(key.split("/")[1])
        assert labels[row].tolist() == [1.0 if v == 1 else 0.0 for v in values_for(i)]
        assert close(mean_color(ds[row]["image"]), COLORS[i])


@pytest.mark.parametrize("fault", ["truncated", "missing", "garbage"])
def test_celeba_bad_images(tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    names = make_celeba(tmp_path)
    bad = tmp_path / "img_align_celeba" / names[1]
    if fault == "truncated":
        truncate(bad)
    elif fault == "missing":
        bad.unlink()
    else:
        bad.write_bytes(b"not a jpeg at all")
    if fault == "missing":  # existence is checked at index time under either policy
        with pytest.raises(DataFormatError, match=r"000002\.jpg.*missing.*list_attr_celeba\.txt:4"):
            CelebA(tmp_path)
    else:  # decoding is checked at read time under "raise"
        ds = CelebA(tmp_path)
        with pytest.raises(DataFormatError, match=r"000002\.jpg: cannot decode"):
            ds[1]
        lax = CelebA(tmp_path, on_error="skip", verify_images="exists")
        with pytest.raises(DataFormatError):  # never another sample's labels
            lax[1]
    ds = CelebA(tmp_path, on_error="skip")  # default verify_images="decode" drops the bad record
    assert len(ds) == 3 and names[1] not in " ".join(ds.keys)
    assert "skipping record" in caplog.text and "000002.jpg" in caplog.text
    for row in range(3):
        i = names.index(ds.keys[row].split("/")[1])
        assert close(mean_color(ds[row]["image"]), COLORS[i]) and ds[row]["labels"][0] == float(values_for(i)[0] == 1)


def test_celeba_row_missing_from_partition(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    with pytest.raises(DataFormatError, match=r"list_attr_celeba\.txt:6.*000004\.jpg"):
        CelebA(tmp_path)
    assert len(CelebA(tmp_path, on_error="skip")) == 3


# ----------------------------------------------------------------------------- CelebAMask-HQ


# Part masks of image i: the first 2 + i of these (part, region of a 16x16 mask).
MASK_PARTS = (
    ("skin", (slice(0, 16), slice(0, 16))),
    ("hair", (slice(0, 8), slice(0, 16))),
    ("hat", (slice(0, 4), slice(4, 12))),
    ("l_eye", (slice(10, 12), slice(2, 4))),
)


def make_maskhq(root: Path, numbers: list[int], parts: bool = True) -> None:
    rows = [(f"{n}.jpg", values_for(i)) for i, n in enumerate(numbers)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text(attr_text(rows, sep="\n").replace(".jpg ", ".jpg  "))
    for i, n in enumerate(numbers):
        jpeg(root / "CelebA-HQ-img" / f"{n}.jpg", COLORS[i % 4], size=(32, 32))
        if not parts:
            continue
        folder = root / "CelebAMask-HQ-mask-anno" / str(n // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for part, region in MASK_PARTS[: 2 + i]:
            m = np.zeros((16, 16), np.uint8)
            m[region] = 255
            Image.fromarray(m).save(folder / f"{n:05d}_{part}.png")


def test_celebamaskhq_assembles_parts_in_g_mask_order(tmp_path: Path) -> None:
    make_maskhq(tmp_path, [0, 1, 2001])  # official 0-based names; 2001 lives in mask folder 1
    ds = CelebAMaskHQ(tmp_path)
    assert ds.has_segmaps and ds.keys == ["CelebA-HQ-img/0.jpg", "CelebA-HQ-img/1.jpg", "CelebA-HQ-img/2001.jpg"]
    ids = {p: i + 1 for i, p in enumerate(PARTS)}
    seg = ds[2]["segmap"]  # skin, hair, hat, l_eye on a 16x16 mask, resized to the 32x32 image
    assert seg.shape == (32, 32) and seg.dtype == torch.int64
    ref = np.zeros((16, 16), np.int64)
    ref[0:16, 0:16] = ids["skin"]
    ref[10:12, 2:4] = ids["l_eye"]  # l_eye comes after skin in g_mask.py's order
    ref[0:8, 0:16] = ids["hair"]
    ref[0:4, 4:12] = ids["hat"]  # hat after hair: overwrites it
    assert torch.equal(seg, torch.from_numpy(ref.repeat(2, 0).repeat(2, 1)))
    assert torch.equal(ds[0]["segmap"][0], torch.full((32,), ids["hair"]))
    labels, _ = ds.label_matrix()
    assert torch.equal(labels[1], ds[1]["labels"]) and labels[1, 0] == float(values_for(1)[0] == 1)


def test_celebamaskhq_split_ranges_and_numbering(tmp_path: Path) -> None:
    make_maskhq(tmp_path, list(range(1, 7)), parts=False)  # 1-based like celebahq64
    ranges = {"train": (1, 4), "val": (5, 5), "test": (6, 6)}
    assert not CelebAMaskHQ(tmp_path).has_segmaps
    ds = CelebAMaskHQ(tmp_path, split="train", split_ranges=ranges)
    assert ds.keys == [f"CelebA-HQ-img/{n}.jpg" for n in (1, 2, 3, 4)]
    assert CelebAMaskHQ(tmp_path, split="test", split_ranges=ranges).keys == ["CelebA-HQ-img/6.jpg"]
    with pytest.raises(ValueError, match="overlaps"):
        CelebAMaskHQ(tmp_path, split_ranges={"train": (1, 4), "val": (4, 5)})


def test_celebamaskhq_missing_and_corrupt_masks(tmp_path: Path) -> None:
    make_maskhq(tmp_path, [0, 1, 2])
    for part in ("skin", "hair", "hat", "l_eye"):
        (tmp_path / "CelebAMask-HQ-mask-anno/0" / f"00002_{part}.png").unlink(missing_ok=True)
    with pytest.raises(DataFormatError, match=r"no parsing mask 0/00002_<part>\.png"):
        CelebAMaskHQ(tmp_path)
    truncate(tmp_path / "CelebAMask-HQ-mask-anno/0/00001_hair.png")
    ds = CelebAMaskHQ(tmp_path, on_error="skip")  # image 2 has no masks, image 1 a corrupt one
    assert ds.keys == ["CelebA-HQ-img/0.jpg"]


def test_celebamaskhq_preassembled_maps(tmp_path: Path) -> None:
    for n in range(3):
        jpeg(tmp_path / f"{n}.jpg", COLORS[n], size=(8, 8))
        Image.fromarray(np.full((4, 4), n + 16, np.uint8)).save(tmp_path / f"{n}.png")
    assert detect_kind(tmp_path) == "celebamaskhq"
    ds = load_dataset(tmp_path)
    assert ds.keys == ["0.jpg", "1.jpg", "2.jpg"] and not ds.label_matrix()[1].any()
    assert torch.equal(ds[1]["segmap"], torch.full((8, 8), 17))
    Image.fromarray(np.full((4, 4), 19, np.uint8)).save(tmp_path / "2.png")
    with pytest.raises(DataFormatError, match=r"2\.png: label 19 is not a class id"):
        ds[2]


# ----------------------------------------------------------------------------- MAAD-Face


def make_maad(root: Path) -> list[list[int]]:
    values = [[(i + j) % 3 - 1 for j in range(len(MAAD_ATTRIBUTES))] for i in range(3)]
    files = ["n000001/0001_01.jpg", "n000001/0002_01.jpg", "n000009/0001_02.jpg"]
    lines = ["Filename,Identity," + ",".join(MAAD_ATTRIBUTES)]
    lines += [f"{f},{f[1:7].lstrip('0')}," + ",".join(map(str, v)) for f, v in zip(files, values, strict=True)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "MAAD_Face.csv").write_text("\n".join(lines) + "\n")
    jpeg(root / "train" / files[0], COLORS[0])
    jpeg(root / "train" / files[1], COLORS[1])
    jpeg(root / "test" / files[2], COLORS[2])
    return values


def test_maad_masks_undefined_and_finds_images(tmp_path: Path) -> None:
    values = make_maad(tmp_path)
    ds = MAADFace(tmp_path)
    labels, mask = ds.label_matrix()
    v = torch.tensor(values)
    assert torch.equal(labels, (v == 1).float()) and torch.equal(mask, v != 0)
    assert ds.keys[2] == "n000009/0001_02.jpg" and close(mean_color(ds[2]["image"]), COLORS[2])
    codes = ds.split_codes()
    assert codes[0] == codes[1]  # one identity never crosses splits


def test_maad_bad_header_and_values(tmp_path: Path) -> None:
    make_maad(tmp_path)
    path = tmp_path / "MAAD_Face.csv"
    text = path.read_text()
    path.write_text(text.replace("Shiny_Skin", "Glossy_Skin"))
    with pytest.raises(DataFormatError, match=r"MAAD_Face\.csv:1.*Glossy_Skin.*Shiny_Skin"):
        MAADFace(tmp_path)
    lines = text.splitlines()
    lines[2] = lines[2][:-2] + ",2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"MAAD_Face\.csv:3: value '2'"):
        MAADFace(tmp_path)
    assert len(MAADFace(tmp_path, on_error="skip")) == 2


# ----------------------------------------------------------------------------- FairFace


def make_fairface(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\n"
        "train/1.jpg,50-59,Male,East Asian,True\n"
        "train/2.jpg,more than 70,Female,Latino_Hispanic,False\n"
    )
    (root / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,3-9,Female,Black,False\n"
    )
    for i, f in enumerate(("train/1.jpg", "train/2.jpg", "val/1.jpg")):
        jpeg(root / f, COLORS[i])


def test_fairface_labels_and_splits(tmp_path: Path) -> None:
    make_fairface(tmp_path)
    ds = FairFace(tmp_path, val_fraction=0.0)
    chars = SCHEMAS["fairface"].characteristics
    labels, mask = ds.label_matrix()
    assert bool(mask.all())
    assert [c for c, y in zip(chars, labels[0], strict=True) if y] == ["Age_50-59", "Male", "Race_East_Asian"]
    assert [c for c, y in zip(chars, labels[1], strict=True) if y] == ["Age_70+", "Female", "Race_Latino_Hispanic"]
    assert FairFace(tmp_path, split="test").keys == ["val/1.jpg"]  # FairFace's val file is our test split
    assert len(FairFace(tmp_path, split="train", val_fraction=0.0)) == 2


def test_fairface_bad_value(tmp_path: Path) -> None:
    make_fairface(tmp_path)
    path = tmp_path / "fairface_label_train.csv"
    path.write_text(path.read_text().replace("East Asian", "Martian"))
    with pytest.raises(DataFormatError, match=r"fairface_label_train\.csv:2: race value 'Martian'"):
        FairFace(tmp_path)
    assert FairFace(tmp_path, on_error="skip").keys == ["train/2.jpg", "val/1.jpg"]


# ----------------------------------------------------------------------------- UTKFace


def test_utkface_partial_race_masks_and_ages(tmp_path: Path) -> None:
    names = [f"{age}_{g}_{r}_20170109150557335.jpg.chip.jpg" for age, g, r in ((1, 0, 0), (25, 1, 2), (71, 0, 4))]
    names.append("40_1_3_20170117134816459.jpg")
    for i, n in enumerate(names):
        jpeg(tmp_path / "UTKFace" / n, COLORS[i])
    assert detect_kind(tmp_path) == "utkface"
    ds = UTKFace(tmp_path)
    by_key = {k.split("_")[0].split("/")[-1]: i for i, k in enumerate(ds.keys)}
    chars = SCHEMAS["utkface"].characteristics
    labels, mask = ds.label_matrix()

    def labelled(age: str) -> dict[str, float]:
        i = by_key[age]
        return {c: float(y) for c, y, m in zip(chars, labels[i], mask[i], strict=True) if m and c.startswith("Race_")}

    assert labelled("1") == {"Race_White": 1.0} | {r: 0.0 for r in labelled("1") if r != "Race_White"}
    assert len(labelled("1")) == 7
    assert set(labelled("25")) == {"Race_White", "Race_Black", "Race_Latino_Hispanic", "Race_Indian",
                                   "Race_Middle_Eastern"} and not any(labelled("25").values())  # fmt: skip
    assert set(labelled("71")) == {"Race_White", "Race_Black", "Race_East_Asian", "Race_Southeast_Asian",
                                   "Race_Indian"} and not any(labelled("71").values())  # fmt: skip
    assert labelled("40")["Race_Indian"] == 1.0
    i = by_key["71"]
    assert labels[i, chars.index("Age_70+")] == 1 and labels[i, chars.index("Male")] == 1
    assert sorted(ds.ages().tolist()) == [1.0, 25.0, 40.0, 71.0]
    assert float(ds[by_key["25"]]["age"]) == 25.0


# The release's known faulty names (utkface.py's docstring): a missing or empty field is skipped by default;
# a stray space or a missing dot keeps all labels and loads.
QUIRKS = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg", "53__0_20170116184028385.jpg"]
READABLE = ["24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg"]


def test_utkface_known_quirks_load_with_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i, name in enumerate(["30_0_1_20170109150557335.jpg", *QUIRKS, *READABLE]):
        jpeg(tmp_path / name, COLORS[i % 4])
    ds = UTKFace(tmp_path)
    assert sorted(ds.keys) == sorted(["30_0_1_20170109150557335.jpg", *READABLE])
    assert sorted(ds.ages().tolist()) == [24.0, 30.0, 55.0] and ds.skipped_quirks == sorted(QUIRKS)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "skipped 3 image(s)" in warnings[0] and all(q in warnings[0] for q in QUIRKS)
    with pytest.raises(DataFormatError, match=r"39_1_20170116174525125\.jpg\.chip\.jpg.*not <age>_<gender>"):
        UTKFace(tmp_path, known_quirks="raise")


@pytest.mark.parametrize(("name", "what"), [("999_0_0_20170109150557335.jpg", "age 999"),
                                            ("30_7_0_20170109150557335.jpg", "gender 7"),
                                            ("30_0_20170109.jpg", "not <age>_<gender>")])  # fmt: skip
def test_utkface_unexpected_names_raise(tmp_path: Path, name: str, what: str) -> None:
    jpeg(tmp_path / "30_0_1_20170109150557335.jpg", COLORS[0])
    jpeg(tmp_path / name, COLORS[1])
    with pytest.raises(DataFormatError, match=what):
        UTKFace(tmp_path)
    assert UTKFace(tmp_path, on_error="skip").keys == ["30_0_1_20170109150557335.jpg"]


# ----------------------------------------------------------------------------- RAF-DB and ExpW


def test_rafdb_labels_and_layouts(tmp_path: Path) -> None:
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n"
    )
    for i, stem in enumerate(("train_00001", "train_00002", "test_0001")):
        jpeg(tmp_path / f"Image/aligned/{stem}_aligned.jpg", COLORS[i])
        jpeg(tmp_path / f"Image/original/{stem}.jpg", COLORS[i], size=(20, 24))
    chars = SCHEMAS["rafdb"].characteristics
    ds = RAFDB(tmp_path, val_fraction=0.0)
    assert [chars[int(y.argmax())] for y in ds.label_matrix()[0]] == ["Expr_Sadness", "Expr_Surprise", "Expr_Neutral"]
    assert RAFDB(tmp_path, split="test").keys == ["Image/aligned/test_0001_aligned.jpg"]
    original = RAFDB(tmp_path, aligned=False)
    assert original[2]["image"].shape == (3, 24, 20) and original.keys[0] == "Image/original/train_00001.jpg"
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("train_00001.jpg 8\ntrain_00002.jpg 1\n")
    with pytest.raises(DataFormatError, match=r"list_patition_label\.txt:1: value '8'"):
        RAFDB(tmp_path)


def test_expw_crops_faces(tmp_path: Path) -> None:
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[5:15, 10:30] = (250, 0, 0)  # face 0: top 5, left 10, right 30, bottom 15
    photo[20:38, 40:55] = (0, 0, 250)  # face 1
    (tmp_path / "image/origin").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "image/origin/happy_party_1.jpg", quality=98)
    jpeg(tmp_path / "image/origin/sad_man_2.jpg", (0, 250, 0), size=(30, 30))
    (tmp_path / "label").mkdir()
    (tmp_path / "label/label.lst").write_text(
        "happy_party_1.jpg 0 5 10 30 15 55.1 3\n"
        "happy_party_1.jpg 1 20 40 55 38 12.5 0\n"
        "sad_man_2.jpg 0 -3 0 50 25 9.2 4\n"
    )
    ds = ExpW(tmp_path)
    chars = SCHEMAS["expw"].characteristics
    assert ds.keys == [
        "image/origin/happy_party_1.jpg#0",
        "image/origin/happy_party_1.jpg#1",
        "image/origin/sad_man_2.jpg#0",
    ]
    assert [chars[int(y.argmax())] for y in ds.label_matrix()[0]] == ["Expr_Happiness", "Expr_Anger", "Expr_Sadness"]
    full = torch.from_numpy(np.array(Image.open(tmp_path / "image/origin/happy_party_1.jpg"))).permute(2, 0, 1)
    assert torch.equal(ds[0]["image"], full[:, 5:15, 10:30]) and torch.equal(ds[1]["image"], full[:, 20:38, 40:55])
    assert close(mean_color(ds[1]["image"]), (0, 0, 250), tol=30)
    assert ds[2]["image"].shape == (3, 25, 30)  # box clipped to the 30x30 photo
    codes = ds.split_codes()
    assert codes[0] == codes[1]  # faces of one photo share a split
    (tmp_path / "label/label.lst").write_text("sad_man_2.jpg 0 10 20 5 30 9.2 4\n")
    with pytest.raises(DataFormatError, match=r"label\.lst:1: face box .* is empty"):
        ExpW(tmp_path)


# ----------------------------------------------------------------------------- registry, splits


def test_detect_kind_and_registry(tmp_path: Path) -> None:
    makers = {"celeba": make_celeba, "maad": make_maad, "fairface": make_fairface}
    for kind, make in makers.items():
        make(tmp_path / kind)
        assert detect_kind(tmp_path / kind) == kind
        assert isinstance(load_dataset(tmp_path / kind), DATASETS[kind])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"(?s)looked for.*list_attr_celeba\.txt.*MAAD_Face\.csv.*label\.lst"):
        detect_kind(tmp_path / "empty")
    assert set(DATASETS) == {"celeba", "celebamaskhq", "maad", "fairface", "utkface", "rafdb", "expw"}


def test_hash_split_is_deterministic_and_proportional() -> None:
    names = [f"img{i}.jpg" for i in range(4000)]
    codes = hash_split(names, (0.7, 0.2, 0.1), seed=3)
    assert np.array_equal(codes, hash_split(names, (0.7, 0.2, 0.1), seed=3))
    assert np.allclose(np.bincount(codes, minlength=3) / 4000, (0.7, 0.2, 0.1), atol=0.03)
    assert not np.array_equal(codes, hash_split(names, (0.7, 0.2, 0.1), seed=4))


# ----------------------------------------------------------------------------- the project's real data


def real(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set FACEINSIGHT_DATA)")
    return path


def test_real_celeba_labels_only() -> None:
    ds = load_dataset(real("celeba"))
    labels, mask = ds.label_matrix()
    assert isinstance(ds, CelebA) and not ds.images and labels.shape == (20000, 40) and bool(mask.all())
    assert ds.keys[0] == "img_align_celeba/000001.jpg" and ds.keys[-1] == "img_align_celeba/020000.jpg"
    assert len(CelebA(real("celeba"), split="train")) == 20000  # rows 1..20000 are all in CelebA's train split
    # CelebA row 000001: 5_o_Clock_Shadow -1, Arched_Eyebrows 1, Attractive 1 (list_attr_celeba.txt)
    assert labels[0, :3].tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(("name", "rows", "size"), [("celebahq64", 27000, 64), ("celebahq256", 2000, 256)])
def test_real_celebahq(name: str, rows: int, size: int) -> None:
    ds = load_dataset(real(name))
    labels, _ = ds.label_matrix()
    assert isinstance(ds, CelebAMaskHQ) and len(ds) == rows and ds.keys[0] == "CelebA-HQ-img/1.jpg"
    for i in (0, rows // 2, rows - 1):
        s = ds[i]
        assert s["key"] == f"CelebA-HQ-img/{i + 1}.jpg" and s["image"].shape == (3, size, size)
        assert torch.equal(s["labels"], labels[i])
    if rows == 27000:  # CelebA's official partition through the mapping (tests/test_splits.py)
        assert [len(CelebAMaskHQ(real(name), split=s)) for s in ("train", "val", "test")] == [21732, 2704, 2564]


def test_real_utkface_loads_with_defaults() -> None:
    ds = load_dataset(real("utkface"), kind="utkface")
    assert len(ds) == 4922 and len(ds.skipped_quirks) == 2  # type: ignore[attr-defined]


def test_real_celebamaskhq_samples() -> None:
    ds = load_dataset(real("celebamaskhq-samples"))
    assert isinstance(ds, CelebAMaskHQ) and ds.has_segmaps and len(ds) == 4
    s = ds[0]
    assert s["image"].shape == (3, 1024, 1024) and s["segmap"].shape == (1024, 1024)
    raw = np.asarray(Image.open(real("celebamaskhq-samples") / "0.png"))
    assert torch.equal(s["segmap"][::2, ::2], torch.from_numpy(raw.astype(np.int64)))  # nearest 2x upsampling
    assert 1 in s["segmap"] and 13 in s["segmap"]  # skin and hair
