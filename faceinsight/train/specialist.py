"""A plain specialist beside FaceInsight: a timm backbone with a linear multi-label head.

"Beyond Specialization" (MLLMs vs. specialist models such as MiVOLO on age and gender) asks what an MLLM adds over a
model trained for the task alone. :class:`SpecialistModule` answers it on this project's terms: the same loss, data
module, metrics, baseline and run report as :class:`~faceinsight.train.faceinsight_module.FaceInsightModule` (both are
:class:`~faceinsight.train.module.FaceModule` s), only the network differs. With ``configs/specialist_backbone.yaml``
FaceInsight's E_i is the same timm backbone, so a 3-way comparison isolates what FaceInsight adds on top of it::

    faceinsight fit -c configs/celebahq64.yaml                                    # FaceInsight, CLIP ViT E_i
    faceinsight fit -c configs/celebahq64.yaml -c configs/specialist_backbone.yaml  # FaceInsight, ResNet-18 E_i
    faceinsight fit -c configs/celebahq64.yaml -c configs/specialist.yaml         # ResNet-18 + linear head
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from faceinsight.model.correlation import CooccurrenceStats
from faceinsight.model.encoders import PixelNorm, create_timm_model, set_trainable
from faceinsight.model.faceinsight import FaceInsight
from faceinsight.train.module import FaceModule, Semantics


class Specialist(nn.Module):
    """``timm.create_model(backbone, num_classes=0, **arch)`` (pooled features) and ``nn.Linear(features, K)``:
    one logit per characteristic, so ``sigmoid`` gives ``P(y_k)`` as FaceInsight's Yes-minus-No logit does.

    Args:
        characteristics: the K characteristic names, in output order.
        backbone: a timm model name.
        arch: ``timm.create_model`` keyword arguments.
        checkpoint: a local timm weights file (as ``SegEncoderConfig.checkpoint``); None trains from scratch.
        trainable: False freezes the backbone (then only the head trains, and a ``checkpoint`` backbone is left out
            of the module's checkpoints and reloaded from its file).
        load_weights: False builds the architecture only (e.g. on the meta device).
    """

    def __init__(
        self,
        characteristics: list[str],
        backbone: str = "resnet18",
        arch: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        trainable: bool = True,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        self.characteristics = list(characteristics)
        self.checkpoint = checkpoint
        self.backbone = set_trainable(
            create_timm_model(backbone, arch or {}, checkpoint, load_weights, num_classes=0), trainable
        )
        self.norm = PixelNorm.of_timm(self.backbone)
        self.head = nn.Linear(self.backbone.num_features, len(self.characteristics))
        self.stats = CooccurrenceStats(self.characteristics)

    def forward(self, image: Tensor, segmap: Tensor | None = None) -> Tensor:
        """Logits ``[B, K]`` of ``image [B, 3, S, S]`` in [0, 1]; parsing maps are not used."""
        return self.head(self.backbone(self.norm(image)))

    def backbones(self) -> dict[str, tuple[nn.Module | None, str | None]]:
        """The backbone and its weights file (None when built from ``arch``)."""
        return {"backbone": (self.backbone, self.checkpoint)}

    # The same bookkeeping as FaceInsight's, over this network's parts and backbone.
    trainable_parameters = FaceInsight.trainable_parameters
    frozen_pretrained = FaceInsight.frozen_pretrained


class SpecialistModule(FaceModule):
    """The specialist with FaceInsight's loss, metrics and optimiser (``--model SpecialistModule``).

    Args:
        characteristics: the K characteristics to score (linked from the data module by the CLI).
        backbone, arch, checkpoint, trainable: the timm backbone (:class:`Specialist`).
        rules: rule files for the consistency metric and consistent decoding, and for the logic loss if on.
        use_logic: False (default) is a plain specialist; True adds FaceInsight's logic loss (eq. 9).
        logic_semantics, logic_weight, bce_reduction, decoding, lr, weight_decay, warmup_fraction, lr_scale,
            metrics_file: as in :class:`~faceinsight.train.faceinsight_module.FaceInsightModule`.
    """

    def __init__(
        self,
        characteristics: list[str] | None = None,
        backbone: str = "resnet18",
        arch: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        trainable: bool = True,
        rules: list[str] | None = None,
        use_logic: bool = False,
        logic_semantics: Semantics = "paper",
        logic_weight: float = 1.0,
        bce_reduction: Literal["sum", "mean"] = "sum",
        decoding: Literal["threshold", "consistent"] = "threshold",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        lr_scale: dict[str, float] | None = None,
        metrics_file: str | None = None,
    ) -> None:
        super().__init__(characteristics, rules, use_logic, logic_semantics, bce_reduction, decoding, metrics_file)
        self.model = Specialist(list(characteristics), backbone, arch, checkpoint, trainable)
