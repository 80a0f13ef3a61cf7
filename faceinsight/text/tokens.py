"""Text as token ids and back: the caption loss's targets (LLaVA's alignment loss) and ``faceinsight describe``'s
generated descriptions share one tokenisation, so both the training step and the tool read it from here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DESCRIBE_QUERY = "Describe this face."
CAPTION_TOKENS = 96  # a caption's tokens in the caption loss, its end token included (longer ones are cut)


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> Tensor:
    """``text``'s token ids without special tokens."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def end_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends a description: the tokenizer's EOS, else its [SEP] (``faceinsight pretrain lm``'s end)."""
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if end is None:
        raise ValueError(f"the tokenizer {type(tokenizer).__name__} has neither an EOS nor a SEP token")
    return end


def tokenize_captions(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int = CAPTION_TOKENS
) -> tuple[Tensor, Tensor]:
    """Token ids ``[N, T]`` of each text followed by the end token, right-padded, and the mask of real tokens."""
    end = end_id(tokenizer)
    rows = [[*ids[: max_tokens - 1], end] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def decode_texts(tokenizer: PreTrainedTokenizerBase, ids: Tensor) -> list[str]:
    """Generated ids ``[B, T]`` as text, each cut at its end token; word-piece spacing around hyphens,
    apostrophes and punctuation undone ("clean - shaven" -> "clean-shaven")."""
    end = end_id(tokenizer)
    texts = []
    for row in ids.tolist():
        row = row[: row.index(end)] if end in row else row
        text = tokenizer.decode(row, skip_special_tokens=True)
        text = re.sub(r"(?<=\w) ?([-']) ?(?=\w)", r"\1", text)
        texts.append(re.sub(r" ([.,;:!?])", r"\1", text).strip())
    return texts
