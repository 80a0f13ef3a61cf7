"""`faceinsight predict` on unlabelled photos: folders and list files, their parsing maps, the decision sentence,
and the per-process shards merged under DDP."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from test_training import ROOT, TINY, fit
from torch.utils.data import DistributedSampler

from faceinsight.cli import run
from faceinsight.data.base import DataFormatError
from faceinsight.data.images import ImageFiles
from faceinsight.data.module import DatasetSpec, FaceDataModule, predict_parser
from faceinsight.data.segmentation.unet import FitConfig, UNetConfig, build_unet, save_checkpoint
from faceinsight.data.synthface import SynthFace, SynthFaceConfig
from faceinsight.tools.predict import decision_text, merge_shards, shard_path
from faceinsight.vocab import VOCAB

KEYS = ["a.png", "b.jpg", "big.jpg", "sub/c.png"]  # sorted by path; hidden and non-image files are left out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """SynthFace faces saved as PNG and JPEG, one in a subfolder, one larger and not square; plus files to skip."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    (folder / ".thumbs").mkdir()
    faces = SynthFace(3, seed=7, config=SynthFaceConfig(size=64))
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(faces.render(i)[0]).save(folder / name)
    Image.fromarray(faces.render(0)[0]).resize((90, 120)).save(folder / "big.jpg")
    Image.fromarray(faces.render(1)[0]).save(folder / ".thumbs" / "a.png")
    (folder / "._a.png").write_bytes(b"macOS resource fork")  # hidden: would not decode
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny model trained with parsing maps, and a tiny (untrained) U-Net face parser for the photos' maps."""
    tmp = tmp_path_factory.mktemp("model")
    cli = fit(tmp, "--test_after_fit", "false")
    unet = UNetConfig(encoder="resnet18", encoder_depth=3, decoder_channels=(16, 16, 16), size=32)
    save_checkpoint(build_unet(unet), FitConfig(unet=unet), tmp / "unet.pt", trained_on="test")
    return {"ckpt": Path(cli.trainer.checkpoint_callback.best_model_path), "unet": tmp / "unet.pt", "tmp": tmp}


def predict_args(setup: dict[str, Path], images: Path, out: Path) -> list[str]:
    return [
        "predict", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", TINY, "--data.num_workers", "0",
        "--data.batch_size", "3", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out.parent), "--ckpt_path", str(setup["ckpt"]),
        "--model.decoding", "consistent",  # one pick per categorical group, so the sentence has something to say
        "--data.predict_images", str(images), "--data.predict_segmaps", "unet",
        "--data.predict_segmap_options", json.dumps({"checkpoint": str(setup["unet"])}),
        "--data.segmap_cache", str(setup["tmp"] / "segmaps"), "--predictions.output_file", str(out),
        "--data.predict_crop", "chips",  # these photos are face chips (test_faces.py detects faces in photos)
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decision_text_says_group_picks_then_attributes():
    names = ["Smiling", "Male", "Bald", "Wearing_Lipstick", "Female", "Age_20-29", "Age_30-39", "Expr_Happiness"]
    decided = [True, True, False, True, False, True, False, True]
    assert decision_text(names, decided) == "20 to 29 years old; male; happy; smiling; wearing lipstick."
    both = decision_text(["Age_20-29", "Age_30-39"], [True, True])  # threshold decoding may pick two
    assert both == "20 to 29 years old or 30 to 39 years old."
    assert decision_text(names, [False] * len(names)) == "No characteristic decided present."


def test_image_folder_is_read_recursively_upright_and_downscaled(photos):
    images = ImageFiles(photos, ["Smiling", "Male"], max_side=100)
    assert images.keys == KEYS
    sample = images[KEYS.index("big.jpg")]
    assert sample["image"].dtype == torch.uint8 and tuple(sample["image"].shape) == (3, 100, 75)  # 120x90 -> 100x75
    assert tuple(images[0]["image"].shape) == (3, 64, 64)  # small images stay as they are
    assert not sample["label_mask"].any() and sample["labels"].shape == (2,)
    assert images.label_matrix()[1].shape == (4, 2)
    assert images.name != ImageFiles(photos, max_side=512).name  # the segmap cache tells them apart


