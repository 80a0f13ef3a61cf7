"""Does the image reach FaceInsight's answers? A short in-process training run on real UTKFace faces that prints,
every few steps, the validation gender accuracy and how much the answers vary across images.

    .venv/bin/python benchmarks/image_signal.py                                   # the preset's head
    .venv/bin/python benchmarks/image_signal.py -- --model.readout answer_words   # eq. 2's shared Yes/No readout
    .venv/bin/python benchmarks/image_signal.py --no-prior -- --model.readout per_characteristic
    .venv/bin/python benchmarks/image_signal.py -- -c configs/specialist.yaml     # the specialist beside it

It builds ``configs/utkface.yaml`` (``-c`` to change) through the CLI's parser, with the miniature architecture of
the learning tests (32 px, no parsing maps: seconds per step on one core), and trains it with plain AdamW at a
constant learning rate (no schedule, no validation-based selection: the loop isolates what the model does with its
gradients). Printed per checkpoint step: the accuracy of the Female answer on the first 256 validation faces, the
standard deviation of the logits across those images (mean over characteristics: how much the image moves the
answers) and across characteristics (mean over images). Issue 17's finding (docs/learning.md): with eq. 2's readout
the first number stays at the majority answer and the second stays near 0, while the specialist's rises at once.

For FaceInsight two more columns show where the image's part is lost: the image share at the characteristic tokens
(the standard deviation across images of the LLM's final normalised state there, which the readout reads, over its
root mean square) and the
root mean square of the characteristic tokens as they enter the LLM (A_t(T_hat)). On the specialist's backbone, with
the per-characteristic rows started at 0 (docs/learning.md):

    .venv/bin/python benchmarks/image_signal.py --steps 200 --every 25 -- -c configs/specialist_backbone.yaml \
        --data.image_size 64 --model.llm.arch "{hidden_size: 128, intermediate_size: 344, num_hidden_layers: 2, \
        num_attention_heads: 4, num_key_value_heads: 4}" --model.readout_start zero
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from faceinsight.cli import build
from faceinsight.model.faceinsight import FaceInsight

ROOT = Path(__file__).resolve().parents[1]
# tests/test_learning.py's miniature architecture at 32 px (kept in step with it by hand: a benchmark, not a test).
MINIATURE = [
    "--data.image_size", "32",
    "--model.image_encoder.arch", "{image_size: 32, patch_size: 8, hidden_size: 64, num_hidden_layers: 2, "
    "num_attention_heads: 2, intermediate_size: 128}",
    "--model.llm.arch", "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, "
    "num_key_value_heads: 2, max_position_embeddings: 256}",
]  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=str(ROOT / "configs/utkface.yaml"))
    parser.add_argument("--root", default=str(ROOT.parent / "shared/data/utkface"), help="UTKFace folder")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--no-prior", action="store_true", help="keep the per-characteristic biases at 0")
    parser.add_argument("overrides", nargs="*", help="faceinsight fit arguments (after --)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    words = ["-c", args.config, "--data.datasets", f"[{{kind: utkface, root: {args.root}}}]", "--model.use_seg",
             "false", "--data.num_workers", "0", "--model.rules", f"[{ROOT / 'rules/demographics.rules'}]",
             *MINIATURE, *args.overrides]  # fmt: skip
    cli = build(words)
    module, data = cli.model, cli.datamodule
    data.setup("fit")
    module.model.stats.update(*data.train_label_matrix())
    if not args.no_prior:
        module.statistics_set()  # what fit does once the statistics are computed
    model = getattr(module, "model", None)
    model = model if isinstance(model, FaceInsight) else None  # the specialist has no characteristic tokens
    final: list[torch.Tensor] = []  # the LLM's final normalised states: what the readout reads
    if model is not None:
        model.llm.get_decoder().norm.register_forward_hook(lambda m, i, out: final.append(out))
    female = module.model.characteristics.index("Female")
    val = data.views("val")[0]
    check = torch.utils.data.default_collate([val[i] for i in range(min(256, len(val)))])
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    loader = torch.utils.data.DataLoader(data.views("train")[0], batch_size=args.batch_size, shuffle=True,
                                         drop_last=True)  # fmt: skip
    batches, started = iter(loader), time.perf_counter()
    print("| step | Female accuracy | logit std across images | across characteristics "
          "| image share at characteristic tokens | rms A_t(T_hat) | s |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for step in range(args.steps + 1):
        if step % args.every == 0:
            module.eval()
            final.clear()
            with torch.no_grad():
                logits = module.logits(check)
                share, rms = "", ""
                if model is not None:
                    chars = final[-1][:, -logits.shape[1] :]  # [B, K, D] at the characteristic tokens
                    share = f"{chars.std(0).mean() / chars.pow(2).mean().sqrt():.4f}"
                    rms = f"{model.characteristic_embeddings().pow(2).mean().sqrt():.3f}"
            accuracy = ((logits[:, female] > 0).float() == check["labels"][:, female]).float().mean()
            print(f"| {step} | {accuracy:.3f} | {logits.std(0).mean():.3f} | {logits.std(1).mean():.3f} | {share} "
                  f"| {rms} | {time.perf_counter() - started:.0f} |", flush=True)  # fmt: skip
            module.train()
        if step == args.steps:
            break
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss, _, _ = module.losses(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main(sys.argv[1:])
