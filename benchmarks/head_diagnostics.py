"""How distinct FaceInsight's K characteristic questions are, at initialisation or in a checkpoint.

    .venv/bin/python benchmarks/head_diagnostics.py -c configs/utkface.yaml [--ckpt_path <ckpt>] [--images 64]
        [-- <more faceinsight fit arguments, e.g. --model.readout per_characteristic>]

Issue 17's suspect 2: the characteristic tokens are MiniLM prompt embeddings, mixed by the GCN (eq. 8) and read by
one shared Yes/No row pair (eq. 2). If the K tokens are nearly the same, so are the K answers of an image, and
whatever the image teaches moves them together. This prints, for named pairs (Male/Female, neighbouring age bins)
and over all pairs:

* the cosine similarity of the tokens at each stage: T0 (text encoder), T_hat (after the GCN, eq. 8), A_t(T_hat)
  (the LLM's input), and the LLM's last hidden state at the token (averaged over images);
* the correlation across images of the pair's logits on a batch of training faces;
* the participation ratio of the K characteristics' gradients with respect to E_i's tokens
  (:func:`~faceinsight.eval.gradients.gradient_participation_ratio`, mean over the images): how many distinct
  directions the characteristics teach the image encoder (1: all the same; a specialist's random linear head: many),
  and the mean |cos| between them;
* how many directions of variation across the images survive along the path from E_i to the answers: the
  participation ratio of the centred ``[images, features]`` matrix at E_i's mean-pooled tokens, the image adapter's
  output, the LLM's final normalised states at the characteristic tokens (the readout's input) and the logits, next to
  the labels' (docs/learning.md, "The LLM's initial scale");
* with ``readout: per_characteristic``, the participation ratio of the K readout rows;
* per LLM layer, the share of the characteristic tokens' attention on [BOS], E_i's tokens, E_s's tokens, the query
  and themselves (:func:`~faceinsight.eval.attention.attention_shares`), next to each part's token count;
* with ``--specialist <ckpt>`` (or ``init``: a fresh one, seed 0), the same two figures for a specialist's linear head,
  whose gradients with respect to E_i's tokens are its rows.

    .venv/bin/python benchmarks/head_diagnostics.py -c configs/celebahq64.yaml -c configs/specialist_backbone.yaml \
        --images 32 --specialist init [--ckpt_path <ckpt>] [-- --model.readout_start random]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from faceinsight.cli import build
from faceinsight.eval.attention import attention_shares, prefix_segments
from faceinsight.eval.gradients import characteristic_gradients, mean_abs_cosine, participation_ratio
from faceinsight.eval.hooks import caught_outputs
from faceinsight.train.specialist import Specialist

PAIRS = [
    ("Male", "Female"),
    ("Age_20-29", "Age_30-39"),
    ("Smiling", "Mouth_Slightly_Open"),
    ("Blond_Hair", "Black_Hair"),
]


def cosines(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x.double(), dim=-1)
    return x @ x.T


def summary(matrix: torch.Tensor, names: list[str]) -> dict[str, float]:
    k = matrix.shape[0]
    off = matrix[~torch.eye(k, dtype=torch.bool)]
    out = {"mean_offdiag": round(float(off.mean()), 4), "min_offdiag": round(float(off.min()), 4)}
    for a, b in PAIRS:
        if a in names and b in names:
            out[f"{a}~{b}"] = round(float(matrix[names.index(a), names.index(b)]), 4)
    return out


def path_variation(model, visual, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The logits of ``visual``, and the participation ratio of the images' variation (centred ``[B, features]``) at
    each stage of the path, caught by hooks on that one forward pass."""
    parts = {"image_adapter": model.image_adapter, "readout_input": model.llm.get_decoder().norm}
    with torch.no_grad(), caught_outputs(parts) as caught:
        logits = model(None, visual=visual)
    stages = {"E_i_pooled": visual.image.mean(1), **caught, "logits": logits, "labels": labels.float()}
    return logits, {name: variation_ratio(x) for name, x in stages.items()}


def variation_ratio(x: torch.Tensor) -> float:
    """How many directions the rows of ``x`` ``[B, ...]`` vary in: the participation ratio of the centred rows."""
    x = x.flatten(1)
    return round(float(participation_ratio(x - x.mean(0))), 2)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True)
    parser.add_argument("--ckpt_path", default=None)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--specialist", help="a specialist's fit checkpoint, or 'init' for a fresh one (seed 0)")
    args, rest = parser.parse_known_args(argv)
    rest = [a for a in rest if a != "--"]
    words = [w for c in args.config for w in ("-c", c)] + ["--data.num_workers", "0"] + rest
    cli = build(words)
    module, data = cli.model, cli.datamodule
    if args.ckpt_path:
        module.load_weights(args.ckpt_path)
    if not module.model.stats.is_set:
        labels, mask = data.train_label_matrix()
        module.model.stats.update(labels, mask)
    model = module.model.eval()
    names = model.characteristics
    view = data.views("train")[0]
    generator = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(view), generator=generator)[: args.images].tolist()
    batch = torch.utils.data.default_collate([view[i] for i in rows])

    with torch.no_grad():
        t0 = model.prompt_embeddings
        t_hat = model.gcn(t0, model.gcn.adjacency(model.stats)) if model.gcn is not None else t0
        tokens = model.characteristic_embeddings()
        visual = model.encode(batch["image"], batch.get("segmap"))
    logits, variation = path_variation(model, visual, batch["labels"])
    gradients = characteristic_gradients(model, visual)
    report = {
        "checkpoint": args.ckpt_path or "initialisation",
        "token_cosine": {
            "T0": summary(cosines(t0), names),
            "T_hat": summary(cosines(t_hat), names),
            "A_t(T_hat)": summary(cosines(tokens), names),
        },
        "logit_correlation_across_images": summary(torch.corrcoef(logits.T.double()), names),
        "logit_std_across_images": round(float(logits.std(0).mean()), 4),
        "logit_std_across_characteristics": round(float(logits.std(1).mean()), 4),
        "gradient_participation_ratio": round(float(participation_ratio(gradients).mean()), 2),
        "gradient_mean_abs_cosine": round(float(mean_abs_cosine(gradients).mean()), 3),
        "variation_participation_ratio": variation,
        "readout_rows_participation_ratio": (
            round(float(participation_ratio(model.readout.weight.detach())), 2) if model.readout is not None else None
        ),
        "prefix_tokens": prefix_segments(model, visual),
        "attention_shares": {
            layer: {part: round(share, 4) for part, share in shares.items()}
            for layer, shares in attention_shares(model, visual).items()
        },
        "characteristics": len(names),
    }
    if args.specialist:
        torch.manual_seed(0)
        specialist = Specialist(names)
        if args.specialist != "init":
            state = torch.load(args.specialist, map_location="cpu", weights_only=False)["state_dict"]
            own = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
            specialist.load_state_dict(own)
        head = specialist.head.weight.detach()
        with torch.no_grad():
            pooled = specialist.backbone(specialist.norm(batch["image"]))
        report["specialist_head"] = {
            "source": args.specialist,
            "participation_ratio": round(float(participation_ratio(head)), 2),
            "mean_abs_cosine": round(float(mean_abs_cosine(head)), 3),
            "variation_participation_ratio": {
                "pooled": variation_ratio(pooled),
                "logits": variation_ratio(pooled @ head.T),
            },
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
