"""Face parsers, the parsing-map cache and mIoU (faceinsight.data.segmentation)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceinsight.cli import run
from faceinsight.data.base import FaceDataset, Sample
from faceinsight.data.segmentation import NUM_CLASSES, SegmapCache, SegSource, make_source, miou, resize_maps
from faceinsight.data.segmentation.base import CLASSES, hflip
from faceinsight.data.segmentation.cache import cache_identity, shard
from faceinsight.data.segmentation.landmarks import chains, split_cycle
from faceinsight.data.segmentation.unet import FitConfig, UNetConfig, UNetSource, build_unet, fit, save_checkpoint
from faceinsight.vocab import SCHEMAS

DATA = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SAMPLES = DATA / "celebamaskhq-samples"
TINY = UNetConfig(encoder="resnet18", encoder_depth=3, decoder_channels=(16, 16, 16), size=32)


# -- mIoU and label-map helpers


def test_miou_matches_hand_computed_example() -> None:
    target = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    # class 0: inter 1, union |{(0,0),(0,1),(1,2)}| = 3; class 1: inter 2, union 3; class 2: inter 1, union 2
    mean, per_class = miou(pred, target, num_classes=4)
    np.testing.assert_allclose(per_class[:3], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(per_class[3])  # absent from both: not counted
    assert mean == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_miou_counts_a_class_present_only_in_prediction() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    pred = torch.tensor([[[0, 0], [0, 5]]])
    mean, per_class = miou(pred, target)
    assert per_class[5] == 0 and per_class[0] == pytest.approx(3 / 4)
    assert mean == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="outside"):
        miou(pred + NUM_CLASSES, target)


def test_resize_maps_takes_the_majority_when_downsampling() -> None:
    m = torch.tensor([[[1, 1, 2, 2], [1, 3, 2, 2], [4, 4, 5, 6], [4, 0, 5, 5]]])
    np.testing.assert_array_equal(resize_maps(m, 2)[0].numpy(), [[1, 2], [4, 5]])
    up = resize_maps(torch.tensor([[[1, 2], [3, 4]]]), 4)
    np.testing.assert_array_equal(up[0].numpy(), np.kron([[1, 2], [3, 4]], np.ones((2, 2), int)))


def test_hflip_mirrors_and_swaps_left_right_classes() -> None:
    ids = {n: i for i, n in enumerate(CLASSES)}
    maps = torch.tensor([[[ids["l_eye"], ids["skin"], ids["r_brow"]]]])
    images = torch.arange(9, dtype=torch.uint8).view(1, 3, 1, 3)
    fi, fm = hflip(images, maps)
    assert fm[0, 0].tolist() == [ids["l_brow"], ids["skin"], ids["r_eye"]]
    assert fi[0, 0, 0].tolist() == [2, 1, 0]


# -- landmark parser geometry (no mediapipe needed)


def test_chains_orders_cycles_and_paths() -> None:
    cycle = chains(frozenset({(1, 2), (3, 1), (2, 3)}))
    assert len(cycle) == 1 and sorted(cycle[0]) == [1, 2, 3]
    paths = chains(frozenset({(10, 11), (11, 12), (20, 21)}))
    assert sorted(tuple(p) if p[0] < p[-1] else tuple(reversed(p)) for p in paths) == [(10, 11, 12), (20, 21)]


def test_split_cycle_returns_upper_then_lower_chain() -> None:
    # a diamond: left (0,1), top (1,0), right (2,1), bottom (1,2); image y grows downwards
    cycle = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    upper, lower = split_cycle(cycle, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(upper, [[0, 1], [1, 0], [2, 1]])
    np.testing.assert_array_equal(lower, [[0, 1], [1, 2], [2, 1]])


# -- U-Net parser


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """One torch thread: with other jobs on a 2-core machine, two threads run these small models 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_unet_source_shapes_dtype_range_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_unet(TINY)
    source = UNetSource(model, TINY, name="tiny")
    images = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8)
    out = source(images)
    assert out.shape == (3, 40, 48) and out.dtype == torch.int64
    assert int(out.min()) >= 0 and int(out.max()) < NUM_CLASSES
    with pytest.raises(ValueError, match="uint8"):
        source(images.float())

    ckpt = tmp_path / "parser.pt"
    save_checkpoint(model, FitConfig(unet=TINY), ckpt, trained_on="test")
    loaded = make_source("unet", checkpoint=ckpt)
    assert torch.equal(loaded(images), out)
    assert loaded.name == make_source("unet", checkpoint=ckpt).name  # same weights, same cache identity
    torch.nn.init.zeros_(next(model.parameters()))
    save_checkpoint(model, FitConfig(unet=TINY), tmp_path / "other.pt", trained_on="test")
    assert make_source("unet", checkpoint=tmp_path / "other.pt").name != loaded.name
    with pytest.raises(FileNotFoundError, match="segparser fit"):
        make_source("unet", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown segmentation source"):
        make_source("pyfacer")  # type: ignore[arg-type]


def _stripes(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose top half is red and bottom half blue at a random split row; map: skin (1) above, hair (13) below."""
    rows = torch.randint(size // 4, 3 * size // 4, (n,))
    y = torch.arange(size).view(1, size, 1)
    top = (y < rows.view(n, 1, 1)).expand(n, size, size)
    maps = torch.where(top, 1, 13)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0][top] = 220
    images[:, 2][~top] = 220
    return images, maps


def test_fit_learns_a_simple_parsing_task() -> None:
    images, maps = _stripes(32, 32)
    model = fit(images, maps, FitConfig(steps=40, batch_size=8, lr=1e-2, unet=TINY))
    test_images, test_maps = _stripes(8, 32)
    pred = UNetSource(model, TINY, name="stripes")(test_images)
    assert (pred == test_maps).float().mean() > 0.9


def test_segparser_fit_command_writes_a_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("faceinsight.data.synthface")
    out = tmp_path / "p.pt"
    run(
        [
            "segparser",
            "fit",
            "--source",
            "synthface",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--num-samples",
            "4",
        ]
    )
    source = make_source("unet", checkpoint=out)
    assert source(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 64, 64)
    with pytest.raises(ValueError, match="--source"):
        run(["segparser", "fit", "--source", "nonsense", "--out", str(out)])


# -- the cache


class ToyFaces(FaceDataset):
    """``n`` random images (optionally of two sizes); counts how often samples are read."""

    schema = SCHEMAS["celeba"]

    def __init__(self, n: int, tag: str = "toy", mixed_sizes: bool = False, with_keys: bool = True) -> None:
        self.n, self.tag, self.mixed_sizes, self.with_keys = n, tag, mixed_sizes, with_keys
        self.reads = 0

    @property
    def name(self) -> str:
        return "toy"

    def keys(self) -> list[str]:
        if not self.with_keys:
            raise AssertionError("keys() must not be called")
        return [f"{self.tag}/{i}" for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        self.reads += 1
        side = 24 if self.mixed_sizes and index % 2 else 16
        g = torch.Generator().manual_seed(index)
        return Sample(
            image=torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=g), key=f"{self.tag}/{index}"
        )

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.n, 1), torch.ones(self.n, 1, dtype=torch.bool)


class KeylessToyFaces(ToyFaces):
    keys = None  # type: ignore[assignment]


class CountingSource(SegSource):
    """Class id = (red channel + image mean) mod 19; counts calls; can fail after ``fail_after`` calls."""

    def __init__(self, name: str = "counting", fail_after: int | None = None) -> None:
        self.name, self.fail_after, self.calls = name, fail_after, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("killed")
        return images[:, 0].long() % NUM_CLASSES


def test_cache_computes_once_and_reuses_across_instances(tmp_path: Path) -> None:
    dataset, source = ToyFaces(10), CountingSource()
    cache = SegmapCache(tmp_path)
    first = cache.get(dataset, source, size=16, batch_size=4)
    assert isinstance(first, np.memmap) and first.dtype == np.uint8 and first.shape == (10, 16, 16)
    expected = torch.stack([dataset[i]["image"][0].long() % NUM_CLASSES for i in range(10)]).numpy()
    np.testing.assert_array_equal(first, expected)
    calls = source.calls
    assert calls == 3 and cache.built == 10
    again = SegmapCache(tmp_path).get(dataset, source, size=16)  # a new process would do the same
    assert source.calls == calls
    np.testing.assert_array_equal(again, first)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".u8"]


def test_cache_key_changes_with_source_size_and_dataset(tmp_path: Path) -> None:
    cache, source = SegmapCache(tmp_path), CountingSource()
    base = cache.path(cache_identity(ToyFaces(6), source, 16))
    assert cache.path(cache_identity(ToyFaces(6), CountingSource("other"), 16)) != base
    assert cache.path(cache_identity(ToyFaces(6), source, 32)) != base
    assert cache.path(cache_identity(ToyFaces(7), source, 16)) != base
    assert cache.path(cache_identity(ToyFaces(6, tag="b"), source, 16)) != base  # same length, other keys
    # keys by iteration when the dataset has no keys(): same identity as the keys() shortcut
    assert cache.path(cache_identity(KeylessToyFaces(6), source, 16)) == base


def test_cache_write_is_atomic_when_a_run_dies(tmp_path: Path) -> None:
    dataset = ToyFaces(12)
    with pytest.raises(RuntimeError, match="killed"):
        SegmapCache(tmp_path).get(dataset, CountingSource(fail_after=1), size=8, batch_size=4)
    assert list(tmp_path.iterdir()) == []  # neither a partial cache nor a temporary file is left
    source = CountingSource()
    maps = SegmapCache(tmp_path).get(dataset, source, size=8, batch_size=4)
    assert source.calls == 3 and maps.shape == (12, 8, 8)


def test_cache_rebuilds_a_truncated_file_and_handles_mixed_sizes(tmp_path: Path) -> None:
    dataset, cache = ToyFaces(5, mixed_sizes=True), SegmapCache(tmp_path)
    maps = np.array(cache.get(dataset, CountingSource(), size=8, batch_size=5))  # a copy: the file is cut below
    assert maps.shape == (5, 8, 8)
    path = cache.path(cache_identity(dataset, CountingSource(), 8))
    path.write_bytes(path.read_bytes()[:-7])
    source = CountingSource()
    np.testing.assert_array_equal(cache.get(dataset, source, size=8), maps)
    assert source.calls > 0


class DarkBlindSource(CountingSource):
    """Like the landmark parser, finds no face in some images (mean below 127) and draws them all background."""

    def __init__(self) -> None:
        super().__init__("dark-blind")
        self.last_missed: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        dark = images.float().mean(dim=(1, 2, 3)) < 127
        self.last_missed = dark.nonzero().flatten().tolist()
        return super().__call__(images) * (~dark).long()[:, None, None]


@pytest.mark.parametrize("mixed_sizes", [False, True])
def test_cache_records_the_images_a_parser_found_no_face_in(tmp_path: Path, mixed_sizes: bool) -> None:
    dataset, cache = ToyFaces(9, mixed_sizes=mixed_sizes), SegmapCache(tmp_path)
    dark = [i for i in range(9) if dataset[i]["image"].float().mean() < 127]
    assert 0 < len(dark) < 9
    loaded = cache.load(dataset, DarkBlindSource(), size=8, batch_size=4)
    assert loaded.missed == dark and loaded.faces_missed == len(dark)
    sidecar = json.loads(loaded.path.with_suffix(".json").read_text())  # type: ignore[union-attr]
    assert sidecar["faces_missed"] == len(dark) and sidecar["missed_indices"] == dark
    assert SegmapCache(tmp_path).load(dataset, DarkBlindSource(), size=8).missed == dark  # a hit reads the sidecar
    del sidecar["missed_indices"]  # a sidecar from before the indices were recorded: all-background maps
    loaded.path.with_suffix(".json").write_text(json.dumps(sidecar))  # type: ignore[union-attr]
    assert set(SegmapCache(tmp_path).load(dataset, DarkBlindSource(), size=8).missed or []) >= set(dark)
    assert cache.load(dataset, CountingSource(), size=8).missed is None  # a parser that cannot miss


@pytest.mark.parametrize("n", [0, 1, 5, 17, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_every_row_once_in_order(n: int, world: int) -> None:
    shards = [shard(n, rank, world) for rank in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def build_in_process(rank: int, folder: str) -> None:
    """Process ``rank`` of 2 (gloo): opens the cache of 11 toy faces with a parser that misses the dark ones, and
    writes how many maps it parsed and what it loaded to ``rank<r>.json``."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        cache = SegmapCache(Path(folder) / "cache")
        loaded = cache.load(ToyFaces(11), DarkBlindSource(), size=8, batch_size=2)
        again = SegmapCache(Path(folder) / "cache").load(ToyFaces(11), DarkBlindSource(), size=8)  # a hit
        result = {"built": cache.built, "missed": loaded.missed, "path": str(loaded.path), "again": again.missed,
                  "same": bool(np.array_equal(loaded.maps, again.maps))}  # fmt: skip
        Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_processes_build_one_cache_together(tmp_path: Path, run_processes) -> None:
    """Two gloo processes parse 5 and 6 of 11 faces into one file, byte-identical to a single process's, with the
    same missed faces; no temporary file is left."""
    run_processes(build_in_process, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["built"] for r in ranks] == [5, 6]
    single = SegmapCache(tmp_path / "single").load(ToyFaces(11), DarkBlindSource(), size=8, batch_size=2)
    shared = Path(ranks[0]["path"])
    assert ranks[1]["path"] == str(shared) and shared.read_bytes() == single.path.read_bytes()  # type: ignore[union-attr]
    assert all(r["missed"] == r["again"] == single.missed for r in ranks) and single.missed
    assert all(r["same"] for r in ranks)
    meta = json.loads(shared.with_suffix(".json").read_text())
    assert meta["processes"] == 2 and meta["missed_indices"] == single.missed
    assert sorted(p.name for p in shared.parent.iterdir()) == sorted([shared.name, shared.with_suffix(".json").name])


# -- the landmark parser on a real photo


@pytest.fixture(scope="module")
def landmarks() -> SegSource:
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("mediapipe is not installed (requirements/landmarks.txt)")
    return make_source("landmarks")


def test_landmark_parser_on_a_real_photo(landmarks: SegSource) -> None:
    if not (SAMPLES / "0.jpg").is_file():
        pytest.skip(f"shared CelebAMask-HQ samples not found at {SAMPLES}")
    image = np.asarray(Image.open(SAMPLES / "0.jpg").convert("RGB").resize((256, 256), Image.Resampling.LANCZOS))
    target = resize_maps(torch.from_numpy(np.asarray(Image.open(SAMPLES / "0.png")).astype(np.int64))[None], 256)
    pred = landmarks(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
    assert pred.shape == (1, 256, 256) and pred.dtype == torch.int64
    mean, per_class = miou(pred, target)
    assert mean > 0.4, per_class  # measured 0.58 over the 4 samples at 512 px
    ids = {n: i for i, n in enumerate(CLASSES)}
    for part in ("skin", "nose", "l_eye", "r_eye", "u_lip", "l_lip"):  # also checks the left/right convention
        assert per_class[ids[part]] > 0.3, (part, per_class[ids[part]])


def test_landmark_parser_name_changes_with_its_parameters(landmarks: SegSource) -> None:
    from faceinsight.data.segmentation.landmarks import HeadShape

    assert make_source("landmarks").name == landmarks.name
    assert make_source("landmarks", detect_size=128).name != landmarks.name
    assert make_source("landmarks", shape=HeadShape(neck_length=0.5)).name != landmarks.name


def test_landmark_parser_maps_faceless_images_to_background(landmarks: SegSource) -> None:
    before = landmarks.faces_missed  # type: ignore[attr-defined]
    out = landmarks(torch.full((2, 3, 48, 64), 127, dtype=torch.uint8))
    assert out.shape == (2, 48, 64) and int(out.abs().sum()) == 0
    assert landmarks.faces_missed == before + 2  # type: ignore[attr-defined]
    assert landmarks.last_missed == [0, 1]
