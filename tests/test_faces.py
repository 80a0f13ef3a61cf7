"""Faces in any photo (`faceinsight.data.detect`, `faceinsight.data.faces`): detection, the crop's geometry, and
`faceinsight predict` / `describe` on a folder of good, group, no-face and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_predict import predict_args, read_jsonl, setup  # noqa: F401  (setup: the tiny model, a fixture)

from faceinsight.cli import run
from faceinsight.data._io import read_rgb
from faceinsight.data.base import DataFormatError
from faceinsight.data.detect import FRAMINGS, Face, Framing, crop_square, iou, make_detector, nms
from faceinsight.data.faces import PhotoFaces, skip_reason
from faceinsight.data.images import ImageFiles
from faceinsight.data.synthface import SynthFace, SynthFaceConfig
from faceinsight.eval.metrics import AGE_BIN_YEARS
from faceinsight.vocab import GROUPS

# Where the SynthFace faces (128 px) are pasted: (left, top) in each photo.
NORMAL_AT = [(56, 26)]
GROUP_AT = [(16, 16), (176, 16)]
STATUS = {"corrupt.jpg": "skipped", "group.jpg": "face", "noise.png": "no_face", "normal.jpg": "face",
          "notes.jpg": "skipped", "truncated.jpg": "skipped"}  # fmt: skip


def pasted(faces: list[np.ndarray], at: list[tuple[int, int]], size: tuple[int, int]) -> Image.Image:
    """The faces pasted on a grey photo of ``size`` (width, height) at ``at``."""
    photo = Image.new("RGB", size, (128, 128, 128))
    for face, where in zip(faces, at, strict=True):
        photo.paste(Image.fromarray(face), where)
    return photo


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A folder as a user has it: one face, two faces, noise, a corrupt JPEG, a truncated JPEG, a text file."""
    folder = tmp_path_factory.mktemp("mixed")
    synth = SynthFace(3, seed=7, config=SynthFaceConfig(size=128))
    faces = [synth.render(i)[0] for i in range(3)]
    pasted(faces[:1], NORMAL_AT, (240, 180)).save(folder / "normal.jpg", quality=95)
    pasted(faces[1:], GROUP_AT, (320, 160)).save(folder / "group.jpg", quality=95)
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    good = (folder / "normal.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.jpg").write_bytes(good[:20] + bytes(np.random.default_rng(1).integers(0, 256, 2000, np.uint8)))
    (folder / "notes.jpg").write_text("a text file named .jpg")
    return folder


def test_framing_and_crop_geometry_by_hand():
    square = Framing(scale=1.2, dx=0.1, dy=-0.1).square((10, 20, 30, 40))  # side 20, centre (20, 30)
    assert square == pytest.approx((10.0, 16.0, 34.0, 40.0))  # centre (22, 28), side 24
    image = torch.arange(3 * 6 * 8, dtype=torch.uint8).reshape(3, 6, 8)  # H 6, W 8
    crop = crop_square(image, (-2, 3, 4, 9))  # runs off the left and the bottom
    assert crop.shape == (3, 6, 6)
    assert torch.equal(crop[:, :3, 2:], image[:, 3:6, 0:4])  # the part inside the photo, in place
    assert not crop[:, :, :2].any() and not crop[:, 3:].any()  # black padding elsewhere: no squashing


def test_iou_and_nms():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])
    assert iou(a, a[:1])[:, 0] == pytest.approx([1.0, 50 / 150])
    faces = [Face((0, 0, 10, 10), 0.6), Face((1, 0, 11, 10), 0.9), Face((20, 20, 30, 30), 0.5)]
    assert [f.score for f in nms(faces, 0.3)] == [0.9, 0.5]
    part = Face((22, 22, 26, 26), 0.95)  # IoU 0.16 with the face it lies in: a part of it, found in a tile
    assert [f.score for f in nms([*faces, part], 0.3)] == [0.95, 0.9]


