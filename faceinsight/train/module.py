"""Training, evaluation and prediction of face models as ``LightningModule`` s: :class:`FaceModule` holds what every
model shares (losses, metrics, baseline, report, checkpoints, optimiser);
:class:`faceinsight.train.faceinsight_module.FaceInsightModule` builds FaceInsight and
:class:`faceinsight.train.specialist.SpecialistModule` a plain specialist beside it.

Loss (eq. 4): ``L = L_BCE + lambda * L_c``. Both terms are per-sample sums averaged over the
N samples of a batch, as the paper writes them: eq. 3 sums the BCE over a sample's labelled
characteristics, eq. 9 sums the violation terms over the M rules; ``logic_weight: 1.0`` is eq. 4.
The correlation statistics are computed from the training split when fitting starts; they,
the compiled rules and the prompt embeddings are saved in every checkpoint, so a checkpoint
alone predicts. Frozen backbones loaded with ``from_pretrained`` are left out of checkpoints
and reloaded from their source (see :meth:`FaceModule.frozen_pretrained`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import RunningStage
from torch import Tensor, nn

from faceinsight.eval.baseline import format_table, majority_baseline
from faceinsight.eval.metrics import DatasetMetrics
from faceinsight.logic import LogicLoss, RuleSet, load_rules, parse_rules, resolve_rule_file
from faceinsight.train.losses import masked_bce
from faceinsight.train.optim import warmup_cosine
from faceinsight.train.report import fingerprint, selection

log = logging.getLogger(__name__)

Semantics = Literal["paper", "semantic", "product", "goedel", "lukasiewicz"]


# Not saved in checkpoints: switchable at test time (the feature cache changes where E_i's and E_s's outputs come
# from, not what they are).
EVALUATION_OPTIONS = ["decoding", "metrics_file", "feature_cache", "feature_cache_dir", "feature_cache_dtype"]


class FaceModule(L.LightningModule):
    """What every face model here shares: the loss (eq. 3 + eq. 9), the metrics per dataset next to the majority
    baseline, the run report, checkpoints that leave frozen pretrained backbones out, and the optimiser.

    A subclass builds ``self.model``: an ``nn.Module`` mapping ``(image, segmap)`` to logits ``[B, K]`` (``sigmoid``
    gives ``P(y_k)``), with ``characteristics``, ``stats`` (the training split's ``CooccurrenceStats``: the baseline's
    positive rates), ``backbones()``, ``frozen_pretrained()`` and ``trainable_parameters()``. Its ``__init__`` also
    takes ``logic_weight``, ``lr``, ``weight_decay``, ``warmup_fraction`` and ``lr_scale``, read back from the saved
    hyper-parameters.

    Args:
        characteristics: the K characteristics to score (linked from the data module by the CLI).
        rules: rule files compiled into the logic loss, the consistency metric and consistent decoding.
        use_logic: the logical constraint loss (eq. 9).
        logic_semantics: ``paper`` (eq. 9), ``semantic`` (Xu et al. 2018) or a fuzzy t-norm.
        bce_reduction: see :class:`FaceInsightModule`.
        decoding: ``threshold`` (P >= 0.5) or ``consistent`` (most probable assignment satisfying the hard rules).
        metrics_file: where the test metrics are written as JSON (default: the logger's folder).
    """

    model: nn.Module
    eval_parts: tuple[str, ...] = ()  # loss parts logged per dataset in validation and test, beside the loss

    def __init__(
        self,
        characteristics: list[str] | None,
        rules: list[str] | None,
        use_logic: bool,
        logic_semantics: Semantics,
        bce_reduction: Literal["sum", "mean"],
        decoding: Literal["threshold", "consistent"],
        metrics_file: str | None,
    ) -> None:
        super().__init__()
        if not characteristics:
            raise ValueError("characteristics is empty: pass the data module's characteristics")
        if bce_reduction not in ("sum", "mean"):
            raise ValueError(f"bce_reduction must be 'sum' (eq. 3) or 'mean', got {bce_reduction!r}")
        # The subclass's init arguments, collected through the frames. Evaluation-time options are not saved:
        # `faceinsight test --ckpt_path` re-applies saved hyper-parameters over the command line, and these must stay
        # switchable there.
        self.save_hyperparameters(ignore=EVALUATION_OPTIONS)
        self.decoding = decoding
        self.metrics_file = metrics_file
        self.rules: RuleSet = load_rules([resolve_rule_file(r) for r in rules or []], list(characteristics))
        self.rules_source = "files"
        if use_logic and not len(self.rules):
            what = (
                f"none of the rules in {rules} names only characteristics" if rules else "no rule files are given for"
            )
            raise ValueError(
                f"use_logic is on but {what} the model predicts ({len(characteristics)} characteristics "
                f"from the data module); pass --model.rules with rules over them, or --model.use_logic false"
            )
        if self.rules.dropped:
            log.warning("%d rules dropped (they name characteristics the model does not predict): %s",
                        len(self.rules.dropped), "; ".join(self.rules.dropped))  # fmt: skip
        self.logic_loss = LogicLoss(self.rules, logic_semantics) if use_logic else None
        self.eval_metrics: torch.nn.ModuleDict | None = None
        self.baseline_metrics: torch.nn.ModuleDict | None = None
        self.warnings: list[str] = []  # what ran differently from what was asked: written to test_metrics.json

    # ----------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        dm = self._datamodule()
        if stage == "fit" and dm is not None and not self.model.stats.is_set:
            # Counted once, by global rank 0, and sent to the other processes (3 K x K integers): the same numbers.
            counts = dm.train_counts() if self.trainer.is_global_zero else None
            self.model.stats.set_counts(*self.trainer.strategy.broadcast(counts, src=0))
            log.info("co-occurrence statistics from %d training samples", sum(len(v) for v in dm.views("train")))
            self.statistics_set()

    def statistics_set(self) -> None:
        """Called once when fitting computes the training statistics (not when a checkpoint brings them)."""

    def _datamodule(self) -> Any:
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def _start_evaluation(self, with_baseline: bool) -> None:
        """Build the metrics when evaluation starts: after a checkpoint is restored, so its rules are in force.
        The majority baseline is scored on the test split only."""
        dm = self._datamodule()
        if dm is None:
            raise RuntimeError("evaluation needs the FaceDataModule: its datasets decide the metrics")
        if not self.model.stats.is_set:
            self.missing_statistics(
                "co-occurrence statistics were never set (no fit with a data module, no checkpoint)"
            )
        self.eval_metrics = self._metrics(dm)
        self.baseline_metrics = self._metrics(dm) if with_baseline else None

    def missing_statistics(self, what: str) -> None:
        """Evaluation without training statistics: the majority baseline falls back to positive rates of 0.5."""
        self._warn(f"{what}: the majority baseline uses positive rates of 0.5")

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            log.warning(message)
            self.warnings.append(message)

    def on_train_start(self) -> None:
        """Warn when validation never sees the end of an epoch (:func:`unvalidated_tail`)."""
        trainer = self.trainer
        if trainer.limit_val_batches == 0 or trainer.check_val_every_n_epoch is None:
            return
        message = unvalidated_tail(trainer.num_training_batches, trainer.val_check_batch)
        if message:
            self._warn(message)

    def on_validation_start(self) -> None:
        self._start_evaluation(with_baseline=False)

    def on_test_start(self) -> None:
        self._start_evaluation(with_baseline=True)

    def _metrics(self, dm: Any) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict(
            {
                name: DatasetMetrics(spec.schema, self.model.characteristics, self.rules.hard.cpu())
                for name, spec in zip(dm.dataset_names, dm.specs, strict=True)
            }
        ).to(self.device)

    def frozen_pretrained(self) -> dict[str, str]:
        """State-dict prefix -> source of each frozen ``from_pretrained`` backbone (see ``FaceInsight``)."""
        return {f"model.{prefix}": source for prefix, source in self.model.frozen_pretrained().items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        frozen = self.frozen_pretrained()
        fingerprints = {}
        for prefix in frozen:
            keys = [k for k in state if k.startswith(prefix)]
            fingerprints[prefix] = fingerprint([state[k] for k in keys])
            for k in keys:
                del state[k]
        checkpoint["faceinsight"] = {
            "rules": self.rules.to_text(),
            "rules_dropped": self.rules.dropped,
            "characteristics": self.model.characteristics,
            "restored_from_source": frozen,
            "fingerprints": fingerprints,
        }

    def load_weights(self, path: str | Path) -> None:
        """A fit checkpoint's weights, frozen backbones and rules into this module as it is built (the diagnostics'
        way in, where ``load_from_checkpoint`` would rebuild it from the saved hyper-parameters). Keys one side lacks
        are skipped, e.g. a training-only ``image_head``."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.on_load_checkpoint(state)
        self.load_state_dict(state["state_dict"], strict=False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("faceinsight")
        if saved is None:
            return
        # Frozen pretrained backbones were left out: this module loaded them from their sources in __init__.
        state, own = checkpoint["state_dict"], self.state_dict()
        for prefix, source in saved.get("restored_from_source", {}).items():
            weights = {k: v for k, v in own.items() if k.startswith(prefix)}
            if not weights:
                raise RuntimeError(
                    f"the checkpoint expects the frozen backbone {prefix!r} from {source}; none is built"
                )
            if saved.get("fingerprints", {}).get(prefix) not in (None, fingerprint(list(weights.values()))):
                self._warn(
                    f"the frozen backbone {prefix!r} loaded from {source} differs from the one it was trained with"
                )
            state.update(weights)
        # The rules the model was trained with, whatever the files say now.
        self.rules = parse_rules(saved["rules"], self.model.characteristics, source="<checkpoint>").to(self.device)
        self.rules.dropped = saved.get("rules_dropped", [])
        self.rules_source = "checkpoint"
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

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """The model's logits ``[B, K]`` for a batch."""
        return self.model(batch["image"], batch.get("segmap"))

    def losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``L = L_BCE + lambda * L_c`` (eq. 4), its parts, and the logits."""
        logits = self.logits(batch)
        loss, parts = self.characteristic_losses(logits, batch)
        return loss, parts, logits

    def characteristic_losses(self, logits: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 4 from the logits ``[B, K]``: the loss and its parts (``bce``, and ``logic`` when on)."""
        parts = {"bce": masked_bce(logits, batch["labels"], batch["label_mask"], self.hparams.bce_reduction)}
        loss = parts["bce"]
        if self.logic_loss is not None:
            parts["logic"] = self.logic_loss(logits)
            loss = loss + self.hparams.logic_weight * parts["logic"]
        return loss, parts

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, parts, _ = self.losses(batch)
        if not torch.isfinite(loss):
            self._stop_on_nonfinite(loss, parts, batch)
        b = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=b)
        return loss

    def _stop_on_nonfinite(self, loss: Tensor, parts: dict[str, Tensor], batch: dict[str, Tensor]) -> None:
        """Stop training on a NaN or inf loss, naming the step, the loss term and the batch's datasets."""
        bad = {k: float(v) for k, v in parts.items() if not torch.isfinite(v)} or {"loss": float(loss)}
        dm = self._datamodule()
        names = dm.dataset_names if dm is not None else None
        datasets = sorted({names[i] if names else str(i) for i in batch["dataset"].unique().tolist()})
        raise FloatingPointError(
            f"non-finite loss at global step {self.global_step} (epoch {self.current_epoch}): "
            f"{', '.join(f'{k} = {v}' for k, v in bad.items())} on a batch from {', '.join(datasets)} "
            f"(keys {list(batch['key'][:4]) if 'key' in batch else '?'}...); training stopped"
        )

    def _evaluate(self, batch: dict[str, Tensor], dataloader_idx: int, stage: str) -> None:
        loss, parts, logits = self.losses(batch)
        name = list(self.eval_metrics.keys())[dataloader_idx]
        # sync_dist: under DDP the logged loss is the mean over every process's faces, not rank 0's alone.
        for key, value in {"loss": loss, **{k: v for k, v in parts.items() if k in self.eval_parts}}.items():
            self.log(f"{stage}/{name}/{key}", value, batch_size=batch["image"].shape[0], add_dataloader_idx=False,
                     sync_dist=True)  # fmt: skip
        probs = torch.sigmoid(logits)
        self._update(self.eval_metrics[name], probs, self.decide(probs), batch)
        if stage == "test":
            prior, decided = majority_baseline(self.model.stats, probs)
            self._update(self.baseline_metrics[name], prior, decided, batch)

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
        per_characteristic = {name: m.per_characteristic() for name, m in self.eval_metrics.items()}
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
            "per_characteristic": per_characteristic,
            "decoding": self.decoding,
            # a model without one of the paper's switches runs without that module (the specialist: logic at most)
            "modules": {k: self.hparams.get(k, False) for k in ("use_seg", "use_correlation", "use_logic")},
            "run": self.run_report(),
        }
        if not self.trainer.is_global_zero:  # every process computed the synced metrics; one prints and writes them
            return
        print(format_table(model, baseline))
        path = self._metrics_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
            print(f"test metrics written to {path}")

    def graph_report(self) -> dict[str, Any] | None:
        """The correlation graph the model runs with, for the run report (None: it has none)."""
        return None

    def encoder_report(self) -> dict[str, dict[str, Any]]:
        """Each backbone of the model: frozen or trained, and its source (``arch``: built from scratch)."""
        return {
            name: {"frozen": not any(p.requires_grad for p in module.parameters()), "source": source or "arch"}
            for name, (module, source) in self.model.backbones().items()
            if module is not None
        }

    def run_report(self) -> dict[str, Any]:
        """What actually ran: rules compiled, graph edges, frozen encoders, data splits, decoding, seed, warnings."""
        hard = int(self.rules.hard.sum())
        dm = self._datamodule()
        trainer = self._trainer
        return {
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "decoding": self.decoding,
            "image_head_in_answers": self.hparams.get("image_head_in_answers", False),  # eval: mean with the head
            "loss": {
                "bce_reduction": self.hparams.bce_reduction,
                "logic_weight": self.hparams.logic_weight if self.logic_loss is not None else None,
                "logic_semantics": self.hparams.logic_semantics if self.logic_loss is not None else None,
                "caption_weight": self.hparams.get("caption_weight", 0.0),  # LLaVA's alignment loss (0: off)
                "image_head_weight": self.hparams.get("image_head_weight", 0.0),  # E_i's direct supervision (0: off)
                "answers_train_image_encoder": self.hparams.get("answers_train_image_encoder", True),
                "head_distill_weight": self.hparams.get("head_distill_weight", 0.0),  # answers taught by the head
            },
            "rules": {
                "source": self.rules_source,
                "files": self.hparams.rules,
                "compiled": len(self.rules),
                "hard": hard,
                "soft": len(self.rules) - hard,
                "dropped": len(self.rules.dropped),
            },
            "graph": self.graph_report(),
            "encoders": self.encoder_report(),
            "features": self.feature_report(),
            "trainable_parameters": self.model.trainable_parameters(),
            "data": dm.describe() if dm is not None and hasattr(dm, "describe") else None,
            "checkpoint": trainer.ckpt_path if trainer is not None else None,
            "selection": selection(trainer),
            "warnings": list(self.warnings),
        }

    def feature_report(self) -> dict[str, Any]:
        """Where the encoders' outputs came from; a model without a feature cache runs its encoders every step."""
        return {"cache": False}

    def _metrics_path(self) -> Path | None:
        if self.metrics_file:
            return Path(self.metrics_file)
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        return Path(log_dir) / "test_metrics.json" if log_dir else None

    # ----------------------------------------------------------------- optimiser
    def make_optimizer(self) -> torch.optim.AdamW:
        """AdamW over the trainable parameters, fused where torch has the kernel; one parameter group per part of the
        model (its top-level children) at ``lr`` times the part's ``lr_scale`` (1 if unnamed), when ``lr_scale`` is
        given, as LLaVA's ``mm_projector_lr`` gives the projector its own learning rate.

        The fused kernel updates every tensor in one pass: 45 -> 9 ms per step on the default preset
        (docs/results.md, "The main job"); the same update rule, float rounding aside.
        """
        lr = self.hparams.lr
        params = [p for p in self.parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        scales = dict(self.hparams.get("lr_scale") or {})
        if scales:  # unset: one group, as before the option (and as older checkpoints' optimiser states)
            parts = dict(self.model.named_children())
            unknown = sorted(set(scales) - set(parts))
            if unknown:
                raise ValueError(f"lr_scale names {unknown}, which are not parts of the model: {sorted(parts)}")
            part_of = {id(p): name for name, part in parts.items() for p in part.parameters()}
            by_part: dict[str, list[torch.nn.Parameter]] = {}
            for p in params:
                by_part.setdefault(part_of.get(id(p), "other"), []).append(p)
            params = [{"params": ps, "lr": lr * scales.get(n, 1.0), "name": n} for n, ps in by_part.items()]
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.hparams.weight_decay, fused=fused)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.make_optimizer()
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine(optimizer, total, int(self.hparams.warmup_fraction * total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# The split each trainer stage reads (predict encodes directly).
SPLIT_OF_STAGE = {RunningStage.TRAINING: "train", RunningStage.SANITY_CHECKING: "val", RunningStage.VALIDATING: "val",
                  RunningStage.TESTING: "test"}  # fmt: skip


def unvalidated_tail(batches: float, every: float) -> str | None:
    """What to warn about when validation every ``every`` training batches of an epoch of ``batches`` misses the
    epoch's last steps, else None.

    Lightning validates at the batches whose index within the epoch is a multiple of ``val_check_batch`` and, in that
    mode, not at the epoch's end: with ``--trainer.val_check_interval 85`` and celebahq64's 339 batches at batch size
    64, the last 84 steps (the low-rate end of the cosine schedule) are never validated, and the checkpoint chosen on
    validation, which the test scores, is the one of step 255. A float interval has the same problem when the epoch is
    not a multiple of the batches it rounds to.
    """
    if not (math.isfinite(batches) and math.isfinite(every)) or not 0 < every <= batches:  # inf: an iterable dataset
        return None
    batches, every = int(batches), int(every)
    left = batches % every
    if left == 0:
        return None
    divisors = [d for d in range(2, batches // 2 + 1) if batches % d == 0][-3:]
    return (
        f"validation runs every {every} training batches of an epoch of {batches}, so the last {left} steps of each "
        f"epoch are never validated and the checkpoint picked on validation is never the end of an epoch: pass "
        f"--trainer.val_check_interval as a divisor of {batches} ({', '.join(map(str, divisors)) or 'none below it'}) "
        f"or 1.0"
    )
