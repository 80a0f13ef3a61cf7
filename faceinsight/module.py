"""Training, evaluation and prediction of FaceInsight as a ``LightningModule``.

Loss (eq. 3-4): masked BCE over the labelled characteristics plus
``lambda * L_c``, the logical constraint loss (eq. 9) compiled from rule files.
The correlation statistics are computed from the training split when fitting
starts; they, the compiled rules and the prompt embeddings are saved in every
checkpoint, so a checkpoint alone predicts.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from faceinsight.correlation import CorrelationConfig
from faceinsight.encoders import ImageEncoderConfig, LLMConfig, SegEncoderConfig, TextEncoderConfig
from faceinsight.logic import LogicLoss, RuleSet, load_rules, parse_rules
from faceinsight.metrics import DatasetMetrics
from faceinsight.model import FaceInsight, FaceInsightConfig

log = logging.getLogger(__name__)

Semantics = Literal["paper", "semantic", "product", "goedel", "lukasiewicz"]


class FaceInsightModule(L.LightningModule):
    """FaceInsight with its losses, metrics and optimiser.

    Args:
        characteristics: the K characteristics to score (linked from the data module by the CLI).
        image_encoder, seg_encoder, text_encoder, llm, correlation: see ``faceinsight.encoders``
            and ``faceinsight.correlation``.
        use_seg: the segmentation-map modality (paper Sec. 3.2).
        use_correlation: the correlation constraint module (eq. 5-8).
        use_logic: the logical constraint loss (eq. 9).
        rules: rule files compiled into the logic loss and the consistency metric.
        logic_semantics: ``paper`` (eq. 9), ``semantic`` (Xu et al. 2018) or a fuzzy t-norm.
        logic_weight: lambda in eq. 4.
        decoding: ``threshold`` (P >= 0.5) or ``consistent`` (most probable assignment satisfying the hard rules).
        lr, weight_decay, warmup_fraction: AdamW with linear warm-up and cosine decay.
        metrics_file: where the test metrics are written as JSON (default: the logger's folder).
    """

    def __init__(
        self,
        characteristics: list[str] | None = None,
        image_encoder: ImageEncoderConfig | None = None,
        seg_encoder: SegEncoderConfig | None = None,
        text_encoder: TextEncoderConfig | None = None,
        llm: LLMConfig | None = None,
        correlation: CorrelationConfig | None = None,
        use_seg: bool = True,
        use_correlation: bool = True,
        use_logic: bool = True,
        rules: list[str] | None = None,
        logic_semantics: Semantics = "paper",
        logic_weight: float = 1.0,
        decoding: Literal["threshold", "consistent"] = "threshold",
        query: str = "Analyze the facial features in this image.",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        metrics_file: str | None = None,
    ) -> None:
        super().__init__()
        if not characteristics:
            raise ValueError("characteristics is empty: pass the data module's characteristics")
        # Evaluation-time options are not saved: `faceinsight test --ckpt_path` re-applies saved hyper-parameters
        # over the command line, and these must stay switchable there.
        self.save_hyperparameters(ignore=["decoding", "metrics_file"])
        self.decoding = decoding
        self.metrics_file = metrics_file
        config = FaceInsightConfig(
            image_encoder=image_encoder or ImageEncoderConfig(),
            seg_encoder=seg_encoder or SegEncoderConfig(),
            text_encoder=text_encoder or TextEncoderConfig(),
            llm=llm or LLMConfig(),
            correlation=correlation or CorrelationConfig(),
            use_seg=use_seg,
            use_correlation=use_correlation,
            query=query,
        )
        self.model = FaceInsight(config, list(characteristics))
        self.rules: RuleSet = load_rules([resolve_rule_file(r) for r in rules or []], self.model.characteristics)
        self.logic_loss = LogicLoss(self.rules, logic_semantics) if use_logic and len(self.rules.rules) else None
        self.eval_metrics: torch.nn.ModuleDict | None = None
        self.baseline_metrics: torch.nn.ModuleDict | None = None

    # ----------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        if stage == "fit" and dm is not None and not self.model.stats.is_set:
            labels, mask = dm.train_label_matrix()
            self.model.stats.update(labels.to(self.device), mask.to(self.device))
            log.info("co-occurrence statistics from %d training samples", labels.shape[0])
        if dm is not None:
            self.eval_metrics = self._metrics(dm)
            self.baseline_metrics = self._metrics(dm)

    def _metrics(self, dm: Any) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict(
            {
                name: DatasetMetrics(spec.schema, self.model.characteristics, self.rules.hard.cpu())
                for name, spec in zip(dm.dataset_names, dm.specs, strict=True)
            }
        ).to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["faceinsight"] = {"rules": self.rules.to_text(), "characteristics": self.model.characteristics}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("faceinsight")
        if saved is not None:  # the rules the model was trained with, whatever the files say now
            self.rules = parse_rules(saved["rules"], self.model.characteristics, source="<checkpoint>").to(self.device)
            if self.logic_loss is not None:
                self.logic_loss = LogicLoss(self.rules, self.hparams.logic_semantics)

    # ----------------------------------------------------------------- steps
    def forward(self, image: Tensor, segmap: Tensor | None = None) -> Tensor:
        """Probabilities ``[B, K]``."""
        return torch.sigmoid(self.model(image, segmap))

    def decide(self, probs: Tensor) -> Tensor:
        """Binary predictions ``[B, K]`` under the configured decoding."""
        if self.decoding == "consistent":
            return self.rules.decode(probs)
        return probs >= 0.5

    def losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        logits = self.model(batch["image"], batch.get("segmap"))
        mask = batch["label_mask"]
        bce = F.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="none")
        bce = (bce * mask).sum() / mask.sum().clamp_min(1)
        parts = {"bce": bce}
        loss = bce
        if self.logic_loss is not None:
            parts["logic"] = self.logic_loss(torch.sigmoid(logits))
            loss = loss + self.hparams.logic_weight * parts["logic"]
        return loss, parts, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, parts, _ = self.losses(batch)
        b = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=b)
        return loss

    def _evaluate(self, batch: dict[str, Tensor], dataloader_idx: int, stage: str) -> None:
        loss, _, logits = self.losses(batch)
        name = list(self.eval_metrics.keys())[dataloader_idx]
        self.log(f"{stage}/{name}/loss", loss, batch_size=batch["image"].shape[0], add_dataloader_idx=False)
        probs = torch.sigmoid(logits)
        self._update(self.eval_metrics[name], probs, self.decide(probs), batch)
        if stage == "test":
            prior = self.model.stats.positive_rate().float().expand_as(probs)
            self._update(self.baseline_metrics[name], prior, prior >= 0.5, batch)

    def _update(self, metrics: DatasetMetrics, probs: Tensor, preds: Tensor, batch: dict[str, Tensor]) -> None:
        satisfied = self.rules.satisfied(preds) if len(self.rules.rules) else None
        metrics.update(probs, preds, batch["labels"], batch["label_mask"], batch["age"], satisfied)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        probs = self(batch["image"], batch.get("segmap"))
        return {"probs": probs, "preds": self.decide(probs)}

    # ----------------------------------------------------------------- epoch ends
    def _collect(self, metrics: torch.nn.ModuleDict) -> dict[str, dict[str, float]]:
        out = {name: m.compute() for name, m in metrics.items()}
        for m in metrics.values():
            m.reset()
        return out

    def on_validation_epoch_end(self) -> None:
        for name, values in self._collect(self.eval_metrics).items():
            self.log_dict({f"val/{name}/{k}": v for k, v in values.items() if not math.isnan(v)})

    def on_test_epoch_end(self) -> None:
        per_rule = {
            name: m.consistency.per_rule() for name, m in self.eval_metrics.items() if m.consistency is not None
        }
        model, baseline = self._collect(self.eval_metrics), self._collect(self.baseline_metrics)
        for name, values in model.items():
            self.log_dict({f"test/{name}/{k}": v for k, v in values.items() if not math.isnan(v)})
        report = {
            "model": model,
            "majority_baseline": baseline,
            "rule_violation_rate": {
                name: dict(zip([r.text for r in self.rules.rules], rates, strict=True))
                for name, rates in per_rule.items()
            },
            "decoding": self.decoding,
            "modules": {k: self.hparams[k] for k in ("use_seg", "use_correlation", "use_logic")},
        }
        print(format_table(model, baseline))
        path = self._metrics_path()
        if path is not None and self.trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
            print(f"test metrics written to {path}")

    def _metrics_path(self) -> Path | None:
        if self.metrics_file:
            return Path(self.metrics_file)
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        return Path(log_dir) / "test_metrics.json" if log_dir else None

    # ----------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(self.hparams.warmup_fraction * total))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_rule_file(path: str) -> Path:
    """A rule file relative to the working directory, else to the project root (where ``rules/`` lives)."""
    candidate = Path(path)
    if not candidate.exists() and (PROJECT_ROOT / candidate).exists():
        return PROJECT_ROOT / candidate
    return candidate


def format_table(model: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> str:
    """Test metrics per dataset next to the majority-class baseline, as a plain-text table."""
    lines = [f"{'dataset':<14}{'metric':<28}{'model':>10}{'majority':>10}", "-" * 62]
    for name, values in model.items():
        for key, value in values.items():
            lines.append(f"{name:<14}{key:<28}{value:>10.4f}{baseline.get(name, {}).get(key, math.nan):>10.4f}")
    return "\n".join(lines)
