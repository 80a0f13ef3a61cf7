"""``faceinsight pretrain seg``: the segmentation encoder E_s pretrained on face-parsing maps, and a linear probe of it.

The paper encodes parsing maps with a pretrained ViT (E_s). Offline there is none, so this trains the presets' small
timm ViT over one-hot maps (``faceinsight.model.encoders.SegEncoder``, built exactly as ``fit`` builds it) on the
training split's maps, with one of two objectives (``caption`` by default: the better probe on SynthFace and CelebA-HQ,
docs/pretraining.md):

* ``masked`` (SimMIM, Xie et al. 2022, for label maps): a share of the patches is replaced by a learned mask token
  before the ViT, and a linear head predicts each masked patch's per-pixel classes from its output token
  (cross-entropy over the masked pixels only). It needs nothing but the maps.
* ``caption``: CLIP's symmetric contrastive loss between each map (its mean-pooled tokens, projected) and a caption
  written from its face's labels (``faceinsight.text.captions``), read by a small text tower, as ``pretrain clip`` pairs
  images and captions.

The ViT is saved as ``model.safetensors`` (its timm state dict, ``in_chans`` = parsing classes, no head), which
``--model.seg_encoder.checkpoint <out>/model.safetensors`` loads unchanged. The evaluation is a linear probe: logistic
regression on the frozen mean-pooled features, fitted on the training faces and scored on the validation split
(mAP with ``faceinsight.eval.metrics``), for the saved encoder, the same initial weights untrained, and the
majority-class baseline.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerBase

from faceinsight.data.module import DatasetSpec, FaceDataModule, ModelView, RowsOf
from faceinsight.eval.metrics import score_probabilities
from faceinsight.model.encoders import PACKAGED_MINILM, SegEncoder, SegEncoderConfig
from faceinsight.text.captions import CaptionStyle, FaceLabels, caption, faces_of
from faceinsight.train.pretrain import clip, common

log = logging.getLogger(__name__)

Objective = Literal["masked", "caption"]
CHECKPOINT = "model.safetensors"


def preset_arch() -> dict[str, Any]:
    """E_s of configs/synthface.yaml and configs/celebahq64.yaml (``timm.create_model`` keyword arguments)."""
    return dict(img_size=64, patch_size=16, embed_dim=96, depth=3, num_heads=3)


@dataclass
class SegPretraining:
    """``faceinsight pretrain seg`` settings.

    Args:
        datasets: the faces and where their maps come from (a dataset without maps of its own needs
            ``segmaps: landmarks|unet|facer``, as in configs/pretrain_celebahq64.yaml); only the training split trains.
        roots: dataset folders replacing the datasets' ``root``, by dataset name (``--roots '{celebamaskhq: DIR}'``).
        out: the output folder (default ``runs/pretrain/seg_<dataset names>``).
        model, arch, num_classes: the ViT as ``seg_encoder`` names it (timm model, ``create_model`` arguments, parsing
            classes = input channels); the maps are read at the ViT's ``img_size``.
        objective: ``masked`` (masked map-class prediction) or ``caption`` (contrastive map-caption pairs).
        mask_ratio: the share of patches masked per map (``masked``).
        text, projection_dim, tokenizer, captions: the text tower, the shared embedding width, its tokenizer and how
            much each caption says (``caption``).
        batch_size, epochs, max_steps: maps per step; passes over the training split (``max_steps`` stops earlier).
        lr, weight_decay, warmup: AdamW with a cosine schedule after a linear warm-up (share of the steps).
        evaluate: probe the saved encoder after training (and the untrained one, and the majority baseline).
        eval_split: the split the probe is scored on (never the test split by default).
        probe_l2, probe_iterations: the probe's L2 penalty on its weights and its L-BFGS iterations.
        seed: seeds the weights, the draws, the masks and the captions.
    """

    datasets: list[DatasetSpec] = field(default_factory=common.default_datasets)
    roots: dict[str, str] | None = None
    out: str | None = None
    model: str = "vit_tiny_patch16_224"
    arch: dict[str, Any] = field(default_factory=preset_arch)
    num_classes: int = 19
    objective: Objective = "caption"  # the better probe on both SynthFace and CelebA-HQ (docs/pretraining.md)
    mask_ratio: float = 0.5
    text: clip.TextTower = field(default_factory=clip.TextTower)
    projection_dim: int = 128
    tokenizer: str = PACKAGED_MINILM
    captions: CaptionStyle = field(default_factory=CaptionStyle)
    batch_size: int = 128
    epochs: int = 100
    max_steps: int | None = 250
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    evaluate: bool = True
    eval_split: str = "val"
    probe_l2: float = 1e-3
    probe_iterations: int = 200
    seed: int = 0

    def encoder_config(self, checkpoint: str | None = None, trainable: bool = False) -> SegEncoderConfig:
        """The ``seg_encoder`` config of this ViT (with ``checkpoint``: the saved weights)."""
        return SegEncoderConfig(self.model, checkpoint, self.num_classes, dict(self.arch), trainable)


# ----------------------------------------------------------------------------- maps


@dataclass
class MapSet:
    """Parsing maps ``[N, S, S]`` (uint8 class ids) with their faces' labels ``[N, K]``, mask and ages ``[N]``."""

    maps: Tensor
    labels: Tensor
    mask: Tensor
    ages: Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.maps)

    @cached_property
    def faces(self) -> list[FaceLabels]:
        """What is known about each face, for its captions."""
        return faces_of(self.names, self.labels, self.mask, self.ages)


