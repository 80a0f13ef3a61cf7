"""Writes what ``faceinsight predict`` computes: one JSON line per face, and the decision as a sentence.

Under several processes (DDP) each process writes its own shard ``<output stem>.rank<k><suffix>``; after a barrier,
rank 0 merges the shards into the output in dataset order, once per face, and deletes them. No process ever opens
the output another one writes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from faceinsight.data.faces import row_records, write_summary
from faceinsight.eval.metrics import AGE_BIN_YEARS, expected_age
from faceinsight.vocab import GROUPS, VOCAB


def decision_text(names: Sequence[str], decided: Sequence[bool]) -> str:
    """The decided-present characteristics as one sentence from their prompts: the categorical picks first (age,
    gender, race, expression; several picks of one group joined by "or"), then the attributes in model order.

    ``["Male", "Age_20-29", "Smiling", ...]`` decided ``[1, 1, 1, ...]`` -> ``"20 to 29 years old; male; smiling."``
    """
    positive = [n for n, d in zip(names, decided, strict=True) if d]
    present = set(positive)
    picks = [" or ".join(VOCAB[n].prompt for n in members if n in present) for members in GROUPS.values()]
    parts = [p for p in picks if p] + [VOCAB[n].prompt for n in positive if VOCAB[n].group is None]
    if not parts:
        return "No characteristic decided present."
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}."


def shard_path(output: Path, rank: int) -> Path:
    """Where process ``rank`` writes its share of ``output``: ``preds.jsonl`` -> ``preds.rank1.jsonl``."""
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def merge_shards(shards: Sequence[Path], output: Path, datasets: Sequence[str]) -> int:
    """Merge per-process shards into ``output`` ordered by (dataset in ``datasets`` order, index), keeping each face
    once (a padding sampler repeats some on the last batch); atomic, and the shards are deleted. Returns the count.

    Only the lines' positions are held in memory, so a million predictions merge in little RAM.
    """
    order = {name: i for i, name in enumerate(datasets)}
    where: dict[tuple[int, int], tuple[int, int, int]] = {}  # (dataset, index) -> (shard, offset, length)
    for s, shard in enumerate(shards):
        offset = 0
        with shard.open("rb") as f:
            for line in f:
                record = json.loads(line)
                where.setdefault((order[record["dataset"]], record["index"]), (s, offset, len(line)))
                offset += len(line)
    tmp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(shard.open("rb")) for shard in shards]
        with tmp.open("wb") as out:
            for key in sorted(where):
                s, offset, length = where[key]
                files[s].seek(offset)
                out.write(files[s].read(length))
    os.replace(tmp, output)
    for shard in shards:
        shard.unlink()
    return len(where)


def prediction_datasets(trainer: L.Trainer) -> list[str]:
    """Name of each predict dataloader's dataset: ``images`` for ``--data.predict_images``, else the test splits."""
    dm = trainer.datamodule
    if dm is None:
        return [str(i) for i in range(len(trainer.predict_dataloaders or []))]
    return ["images"] if getattr(dm, "predict_images", None) else list(dm.dataset_names)


def prediction_dataset(trainer: L.Trainer, dataloader_idx: int) -> Any:
    """The dataset behind a predict dataloader (a ``faceinsight.data.faces.PhotoFaces`` for photos), or None."""
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, Sequence) else [loaders]
    if dataloader_idx >= len(loaders) or loaders[dataloader_idx] is None:
        return None
    return getattr(loaders[dataloader_idx].dataset, "dataset", None)  # the ModelView's dataset


def age_years(names: Sequence[str], probs: Tensor) -> list[float] | None:
    """Each face's age in years from its age-bin probabilities (``metrics.expected_age``), None when the model
    predicts no age."""
    if not set(GROUPS["age"]) <= set(names):
        return None
    index = [names.index(n) for n in GROUPS["age"]]
    bins = torch.tensor([AGE_BIN_YEARS[n] for n in GROUPS["age"]], dtype=probs.dtype, device=probs.device)
    return expected_age(probs[:, index], bins).tolist()


class PredictionWriter(BasePredictionWriter):
    """Writes ``{"dataset", "index", "key", "probabilities": {name: p}, "positive": [names], "age_years", "text"}``
    per face to a JSONL file, in dataset order. ``positive`` is the decision under the model's decoding (``decide``),
    ``age_years`` the expected age of the age bins (when the model predicts age), ``text`` the decision as a sentence
    (:func:`decision_text`); ``index`` is the face's position in its dataset. For photos
    (``--data.predict_images``) each line also has the photo's fields (``faceinsight.data.faces.Row``: ``photo``,
    ``status``, ``faces``, ``face``, ``box``, ``crop``, ``score``); a photo with no face or one that was skipped has
    one line with its ``status`` (and ``reason``, ``error``) and no prediction. The photos' summary is printed and
    written beside the output as ``<stem>.summary.json``.

    Args:
        output_file: where to write; empty means the trainer's log folder ``predictions.jsonl``.
    """

    def __init__(self, output_file: str = "") -> None:
        super().__init__(write_interval="batch")
        self.output_file = output_file
        self._path: Path | None = None  # the output
        self._shard: Path | None = None  # what this process writes: the output itself when it is the only one
        self._datasets: list[str] = []
        self._counts: dict[int, int] = {}  # faces written per dataloader, the index when the loop tracks none

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = Path(trainer.log_dir or ".")  # every process calls this: log_dir is a broadcast
        self._path = Path(self.output_file) if self.output_file else folder / "predictions.jsonl"
        self._shard = shard_path(self._path, trainer.global_rank) if trainer.world_size > 1 else self._path
        self._shard.parent.mkdir(parents=True, exist_ok=True)
        self._shard.write_text("")
        self._datasets = prediction_datasets(trainer)
        self._counts = {}

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self._shard is not None
        names = pl_module.model.characteristics
        years = age_years(names, prediction["probs"])
        keys = batch["key"]
        start = self._counts.get(dataloader_idx, 0)
        self._counts[dataloader_idx] = start + len(keys)
        if not batch_indices:
            if trainer.world_size > 1:
                raise RuntimeError("predicting with several processes needs the loop's batch indices to merge")
            batch_indices = range(start, start + len(keys))
        rows = row_records(prediction_dataset(trainer, dataloader_idx), batch_indices)  # photos' faces: where from
        with self._shard.open("a") as f:
            for i, (index, key, probs, preds) in enumerate(
                zip(batch_indices, keys, prediction["probs"].tolist(), prediction["preds"].tolist(), strict=True)
            ):
                record = {"dataset": self._datasets[dataloader_idx], "index": int(index), "key": key}
                record |= rows[i] if rows is not None else {}
                if record.get("status", "face") == "face":  # not a photo with no face, nor a skipped one
                    record |= {
                        "probabilities": {n: round(p, 5) for n, p in zip(names, probs, strict=True)},
                        "positive": [n for n, y in zip(names, preds, strict=True) if y],
                        **({"age_years": round(years[i], 1)} if years is not None else {}),
                        "text": decision_text(names, preds),
                    }
                f.write(json.dumps(record) + "\n")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self._path is not None
        if trainer.world_size > 1:
            trainer.strategy.barrier()  # every shard is complete
            if trainer.is_global_zero:
                merge_shards([shard_path(self._path, r) for r in range(trainer.world_size)], self._path, self._datasets)
            trainer.strategy.barrier()  # the output exists on return, in every process
        if trainer.is_global_zero:
            print(f"predictions written to {self._path}")
            write_summary(prediction_dataset(trainer, 0), self._path.with_name(f"{self._path.stem}.summary.json"))
