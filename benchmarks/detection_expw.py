"""Face detection measured on ExpW's own boxes, and expression read from detected faces against annotated ones.

Per photo of an ExpW split (ExpW's hashed photo split, the loader's defaults): the detector's faces, framed the way
``faceinsight predict`` crops them (``faceinsight.data.detect.FRAMINGS``), matched one-to-one to the annotated faces by
IoU (greedy, highest first). Reported: recall at IoU 0.5 (and 0.4) of the framed boxes and of the raw detector
boxes, false detections per photo (detections matching no annotated face at IoU 0.5: an upper bound, since ExpW
does not annotate every face of a photo) and milliseconds per photo.

With ``--ckpt`` (a model that predicts expression): expression accuracy on the crops of the matched detections
(each labelled with its annotated face's expression) against accuracy on the annotated crops of the same faces and
of all faces (an undetected face counts as wrong in "end to end"), with the majority class and chance.

Usage (settings are chosen on the train split only; the test split is for reporting):
    python benchmarks/detection_expw.py --split train --sweep        # detector settings grid
    python benchmarks/detection_expw.py --split train --calibrate    # detector box -> ExpW box framing
    python benchmarks/detection_expw.py --split test [--ckpt runs/expw/checkpoints/best.ckpt]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from faceinsight.data._io import read_rgb
from faceinsight.data.base import FaceDataset, Sample
from faceinsight.data.detect import FRAMINGS, Face, Framing, MediaPipeDetector, crop_square, iou, make_detector
from faceinsight.data.expw import ExpW
from faceinsight.data.faces import detect_faces

DEFAULT_ROOT = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@dataclass
class Photo:
    """One ExpW photo: its file, its annotated boxes (left, top, right, bottom) and their rows in the split."""

    file: str
    boxes: np.ndarray
    rows: list[int]


def photos_of(dataset: ExpW) -> list[Photo]:
    """The split's photos with their annotated faces, in first-seen order."""
    table = dataset._table  # the loader's index: files and boxes per face row
    rows: dict[str, list[int]] = defaultdict(list)
    for i, file in enumerate(table.files):
        rows[file].append(i)
    return [Photo(f, table.boxes[r], r) for f, r in rows.items()]