def test_detector_finds_the_pasted_faces_and_the_crop_is_the_framed_square(mixed):
    faces = PhotoFaces(ImageFiles(mixed), framing="expw", on_error="skip")
    rows = {r.photo: [] for r in faces.rows}
    for i, r in enumerate(faces.rows):
        rows[r.photo].append((i, r))
    for photo, at in (("normal.jpg", NORMAL_AT), ("group.jpg", GROUP_AT)):
        found = [r for _, r in rows[photo]]
        assert [r.status for r in found] == ["face"] * len(at) and [r.face for r in found] == list(range(len(at)))
        for r, (left, top) in zip(found, at, strict=True):  # left to right, each inside its pasted face
            cx, cy = (r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2
            assert left < cx < left + 128 and top < cy < top + 128 and 0.3 < r.score <= 1
            assert r.crop == pytest.approx(FRAMINGS["expw"].square(r.box))
    i, r = rows["group.jpg"][1]
    expected = crop_square(read_rgb(mixed / "group.jpg"), r.crop)
    assert torch.equal(faces[i]["image"], expected) and faces.keys[i] == "group.jpg#1"
    assert [r.status for _, r in rows["noise.png"]] == ["no_face"]


def test_unreadable_photos_are_skipped_with_a_reason_or_raise_naming_the_file(mixed, caplog):
    faces = PhotoFaces(ImageFiles(mixed), crop="chips")
    statuses = {r.photo: r.status for r in faces.rows}
    assert statuses == STATUS | {"noise.png": "face", "group.jpg": "face"}  # chips: every readable image is a face
    reasons = {r.photo: r.reason for r in faces.rows if r.status == "skipped"}
    assert reasons == {"corrupt.jpg": reasons["corrupt.jpg"], "notes.jpg": "not an image", "truncated.jpg": "truncated"}
    warned = [m for m in caplog.messages if "skipping" in m]
    assert len(warned) == 3 and all(any(name in m for m in warned) for name in reasons)  # one warning per file
    with pytest.raises(DataFormatError, match=r"corrupt\.jpg: cannot decode image"):
        PhotoFaces(ImageFiles(mixed), crop="chips", on_error="raise")
    assert skip_reason(DataFormatError("x.jpg", None, "image file is missing")) == "missing"


@pytest.fixture(scope="module")
def mixed_predictions(setup, mixed):  # noqa: F811
    out = setup["tmp"] / "mixed" / "predictions.jsonl"
    args = predict_args(setup, mixed, out)
    args.remove("--data.predict_crop")  # predict_args keeps the chips of the older tests: back to the default
    args.remove("chips")
    cli = run(args)
    return cli, read_jsonl(out), json.loads(out.with_name("predictions.summary.json").read_text())


def test_predict_writes_a_line_per_face_per_empty_photo_and_per_bad_file(mixed_predictions):
    cli, records, summary = mixed_predictions
    names = cli.model.model.characteristics
    assert [(r["photo"], r["status"]) for r in records] == [
        ("corrupt.jpg", "skipped"), ("group.jpg", "face"), ("group.jpg", "face"), ("noise.png", "no_face"),
        ("normal.jpg", "face"), ("notes.jpg", "skipped"), ("truncated.jpg", "skipped"),
    ]  # fmt: skip
    assert [r["index"] for r in records] == list(range(7))
    for r in records:
        if r["status"] == "face":
            assert r["key"] == f"{r['photo']}#{r['face']}" and len(r["box"]) == 4 and 0 < r["score"] <= 1
            assert r["faces"] == (2 if r["photo"] == "group.jpg" else 1)
            assert list(r["probabilities"]) == names and r["text"]
            bins = [r["probabilities"][n] for n in GROUPS["age"]]
            years = sum(p * AGE_BIN_YEARS[n] for p, n in zip(bins, GROUPS["age"], strict=True)) / sum(bins)
            assert r["age_years"] == pytest.approx(years, abs=0.06)
        else:
            assert "probabilities" not in r and "text" not in r and r["faces"] == 0
    assert {r["photo"]: r["reason"] for r in records if r["status"] == "skipped"}["notes.jpg"] == "not an image"
    assert "truncated.jpg" in next(r["error"] for r in records if r["photo"] == "truncated.jpg")
    assert summary | {"skipped_by_reason": {}, "skipped_files": {}} == {
        "crop": "detect", "detector": summary["detector"], "photos": 6, "read": 3, "faces": 3, "photos_with_faces": 2,
        "photos_without_face": 1, "skipped": 3, "skipped_by_reason": {}, "skipped_files": {},
    }  # fmt: skip
    assert sum(summary["skipped_by_reason"].values()) == 3 and sorted(summary["skipped_files"]) == [
        "corrupt.jpg", "notes.jpg", "truncated.jpg"
    ]  # fmt: skip


def test_predict_strict_mode_stops_at_the_first_bad_file(setup, mixed):  # noqa: F811
    out = setup["tmp"] / "strict" / "predictions.jsonl"
    with pytest.raises(DataFormatError, match=r"corrupt\.jpg: cannot decode image"):
        run([*predict_args(setup, mixed, out), "--data.predict_on_error", "raise"])


def test_describe_photos_describes_each_face_and_says_what_had_none(setup, mixed, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # the run's config caches the photos' maps under ./.cache
    out = tmp_path / "faces.jsonl"
    run(["describe", "--ckpt_path", str(setup["ckpt"]), "--images", str(mixed),
         "--segmaps", "unet", "--segmap_options", json.dumps({"checkpoint": str(setup["unet"])}),
         "--max_new_tokens", "4", "--json", str(out)])  # fmt: skip
    lines = read_jsonl(out)
    assert sorted((r["photo"], r["status"]) for r in lines) == sorted(
        [(p, s) for p, s in STATUS.items() if s != "face"] + [("group.jpg", "face")] * 2 + [("normal.jpg", "face")]
    )
    assert all(r["decoded"] and len(r["box"]) == 4 for r in lines if r["status"] == "face")
    assert json.loads(out.with_name("faces.summary.json").read_text())["faces"] == 3


def test_real_expw_photo_face_is_found_at_its_annotated_box(shared_data):
    photo = shared_data / "expw" / "image" / "origin" / "angry_actor_13.jpg"
    annotated = np.array([[27, 41, 195, 209]])  # label.lst: top 41, left 27, right 195, bottom 209
    found = make_detector()(read_rgb(photo).permute(1, 2, 0).numpy())
    framed = np.array([FRAMINGS["expw"].square(f.box) for f in found])
    assert len(found) == 1 and iou(framed, annotated)[0, 0] > 0.7
    assert all(f.score >= 0.6 for f in found)  # the chosen threshold, applied to every pass
