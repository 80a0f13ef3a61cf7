"""FaceInsight: the full model as a plain ``nn.Module`` (DESIGN.md "Data flow of one step").

LLM input = [BOS] image tokens, segmentation tokens, query tokens, K characteristic tokens.
The characteristic tokens attend to the whole prefix and to themselves only and
share one position id, so all K answers come from one forward pass and do not
depend on the order of the characteristics. Each answer is
``P(y_k) = softmax(logit_Yes, logit_No)[Yes]`` at characteristic token k (eq. 2).

For free text (``faceinsight describe``) the query is a request ("Describe this face.") and the LLM continues the
prefix itself: :meth:`FaceInsight.caption_loss` trains the adapters on captions (LLaVA's alignment stage),
:meth:`FaceInsight.generate` decodes greedily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaModel, eager_attention_forward, rotate_half

from faceinsight.model.correlation import CooccurrenceStats, CorrelationConfig, CorrelationGCN
from faceinsight.model.encoders import (
    ImageEncoder,
    ImageEncoderConfig,
    LLMConfig,
    SegEncoder,
    SegEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
    build_llm,
)
from faceinsight.vocab import SCHEMAS, prompts, union


class Visual(NamedTuple):
    """What the visual encoders give for a batch: E_i's tokens and E_s's (None without the segmentation modality)."""

    image: Tensor
    seg: Tensor | None


Readout = Literal["answer_words", "per_characteristic"]
ReadoutStart = Literal["answer_row", "zero", "random"]


class Adapter(nn.Sequential):
    """A 2-layer MLP projector, Linear-GELU-Linear, as in LLaVA-1.5 (A_v, A_s, A_t)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