def view_maps(view: ModelView, progress: bool = True) -> Tensor:
    """Every parsing map of a view, uint8 ``[N, S, S]``: a parser's cached maps read at once, a dataset's own maps
    (SynthFace renders them with the face) decoded one by one (the faces kept in memory)."""
    rows = view.segmaps
    if rows is not None:
        maps = rows.array[rows.index] if isinstance(rows, RowsOf) else rows[:]
        return torch.from_numpy(np.ascontiguousarray(maps, dtype=np.uint8))
    where = f"{view.dataset.name} parsing maps"
    return torch.stack([view[i]["segmap"].to(torch.uint8) for i in tqdm(range(len(view)), where, disable=not progress)])


def map_set(data: FaceDataModule, views: list[ModelView], progress: bool = True) -> MapSet:
    """The maps, labels (model order), masks and ages of ``views`` (one after the other)."""
    placed = [view.place(*view.dataset.label_matrix()) for view in views]
    return MapSet(
        maps=torch.cat([view_maps(view, progress) for view in views]),
        labels=torch.cat([labels for labels, _ in placed]),
        mask=torch.cat([mask for _, mask in placed]).bool(),
        ages=torch.cat([view.dataset.ages().float() for view in views]),
        names=data.characteristics,
    )


# ----------------------------------------------------------------------------- objectives


def build_encoder(config: SegPretraining) -> SegEncoder:
    """A randomly initialised, trainable E_s (seeded), built as ``fit`` builds ``seg_encoder``."""
    torch.manual_seed(config.seed)
    return SegEncoder(config.encoder_config(trainable=True))


