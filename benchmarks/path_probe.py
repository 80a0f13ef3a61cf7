"""Where along FaceInsight's path a characteristic is lost: linear probes at each stage of a trained checkpoint.

    .venv/bin/python benchmarks/path_probe.py -c configs/celebahq64.yaml -c configs/specialist_backbone.yaml \
        --ckpt_path <run>/checkpoints/last.ckpt [--split test] [--json out.json] [-- <more fit arguments>]

The head of a FaceInsight run reads some characteristics far worse than a linear probe on its own E_i does
(docs/learning.md, section 5: Wearing_Hat 0.21 against 0.54). This fits the same L2-regularised logistic regression
(``faceinsight pretrain seg``'s probe, ``--l2`` at its default, not tuned) on every training face at three points of
the path and scores it on ``--split``, next to the run's own answers:

* ``E_i``: E_i's tokens, mean-pooled (what the specialist's head reads);
* ``adapter``: the image adapter's output, mean-pooled (the image tokens as the LLM gets them);
* ``h_k``: the LLM's final normalised state at characteristic k's token, the readout's input, a probe per
  characteristic on its own token;
* ``head``: the run's answers, the LLM's (without the image head, whether or not the run averages it in);
* ``image_head``: the run's linear head on E_i's pooled tokens, when it has one (``image_head_weight`` > 0): what a
  specialist's head reads off the E_i this run trained, with no fit of its own;
* ``mean``: the mean of the two logits, the answers of ``--model.image_head_in_answers true`` (docs/learning.md,
  section 13), when the run has an image head.

``--heads_only`` scores the run's own answers and image head alone, without fitting a probe (seconds, not minutes).

A probe at ``h_k`` well above the head says the readout is undertrained; ``adapter`` above ``h_k`` says the LLM's
attention loses what the image tokens hold; ``E_i`` above ``adapter`` says the adapter does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from faceinsight.cli import build
from faceinsight.eval.collect import collect
from faceinsight.eval.hooks import caught_outputs
from faceinsight.eval.metrics import score_probabilities
from faceinsight.train.pretrain.seg import fit_probe

POOLED = ("E_i", "adapter")  # probed on mean-pooled tokens; h_k is probed per characteristic


@torch.no_grad()
def path_features(model, view, name: str, batch_size: int = 256) -> dict[str, Tensor]:
    """Every face of ``view`` through ``model``: the three probed features, the LLM's logits (and the image head's,
    when the model has one), labels, mask and ages."""
    parts = {"adapter": model.image_adapter, "h_k": model.llm.get_decoder().norm}
    with caught_outputs(parts) as caught:

        def outputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
            visual = model.encode(batch["image"], batch.get("segmap"))
            out = {"logits": model.llm_logits(visual), "E_i": visual.image.mean(1)}
            out["adapter"] = caught["adapter"].mean(1).float()
            out["h_k"] = caught["h_k"].float()  # [B, K, D]: the decoder norm runs on the K tokens only
            if model.image_head is not None:
                out["image_head"] = model.image_head_logits(visual)
            return out

        return collect(view, outputs, f"encoding {name}", batch_size)


def own_scores(test: dict[str, Tensor]) -> dict[str, Tensor]:
    """Probabilities ``[N, K]`` of the run's own answers and, when it has one, of its image head and of their mean."""
    scores = {"head": torch.sigmoid(test["logits"])}
    if "image_head" in test:
        scores["image_head"] = torch.sigmoid(test["image_head"])
        scores["mean"] = torch.sigmoid((test["logits"] + test["image_head"]) / 2)
    return scores


def probe_scores(train: dict[str, Tensor], test: dict[str, Tensor], l2: float) -> dict[str, Tensor]:
    """Probabilities ``[N, K]`` on the test faces of each stage's probe, then the run's own (:func:`own_scores`)."""
    scores = {stage: fit_probe(train[stage], train["labels"], train["mask"], l2)(test[stage]) for stage in POOLED}
    k = train["labels"].shape[1]
    scores["h_k"] = torch.stack(
        [
            fit_probe(train["h_k"][:, j], train["labels"][:, j : j + 1], train["mask"][:, j : j + 1], l2)(
                test["h_k"][:, j]
            )[:, 0]
            for j in tqdm(range(k), desc="probing h_k", unit="characteristic")
        ],
        dim=1,
    )
    return scores | own_scores(test)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--l2", type=float, default=1e-3, help="the probe's L2 weight (pretrain seg's default)")
    parser.add_argument("--show", type=int, default=8, help="characteristics shown: the head's largest shortfalls")
    parser.add_argument("--json", help="write every characteristic's AP per stage here")
    parser.add_argument("--heads_only", action="store_true", help="score the run's own heads only, fit no probe")
    args, rest = parser.parse_known_args(argv)
    rest = [a for a in rest if a != "--"]
    cli = build([w for c in args.config for w in ("-c", c)] + ["--data.num_workers", "0"] + rest)
    module, data = cli.model, cli.datamodule
    module.load_weights(args.ckpt_path)
    data.setup("fit")
    data.setup("test")
    model = module.model.eval()
    started = time.perf_counter()
    report: dict[str, object] = {"checkpoint": args.ckpt_path, "split": args.split, "l2": args.l2}
    for dataset, train_view, eval_view in zip(data.dataset_names, data.views("train"), data.views(args.split),
                                              strict=True):  # fmt: skip
        test = path_features(model, eval_view, f"{dataset} {args.split}")
        if args.heads_only:
            scores = own_scores(test)
        else:
            scores = probe_scores(path_features(model, train_view, f"{dataset} train"), test, args.l2)
        aps, maps = {}, {}
        for stage, probs in scores.items():
            values, per_characteristic = score_probabilities(eval_view.dataset.schema, model.characteristics, probs,
                                                             test["labels"], test["mask"], test["ages"])  # fmt: skip
            aps[stage] = {n: v["ap"] for n, v in per_characteristic.items()}
            maps[stage] = values["attributes/mAP"]
        report[dataset] = {"mAP": maps, "AP": aps}
        stages = list(scores)
        print(f"\n{dataset}, {args.split} split ({len(test['labels'])} faces): AP at each stage")
        print("| characteristic | " + " | ".join(stages) + " |\n|---|" + "---:|" * len(stages))
        reference = next(s for s in ("E_i", "image_head", "head") if s in aps)  # what the answers fall short of
        shortfall = sorted(aps["head"], key=lambda n: aps["head"][n] - aps[reference][n])
        for name in shortfall[: args.show]:
            print(f"| {name} | " + " | ".join(f"{aps[s][name]:.3f}" for s in stages) + " |")
        print("| **mAP** | " + " | ".join(f"{maps[s]:.4f}" for s in stages) + " |")
    report["seconds"] = time.perf_counter() - started
    print(f"\n{report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