@dataclass
class FaceInsightConfig:
    """Architecture and module switches. The three ``use_*`` flags are the paper's ablation axes."""

    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    seg_encoder: SegEncoderConfig = field(default_factory=SegEncoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    use_seg: bool = True
    use_correlation: bool = True
    query: str = "Analyze the facial features in this image."
    # readout: ``answer_words`` is eq. 2 (logit_Yes - logit_No of the LLM's output head, shared by every
    # characteristic). ``per_characteristic`` departs from the paper (docs/learning.md): characteristic k gets its own
    # row v_k and its own bias b_k, started at the log-odds of its positive rate in the training split when fitting
    # starts (:meth:`FaceInsight.start_readout_at_prior`). ``readout_start``: the rows start as the output head's
    # Yes-minus-No row (``answer_row``), at 0 (``zero``) or in independent random directions of that row's norm
    # (``random``); docs/learning.md measures the three.
    readout: Readout = "answer_words"
    readout_start: ReadoutStart = "answer_row"
    # image_head_weight > 0 builds ``image_head``, a linear classifier on E_i's mean-pooled tokens, whose BCE the
    # training loss adds with this weight (FaceInsightModule), so that a trainable E_i also learns from the labels
    # directly, as the specialist's does. The answers do not read it unless ``image_head_in_answers``. Not in the
    # paper, whose E_i comes pretrained (docs/learning.md, section 7).
    image_head_weight: float = 0.0
    # characteristic_offsets builds ``characteristic_offsets``, a learned vector per characteristic added to its token
    # (A_t's output, eq. 8), started at 0 so that the model starts as the paper's. The paper's tokens are a shared MLP
    # of GCN-mixed prompt embeddings, so a characteristic can tune its own token (where it attends) only through
    # weights every other characteristic pulls on too; an offset is its own, as the readout's row is (learnable
    # label queries, as in Query2Label, Liu et al. 2021). Not in the paper (docs/learning.md, section 12).
    characteristic_offsets: bool = False
    # False stops the answers' gradient at E_i's output (the adapter reads E_i's tokens detached), so that E_i learns
    # from ``image_head`` alone, as a specialist's backbone does, and the path after it (adapters, LLM, GCN, readout)
    # learns to read it: the paper's split into an E_i trained on faces before and a path trained on top, done in one
    # run. Needs image_head_weight > 0 (docs/learning.md, section 8).
    answers_train_image_encoder: bool = True
    # image_head_in_answers: in evaluation (``eval()`` mode) the answer logit of characteristic k is the mean of the
    # LLM's (eq. 2, or the per-characteristic readout) and ``image_head``'s, two readers of the same E_i trained
    # apart, each by its own BCE; in training the answers are the LLM's alone, so eq. 4 is unchanged. An ensemble of
    # the two heads a run already trains (deep supervision's auxiliary head kept at inference), for no new weights.
    # Not in the paper, whose answers are the LLM's; needs image_head_weight > 0 (docs/learning.md, section 13).
    image_head_in_answers: bool = False


class CharacteristicReadout(nn.Module):
    """``readout: per_characteristic``: logit_k = v_k . h_k + b_k, one row and bias per characteristic.

    Fitting starts the biases at the priors (:meth:`FaceInsight.start_readout_at_prior`). ``start="answer_row"``
    starts every row and bias as the output head's Yes-minus-No row and bias (``answer_row``), so as built it gives
    eq. 2's logits. ``start="zero"`` starts the rows at 0, so training starts at the priors exactly and the first
    gradient of v_k is the covariance of label k with the image-dependent part of h_k (the prior cancels the constant
    part): it stops the image's share of the characteristic tokens' state from collapsing in the first steps, but
    the backbone gets no gradient until the rows grow (big_vision's ViT has the same option, ``head_zeroinit``).
    ``start="random"`` draws each row in its own random direction (Gaussian, from torch's global generator), scaled to
    the answer row's norm: with ``answer_row`` the K characteristics send E_i one and the same gradient direction
    (their Jacobians with respect to E_i's tokens have participation ratio 1.02 of 40 on celebahq64), and the
    backbone learns as if from one label; random rows give each characteristic its own direction from the first
    step, as a specialist's randomly initialised linear head does (docs/learning.md).
    """

    def __init__(self, answer_row: tuple[Tensor, Tensor], k: int, start: ReadoutStart = "answer_row") -> None:
        super().__init__()
        if start not in get_args(ReadoutStart):
            raise ValueError(f"readout_start must be one of {get_args(ReadoutStart)}, got {start!r}")
        row, bias = (t.detach().float() for t in answer_row)
        if start == "random":
            weight = F.normalize(torch.randn(k, row.numel(), device=row.device), dim=1) * row.norm()
        else:
            weight = row.expand(k, -1).clone()
        scale = 0.0 if start == "zero" else 1.0
        self.weight = nn.Parameter(weight * scale)
        self.bias = nn.Parameter(bias.expand(k).clone() * scale)

    def forward(self, hidden: Tensor, which: Tensor | None = None) -> Tensor:
        """``[B, K, D] -> [B, K]``, or ``[N, D]`` rows of characteristics ``which`` ``[N]`` -> ``[N]``."""
        if which is None:
            return (hidden * self.weight).sum(-1) + self.bias
        return (hidden * self.weight[which]).sum(-1) + self.bias[which]


def characteristic_attention_mask(prefix: int, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Additive 4D mask ``[1, 1, P+K, P+K]``: causal prefix; each characteristic sees the prefix and itself."""
    total = prefix + k
    allowed = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    allowed[prefix:, prefix:] = torch.eye(k, dtype=torch.bool, device=device)
    mask = torch.zeros(total, total, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class FaceInsight(nn.Module):
    """Scores K characteristics of a face from its image and (optionally) its parsing map.

    Args:
        config: architecture and switches.
        characteristics: the K characteristic names, in output order.
        load_weights: False builds every backbone from its ``arch`` (e.g. on the meta device).
    """

    def __init__(self, config: FaceInsightConfig, characteristics: list[str], load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.characteristics = list(characteristics)
        k = len(self.characteristics)

        self.image_encoder = ImageEncoder(config.image_encoder, load_weights)
        self.seg_encoder = SegEncoder(config.seg_encoder, load_weights) if config.use_seg else None
        self.llm, tokenizer = build_llm(config.llm, load_weights)
        self.tokenizer = tokenizer  # None on the meta device; faceinsight.tools.describe reads and writes text with it
        d = self.llm.config.hidden_size

        # E_t is frozen, so T0 is computed once and kept as a buffer: checkpoints then predict without it.
        text_encoder = TextEncoder(config.text_encoder, load_weights)
        t0 = text_encoder(prompts(self.characteristics)) if load_weights else torch.empty(k, text_encoder.dim)
        self.register_buffer("prompt_embeddings", t0.float())
        dt = t0.shape[1]

        self.stats = CooccurrenceStats(self.characteristics)
        self.gcn = CorrelationGCN(dt, config.correlation) if config.use_correlation else None
        self.image_adapter = Adapter(self.image_encoder.dim, d)
        self.seg_adapter = Adapter(self.seg_encoder.dim, d) if self.seg_encoder is not None else None
        self.prompt_adapter = Adapter(dt, d)

        # Token ids of the prefix text and of the two answers.
        bos_ids, query_ids, answer_ids = (torch.zeros(0, dtype=torch.long),) * 3
        if tokenizer is not None:
            bos_ids, query_ids, answer_ids = self._tokenize(tokenizer, config)
        self.register_buffer("bos_ids", bos_ids, persistent=False)
        self.register_buffer("query_ids", query_ids, persistent=False)
        self.register_buffer("answer_ids", answer_ids, persistent=False)
        if config.readout not in ("answer_words", "per_characteristic"):
            raise ValueError(f"readout must be 'answer_words' (eq. 2) or 'per_characteristic', got {config.readout!r}")
        self.readout = (
            CharacteristicReadout(self._answer_row(), k, config.readout_start)
            if config.readout == "per_characteristic"
            else None
        )
        self.image_head = nn.Linear(self.image_encoder.dim, k) if config.image_head_weight > 0 else None
        if config.image_head_in_answers and self.image_head is None:
            raise ValueError("image_head_in_answers needs the image head it reads: pass image_head_weight > 0")
        self.characteristic_offsets = nn.Embedding(k, d) if config.characteristic_offsets else None
        if self.characteristic_offsets is not None:
            nn.init.zeros_(self.characteristic_offsets.weight)  # the paper's tokens at the start

    @staticmethod
    def _tokenize(tokenizer, config: FaceInsightConfig) -> tuple[Tensor, Tensor, Tensor]:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        query = tokenizer(config.query, add_special_tokens=False)["input_ids"]
        answers = []
        for word in (config.llm.yes, config.llm.no):
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError(f"answer word {word!r} is not a single token for this tokenizer: {ids}")
            answers.append(ids[0])
        bos_ids = [bos] if bos is not None else []
        return torch.tensor(bos_ids, dtype=torch.long), torch.tensor(query), torch.tensor(answers)

    def trainable_parameters(self) -> dict[str, int]:
        """Number of trainable parameters per top-level part."""
        return {
            name: sum(p.numel() for p in child.parameters() if p.requires_grad) for name, child in self.named_children()
        }

    def backbones(self) -> dict[str, tuple[nn.Module | None, str | None]]:
        """Each backbone (None when switched off) and its ``from_pretrained`` source (None when built from arch)."""
        c = self.config
        return {
            "image_encoder": (self.image_encoder, c.image_encoder.pretrained),
            "seg_encoder": (self.seg_encoder, c.seg_encoder.checkpoint),
            "llm": (self.llm, c.llm.pretrained),
        }

    def frozen_pretrained(self) -> dict[str, str]:
        """State-dict prefix -> source of each backbone that is loaded from a source and frozen.

        Their weights are reproducible from the source, so checkpoints leave them out (about 14 GB at the paper's
        scale); a backbone built from ``arch``, or one that trains, stays in the checkpoint.
        """
        return {
            f"{name}.": str(source)
            for name, (module, source) in self.backbones().items()
            if source and module is not None and not any(p.requires_grad for p in module.parameters())
        }

    def characteristic_embeddings(self) -> Tensor:
        """``T_hat`` (eq. 8) projected by A_t: ``[K, D]``, plus each characteristic's own offset when built."""
        t = self.prompt_embeddings
        if self.gcn is not None:
            t = self.gcn(t, self.gcn.adjacency(self.stats))
        tokens = self.prompt_adapter(t)
        if self.characteristic_offsets is not None:
            tokens = tokens + self.characteristic_offsets.weight.to(tokens.dtype)
        return tokens

    def forward(self, image: Tensor | None, segmap: Tensor | None = None, visual: Visual | None = None) -> Tensor:
        """Yes-minus-No logits ``[B, K]``: ``sigmoid`` of them is ``P(y_k)`` (eq. 2).

        ``visual``: the encoders' outputs for this batch (:meth:`encode`), e.g. from a frozen-feature cache; the
        image and map are then not read.
        """
        visual = self.visual_of(image, segmap, visual)
        return self.with_image_head(self.llm_logits(visual), visual)

    def llm_logits(self, visual: Visual) -> Tensor:
        """The LLM's answer logits ``[B, K]`` (eq. 2, or the per-characteristic readout), without the image head."""
        inputs, mask, positions, p = self.characteristic_sequence(None, None, visual)
        return self.answer_difference(self._decode(inputs, mask, positions, p))

    def with_image_head(self, logits: Tensor, visual: Visual) -> Tensor:
        """The answer logits ``[B, K]`` as the model gives them: the LLM's, averaged with ``image_head``'s in
        evaluation when ``image_head_in_answers`` is on (``FaceInsightConfig``), else unchanged."""
        if not self.config.image_head_in_answers or self.training:
            return logits
        return (logits + self.image_head_logits(visual)) / 2

    def characteristic_sequence(
        self, image: Tensor | None, segmap: Tensor | None = None, visual: Visual | None = None
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """The LLM's input for one pass over all K characteristics: the embeddings ``[B, P+K, D]`` (the prefix, then
        the K characteristic tokens), the 4D attention mask, the position ids ``[B, P+K]`` (every characteristic at
        position P) and the prefix length P."""
        llm_dtype = self.llm.dtype
        prefix = self._prefix(image, segmap, visual)
        b = prefix.shape[0]
        chars = self.characteristic_embeddings().to(llm_dtype).expand(b, -1, -1)
        p, k = prefix.shape[1], chars.shape[1]
        device = prefix.device
        mask = characteristic_attention_mask(p, k, llm_dtype, device).expand(b, -1, -1, -1)
        positions = torch.cat([torch.arange(p, device=device), torch.full((k,), p, device=device)])
        return torch.cat([prefix, chars], dim=1), mask, positions.expand(b, -1), p

    def _decode(self, inputs: Tensor, mask: Tensor, positions: Tensor, p: int) -> Tensor:
        """The LLM's final hidden states at the characteristic tokens (positions ``p:``).

        Only those are read, so a Llama decoder's last layer runs its queries, output projection and MLP on the K
        characteristic tokens alone; the P prefix tokens give it their keys and values. The result is the full
        pass's (tested), for 16% fewer FLOPs per training step of the default preset (its LLM has 2 layers; about
        2% with Vicuna's 32). Other decoders run the full pass.
        """
        decoder = self.llm.get_decoder()
        if not isinstance(decoder, LlamaModel):
            out = decoder(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=False)
            return out.last_hidden_state[:, p:]
        rotary = decoder.rotary_emb(inputs, positions)
        hidden = inputs
        for layer in decoder.layers[:-1]:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
        last = decoder.layers[-1]
        attn = last.self_attn
        x = last.input_layernorm(hidden)

        def heads(t: Tensor, rotate: slice | None = None) -> Tensor:  # [B, S, H*d] -> [B, H, S, d], RoPE if asked
            t = t.view(*t.shape[:2], -1, attn.head_dim).transpose(1, 2)
            if rotate is None:
                return t
            cos, sin = (r[:, rotate].unsqueeze(1) for r in rotary)
            return t * cos + rotate_half(t) * sin

        query = heads(attn.q_proj(x[:, p:]), slice(p, None))
        key = heads(attn.k_proj(x), slice(None))
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
        out, _ = attention(
            attn, query, key, heads(attn.v_proj(x)), mask[:, :, p:],
            dropout=attn.attention_dropout if attn.training else 0.0, scaling=attn.scaling,
        )  # fmt: skip
        h = hidden[:, p:] + attn.o_proj(out.reshape(*out.shape[:2], -1))
        h = h + last.mlp(last.post_attention_layernorm(h))
        return decoder.norm(h)

    def _answer_row(self) -> tuple[Tensor, Tensor]:
        """The output head's ``w_Yes - w_No`` and ``b_Yes - b_No`` (0 without a bias), in float32."""
        head = self.llm.get_output_embeddings()
        if not len(self.answer_ids):  # built without a tokenizer (meta device): the readout's shape only
            d = head.weight.shape[1]
            return torch.zeros(d, device=head.weight.device), torch.zeros((), device=head.weight.device)
        yes, no = head.weight[self.answer_ids].float()
        bias = head.bias[self.answer_ids].float() if head.bias is not None else torch.zeros(2, device=yes.device)
        return yes - no, bias[0] - bias[1]

    def start_readout_at_prior(self) -> None:
        """``readout: per_characteristic``: set each bias b_k to the log-odds of characteristic k's positive rate in
        the training split (``stats``), so that training starts from the priors instead of spending its first steps on
        them. Without it the fastest way down the loss is the priors through the shared path, and the image's small
        share of the answers is pushed towards 0 (docs/learning.md). RetinaNet initialises its classifier's bias the
        same way (Lin et al., ICCV 2017). ``image_head``'s biases start the same way. Nothing happens with the paper's
        readout and no ``image_head``."""
        heads = [head for head in (self.readout, self.image_head) if head is not None]
        if not heads:
            return
        rate = self.stats.positive_rate().float().clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            for head in heads:
                head.bias.copy_(torch.log(rate / (1 - rate)).to(head.bias.device))

    def image_head_logits(self, visual: Visual) -> Tensor:
        """``image_head``'s logits ``[B, K]`` from E_i's mean-pooled tokens: a training signal for E_i, and half of
        the answers in evaluation with ``image_head_in_answers``."""
        if self.image_head is None:
            raise RuntimeError("the model was built without image_head (image_head_weight 0)")
        return self.image_head(visual.image.float().mean(1))

    def answer_difference(self, hidden: Tensor, which: Tensor | None = None) -> Tensor:
        """The answer logits (``logit_Yes - logit_No``, eq. 2, or the per-characteristic readout) from the LLM's last
        hidden states ``[B, K, D]``, in float32; ``which`` ``[N]`` names the characteristic of each row when
        ``hidden`` is ``[N, D]``.

        The two rows of the output head are taken and subtracted in float32 before the product, so a bf16 LLM
        does not round scores near 0.5 to bf16's steps (which would make ties in mAP).
        """
        if self.readout is not None:
            return self.readout(hidden.float(), which)
        row, bias = self._answer_row()
        return hidden.float() @ row + bias

    def encode(self, image: Tensor, segmap: Tensor | None = None) -> Visual:
        """The visual encoders' outputs, before the adapters: E_i's tokens ``[B, Nv, Dv]`` and E_s's ``[B, Ns, Ds]``
        (None when the segmentation modality is off). With both encoders frozen these are fixed per image, which
        is what a frozen-feature cache stores."""
        seg_tokens = None
        if self.seg_encoder is not None:
            if segmap is None:
                raise ValueError("the segmentation modality is on (use_seg) but the batch has no segmap")
            seg_tokens = self.seg_encoder(segmap)
        return Visual(self.image_encoder(image), seg_tokens)

    def visual_of(self, image: Tensor | None, segmap: Tensor | None, visual: Visual | None) -> Visual:
        """``visual`` when given (e.g. from a frozen-feature cache), else the encoders' outputs for the images."""
        if visual is not None:
            return visual
        if image is None:
            raise ValueError("pass the images or their encoded tokens (visual)")
        return self.encode(image, segmap)

    def _prefix(self, image: Tensor | None, segmap: Tensor | None, visual: Visual | None = None) -> Tensor:
        """The LLM input before the characteristics, ``[B, P, D]``: [BOS] image, segmentation and query tokens."""
        visual = self.visual_of(image, segmap, visual)
        llm_dtype = self.llm.dtype
        embed = self.llm.get_input_embeddings()
        b = visual.image.shape[0]
        image = visual.image if self.config.answers_train_image_encoder else visual.image.detach()
        parts = [
            embed(self.bos_ids).expand(b, -1, -1),
            self.image_adapter(image.to(self.image_adapter[0].weight.dtype)),
        ]
        if self.seg_adapter is not None:
            if visual.seg is None:
                raise ValueError("the segmentation modality is on (use_seg) but no segmentation tokens were given")
            parts.append(self.seg_adapter(visual.seg.to(self.seg_adapter[0].weight.dtype)))
        parts.append(embed(self.query_ids).expand(b, -1, -1))
        return torch.cat([p.to(llm_dtype) for p in parts], dim=1)

    def forward_per_characteristic(
        self, image: Tensor, segmap: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        """The same logits ``[B, K]`` as ``forward``, with one LLM pass per characteristic question.

        The baseline for the one-pass forward: Face-MLLM (Sun et al., 2024) asks each characteristic as its own
        question. Sequence (b, k) is the prefix of image b followed by characteristic token k only, so with a causal
        mask token k sits at position P and sees the prefix and itself, exactly as in ``forward``. The encoders run
        once per image and their tokens are shared by its K questions (what a multi-question server caches at best);
        no KV cache is shared, so each question pays the whole prefix. The B*K sequences go through the LLM
        ``batch_size`` at a time (all at once if None), which bounds memory at ``batch_size`` sequences of P+1 tokens.
        """
        visual = self.encode(image, segmap)
        prefix = self._prefix(None, None, visual)
        chars = self.characteristic_embeddings().to(prefix.dtype)
        (b, p), k = prefix.shape[:2], chars.shape[0]
        rows = torch.arange(b * k, device=prefix.device)  # sequence b*K + k asks image b about characteristic k
        decoder = self.llm.get_decoder()
        out = []
        for chunk in rows.split(batch_size or b * k):
            sequences = torch.cat([prefix[chunk // k], chars[chunk % k, None]], dim=1)
            hidden = decoder(inputs_embeds=sequences, use_cache=False).last_hidden_state[:, p]
            out.append(self.answer_difference(hidden, chunk % k))
        return self.with_image_head(torch.cat(out).view(b, k), visual)

    # ----------------------------------------------------------------- free text (faceinsight.tools.describe)
    def describe_prefix(self, visual: Visual, query_ids: Tensor) -> Tensor:
        """LLaVA's input for a free-text answer, ``[B, P', D]``: [BOS], image and segmentation tokens as in
        :meth:`_prefix`, then the embeddings of ``query_ids`` (e.g. "Describe this face.") instead of the
        characteristic query."""
        prefix = self._prefix(None, None, visual)
        visual_end = prefix.shape[1] - len(self.query_ids)
        query = self.llm.get_input_embeddings()(query_ids).to(prefix.dtype)
        return torch.cat([prefix[:, :visual_end], query.expand(prefix.shape[0], -1, -1)], dim=1)

    def caption_loss(self, visual: Visual, query_ids: Tensor, caption_ids: Tensor, caption_mask: Tensor) -> Tensor:
        """Mean next-token NLL of the caption tokens ``[B, T]`` (``caption_mask`` marks the real ones, right
        padding) after :meth:`describe_prefix`: LLaVA's alignment loss. Gradients reach the adapters through the
        LLM whether it is frozen or not. The output layer runs on the predicted positions only (the vocabulary is
        most of its cost)."""
        prefix = self.describe_prefix(visual, query_ids)
        b, p = prefix.shape[:2]
        words = self.llm.get_input_embeddings()(caption_ids).to(prefix.dtype)
        mask = torch.cat([caption_mask.new_ones(b, p), caption_mask], dim=1)
        decoder = self.llm.get_decoder()
        hidden = decoder(inputs_embeds=torch.cat([prefix, words], dim=1), attention_mask=mask, use_cache=False)
        real = caption_mask.bool()
        predicting = hidden.last_hidden_state[:, p - 1 : -1][real]  # position i predicts caption token i - p + 1
        logits = self.llm.get_output_embeddings()(predicting).float()
        return F.cross_entropy(logits, caption_ids[real])

    @torch.no_grad()
    def generate(self, visual: Visual, query_ids: Tensor, end_id: int, max_new_tokens: int) -> Tensor:
        """Greedy continuation of :meth:`describe_prefix`, ``[B, <= max_new_tokens]`` token ids: each row stops at
        ``end_id`` (included; the row holds ``end_id`` after it), all stop after ``max_new_tokens``. Deterministic:
        the most probable token each step, with the LLM's KV cache."""
        out = self.llm(inputs_embeds=self.describe_prefix(visual, query_ids), use_cache=True, logits_to_keep=1)
        done = torch.zeros(out.logits.shape[0], dtype=torch.bool, device=out.logits.device)
        tokens = []
        for step in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1).masked_fill(done, end_id)
            tokens.append(token)
            done |= token == end_id
            if bool(done.all()) or step + 1 == max_new_tokens:
                break
            out = self.llm(input_ids=token[:, None], past_key_values=out.past_key_values, use_cache=True)
        return torch.stack(tokens, dim=1) if tokens else torch.zeros(len(done), 0, dtype=torch.long)


def preset_architecture(path: str | Path) -> tuple[FaceInsightConfig, list[str]]:
    """The model section of a preset YAML, parsed with the CLI's typed signature, and its characteristics.

    For building a preset's exact architecture without weights, e.g. ``with torch.device("meta"):
    FaceInsight(config, names, load_weights=False)``.
    """
    import yaml
    from jsonargparse import ArgumentParser

    preset = yaml.safe_load(Path(path).read_text())
    parser = ArgumentParser()
    parser.add_class_arguments(FaceInsightConfig, "config")
    keys = {f.name for f in FaceInsightConfig.__dataclass_fields__.values()}
    cfg = parser.parse_object({"config": {k: v for k, v in preset["model"].items() if k in keys}})
    names = union([SCHEMAS[d.get("kind", "synthface")] for d in preset["data"]["datasets"]])
    return parser.instantiate_classes(cfg).config, names