def patchify(segmap: Tensor, patch: int) -> Tensor:
    """``[B, S, S]`` -> ``[B, N, patch * patch]``: patches row-major over the grid (the ViT's token order), pixels
    row-major within a patch."""
    b, h, w = segmap.shape
    grid = segmap.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4)
    return grid.reshape(b, (h // patch) * (w // patch), patch * patch)


def random_patch_mask(batch: int, patches: int, ratio: float, rng: np.random.Generator) -> Tensor:
    """``[batch, patches]`` bool: ``round(ratio * patches)`` patches (at least one) masked in each map, at random."""
    masked = max(round(ratio * patches), 1)
    return torch.from_numpy(rng.random((batch, patches)).argsort(axis=1) < masked)


def masked_map_loss(logits: Tensor, segmap: Tensor, mask: Tensor, patch: int) -> Tensor:
    """Mean cross-entropy over the pixels of masked patches only. ``logits [B, N, patch * patch * C]`` (pixels
    row-major within the patch, classes last), ``segmap [B, S, S]`` class ids, ``mask [B, N]`` bool."""
    target = patchify(segmap.long(), patch)[mask]  # [M, p * p]
    classes = logits.shape[-1] // (patch * patch)
    return F.cross_entropy(logits[mask].reshape(-1, classes), target.reshape(-1))


class MaskedMaps(nn.Module):
    """E_s with a learned mask token (replacing the patch embeddings of masked patches) and a linear head that
    predicts every pixel's class of a patch from its output token (SimMIM's one-layer prediction head)."""

    def __init__(self, encoder: SegEncoder, mask_ratio: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.patch = encoder.vit.patch_embed.patch_size[0]
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(encoder.dim, self.patch * self.patch * encoder.config.num_classes)

    def tokens(self, segmap: Tensor, mask: Tensor) -> Tensor:
        """The ViT's patch tokens ``[B, N, D]`` with the patches of ``mask [B, N]`` replaced by the mask token
        (``timm``'s ``forward_features`` with that one step added; no mask gives ``SegEncoder``'s output)."""
        vit = self.encoder.vit
        x = vit.patch_embed(self.encoder.onehot(segmap))
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        x = vit.norm(vit.blocks(x))
        return x[:, vit.num_prefix_tokens :]

    def loss(self, segmap: Tensor, faces: list[FaceLabels], rng: np.random.Generator) -> Tensor:
        mask = random_patch_mask(len(segmap), self.encoder.vit.patch_embed.num_patches, self.mask_ratio, rng)
        return masked_map_loss(self.head(self.tokens(segmap, mask)), segmap, mask, self.patch)


class MapCaptions(nn.Module):
    """E_s (mean-pooled, projected) and a CLIP text tower (projected) trained with CLIP's symmetric InfoNCE over the
    batch's map-caption pairs; the temperature is learned (at most 100, as CLIP)."""

    def __init__(self, encoder: SegEncoder, config: SegPretraining, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.style = config.captions
        self.text = CLIPTextModelWithProjection(
            CLIPTextConfig(**clip.text_config(config.text, config.projection_dim, tokenizer))
        )
        self.projection = nn.Linear(encoder.dim, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def loss(self, segmap: Tensor, faces: list[FaceLabels], rng: np.random.Generator) -> Tensor:
        texts = [caption(face, rng, self.style).text for face in faces]
        tokens = clip.tokenize(self.tokenizer, texts, self.text.config.max_position_embeddings)
        text = F.normalize(self.text(**tokens).text_embeds, dim=-1)
        maps = F.normalize(self.projection(self.encoder(segmap).mean(1)), dim=-1)
        logits = self.logit_scale.exp().clamp(max=100) * maps @ text.T
        target = torch.arange(len(texts))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def build_objective(config: SegPretraining) -> MaskedMaps | MapCaptions:
    """The objective's model around a freshly initialised E_s (seeded: the same E_s as :func:`build_encoder`)."""
    encoder = build_encoder(config)
    if config.objective == "masked":
        if not 0 < config.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {config.mask_ratio}")
        return MaskedMaps(encoder, config.mask_ratio)
    if config.objective == "caption":
        return MapCaptions(encoder, config, common.load_tokenizer(config.tokenizer))
    raise ValueError(f"objective must be 'masked' or 'caption', got {config.objective!r}")


def train(
    config: SegPretraining, train_set: MapSet, weights: Tensor, progress: bool = True
) -> tuple[MaskedMaps | MapCaptions, list[float]]:
    """Train the objective on maps of ``train_set`` drawn by ``weights`` (the data module's mix); returns the
    objective's model and every step's loss."""
    model = build_objective(config).train()
    per_epoch = common.batches_per_epoch(len(train_set), config.batch_size)
    steps = common.train_steps(per_epoch, config.epochs, config.max_steps)
    opt, schedule = common.optimiser(model, config.lr, config.weight_decay, steps, config.warmup)

    def loss_of(draw: Tensor, rng: np.random.Generator) -> Tensor:
        return model.loss(train_set.maps[draw], [train_set.faces[i] for i in draw.tolist()], rng)

    batches = common.weighted_batches(weights, config.batch_size, steps, config.seed)
    desc = f"pretrain seg ({config.objective})"
    losses = common.run_steps(model, opt, schedule, batches, loss_of, steps, config.seed, desc, progress)
    return model.eval(), losses


@torch.no_grad()
def held_out_loss(model: MaskedMaps | MapCaptions, maps: MapSet, batch_size: int, seed: int) -> float:
    """The objective's mean loss over ``maps`` in batches of ``batch_size`` (masks and captions fixed by ``seed``)."""
    total = 0.0
    for b, start in enumerate(range(0, len(maps), batch_size)):
        rows = range(start, min(start + batch_size, len(maps)))
        rng = np.random.default_rng([seed, 1, b])
        total += float(model.loss(maps.maps[start : rows.stop], [maps.faces[i] for i in rows], rng)) * len(rows)
    return total / len(maps)


def save(encoder: SegEncoder, out: Path) -> Path:
    """The ViT's timm state dict as ``<out>/model.safetensors``, which ``SegEncoderConfig.checkpoint`` loads."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT
    save_file({k: v.detach().contiguous() for k, v in encoder.vit.state_dict().items()}, str(path))
    return path


# ----------------------------------------------------------------------------- linear probe


@dataclass
class LinearProbe:
    """One logistic regression per characteristic on standardised features: ``sigmoid(z @ weight + bias)``."""

    mean: Tensor
    scale: Tensor
    weight: Tensor
    bias: Tensor

    def __call__(self, features: Tensor) -> Tensor:
        z = (features.double() - self.mean) / self.scale
        return torch.sigmoid(z @ self.weight + self.bias).float()


def fit_probe(features: Tensor, labels: Tensor, mask: Tensor, l2: float, iterations: int = 200) -> LinearProbe:
    """Logistic regressions ``[N, D] -> [N, K]`` fitted by L-BFGS in float64: each characteristic's mean
    cross-entropy over the faces that label it, plus ``l2 / 2 * |w|^2`` (the bias is not penalised). Features are
    standardised (a constant one is left at 0); the bias starts at the log-odds of the positive rate, the optimum when
    the features say nothing."""
    x = features.double()
    mean, scale = x.mean(0), x.std(0)
    scale = torch.where(scale > 1e-8, scale, torch.ones_like(scale))
    z = (x - mean) / scale
    y, m = labels.double(), mask.double()
    counts = m.sum(0).clamp_min(1)
    rate = ((y * m).sum(0) / counts).clamp(1e-4, 1 - 1e-4)
    weight = torch.zeros(z.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.logit(rate).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        bce = F.binary_cross_entropy_with_logits(z @ weight + bias, y, reduction="none")
        loss = ((bce * m).sum(0) / counts).sum() + l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(mean, scale, weight.detach(), bias.detach())


@torch.no_grad()
def features(encoder: SegEncoder, maps: Tensor, batch_size: int = 512) -> Tensor:
    """Mean-pooled patch tokens ``[N, D]`` of frozen ``encoder`` over maps ``[N, S, S]``."""
    encoder.eval()
    return torch.cat([encoder(maps[i : i + batch_size]).mean(1) for i in range(0, len(maps), batch_size)])


def score(probs: Tensor, maps: MapSet, view: ModelView) -> tuple[dict[str, float], dict[str, float]]:
    """The project's metrics of one dataset (``faceinsight.eval.metrics``) for probabilities ``[N, K]``, and each binary
    attribute's AP."""
    values, per_characteristic = score_probabilities(
        view.dataset.schema, maps.names, probs, maps.labels, maps.mask, maps.ages
    )
    return values, {n: v["ap"] for n, v in per_characteristic.items()}


def probe(
    encoders: dict[str, SegEncoder], train_set: MapSet, evaluation: list[tuple[str, ModelView, MapSet]],
    prior: Tensor, config: SegPretraining,
) -> dict[str, Any]:  # fmt: skip
    """Linear-probe metrics of each encoder (by name) and of the majority baseline (``prior``: the training split's
    positive rates), per dataset of the evaluation split, and each attribute's AP."""
    out: dict[str, Any] = {name: {} for name in [*encoders, "majority_baseline"]}
    per: dict[str, dict[str, dict[str, float]]] = {}
    for name, encoder in encoders.items():
        fitted = fit_probe(features(encoder, train_set.maps), train_set.labels, train_set.mask, config.probe_l2,
                           config.probe_iterations)  # fmt: skip
        for dataset, view, maps in evaluation:
            out[name][dataset], ap = score(fitted(features(encoder, maps.maps)), maps, view)
            for attribute, value in ap.items():
                per.setdefault(dataset, {}).setdefault(attribute, {})[name] = value
    for dataset, view, maps in evaluation:
        out["majority_baseline"][dataset], ap = score(prior.expand(len(maps), -1), maps, view)
        for attribute, value in ap.items():
            per[dataset][attribute]["majority_baseline"] = value
    return {**out, "per_characteristic": per}


# ----------------------------------------------------------------------------- the command


def run(config: SegPretraining, progress: bool = True) -> dict[str, Any]:
    """Train, save ``<out>/model.safetensors`` and (``evaluate``) probe it; returns the report written to
    ``<out>/pretraining.json``."""
    common.seed_everything(config.seed)
    started = time.perf_counter()
    size = build_encoder(config).image_size  # the maps are read at the ViT's side
    data = common.open_data(config.datasets, config.batch_size, size, config.roots, with_segmaps=True)
    out = Path(config.out) if config.out else common.default_out("seg", data)
    train_set = map_set(data, data.views("train"), progress)
    ready = time.perf_counter()
    model, losses = train(config, train_set, data.face_weights(), progress)
    trained = time.perf_counter()
    path = save(model.encoder, out)
    evaluation = None
    if config.evaluate:
        views = data.views(config.eval_split)
        names = data.dataset_names
        held_out = [(name, view, map_set(data, [view], progress)) for name, view in zip(names, views, strict=True)]
        saved = SegEncoder(config.encoder_config(str(path)))  # what `fit` loads
        encoders = {"trained": saved, "untrained": build_encoder(config)}
        every = map_set(data, views, progress) if len(views) > 1 else held_out[0][2]
        evaluation = {
            "split": config.eval_split,
            "probe": {"train_faces": len(train_set), "l2": config.probe_l2, "features": saved.dim},
            **probe(encoders, train_set, held_out, clip.positive_rates(data), config),
            "objective_loss": {
                "trained": held_out_loss(model, every, config.batch_size, config.seed),
                "untrained": held_out_loss(build_objective(config).eval(), every, config.batch_size, config.seed),
            },
        }
    finished = time.perf_counter()
    report = common.stage_report(
        f"segmentation-encoder pretraining ({config.objective}) on training-split parsing maps; linear probe of the "
        f"attributes on the {config.eval_split} split",
        out, config, data, common.seconds_report(started, ready, trained, finished),
        checkpoint=str(path),
        use_as=f"--model.seg_encoder.checkpoint {path}",
        train=common.train_report(losses, config.batch_size, "maps"),
        evaluation=evaluation,
    )  # fmt: skip
    common.write_report(out, report)
    return report


TABLE_METRICS = ("attributes/mAP", "attributes/accuracy")  # and each group's accuracy
COLUMNS = ("trained", "untrained", "majority_baseline")


def format_table(evaluation: dict[str, Any]) -> str:
    """The probe's metrics per dataset (``TABLE_METRICS`` and group accuracies; the report has all) and the
    objective's held-out loss."""
    lines = [f"linear probe, {evaluation['split']} split ({evaluation['probe']['train_faces']} training faces)",
             f"{'dataset':<14}{'metric':<28}{'trained':>10}{'untrained':>11}{'majority':>10}", "-" * 73]  # fmt: skip
    for dataset, values in evaluation["trained"].items():
        for key in values:
            if key in TABLE_METRICS or key.endswith("/accuracy"):
                t, u, m = (evaluation[c][dataset].get(key, math.nan) for c in COLUMNS)
                lines.append(f"{dataset:<14}{key:<28}{t:>10.4f}{u:>11.4f}{m:>10.4f}")
    loss = evaluation["objective_loss"]
    lines.append(f"{'held-out objective loss':<42}{loss['trained']:>10.4f}{loss['untrained']:>11.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``faceinsight pretrain seg [-c overlay.yaml] [--objective masked|caption] [--max_steps N] [--out DIR] ...``:
    train, save, probe, print the figures."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = common.parse(SegPretraining, argv, "faceinsight pretrain seg", __doc__.splitlines()[0], "seg")
    report = run(config)
    if report["evaluation"] is not None:
        print(format_table(report["evaluation"]))
    s = report["seconds"]
    print(f"\n{report['train']['steps']} steps on {common.threads()} threads: train {s['train']:.0f} s, "
          f"total {s['total']:.0f} s; wrote {report['checkpoint']} (use it as {report['use_as']})")  # fmt: skip
