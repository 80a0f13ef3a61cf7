"""The Pyfacer/FaRL map source (faceinsight.data.segmentation.facer) against a stand-in ``facer`` module.

Pyfacer and its weights are not installed here (no network to the weights): a fake module with Pyfacer's interface
(``face_detector(name, device, **kw)``, ``face_parser(name, device, **kw)``, detector output ``rects``/``points``/
``scores``/``image_ids``, parser output ``seg.logits`` at the input resolution and ``seg.label_names``) checks the
glue: the class mapping, the face choice, misses, shapes, the missing-package error and the cache identity.
"""

from __future__ import annotations

import copy
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from faceinsight.data.base import FaceDataset, Sample
from faceinsight.data.celebamaskhq import CLASSES
from faceinsight.data.module import DatasetSpec, predict_parser
from faceinsight.data.segmentation import SegmapCache, make_source
from faceinsight.data.segmentation.facer import FACER_TO_OURS, FacerParser, class_lookup
from faceinsight.vocab import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]

# celebm/448's label_names in logit order, copied from Pyfacer (facer/face_parsing/farl.py, also in the pyfacer 0.0.5
# wheel), independently of the module under test.
CELEBM = ["background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re",
          "le", "nose", "imouth", "llip", "ulip", "hair", "eyeg", "hat", "earr", "neck_l"]  # fmt: skip
# The CelebAMask-HQ part each of those ids was trained on (FaRL's farl/datasets/celebamask_hq.py: part files in the
# order neck, skin, cloth, l_ear, r_ear, l_brow, r_brow, l_eye, r_eye, nose, mouth, l_lip, u_lip, hair, eye_g, hat,
# ear_r, neck_l get ids 1..18), as our ids (0 background, 1 skin, 2 nose, 3 eye_g, 4 l_eye, 5 r_eye, 6 l_brow,
# 7 r_brow, 8 l_ear, 9 r_ear, 10 mouth, 11 u_lip, 12 l_lip, 13 hair, 14 hat, 15 ear_r, 16 neck_l, 17 neck, 18 cloth).
EXPECTED = [0, 17, 1, 18, 8, 9, 6, 7, 4, 5, 2, 10, 12, 11, 13, 3, 14, 15, 16]