def test_exif_orientation_is_applied_like_pil(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    lines = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(tmp_path / f"{orientation}.png", exif=exif)
        lines.append(f"{orientation}.png")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    images = ImageFiles(tmp_path / "list.txt")
    for i, name in enumerate(lines):
        with Image.open(tmp_path / name) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(images[i]["image"].numpy(), expected), name


def test_image_list_errors_name_the_list_file_line_and_path(photos, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{photos / 'a.png'}\n\n../missing.jpg\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:3: image file .*missing\.jpg is missing"):
        ImageFiles(listed)
    listed.write_text(f"{photos / 'a.png'}\n{photos / 'a.png'}\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:2: .* repeats line 1"):
        ImageFiles(listed)
    listed.write_text(f"{photos / 'b.jpg'}\n{photos / '._a.png'}\n")
    images = ImageFiles(listed)
    assert images.keys == [str(photos / "b.jpg"), str(photos / "._a.png")]  # as written
    with pytest.raises(DataFormatError, match=r"list\.txt:2: .*\._a\.png: cannot decode image"):
        images[1]
    with pytest.raises(FileNotFoundError, match="no such folder or image list file"):
        ImageFiles(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        ImageFiles(tmp_path / "empty")


def test_predict_parser_is_the_first_datasets_or_an_explicit_one():
    with pytest.raises(ValueError, match=r"SynthFace's rendered maps.*--data\.predict_segmaps landmarks"):
        predict_parser(DatasetSpec(kind="synthface", segmaps="unet"), None, None)  # a parser for no photo
    with pytest.raises(ValueError, match="segmaps: dataset"):
        predict_parser(DatasetSpec(kind="celeba"), None, None)
    with pytest.raises(ValueError, match="predict_segmaps unet"):
        predict_parser(DatasetSpec(kind="celeba", segmaps="unet"), "dataset", None)
    celeba = DatasetSpec(kind="celeba", segmaps="unet", segmap_options={"checkpoint": "u.pt"})
    assert predict_parser(celeba, None, None) == ("unet", {"checkpoint": "u.pt"})
    assert predict_parser(celeba, "unet", None) == ("unet", {"checkpoint": "u.pt"})
    assert predict_parser(celeba, "landmarks", None) == ("landmarks", {})
    assert predict_parser(DatasetSpec(), "unet", {"checkpoint": "v.pt"}) == ("unet", {"checkpoint": "v.pt"})


def test_data_module_predicts_images_without_maps_when_the_model_reads_none(photos):
    dm = FaceDataModule(
        with_segmaps=False, num_workers=0, batch_size=8, predict_images=str(photos), predict_crop="chips"
    )
    dm.setup("predict")
    (loader,) = dm.predict_dataloader()
    batch = next(iter(loader))
    assert batch["key"] == KEYS and "segmap" not in batch
    assert batch["image"].shape == (4, 3, 64, 64) and not batch["label_mask"].any()
    with pytest.raises(ValueError, match="predict_segmaps"):  # SynthFace's maps exist for no photo
        FaceDataModule(num_workers=0, predict_images=str(photos), predict_crop="chips").setup("predict")


@pytest.fixture(scope="module")
def folder_predictions(setup, photos):
    """One single-process ``faceinsight predict`` of the photo folder with U-Net maps: (cli, records)."""
    out = setup["tmp"] / "folder" / "predictions.jsonl"
    cli = run(predict_args(setup, photos, out))
    return cli, read_jsonl(out)


def test_predict_writes_probabilities_decision_and_text_per_image(folder_predictions, setup):
    cli, records = folder_predictions
    names = cli.model.model.characteristics
    assert [r["key"] for r in records] == KEYS and [r["index"] for r in records] == [0, 1, 2, 3]
    assert {r["dataset"] for r in records} == {"images"}
    model = cli.model.eval()
    batches = list(cli.datamodule.predict_dataloader()[0])
    assert all("segmap" in b for b in batches)  # from the U-Net parser, cached like the training data's
    assert list((setup["tmp"] / "segmaps").glob("images-*.u8"))
    with torch.no_grad():
        probs = torch.cat([model(b["image"], b["segmap"]) for b in batches])
    decided = model.decide(probs)
    for r, p, d in zip(records, probs, decided, strict=True):
        assert list(r["probabilities"]) == names
        assert r["probabilities"] == pytest.approx(dict(zip(names, p.tolist(), strict=True)), abs=1e-5)
        assert r["positive"] == [n for n, y in zip(names, d.tolist(), strict=True) if y]
        assert r["positive"] and all(VOCAB[n].prompt in r["text"].lower() for n in r["positive"])


def test_predict_on_a_list_file_keeps_its_order_and_keys(folder_predictions, photos, setup):
    _, by_folder = folder_predictions
    listed = setup["tmp"] / "list" / "photos.txt"
    listed.parent.mkdir()
    listed.write_text(f"{photos / 'sub/c.png'}\n../../{photos.name}/a.png\n")  # relative to the list's folder
    out = listed.parent / "predictions.jsonl"
    run(predict_args(setup, listed, out))
    records = read_jsonl(out)
    assert [r["key"] for r in records] == [str(photos / "sub/c.png"), f"../../{photos.name}/a.png"]
    folder = {r["key"]: r for r in by_folder}
    for r, same in zip(records, ["sub/c.png", "a.png"], strict=True):
        assert r["positive"] == folder[same]["positive"]


def test_merge_shards_drops_padded_repeats_and_keeps_dataset_order(tmp_path):
    output = tmp_path / "preds.jsonl"
    sizes = {"celeba": 5, "rafdb": 3}
    shards = [shard_path(output, rank) for rank in range(2)]
    assert shards[1] == tmp_path / "preds.rank1.jsonl"
    for rank, shard in enumerate(shards):
        with shard.open("w") as f:
            for name, n in sizes.items():  # torch's sampler pads each rank to ceil(n / 2) by repeating index 0
                for i in DistributedSampler(range(n), num_replicas=2, rank=rank, shuffle=False):
                    f.write(json.dumps({"dataset": name, "index": i, "key": f"{name}/{i}"}) + "\n")
    assert merge_shards(shards, output, list(sizes)) == 8
    keys = [r["key"] for r in read_jsonl(output)]
    assert keys == [f"celeba/{i}" for i in range(5)] + [f"rafdb/{i}" for i in range(3)]
    assert not any(shard.exists() for shard in shards)


def test_predict_with_two_ddp_processes_matches_one_process(folder_predictions, setup, photos):
    """A real 2-process CPU run (gloo); ``python -m`` so that Lightning can relaunch the command per process."""
    _, single = folder_predictions
    out = setup["tmp"] / "ddp" / "predictions.jsonl"
    args = [*predict_args(setup, photos, out), "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    args[args.index("--data.batch_size") + 1] = "1"  # 4 images: 2 batches per process
    done = subprocess.run(
        [sys.executable, "-m", "faceinsight.cli", *args], cwd=out.parent.parent, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_jsonl(out)
    assert [r["key"] for r in records] == KEYS
    assert not list(out.parent.glob("*.rank*"))  # shards merged and removed
    for r, s in zip(records, single, strict=True):
        assert r["positive"] == s["positive"] and r["text"] == s["text"]
        assert r["probabilities"] == pytest.approx(s["probabilities"], abs=1e-4)