def match(detected: np.ndarray, annotated: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (detection, annotation) pairs with IoU >= ``threshold``, greedily by IoU."""
    if not len(detected) or not len(annotated):
        return []
    overlap = iou(detected, annotated)
    pairs, used_d, used_a = [], set(), set()
    for flat in np.argsort(-overlap, axis=None):
        d, a = divmod(int(flat), overlap.shape[1])
        if overlap[d, a] < threshold:
            break
        if d not in used_d and a not in used_a:
            pairs.append((d, a))
            used_d.add(d)
            used_a.add(a)
    return pairs


def detect_all(detector: Any, photos: Sequence[Photo], root: Path) -> tuple[list[list[Face]], float]:
    """Every photo's detections and the mean seconds per photo (detection only, not decoding)."""
    found, seconds = [], 0.0
    for photo in tqdm(photos, desc=f"detecting ({detector.name})", unit="photo"):
        image = read_rgb(root / photo.file, upright=True)
        start = time.perf_counter()
        found.append(detect_faces(detector, image))  # as predict detects (large photos on a downscaled copy)
        seconds += time.perf_counter() - start
    return found, seconds / max(len(photos), 1)


def boxes_of(faces: Sequence[Face], framing: Framing | None, min_score: float = 0.0) -> np.ndarray:
    """``[N, 4]`` boxes of the faces scoring at least ``min_score``, framed when ``framing`` is given."""
    kept = [f.box if framing is None else framing.square(f.box) for f in faces if f.score >= min_score]
    return np.array(kept, dtype=np.float64).reshape(-1, 4)


def scores(photos: Sequence[Photo], found: Sequence[list[Face]], framing: Framing | None, min_score: float = 0.0
           ) -> dict[str, float]:  # fmt: skip
    """Recall at IoU 0.5 and 0.4, recall at 0.5 by the annotated face's side in pixels, false detections per
    photo."""
    faces = sum(len(p.boxes) for p in photos)
    hits = {0.5: 0, 0.4: 0}
    false = 0
    sizes = {"<40px": [0, 0], "40-80px": [0, 0], ">=80px": [0, 0]}  # [found, annotated]
    for photo, faces_found in zip(photos, found, strict=True):
        boxes = boxes_of(faces_found, framing, min_score)
        for threshold in hits:
            pairs = match(boxes, photo.boxes, threshold)
            hits[threshold] += len(pairs)
            if threshold == 0.5:
                false += len(boxes) - len(pairs)
                matched = {a for _, a in pairs}
                for a, box in enumerate(photo.boxes):
                    side = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
                    size = sizes["<40px" if side < 40 else "40-80px" if side < 80 else ">=80px"]
                    size[0] += a in matched
                    size[1] += 1
    by_size = {k: {"recall@0.5": f / max(n, 1), "faces": n} for k, (f, n) in sizes.items()}
    return {"recall@0.5": hits[0.5] / faces, "recall@0.4": hits[0.4] / faces, "fp_per_photo": false / len(photos),
            "by_size": by_size}  # fmt: skip


def calibrate(photos: Sequence[Photo], found: Sequence[list[Face]], rounds: int = 3) -> Framing:
    """The framing (median centre shift and side ratio, in detector-box sides) that maps matched detections onto
    the annotated boxes: first matched on the raw boxes at IoU 0.3, then on the framed ones at 0.5."""
    framing: Framing | None = None
    for _ in range(rounds):
        shifts, ratios = [], []
        for photo, faces in zip(photos, found, strict=True):
            raw = boxes_of(faces, None)
            framed = raw if framing is None else boxes_of(faces, framing)
            for d, a in match(framed, photo.boxes, 0.3 if framing is None else 0.5):
                side = np.sqrt((raw[d, 2] - raw[d, 0]) * (raw[d, 3] - raw[d, 1]))
                ann = photo.boxes[a].astype(np.float64)
                shifts.append(((ann[:2] + ann[2:]) / 2 - (raw[d, :2] + raw[d, 2:]) / 2) / side)
                ratios.append(np.sqrt((ann[2] - ann[0]) * (ann[3] - ann[1])) / side)
        dx, dy = np.median(np.array(shifts), axis=0)
        framing = Framing(scale=round(float(np.median(ratios)), 3), dx=round(float(dx), 3), dy=round(float(dy), 3))
        print(f"calibration on {len(ratios)} matched faces: {framing}")
    assert framing is not None
    return best_framing(photos, found, framing)


def best_framing(photos: Sequence[Photo], found: Sequence[list[Face]], start: Framing) -> Framing:
    """The framing near ``start`` (scale within 12%, centre within 0.06 box sides) with the highest recall at IoU
    0.5: the medians fit the typical face, this the share of faces framed well enough."""
    grid = itertools.product(np.linspace(0.88, 1.12, 7), np.linspace(-0.06, 0.06, 5), np.linspace(-0.06, 0.06, 5))
    candidates = [
        Framing(*(round(float(v), 3) for v in (start.scale * k, start.dx + x, start.dy + y))) for k, x, y in grid
    ]
    best = max(candidates, key=lambda f: (scores(photos, found, f)["recall@0.5"], f == start))
    print(f"best framing near the medians: {best} (recall@0.5 {scores(photos, found, best)['recall@0.5']:.4f}, "
          f"medians {scores(photos, found, start)['recall@0.5']:.4f})")  # fmt: skip
    return best


# The settings tried by --sweep: (model_selection, min_side, tiles). Upscaling alone did not help (640 px gave the
# same recall as none on the first sweep), tiles did; both models together and finer grids are the candidates.
# A second sweep, after tile detections touching a cut side were dropped and contained boxes suppressed, ran the
# tiled settings again (--sweep tiled).
SWEEP: tuple[tuple[Any, int, tuple[int, ...]], ...] = (
    (1, 0, ()), (0, 0, ()), (0, 0, (2,)), (1, 0, (2,)), (0, 0, (3,)), (0, 0, (2, 3)), ((0, 1), 0, (2,)),
    ((0, 1), 0, (2, 3)),
)  # fmt: skip
TILED = ((0, 0, (2,)), (0, 0, (3,)), (0, 0, (2, 3)), (0, 0, (4,)), ((0, 1), 0, (2,)), ((0, 1), 0, (3,)))


def sweep(photos: Sequence[Photo], root: Path, framing: Framing, settings: Sequence[tuple[Any, int, tuple[int, ...]]]
          ) -> None:  # fmt: skip
    """Recall and false detections of MediaPipe settings on ``photos``: each (models, upscale, tiles) detected once
    at the lowest threshold, the thresholds applied to its scores."""
    thresholds = (0.5, 0.6, 0.7, 0.8)
    print("| model | min side | tiles | min confidence | recall@0.5 | recall@0.4 | FP/photo | ms/photo |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, side, tiles in settings:
        detector = MediaPipeDetector(model, min(thresholds), side, tiles)
        found, seconds = detect_all(detector, photos, root)
        for t in thresholds:
            s = scores(photos, found, framing, t)
            print(f"| {model} | {side} | {tiles} | {t} | {s['recall@0.5']:.3f} | {s['recall@0.4']:.3f} | "
                  f"{s['fp_per_photo']:.3f} | {seconds * 1000:.1f} |", flush=True)  # fmt: skip


class Crops(FaceDataset):
    """Faces cut from ExpW photos by given boxes (square crops of detections), labelled like the matched rows."""

    split_method = "the ExpW split's faces, cut by detected boxes"

    def __init__(self, root: Path, expw: ExpW, items: list[tuple[str, int, tuple[float, ...]]], name: str) -> None:
        self.root, self.expw, self.items, self._name = root, expw, items, name
        self.schema = expw.schema

    @property
    def name(self) -> str:
        return self._name

    @property
    def keys(self) -> list[str]:
        return [f"{file}@{','.join(f'{v:.1f}' for v in box)}" for file, _, box in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        file, row, box = self.items[index]
        labels, mask = self.expw.label_matrix()
        image = crop_square(read_rgb(self.root / file, upright=True), box)
        return Sample(image=image, labels=labels[row], label_mask=mask[row], age=torch.tensor(float("nan")),
                      key=self.keys[index])  # fmt: skip

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        labels, mask = self.expw.label_matrix()
        rows = torch.tensor([row for _, row, _ in self.items], dtype=torch.long)
        return labels[rows], mask[rows]


@torch.no_grad()
def expression_predictions(module: Any, data: Any, dataset: FaceDataset, segmaps: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) expression class per face of ``dataset``, the model's maps drawn by ``segmaps``."""
    from torch.utils.data import DataLoader

    from faceinsight.data.module import ModelView
    from faceinsight.data.segmentation import SegmapCache, make_source
    from faceinsight.vocab import GROUPS

    names = module.model.characteristics
    index = [names.index(n) for n in GROUPS["expression"]]
    maps = None
    if data.with_segmaps:
        maps = SegmapCache(data.segmap_cache).get(dataset, make_source(segmaps), size=data.image_size)
    view = ModelView(dataset, names, data.image_size, 0, maps, data.with_segmaps)
    predicted, truth = [], []
    for batch in DataLoader(view, batch_size=64):
        probs = module(batch["image"], batch.get("segmap"))
        predicted.append(probs[:, index].argmax(1))
        truth.append(batch["labels"][:, index].argmax(1))
    return torch.cat(predicted).numpy(), torch.cat(truth).numpy()


def load_model(ckpt: Path) -> Any:
    """A FaceInsight or specialist checkpoint, in eval mode (the decoding is not saved: threshold)."""
    from faceinsight.train.faceinsight_module import FaceInsightModule
    from faceinsight.train.specialist import SpecialistModule

    for cls in (FaceInsightModule, SpecialistModule):
        try:
            return cls.load_from_checkpoint(ckpt, map_location="cpu", decoding="threshold").eval()
        except (TypeError, ValueError):  # the checkpoint is the other class's
            continue
    raise SystemExit(f"{ckpt} is neither a FaceInsight nor a specialist checkpoint")


def expression_report(args: argparse.Namespace, expw: ExpW, photos: Sequence[Photo], found: Sequence[list[Face]],
                      framing: Framing) -> dict[str, Any]:  # fmt: skip
    """Expression accuracy on detected crops, on the same faces' annotated crops and end to end."""
    from faceinsight.data.module import FaceDataModule

    module = load_model(args.ckpt)
    data = FaceDataModule(with_segmaps=getattr(module.model, "seg_encoder", None) is not None,
                          image_size=args.image_size, segmap_cache=args.segmap_cache)  # fmt: skip
    items, matched_rows = [], []
    for photo, faces in zip(photos, found, strict=True):
        boxes = boxes_of(faces, framing)
        for d, a in match(boxes, photo.boxes, 0.5):
            items.append((photo.file, photo.rows[a], tuple(boxes[d])))
            matched_rows.append(photo.rows[a])
    crops = Crops(args.root, expw, items, f"expw-{args.split}-detected")  # the cache keys on the boxes too
    det_pred, det_true = expression_predictions(module, data, crops, args.segmaps)
    ann_pred, ann_true = expression_predictions(module, data, expw, args.segmaps)
    rows = np.array(matched_rows, dtype=np.int64)
    assert np.array_equal(ann_true[rows], det_true)
    counts = Counter(ann_true.tolist())
    train = ExpW(args.root, split="train").label_matrix()[0].argmax(1)
    majority = int(torch.bincount(train).argmax())  # the training split's most frequent expression
    return {
        "faces": len(ann_true),
        "matched": len(rows),
        "accuracy_annotated_all": float((ann_pred == ann_true).mean()),
        "accuracy_annotated_matched": float((ann_pred[rows] == ann_true[rows]).mean()),
        "accuracy_detected_matched": float((det_pred == det_true).mean()),
        "accuracy_end_to_end": float((det_pred == det_true).sum() / len(ann_true)),
        "majority": float((ann_true == majority).mean()),  # always answering the training split's majority class
        "most_frequent_here": max(counts.values()) / len(ann_true),  # the split's own most frequent class (oracle)
        "chance": 1 / 7,
    }


def chip_framing(kind: str, root: Path, limit: int) -> Framing:
    """The framing of a chip dataset's training faces (the whole chip) around the face the detector finds in it,
    medians over the first ``limit`` training chips where exactly one face is found (whole-photo pass: tiles would
    cut a face that fills the chip)."""
    from faceinsight.data.registry import load_dataset

    dataset = load_dataset(root, kind=kind, split="train")
    options = make_detector().__dict__  # the chosen settings, without tiles
    detector = MediaPipeDetector(options["models"], options["min_confidence"], options["min_side"], ())
    shifts, ratios = [], []
    for i in tqdm(range(min(limit, len(dataset))), desc=f"{kind} chips", unit="chip"):
        image = dataset[i]["image"]
        faces = detector(image.permute(1, 2, 0).numpy())
        if len(faces) != 1:
            continue
        box, (h, w) = np.array(faces[0].box), image.shape[-2:]
        side = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        shifts.append((np.array([w / 2, h / 2]) - (box[:2] + box[2:]) / 2) / side)
        ratios.append(np.sqrt(w * h) / side)
    dx, dy = np.median(np.array(shifts), axis=0)
    framing = Framing(scale=round(float(np.median(ratios)), 3), dx=round(float(dx), 3), dy=round(float(dy), 3))
    print(f"{kind}: one face found in {len(ratios)} of {min(limit, len(dataset))} training chips; {framing}")
    return framing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "expw")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--detector", default="mediapipe")
    parser.add_argument("--options", default="{}", help="detector options as JSON (default: the chosen settings)")
    parser.add_argument("--framing", default="expw", help="a name in faceinsight.data.detect.FRAMINGS")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="all",
        choices=("all", "tiled"),
        help="grid of MediaPipe settings (use --split train); 'tiled': the tiled ones only",
    )
    parser.add_argument("--calibrate", action="store_true", help="fit the framing (use --split train)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--ckpt", type=Path, default=None, help="a model predicting expression: accuracy on crops")
    parser.add_argument("--segmaps", default="landmarks", help="the face parser of the model's maps")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--segmap_cache", default=".cache/segmaps")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--chip_framing",
        nargs=2,
        metavar=("KIND", "ROOT"),
        default=None,
        help="measure a chip dataset's framing instead, e.g. utkface ../shared/data/utkface",
    )
    args = parser.parse_args(argv)
    if args.chip_framing is not None:
        return {"framing": str(chip_framing(args.chip_framing[0], Path(args.chip_framing[1]), args.limit or 1000))}

    expw = ExpW(args.root, split=args.split)
    photos = photos_of(expw)[: args.limit]
    framing = FRAMINGS[args.framing]
    print(f"ExpW {args.split}: {len(photos)} photos, {sum(len(p.boxes) for p in photos)} annotated faces")
    if args.sweep:
        sweep(photos, args.root, framing, SWEEP if args.sweep == "all" else TILED)
        return {}
    detector = make_detector(args.detector, **json.loads(args.options))
    found, seconds = detect_all(detector, photos, args.root)
    if args.calibrate:
        framing = calibrate(photos, found)
    report: dict[str, Any] = {"split": args.split, "photos": len(photos), "faces": sum(len(p.boxes) for p in photos),
                              "detector": detector.name, "framing": str(framing), "ms_per_photo": seconds * 1000,
                              "framed": scores(photos, found, framing), "raw": scores(photos, found, None)}  # fmt: skip
    if args.ckpt is not None:
        report["expression"] = expression_report(args, expw, photos, found, framing)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
