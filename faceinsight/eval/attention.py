"""Where the characteristic tokens look: their attention's share on each part of the prefix (docs/learning.md).

Each characteristic token attends to the prefix ([BOS], E_i's tokens, E_s's tokens, the query) and to itself
(:func:`~faceinsight.model.faceinsight.characteristic_attention_mask`). E_i learns only through the share its tokens
get, directly or through the prefix tokens that read them, so the shares per layer show how much of the answers the
image itself carries next to the parsing map.
"""

from __future__ import annotations

import torch

from faceinsight.model.faceinsight import FaceInsight, Visual


def prefix_segments(model: FaceInsight, visual: Visual) -> dict[str, int]:
    """The number of prefix tokens of each part, in the order of :meth:`FaceInsight._prefix`."""
    return {
        "bos": len(model.bos_ids),
        "image": visual.image.shape[1],
        "seg": visual.seg.shape[1] if model.seg_adapter is not None else 0,
        "query": len(model.query_ids),
    }


@torch.no_grad()
def attention_shares(model: FaceInsight, visual: Visual) -> dict[str, dict[str, float]]:
    """Per LLM layer, the attention of the K characteristic tokens on each prefix part (the sum of the weights on its
    tokens) and on themselves, averaged over images, heads and characteristics; each layer's shares sum to 1.

    The weights are the LLM's own (``output_attentions``), computed with transformers' eager attention, which is
    switched on for the pass and restored after it.
    """
    inputs, mask, positions, p = model.characteristic_sequence(None, visual=visual)
    segments = prefix_segments(model, visual)
    if sum(segments.values()) != p:
        raise ValueError(f"prefix parts {segments} do not add up to the prefix length {p}")
    previous = model.llm.config._attn_implementation
    model.llm.set_attn_implementation("eager")
    try:
        out = model.llm.get_decoder()(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=False, output_attentions=True
        )
    finally:
        model.llm.set_attn_implementation(previous)
    shares = {}
    for layer, weights in enumerate(out.attentions):
        rows = weights[:, :, p:].float()  # [B, H, K, P+K]: the characteristic tokens' rows
        layer_shares, start = {}, 0
        for name, count in segments.items():
            layer_shares[name] = float(rows[..., start : start + count].sum(-1).mean())
            start += count
        layer_shares["self"] = float(rows[..., p:].diagonal(dim1=-2, dim2=-1).mean())
        shares[f"layer_{layer}"] = layer_shares
    return shares