class FakeFacer:
    """A stand-in ``facer`` module. Images carry a tag in the blue channel of pixel (0, 0); ``faces[tag]`` lists the
    (x1, y1, x2, y2, score) the detector reports for them. The parser fills each face's box with 19 vertical stripes,
    stripe k = facer class k (logit 5, the rest 0), and leaves zero logits outside, as Pyfacer's inverse warp does."""

    def __init__(self, faces: dict[int, list[tuple[float, float, float, float, float]]], labels: list[str]) -> None:
        self.faces, self.labels = faces, labels
        self.built: list[tuple[str, str, dict[str, Any]]] = []
        self.parsed: list[int] = []  # faces per parser call

    def module(self) -> types.ModuleType:
        m = types.ModuleType("facer")
        m.__version__ = "0.0.5-test"  # type: ignore[attr-defined]
        m.face_detector = self.face_detector  # type: ignore[attr-defined]
        m.face_parser = self.face_parser  # type: ignore[attr-defined]
        return m

    def face_detector(self, name: str, device: Any, **kwargs: Any) -> Any:
        self.built.append(("detector", name, {"device": device, **kwargs}))
        return self.detect

    def face_parser(self, name: str, device: Any, **kwargs: Any) -> Any:
        self.built.append(("parser", name, {"device": device, **kwargs}))
        return self.parse

    def detect(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        assert images.dtype == torch.uint8 and images.ndim == 4
        rects, points, scores, ids = [], [], [], []
        for i, image in enumerate(images):
            for x1, y1, x2, y2, score in self.faces.get(int(image[2, 0, 0]), []):
                rects.append(torch.tensor([x1, y1, x2, y2]))
                points.append(torch.tensor([[x1, y1]] * 5))  # unused by the fake parser, but sliced by the glue
                scores.append(score)
                ids.append(i)
        if not rects:  # what RetinaFace returns for a batch without faces: empty float tensors
            return {k: torch.Tensor() for k in ("rects", "points", "scores", "image_ids")}
        return {
            "rects": torch.stack(rects).float(),
            "points": torch.stack(points).float(),
            "scores": torch.tensor(scores),
            "image_ids": torch.tensor(ids),
        }

    def parse(self, images: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, Any]:
        n = len(data["image_ids"])
        assert data["image_ids"].dtype == torch.long and len(set(data["image_ids"].tolist())) == n  # one per image
        assert len(data["rects"]) == len(data["points"]) == len(data["scores"]) == n
        self.parsed.append(n)
        _, _, h, w = images.shape
        logits = torch.zeros((n, len(self.labels), h, w))
        for j, (x1, y1, x2, y2) in enumerate(data["rects"].round().long().tolist()):
            for x in range(x1, x2):
                logits[j, (x - x1) * len(self.labels) // (x2 - x1), y1:y2, x] = 5.0
        data["seg"] = {"logits": logits, "label_names": self.labels}
        return data


def tagged(tags: list[int], h: int = 48, w: int = 80) -> torch.Tensor:
    images = torch.randint(0, 256, (len(tags), 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    images[:, 2, 0, 0] = torch.tensor(tags, dtype=torch.uint8)
    return images


def stripes(box: tuple[int, int, int, int], h: int, w: int) -> torch.Tensor:
    """The map the source must return for one face whose box is ``box``: our id of facer stripe k, by EXPECTED."""
    x1, y1, x2, y2 = box
    out = torch.zeros((h, w), dtype=torch.long)
    for x in range(x1, x2):
        out[y1:y2, x] = EXPECTED[(x - x1) * 19 // (x2 - x1)]
    return out


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeFacer:
    fake = FakeFacer(
        {
            1: [(2, 3, 59, 40, 0.99)],  # one face, 57 px wide: 3 columns per stripe
            2: [(60, 5, 79, 24, 0.999), (0, 2, 57, 46, 0.85)],  # a small confident face and a big one
            3: [],  # no face
        },
        CELEBM,
    )
    monkeypatch.setitem(sys.modules, "facer", fake.module())
    return fake


def test_table_maps_every_facer_class_onto_its_celebamaskhq_part() -> None:
    assert class_lookup(CELEBM).tolist() == EXPECTED
    assert sorted(EXPECTED) == list(range(len(CLASSES)))  # a permutation: no class lost or merged
    # Names by the image's side: FaRL's "re" (right eye in the image) is the person's left eye, CelebAMask-HQ l_eye.
    assert [FACER_TO_OURS[n] for n in ("rr", "lr", "rb", "lb", "re", "le")] == [
        "l_ear", "r_ear", "l_brow", "r_brow", "l_eye", "r_eye",
    ]  # fmt: skip
    older = [{"eyeg": "glass", "neck_l": "neckl"}.get(n, n) for n in CELEBM]  # older Pyfacer releases' names
    assert class_lookup(older).tolist() == EXPECTED
    with pytest.raises(ValueError, match=r"\['skin'\].*no CelebAMask-HQ counterpart"):
        class_lookup(["background", "skin"])  # e.g. a model with another label set


def test_each_facer_class_lands_on_our_id_at_the_input_resolution(fake: FakeFacer) -> None:
    source = make_source("facer", device="cpu")
    assert isinstance(source, FacerParser) and fake.built == []  # models load on the first call only
    maps = source(tagged([1], h=48, w=80))
    assert maps.shape == (1, 48, 80) and maps.dtype == torch.int64
    expected = stripes((2, 3, 59, 40), 48, 80)
    assert torch.equal(maps[0], expected)
    assert sorted(maps.unique().tolist()) == list(range(19))  # every class came through
    assert source.last_missed == []
    assert [(kind, name) for kind, name, _ in fake.built] == [
        ("detector", "retinaface/mobilenet"), ("parser", "farl/celebm/448"),
    ]  # fmt: skip
    assert all(kwargs == {"device": "cpu"} for _, _, kwargs in fake.built)  # Pyfacer fetches its own weights


def test_off_by_one_label_order_would_be_caught(fake: FakeFacer) -> None:
    fake.labels = CELEBM[1:] + CELEBM[:1]  # the same names rotated: the source must follow the names it is given
    maps = make_source("facer", device="cpu")(tagged([1]))
    rotated = {k: EXPECTED[(k + 1) % 19] for k in range(19)}
    x1, y1, x2, y2 = 2, 3, 59, 40
    for x in range(x1, x2):
        assert int(maps[0, y1, x]) == rotated[(x - x1) * 19 // (x2 - x1)]
    assert not torch.equal(maps[0], stripes((x1, y1, x2, y2), 48, 80))


@pytest.mark.parametrize("pick", ["largest", "score"])
def test_one_face_per_image_the_largest_or_the_most_confident(fake: FakeFacer, pick: str) -> None:
    maps = FacerParser(device="cpu", pick=pick)(tagged([2]))  # type: ignore[arg-type]
    box = (0, 2, 57, 46) if pick == "largest" else (60, 5, 79, 24)
    fg = maps[0] != 0
    x1, y1, x2, y2 = box
    inside = torch.zeros_like(fg)
    inside[y1:y2, x1:x2] = True
    assert fg.any() and torch.equal(fg & ~inside, torch.zeros_like(fg))  # only the chosen box is labelled
    assert torch.equal(maps[0][inside], stripes(box, 48, 80)[inside])
    assert fake.parsed == [1]  # the other face is never parsed


def test_no_face_gives_background_and_last_missed_across_chunks(fake: FakeFacer) -> None:
    source = FacerParser(device="cpu", batch_size=2)
    maps = source(tagged([3, 1, 2, 3, 1]))
    assert maps.shape == (5, 48, 80) and maps.dtype == torch.int64
    assert source.last_missed == [0, 3]  # batch indices, across chunks of 2
    assert not maps[0].any() and not maps[3].any()
    assert torch.equal(maps[1], stripes((2, 3, 59, 40), 48, 80)) and torch.equal(maps[4], maps[1])
    assert fake.parsed == [1, 1, 1]  # chunk [3, 1]: 1 face; [2, 3]: 1 of 2; [1]: 1
    assert source(tagged([3, 3])).sum() == 0 and source.last_missed == [0, 1]  # no face at all: no parser call
    assert fake.parsed == [1, 1, 1]
    assert (source.images_seen, source.faces_missed) == (7, 4)


def test_cache_records_the_faceless_images(fake: FakeFacer, tmp_path: Path) -> None:
    class Tagged(FaceDataset):
        schema = SCHEMAS["celeba"]

        def __init__(self) -> None:
            self.images = tagged([1, 3, 2, 3])

        def keys(self) -> list[str]:
            return [f"t/{i}" for i in range(len(self))]

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, index: int) -> Sample:
            return Sample(image=self.images[index], key=f"t/{index}")

        def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(len(self), 1), torch.ones(len(self), 1, dtype=torch.bool)

    cached = SegmapCache(tmp_path).load(Tagged(), FacerParser(device="cpu"), size=16, batch_size=3)
    assert cached.missed == [1, 3] and cached.maps.shape == (4, 16, 16)
    assert cached.maps[0].any() and not cached.maps[1].any()
    meta = json.loads(cached.path.with_suffix(".json").read_text())  # type: ignore[union-attr]
    assert meta["missed_indices"] == [1, 3] and meta["source"].startswith("facer0.0.5-test-")


def test_name_identifies_models_weights_and_options(fake: FakeFacer, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "a.pt").write_bytes(b"weights one")
    base = FacerParser(device="cpu").name
    assert FacerParser(device="cuda").name == base  # the device does not change the maps' identity
    with_a = FacerParser(parser_weights=a).name
    assert with_a != base and FacerParser(parser_weights=b).name != with_a
    assert FacerParser(parser_weights=tmp_path / "copy" / "a.pt").name == with_a  # by content, not path
    assert FacerParser(detector_weights=a).name not in (base, with_a)
    assert FacerParser(parser="farl/lapa/448").name != base
    assert FacerParser(detector="retinaface/resnet50").name != base
    assert FacerParser(threshold=0.5).name != base
    assert FacerParser(pick="score").name != base
    with pytest.raises(FileNotFoundError, match="parser_weights"):
        FacerParser(parser_weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="pick"):
        FacerParser(pick="first")  # type: ignore[arg-type]


def test_local_weights_and_threshold_reach_pyfacer(fake: FakeFacer, tmp_path: Path) -> None:
    p, d = tmp_path / "parser.pt", tmp_path / "detector.pth"
    p.write_bytes(b"p")
    d.write_bytes(b"d")
    FacerParser(parser_weights=p, detector_weights=d, threshold=0.6, device="cpu")(tagged([1]))
    assert fake.built == [
        ("detector", "retinaface/mobilenet", {"device": "cpu", "model_path": str(d), "threshold": 0.6}),
        ("parser", "farl/celebm/448", {"device": "cpu", "model_path": str(p)}),
    ]


def test_pickles_without_its_models(fake: FakeFacer) -> None:
    source = FacerParser(device="cpu")
    first = source(tagged([1]))
    copy = pickle.loads(pickle.dumps(source))
    assert copy.name == source.name and copy._detector is None
    assert torch.equal(copy(tagged([1])), first)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facer", None)  # import facer -> ImportError
    with pytest.raises(ImportError, match=r"pyfacer.*\.\[facer\]"):
        make_source("facer")


def test_paper_preset_uses_the_facer_source(fake: FakeFacer) -> None:
    """configs/paper.yaml's datasets: typed as the CLI types them, each with a facer source that builds."""
    from lightning.pytorch.cli import LightningArgumentParser

    from faceinsight.data.module import FaceDataModule

    data = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())["data"]
    parser = LightningArgumentParser()
    parser.add_class_arguments(FaceDataModule, "data")
    parsed = parser.parse_object({"data": copy.deepcopy(data)}).data  # it edits its input
    assert len(parsed.datasets) == 6
    specs = [DatasetSpec(**d) for d in data["datasets"]]
    assert {s.segmaps for s in specs} == {"facer"}
    names = {make_source(s.segmaps, **s.segmap_options).name for s in specs}
    assert len(names) == 1 and next(iter(names)).startswith("facer0.0.5-test-r1-farl/celebm/448@default-")
    assert predict_parser(specs[0], None, None) == ("facer", specs[0].segmap_options)
    with pytest.raises(ValueError, match="'facer'"):
        DatasetSpec(kind="celeba", segmaps="pyfacer")  # type: ignore[arg-type]
