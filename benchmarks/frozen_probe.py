"""Linear probe on a frozen image encoder: what a classifier on E_i's own features reaches, the bar frozen FaceInsight
should clear (issue 17, "the paper's regime works in miniature").

    .venv/bin/python benchmarks/frozen_probe.py runs/pretrain/clip_celebamaskhq                  # celebahq64, test
    .venv/bin/python benchmarks/frozen_probe.py runs/pretrain/clip_celebamaskhq --split val --json out.json
    .venv/bin/python benchmarks/frozen_probe.py <run>/checkpoints/last.ckpt     # the E_i a training run left

The encoder is a ``from_pretrained`` folder or a ``faceinsight fit`` checkpoint (``.ckpt``) of FaceInsight or of the
specialist: then the probe reads the E_i that run trained, which tells how good a backbone the run made apart from
how well its head reads it (docs/learning.md, "Backbone against head").

The preset's data module (``-c``, default ``configs/celebahq64.yaml``) gives the images; the encoder is
``ImageEncoder``, frozen, loaded ``from_pretrained`` from a folder exactly as ``configs/frozen_celebahq64.yaml`` loads
it, or given the checkpoint's E_i weights. Features are its patch tokens mean-pooled; the probe is ``faceinsight
pretrain seg``'s (one L2-regularised logistic regression per characteristic by L-BFGS on standardised features,
``--l2`` fixed beforehand at that stage's default, not tuned), fitted on every training face and scored once on
``--split`` with the project's metrics, next to the majority-class baseline and the same probe on the encoder's
untrained architecture. ``--json`` also gets each characteristic's accuracy and AP per encoder, to tell, attribute by
attribute, what the backbone holds from what a run's head reads of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from faceinsight.cli import build
from faceinsight.eval.collect import collect
from faceinsight.eval.metrics import score_probabilities
from faceinsight.model.encoders import ImageEncoder, ImageEncoderConfig
from faceinsight.train.pretrain.clip import positive_rates
from faceinsight.train.pretrain.seg import fit_probe

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ("attributes/accuracy", "attributes/f1", "attributes/mAP")


def pooled(encoder: ImageEncoder, view: torch.utils.data.Dataset, name: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean-pooled tokens ``[N, D]`` of every face of ``view``, with its labels, label mask and ages."""
    out = collect(view, lambda batch: {"feats": encoder(batch["image"]).mean(1)}, f"encoding {name}")
    return out["feats"], out["labels"], out["mask"], out["ages"]


def encoders(source: str) -> dict[str, ImageEncoder]:
    """The trained E_i of ``source`` (a ``from_pretrained`` folder, or a FaceInsight or specialist ``.ckpt``) and
    the same architecture untrained, both frozen."""
    if not source.endswith(".ckpt"):
        config = ImageEncoderConfig(pretrained=source, trainable=False)
        torch.manual_seed(0)  # the untrained encoder's weights
        return {"trained": ImageEncoder(config), "untrained": ImageEncoder(config, load_weights=False)}
    state = torch.load(source, map_location="cpu", weights_only=False)
    hp = state["hyper_parameters"]
    if "backbone" in hp:  # the specialist: its timm backbone is E_i's feature map, pooled
        config, prefix = ImageEncoderConfig(timm_model=hp["backbone"], arch=hp.get("arch") or {}), "model.backbone."
        target = "features."
    else:
        config, prefix, target = ImageEncoderConfig(**hp["image_encoder"]), "model.image_encoder.", ""
    config.pretrained, config.trainable = None, False
    torch.manual_seed(0)
    trained, untrained = ImageEncoder(config), ImageEncoder(config)
    weights = {target + k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    trained.load_state_dict(weights)
    return {"trained": trained, "untrained": untrained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder", help="a from_pretrained folder of E_i (CLIP), or a fit checkpoint (.ckpt)")
    parser.add_argument("-c", "--config", default=str(ROOT / "configs/celebahq64.yaml"))
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--l2", type=float, default=1e-3, help="the probe's L2 weight (pretrain seg's default)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    data = build(["-c", args.config, "--model.use_seg", "false", "--data.num_workers", "0"]).datamodule
    data.setup("fit")
    data.setup("test")
    names = data.characteristics
    prior = positive_rates(data)
    built = encoders(args.encoder)
    report: dict[str, dict] = {"split": args.split, "encoder": args.encoder, "l2": args.l2}
    started = time.perf_counter()
    for dataset, train_view, eval_view in zip(data.dataset_names, data.views("train"), data.views(args.split),
                                              strict=True):  # fmt: skip
        figures: dict[str, dict[str, float]] = {}
        per_characteristic: dict[str, dict[str, dict[str, float]]] = {}
        for label, encoder in built.items():
            encoder.eval()
            x, y, m, _ = pooled(encoder, train_view, f"{dataset} train ({label})")
            probe = fit_probe(x, y, m, args.l2)
            x, y, m, ages = pooled(encoder, eval_view, f"{dataset} {args.split} ({label})")
            figures[label], per_characteristic[label] = score_probabilities(
                eval_view.dataset.schema, names, probe(x), y, m, ages
            )
        majority = prior.expand(len(y), -1)
        figures["majority_baseline"], _ = score_probabilities(eval_view.dataset.schema, names, majority, y, m, ages)
        report[dataset] = {**figures, "per_characteristic": per_characteristic}
        print(f"\n{dataset}, {args.split} split ({len(y)} faces), linear probe on mean-pooled E_i tokens")
        print("| encoder | " + " | ".join(SHOWN) + " |\n|---|" + "---:|" * len(SHOWN))
        for label, values in figures.items():
            print(f"| {label} | " + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in SHOWN) + " |")
    report["seconds"] = time.perf_counter() - started
    print(f"\n{report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
