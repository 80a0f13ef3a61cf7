"""The paper's six training sets at their real sizes, without their images: memory and time of the data path
``configs/paper.yaml`` runs, per rank and in all, up to the first training batch.

    python benchmarks/data_scale.py --scale 0.01               # seconds: 37,400 faces
    python benchmarks/data_scale.py --scale 1.0                # the paper's 3.74 M faces, one rank
    python benchmarks/data_scale.py --scale 0.1 --ranks 8      # 8 DDP ranks (gloo, one CPU process each)

What is real and what is not:

* **Label files** are synthetic rows in each dataset's native format (CelebA's attribute and partition files,
  MAAD-Face's CSV, FairFace's two CSVs, UTKFace's file names, RAF-DB's partition list, ExpW's ``label.lst``), as
  many as the real releases hold (``SIZES``) times ``--scale``, with random labels.
  They are read by the project's own loaders.
* **Image files** exist at every path the labels name, because the loaders check that they do (one directory listing
  per folder) as they would on the real data: they are hard links to one small generated JPEG per dataset (of about
  the real images' size), so a million faces cost directory entries and no image data. Every face therefore decodes,
  but to the same pixels; the first batch decodes ``batch_size`` of them.
* **Parsing maps are off** (``with_segmaps=False``): the paper's maps come from a GPU face parser over 3.7 M real faces.
  The map cache is measured separately (``--maps``, on real maps; docs/scaling.md).
* **The run** is Lightning's: ``Trainer.fit`` with ``FaceDataModule`` (the paper's six datasets, batch 4, 8 workers per
  rank, 224 px) and a ``SpecialistModule`` (a ResNet-18: the model is not what is measured), on CPU; several ranks run
  under ``ddp`` with gloo (Lightning starts this script again once per rank, as ``configs/paper.yaml``'s
  ``DDPStrategy`` starts the CLI), as one node's GPU processes would. Validation splits are indexed as in ``fit``, but
  the sanity check is off and training stops at the first batch (before the model runs).

Per rank, the report gives: the peak resident memory (``ru_maxrss``); the time to index (``FaceDataModule.setup``) and
its peak; the time and peak of the co-occurrence statistics (``FaceModule.setup``); the time and memory of the sampler
(building the train loader and its first index); the time from the rank's process start to the first batch; the
proportional memory (PSS) of the rank and of its DataLoader workers at that moment; and, on rank 0, what one worker
would privately copy by the end of an epoch (a forked process that reads every face's file name and key, as an epoch of
``__getitem__`` calls does, and runs the garbage collector). On a 2-core machine, 8 ranks share 2 cores: their times
are inflated by the sharing; their memory is not.

``--maps DIR`` instead measures the bytes one parsing map takes in the cache, on the cached maps found in DIR
(``*.u8`` files with their ``.json`` sidecars).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import psutil

from faceinsight.data.module import DatasetSpec, FaceDataModule
from faceinsight.train.specialist import SpecialistModule

# The paper's six training sets at their released sizes (faces, all splits).
SIZES = {
    "celeba": 202_599,  # CelebA: 162,770 train / 19,867 val / 19,962 test (official partition)
    "maad": 3_311_286,  # MAAD-Face annotates VGGFace2: 3,141,890 faces of 8,631 train + 169,396 of 500 test identities
    "fairface": 97_698,  # FairFace (padding 0.25): 86,744 in its train file, 10,954 in its val file
    "utkface": 23_708,  # UTKFace's aligned-and-cropped release
    "rafdb": 15_339,  # RAF-DB basic: 12,271 train, 3,068 test
    "expw": 91_793,  # ExpW: faces (several per photo in some photos)
}
# The size (width, height) of one placeholder image per dataset, about that of the real images.
IMAGE_SIZES = {"celeba": (178, 218), "maad": (250, 300), "fairface": (224, 224), "utkface": (200, 200),
               "rafdb": (100, 100), "expw": (320, 256)}  # fmt: skip
LINKS_PER_IMAGE = 50_000  # ext4 allows 65,000 hard links to one file
MIB = 2**20
OUT_ENV = "FACEINSIGHT_DATA_SCALE_OUT"  # where the ranks write their figures


# ----------------------------------------------------------------------------------------------- label files
class Images:
    """Placeholder image files: hard links to one JPEG of a dataset's size, a new copy every LINKS_PER_IMAGE links."""

    def __init__(self, folder: Path, size: tuple[int, int], seed: int) -> None:
        from PIL import Image

        self.folder, self.count = folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
        self.image = Image.fromarray(pixels).resize(size)  # smooth enough to compress like a photo
        self.made: set[Path] = set()

    def link(self, path: Path) -> None:
        source = self.folder / f"{self.count // LINKS_PER_IMAGE}.jpg"
        if not source.exists():
            self.image.save(source, quality=90)
        path.parent.mkdir(parents=True, exist_ok=True) if path.parent not in self.made else None
        self.made.add(path.parent)
        os.link(source, path)
        self.count += 1


