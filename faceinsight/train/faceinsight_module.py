"""FaceInsight as a ``LightningModule``: its model (:class:`faceinsight.model.faceinsight.FaceInsight`), the caption
loss (LLaVA's alignment loss), the feature cache, and its part of the run report."""

from __future__ import annotations

import logging
import os
import zlib
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from faceinsight.model.correlation import CorrelationConfig
from faceinsight.model.encoders import ImageEncoderConfig, LLMConfig, SegEncoderConfig, TextEncoderConfig
from faceinsight.model.faceinsight import FaceInsight, FaceInsightConfig, Readout, ReadoutStart, Visual
from faceinsight.text.captions import batch_captions
from faceinsight.text.tokens import DESCRIBE_QUERY, text_ids, tokenize_captions
from faceinsight.train.features import FeatureCache, FeatureEntry, StoreDtype, read_rows
from faceinsight.train.losses import masked_bce
from faceinsight.train.module import SPLIT_OF_STAGE, FaceModule, Semantics

log = logging.getLogger(__name__)


class FaceInsightModule(FaceModule):
    """FaceInsight with its losses, metrics and optimiser.

    Args:
        characteristics: the K characteristics to score (linked from the data module by the CLI).
        image_encoder, seg_encoder, text_encoder, llm, correlation: see ``faceinsight.model.encoders``
            and ``faceinsight.model.correlation``.
        use_seg: the segmentation-map modality (paper Sec. 3.2).
        use_correlation: the correlation constraint module (eq. 5-8).
        use_logic: the logical constraint loss (eq. 9).
        rules: rule files compiled into the logic loss and the consistency metric.
        logic_semantics: ``paper`` (eq. 9), ``semantic`` (Xu et al. 2018) or a fuzzy t-norm.
        logic_weight: lambda in eq. 4 (1.0 is the paper's equation).
        bce_reduction: ``sum`` (eq. 3: BCE summed over a sample's labelled characteristics, mean over samples) or
            ``mean`` (mean over all labelled entries of the batch; this project's reduction before it followed
            eq. 3, kept to reproduce older figures. It weighs the logic loss about K times more, and its balance
            shifts with each batch's dataset mix).
        decoding: ``threshold`` (P >= 0.5) or ``consistent`` (most probable assignment satisfying the hard rules).
        lr, weight_decay, warmup_fraction: AdamW with linear warm-up and cosine decay.
        lr_scale: a learning-rate multiplier per part of the model (``image_encoder``, ``seg_encoder``, ``llm``,
            ``gcn``, ``image_adapter``, ``seg_adapter``, ``prompt_adapter``, ``readout``, ``image_head``,
            ``characteristic_offsets``), 1 for a part not named;
            unset, one learning rate for all (the paper's, and every figure before the option).
        metrics_file: where the test metrics are written as JSON (default: the logger's folder).
        caption_weight: weight of the caption loss added to eq. 4 (0: off). LLaVA's alignment stage: the LLM's
            next-token NLL of a caption written from the face's labels (``faceinsight.text.captions``, a new one each
            step) after [BOS], the image and map tokens and ``describe_query``; with the LLM frozen it trains the
            adapters to make it describe the face (``faceinsight describe``, docs/describe.md). Logged as
            ``caption`` in training and validation.
        describe_query: the request before a description, in training and in ``faceinsight describe``.
        readout: ``answer_words`` (eq. 2) or ``per_characteristic`` (a row and a bias per characteristic, the biases
            started at the training priors; a departure from the paper, ``FaceInsightConfig``, docs/learning.md).
        readout_start: how the per-characteristic rows start: ``answer_row`` (eq. 2's Yes-minus-No row), ``zero`` or
            ``random`` (``CharacteristicReadout``, docs/learning.md).
        feature_cache: compute E_i's (and E_s's, with ``use_seg``) outputs once per image when fit, validate or test
            starts, and train and evaluate from them (``faceinsight.train.features``, docs/feature_cache.md). Both
            encoders must be frozen (an error names the one that is not), and the data must have no random augmentation
            (there is none: the cache would be wrong with it). Predict encodes directly.
        feature_cache_dir: the cache's folder; an entry per (dataset, split) and everything its features depend on.
        feature_cache_dtype: ``float32`` (exact: the losses of an uncached run) or ``float16`` (half the disk).
        image_head_weight: weight of an auxiliary loss added to eq. 4 (0: off, the paper's): the same BCE for a linear
            classifier on E_i's mean-pooled tokens (``FaceInsight.image_head``, built when this is > 0), so that an
            E_i trained from scratch learns from the labels directly as well as through the head. The answers do
            not read it unless ``image_head_in_answers``. Logged as ``image_head``; needs a trainable E_i
            (docs/learning.md, section 7).
        answers_train_image_encoder: false stops the answers' gradient at E_i's output, so that E_i learns from the
            image head alone and the path after it learns to read it (needs image_head_weight > 0; section 8).
        characteristic_offsets: a learned vector per characteristic added to its token, started at 0 (a departure;
            ``FaceInsightConfig``, docs/learning.md, section 12). False is the paper's form.
        head_distill_weight: weight of a second auxiliary loss (0: off): the answers' BCE against the image head's
            probabilities, detached, on the same labelled entries, so that the path to the answers also learns from
            a teacher trained beside it (online distillation: Hinton et al. 2015, Zhang et al.'s deep mutual
            learning, CVPR 2018). Training only; the answers still come from the LLM. Logged as ``head_distill``
            (the BCE, i.e. the KL plus the teacher's entropy); needs image_head_weight > 0 (docs/learning.md,
            section 12).
        image_head_in_answers: in evaluation, each answer logit is the mean of the LLM's and the image head's (an
            ensemble of the two readers of E_i the run trains; in training the answers are the LLM's alone, so the
            losses are unchanged). A departure from the paper, off by default; needs image_head_weight > 0
            (``FaceInsightConfig``, docs/learning.md, section 13).
    """

    eval_parts = ("caption",)

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
        bce_reduction: Literal["sum", "mean"] = "sum",
        decoding: Literal["threshold", "consistent"] = "threshold",
        query: str = "Analyze the facial features in this image.",
        readout: Readout = "answer_words",
        readout_start: ReadoutStart = "answer_row",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        lr_scale: dict[str, float] | None = None,
        metrics_file: str | None = None,
        caption_weight: float = 0.0,
        describe_query: str = DESCRIBE_QUERY,
        feature_cache: bool = False,
        feature_cache_dir: str = ".cache/features",
        feature_cache_dtype: StoreDtype = "float32",
        image_head_weight: float = 0.0,
        answers_train_image_encoder: bool = True,
        characteristic_offsets: bool = False,
        head_distill_weight: float = 0.0,
        image_head_in_answers: bool = False,
    ) -> None:
        super().__init__(characteristics, rules, use_logic, logic_semantics, bce_reduction, decoding, metrics_file)
        if caption_weight < 0:
            raise ValueError(f"caption_weight must be >= 0 (0: no caption loss), got {caption_weight}")
        if image_head_weight < 0:
            raise ValueError(f"image_head_weight must be >= 0 (0: no image head), got {image_head_weight}")
        if head_distill_weight < 0 or (head_distill_weight > 0 and not image_head_weight):
            raise ValueError(
                f"head_distill_weight is {head_distill_weight}: it must be >= 0, and > 0 needs the image head it "
                "distils (pass --model.image_head_weight > 0)"
            )
        config = FaceInsightConfig(
            image_encoder=image_encoder or ImageEncoderConfig(),
            seg_encoder=seg_encoder or SegEncoderConfig(),
            text_encoder=text_encoder or TextEncoderConfig(),
            llm=llm or LLMConfig(),
            correlation=correlation or CorrelationConfig(),
            use_seg=use_seg,
            use_correlation=use_correlation,
            query=query,
            readout=readout,
            readout_start=readout_start,
            image_head_weight=image_head_weight,
            answers_train_image_encoder=answers_train_image_encoder,
            characteristic_offsets=characteristic_offsets,
            image_head_in_answers=image_head_in_answers,
        )
        if not answers_train_image_encoder and not image_head_weight:
            raise ValueError(
                "answers_train_image_encoder is false but image_head_weight is 0: nothing would train E_i. "
                "Pass --model.image_head_weight > 0, or --model.answers_train_image_encoder true"
            )
        if image_head_weight > 0 and not config.image_encoder.trainable:
            raise ValueError(
                f"image_head_weight is {image_head_weight} but E_i is frozen: the image head would teach it nothing. "
                "Pass --model.image_encoder.trainable true, or --model.image_head_weight 0"
            )
        self.model = FaceInsight(config, list(characteristics))
        tokenizer = self.model.tokenizer  # None on the meta device
        ids = text_ids(tokenizer, describe_query) if tokenizer is not None else torch.zeros(0, dtype=torch.long)
        self.register_buffer("describe_ids", ids, persistent=False)  # the request before a description
        self.feature_store = FeatureCache(feature_cache_dir, feature_cache_dtype) if feature_cache else None
        self.feature_entries: dict[str, list[FeatureEntry]] = {}  # split -> one entry per dataset, this trainer call
        self.feature_folders: dict[str, list[dict[str, Any]]] = {}  # split -> entries used, for the run report
        if feature_cache:
            self._check_frozen_encoders()

    def visual(self, batch: dict[str, Tensor]) -> Visual:
        """The visual encoders' outputs for a batch (:meth:`FaceInsight.encode`): with the feature cache on, the
        batch's rows of the current split's entries while fit, validate or test runs; encoded otherwise (predict)."""
        split = self._running_split()
        if self.feature_store is None or split is None:
            return self.model.encode(batch["image"], batch.get("segmap"))
        if split not in self.feature_entries:
            raise RuntimeError(f"the feature cache has no entries for the {split!r} split (prepare_features not run)")
        visual = read_rows(self.feature_entries[split], batch["dataset"], batch["index"], batch["key"])
        return Visual(*(None if t is None else t.to(self.device) for t in visual))

    def _running_split(self) -> str | None:
        """The split the trainer is running (None outside fit, validate and test)."""
        return SPLIT_OF_STAGE.get(self._trainer.state.stage) if self._trainer is not None else None

    def _check_frozen_encoders(self) -> None:
        """The feature cache holds what frozen encoders give: an error names an encoder that trains."""
        for name, symbol in (("image_encoder", "E_i"), ("seg_encoder", "E_s")):
            encoder = getattr(self.model, name)
            if encoder is not None and any(p.requires_grad for p in encoder.parameters()):
                raise ValueError(
                    f"feature_cache is on but {symbol} ({name}) is trainable: its outputs change at every step, so "
                    f"cached ones would be stale. Pass --model.{name}.trainable false, or --model.feature_cache false"
                )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.feature_entries = {}  # opened again by each trainer call: the data or a restored checkpoint may differ

    def on_fit_start(self) -> None:
        """Encode the training split, and the validation split when validation runs, before the first step."""
        self.prepare_features("train")
        if self.trainer.limit_val_batches != 0:
            self.prepare_features("val")

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self.prepare_features("val")

    def on_test_start(self) -> None:
        super().on_test_start()
        self.prepare_features("test")

    def prepare_features(self, split: str) -> None:
        """Open the cache entries of ``split``'s datasets, encoding those not cached yet
        (:meth:`FeatureCache.split_entries`); nothing when the cache is off or they are open."""
        if self.feature_store is None or split in self.feature_entries:
            return
        self._check_frozen_encoders()
        dm = self._datamodule()
        if dm is None or not hasattr(dm, "views"):
            raise RuntimeError("the feature cache encodes the FaceDataModule's splits: fit, validate or test with it")
        entries = self.feature_store.split_entries(self.model, dm, split, self.device)
        self.feature_entries[split] = entries
        self.feature_folders[split] = [{"path": str(e.path), "built": e.built} for e in entries]

    def feature_report(self) -> dict[str, Any]:
        """Whether E_i's and E_s's outputs came from the feature cache, and its entries per split (``built``: in
        this run, else found on disk)."""
        if self.feature_store is None:
            return {"cache": False}
        return {"cache": True, "dtype": self.feature_store.dtype, "entries": self.feature_folders}

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(None, visual=self.visual(batch))

    def losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Eq. 4, plus ``caption_weight`` times the caption loss, ``image_head_weight`` times the image head's BCE
        and ``head_distill_weight`` times the answers' BCE against the image head's probabilities when they are on;
        the encoders run once for all."""
        hp = self.hparams
        if not hp.caption_weight and not hp.image_head_weight:
            return super().losses(batch)
        visual = self.visual(batch)
        logits = self.model(None, visual=visual)
        loss, parts = self.characteristic_losses(logits, batch)
        if hp.caption_weight:
            parts["caption"] = self.caption_loss(visual, batch)
            loss = loss + hp.caption_weight * parts["caption"]
        if hp.image_head_weight:
            head = self.model.image_head_logits(visual)
            parts["image_head"] = masked_bce(head, batch["labels"], batch["label_mask"], hp.bce_reduction)
            loss = loss + hp.image_head_weight * parts["image_head"]
            if hp.get("head_distill_weight"):
                teacher = torch.sigmoid(head.detach())
                parts["head_distill"] = masked_bce(logits, teacher, batch["label_mask"], hp.bce_reduction)
                loss = loss + hp.head_distill_weight * parts["head_distill"]
        return loss, parts, logits

    def caption_loss(self, visual: Visual, batch: dict[str, Tensor]) -> Tensor:
        """The LLM's NLL of one caption per face written from its labels; the captions are seeded by the run's
        seed, the training step (0 in evaluation, so every validation sees the same ones) and the batch's keys."""
        if self.model.tokenizer is None:
            raise RuntimeError("the caption loss needs the LLM's tokenizer (the model was built without weights)")
        step = self.global_step if self.training else 0
        keys = zlib.crc32(" ".join(batch["key"]).encode())
        rng = np.random.default_rng([int(os.environ.get("PL_GLOBAL_SEED", 0)), step, keys])
        texts = batch_captions(self.model.characteristics, batch, rng)
        ids, mask = tokenize_captions(self.model.tokenizer, texts)
        return self.model.caption_loss(visual, self.describe_ids, ids.to(self.device), mask.to(self.device))

    def statistics_set(self) -> None:
        self.model.start_readout_at_prior()

    def missing_statistics(self, what: str) -> None:
        if self.model.gcn is not None:
            raise RuntimeError(f"{what}: the correlation graph would be the identity. Run fit or pass --ckpt_path")
        super().missing_statistics(what)

    def graph_report(self) -> dict[str, Any] | None:
        if self.model.gcn is None:
            return None
        tau, omega = self.model.gcn.config.tau, self.model.gcn.config.omega
        c = self.model.stats.graph(tau, omega)["C"]  # eq. 6: directed edges at tau, whatever omega weighs them
        return {
            "tau": tau,
            "omega": omega,
            "nodes": len(self.model.characteristics),
            "edges": int(c.sum()),
            "isolated_nodes": int((c.sum(1) == 0).sum()),
        }

    def encoder_report(self) -> dict[str, dict[str, Any]]:
        text = {"frozen": True, "source": self.model.config.text_encoder.pretrained}
        return {**super().encoder_report(), "text_encoder": text}
