"""Writes what ``faceinsight predict`` computes: one JSON line per face."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Appends ``{"dataset", "key", "probabilities": {name: p}, "positive": [names]}`` per face to a JSONL file.

    Args:
        output_file: where to write; empty means the trainer's log folder ``predictions.jsonl``.
    """

    def __init__(self, output_file: str = "") -> None:
        super().__init__(write_interval="batch")
        self.output_file = output_file
        self._path: Path | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = Path(trainer.log_dir or ".")
        self._path = Path(self.output_file) if self.output_file else folder / "predictions.jsonl"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text("")

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        names = pl_module.model.characteristics
        dataset = trainer.datamodule.dataset_names[dataloader_idx] if trainer.datamodule else str(dataloader_idx)
        with self._path.open("a") as f:
            for key, probs, preds in zip(batch["key"], prediction["probs"], prediction["preds"], strict=True):
                record = {
                    "dataset": dataset,
                    "key": key,
                    "probabilities": {n: round(float(p), 5) for n, p in zip(names, probs, strict=True)},
                    "positive": [n for n, y in zip(names, preds, strict=True) if y],
                }
                f.write(json.dumps(record) + "\n")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        print(f"predictions written to {self._path}")