def scaled(kind: str, scale: float) -> int:
    return max(20, round(SIZES[kind] * scale))


def parts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """``n`` split into len(fractions) counts in those proportions (the last takes the rounding)."""
    counts = [round(n * f) for f in fractions[:-1]]
    return [*counts, n - sum(counts)]


def write_celeba(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``list_attr_celeba.txt`` (CRLF, space-aligned) and ``list_eval_partition.txt`` of the official split's shares."""
    from faceinsight.vocab import CELEBA_ATTRIBUTES

    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    rates = rng.uniform(0.02, 0.5, len(CELEBA_ATTRIBUTES))
    values = np.where(rng.random((n, len(CELEBA_ATTRIBUTES))) < rates, " 1", "-1")
    with open(root / "list_attr_celeba.txt", "w", newline="") as f:
        f.write(f"{n}\r\n{' '.join(CELEBA_ATTRIBUTES)} \r\n")
        f.writelines(f"{name} {' '.join(row)}\r\n" for name, row in zip(names, values, strict=True))
    codes = np.repeat([0, 1, 2], parts(n, (162_770 / 202_599, 19_867 / 202_599, 19_962 / 202_599)))
    with open(root / "list_eval_partition.txt", "w", newline="") as f:
        f.writelines(f"{name} {code}\r\n" for name, code in zip(names, codes, strict=True))
    for name in names:
        images.link(root / "img_align_celeba" / name)


def write_maad(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``MAAD_Face.csv`` over VGGFace2's ``<identity>/<file>.jpg``: 9,131 identities of ~363 faces each, the first
    8,631 under ``train/`` and the rest under ``test/`` as VGGFace2 ships them; values 1, -1 and 0 (undefined)."""
    from faceinsight.vocab import MAAD_ATTRIBUTES

    identities = max(2, round(9_131 * n / SIZES["maad"]))
    train_ids = max(1, round(identities * 8_631 / 9_131))
    owner = np.sort(rng.integers(0, identities, n))
    rates = rng.uniform(0.05, 0.6, len(MAAD_ATTRIBUTES))
    draw = rng.random((n, len(MAAD_ATTRIBUTES)))
    values = np.where(draw < rates, "1", np.where(draw < rates + 0.15, "0", "-1"))
    seen: dict[int, int] = {}
    with open(root / "MAAD_Face.csv", "w", newline="") as f:
        f.write(",".join(["Filename", "Identity", *MAAD_ATTRIBUTES]) + "\n")
        for who, row in zip(owner.tolist(), values, strict=True):
            seen[who] = seen.get(who, 0) + 1
            name = f"n{who + 1:06d}/{seen[who]:04d}_01.jpg"
            f.write(f"{name},{who + 1},{','.join(row)}\n")
            images.link(root / ("train" if who < train_ids else "test") / name)


def write_fairface(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``fairface_label_train.csv`` and ``fairface_label_val.csv``: ``file,age,gender,race,service_test``."""
    from faceinsight.vocab import AGE_BINS, RACES

    for split, count in zip(("train", "val"), parts(n, (86_744 / 97_698, 10_954 / 97_698)), strict=True):
        ages = rng.choice([label for label, _, _ in AGE_BINS], count)
        genders = rng.choice(["Male", "Female"], count)
        races = rng.choice(list(RACES), count)
        with open(root / f"fairface_label_{split}.csv", "w") as f:
            f.write("file,age,gender,race,service_test\n")
            for i in range(count):
                f.write(f"{split}/{i + 1}.jpg,{ages[i]},{genders[i]},{races[i]},{bool(i % 2)}\n")
                images.link(root / split / f"{i + 1}.jpg")


def write_utkface(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``UTKFace/<age>_<gender>_<race>_<date&time>.jpg.chip.jpg``: the labels are the file names."""
    ages, genders, races = rng.integers(1, 100, n), rng.integers(0, 2, n), rng.integers(0, 5, n)
    for i in range(n):
        images.link(root / "UTKFace" / f"{ages[i]}_{genders[i]}_{races[i]}_2017{i:013d}.jpg.chip.jpg")


def write_rafdb(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``) and ``Image/aligned/<name>_aligned.jpg``."""
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    train, test = parts(n, (12_271 / 15_339, 3_068 / 15_339))
    names = [f"train_{i:05d}" for i in range(1, train + 1)] + [f"test_{i:04d}" for i in range(1, test + 1)]
    labels = rng.integers(1, 8, n)
    with open(root / "EmoLabel" / "list_patition_label.txt", "w") as f:
        f.writelines(f"{name}.jpg {label}\n" for name, label in zip(names, labels, strict=True))
    for name in names:
        images.link(root / "Image" / "aligned" / f"{name}_aligned.jpg")


def write_expw(root: Path, n: int, rng: np.random.Generator, images: Images) -> None:
    """``label/label.lst``, one face box per line in ``image/origin/<photo>.jpg``; every tenth photo holds 2 faces
    (ExpW's real faces-per-photo ratio is not known here; only the face count matters for the index)."""
    (root / "label").mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 7, n)
    face, photo = 0, 0
    with open(root / "label" / "label.lst", "w") as f:
        while face < n:
            images.link(root / "image" / "origin" / f"photo_{photo}.jpg")
            for face_id in range(2 if photo % 10 == 9 and face + 1 < n else 1):
                top, left = rng.integers(0, 100, 2)
                f.write(f"photo_{photo}.jpg {face_id} {top} {left} {left + 120} {top + 120} 50.0 {labels[face]}\n")
                face += 1
            photo += 1


WRITERS: dict[str, Callable[[Path, int, np.random.Generator, Images], None]] = {
    "celeba": write_celeba, "maad": write_maad, "fairface": write_fairface, "utkface": write_utkface,
    "rafdb": write_rafdb, "expw": write_expw,
}  # fmt: skip


def generate(folder: Path, scale: float) -> dict[str, str]:
    """The six datasets' native files under ``folder`` (made once: a ``complete`` marker says so); their roots."""
    from tqdm.auto import tqdm

    roots = {kind: str(folder / kind) for kind in WRITERS}
    if (folder / "complete").is_file():
        return roots
    shutil.rmtree(folder, ignore_errors=True)
    for i, (kind, write) in enumerate(tqdm(WRITERS.items(), desc=f"writing label files (scale {scale})")):
        root = Path(roots[kind])
        root.mkdir(parents=True)
        images = Images(folder / "_images" / kind, IMAGE_SIZES[kind], i)
        write(root, scaled(kind, scale), np.random.default_rng(i), images)
    (folder / "complete").write_text("")
    return roots


# ----------------------------------------------------------------------------------------------- measuring one rank
class Memory:
    """Resident memory of this process, sampled every 10 ms by a thread: the peak within each named phase."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.phase: str | None = None
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> int:
        return self.process.memory_info().rss

    def _sample(self) -> None:
        while not self.stop.wait(0.01):
            if self.phase is not None:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.rss())

    @contextmanager
    def measure(self, name: str, into: dict[str, Any]) -> Iterator[None]:
        """Time, RSS before, peak and RSS after of the block, into ``into[name]`` (MiB, s)."""
        before, start = self.rss(), time.perf_counter()
        self.phase, self.peaks[name] = name, before
        try:
            yield
        finally:
            seconds, after = time.perf_counter() - start, self.rss()
            self.phase = None
            peak = max(self.peaks[name], after)
            into[name] = {"s": round(seconds, 2), "rss_before": before / MIB, "peak": peak / MIB, "after": after / MIB}


_RANK: dict[str, Any] = {}


def rank_state() -> tuple[Memory, dict[str, Any]]:
    """This process's memory sampler and figures, made on first use in each rank."""
    if not _RANK:
        _RANK.update(memory=Memory(), figures={})
    return _RANK["memory"], _RANK["figures"]


def pss(process: psutil.Process) -> int:
    try:
        return process.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def epoch_copy(views: list[Any], reply: Any) -> None:
    """In a forked process (a DataLoader worker's start), the private memory an epoch adds (MiB): after every face's
    file name and key is read (what ``__getitem__`` reads), and after a full garbage collection on top (a long-lived
    worker runs some; it touches every tracked Python object of the process, the data's and everything else's)."""
    me = psutil.Process()
    before = me.memory_full_info().uss
    for view in views:
        dataset = view.dataset
        table = getattr(dataset, "_table", None)
        for column in (dataset.keys, table.files if table is not None else ()):
            for _ in column:
                pass
    read = me.memory_full_info().uss
    gc.collect()
    reply.send(((read - before) / MIB, (me.memory_full_info().uss - before) / MIB))


class Probe(SpecialistModule):
    """The model of the run: times its own ``setup`` (the statistics) and stops the run at the first training batch,
    writing this rank's figures to ``<out>/rank<r>.json``."""

    out = ""

    def setup(self, stage: str) -> None:
        memory, figures = rank_state()
        with memory.measure("statistics", figures):
            super().setup(stage)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int:
        started = psutil.Process().create_time()
        _, figures = rank_state()
        figures["first_batch_s"] = round(time.time() - started, 2)
        figures["first_batch_faces"] = int(batch["labels"].shape[0])
        me = psutil.Process()
        # DataLoader workers are forks of this rank; the other ranks, which rank 0 starts, have their own LOCAL_RANK.
        workers = [p for p in me.children() if p.environ().get("LOCAL_RANK") == me.environ().get("LOCAL_RANK")]
        figures["pss_rank"] = pss(me) / MIB
        figures["pss_workers"] = sum(pss(p) for p in workers) / MIB
        figures["workers"] = len(workers)
        if self.trainer.global_rank == 0:
            context = mp.get_context("fork")
            here, there = context.Pipe()
            child = context.Process(target=epoch_copy, args=(self.trainer.datamodule.views("train"), there))
            child.start()
            figures["worker_epoch_copy"] = here.recv()
            child.join()
        figures["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rank = self.trainer.global_rank
        (Path(self.out) / f"rank{rank}.json").write_text(json.dumps(figures, indent=1))
        return -1  # skip the rest of the epoch: the model never runs


class Data(FaceDataModule):
    """The data module of the run: times indexing (``setup``) and building the training loader and its sampler."""

    def setup(self, stage: str) -> None:
        memory, figures = rank_state()
        with memory.measure("index", figures):
            super().setup(stage)
        figures["faces"] = {s: sum(len(v) for v in self.splits[s]) for s in self.splits}

    def train_dataloader(self) -> Any:
        memory, figures = rank_state()
        with memory.measure("sampler", figures):
            loader = super().train_dataloader()
            next(iter(loader.sampler))  # the epoch's draws: computed in full when iteration starts
        return loader


def run(roots: dict[str, str], ranks: int, out: Path, batch_size: int, num_workers: int, image_size: int) -> None:
    """``Trainer.fit`` up to the first batch with the paper's data section (``configs/paper.yaml``), images without
    parsing maps, on ``ranks`` CPU processes."""
    specs = [DatasetSpec(kind=kind, root=root) for kind, root in roots.items()]
    data = Data(specs, batch_size=batch_size, num_workers=num_workers, image_size=image_size, with_segmaps=False)
    model = Probe(characteristics=data.characteristics)
    model.out = str(out)
    L.seed_everything(0)
    trainer = L.Trainer(
        accelerator="cpu", devices=ranks, strategy="ddp" if ranks > 1 else "auto", max_epochs=1,
        num_sanity_val_steps=0, check_val_every_n_epoch=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)


# ----------------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], scale: float, ranks: int) -> str:
    """Markdown: rank 0, the largest figure over ranks, and the node's total."""

    def most(f: Callable[[dict[str, Any]], float]) -> float:
        return max(f(r) for r in results)

    def total(f: Callable[[dict[str, Any]], float]) -> float:
        return sum(f(r) for r in results)

    rows: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
        ("peak RSS per rank (MiB, ru_maxrss)", lambda r: r["ru_maxrss"], "sum"),
        ("index: time (s)", lambda r: r["index"]["s"], "max"),
        ("index: peak RSS (MiB)", lambda r: r["index"]["peak"], "sum"),
        ("index: RSS after (MiB)", lambda r: r["index"]["after"], "sum"),
        ("statistics: time (s)", lambda r: r["statistics"]["s"], "max"),
        ("statistics: peak above RSS before (MiB)", lambda r: r["statistics"]["peak"] - r["statistics"]["rss_before"],
         "sum"),
        ("sampler: time (s)", lambda r: r["sampler"]["s"], "max"),
        ("sampler: peak above RSS before (MiB)", lambda r: r["sampler"]["peak"] - r["sampler"]["rss_before"], "sum"),
        ("first batch: s from process start", lambda r: r["first_batch_s"], "max"),
        ("first batch: PSS of the rank (MiB)", lambda r: r["pss_rank"], "sum"),
        ("first batch: PSS of its workers (MiB)", lambda r: r["pss_workers"], "sum"),
    ]  # fmt: skip
    faces = results[0]["faces"]
    lines = [
        f"scale {scale}: {faces.get('train', 0):,} training and {faces.get('val', 0):,} validation faces, "
        f"{ranks} rank(s), {results[0]['workers']} worker(s) per rank",
        "",
        "| | rank 0 | max over ranks | node (sum or max) |",
        "|---|---:|---:|---:|",
    ]
    for name, f, how in rows:
        node = total(f) if how == "sum" else most(f)
        lines.append(f"| {name} | {f(results[0]):,.1f} | {most(f):,.1f} | {node:,.1f} ({how}) |")
    workers = results[0]["workers"]
    for what, copy in zip(("keys read", "keys read + gc"), results[0]["worker_epoch_copy"], strict=True):
        lines.append(f"| one worker's private copy after an epoch, {what} (MiB) | {copy:,.1f} | | "
                     f"{copy * workers * ranks:,.1f} (x {workers} workers x {ranks} ranks) |")  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- parsing maps
def map_bytes(folder: Path) -> str:
    """Bytes per cached parsing map in ``folder``'s ``*.u8`` caches: the raw uint8 map, and the map compressed."""
    import zlib

    lines = [
        "| cache | maps | px | raw bytes/map | zlib-1 bytes/map | zlib-6 bytes/map |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path in sorted(folder.glob("*.u8")):
        meta = json.loads(path.with_suffix(".json").read_text())
        n, size = meta["length"], meta["size"]
        maps = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, size, size))
        rows = maps[:: max(1, n // 2000)]
        fast = np.mean([len(zlib.compress(m.tobytes(), 1)) for m in rows])
        small = np.mean([len(zlib.compress(m.tobytes(), 6)) for m in rows])
        lines.append(f"| {path.name} | {n:,} | {size} | {size * size:,} | {fast:,.0f} | {small:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01, help="fraction of each dataset's real size")
    parser.add_argument("--ranks", type=int, default=1, help="DDP processes (gloo on CPU) on this machine")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "faceinsight-data-scale",
        help="where the generated datasets are kept between runs (one folder per scale)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="configs/paper.yaml: 4")
    parser.add_argument("--num-workers", type=int, default=8, help="DataLoader workers per rank (paper.yaml: 8)")
    parser.add_argument("--image-size", type=int, default=224, help="configs/paper.yaml: 224")
    parser.add_argument("--maps", type=Path, default=None, help="report bytes per cached parsing map in this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-rank figures here")
    args = parser.parse_args()
    if args.maps is not None:
        print(map_bytes(args.maps))
        return
    folder = args.workdir / f"scale-{args.scale:g}"
    start = time.perf_counter()
    roots = generate(folder, args.scale)
    print(f"datasets at {folder} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if "LOCAL_RANK" in os.environ:  # ranks 1.. of a DDP run: Lightning started this script again, with OUT_ENV set
        run(roots, args.ranks, Path(os.environ[OUT_ENV]), args.batch_size, args.num_workers, args.image_size)
        return
    with tempfile.TemporaryDirectory() as out:
        os.environ[OUT_ENV] = out
        run(roots, args.ranks, Path(out), args.batch_size, args.num_workers, args.image_size)
        results = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(args.ranks)]
    print(table(results, args.scale, args.ranks))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
