"""What a checkpoint holds, per preset: every weight (before) vs. what is saved now (after).

    .venv/bin/python benchmarks/checkpoint_size.py configs/synthface.yaml configs/paper.yaml
    .venv/bin/python benchmarks/checkpoint_size.py configs/synthface.yaml --ckpt runs/synthface/last.ckpt

The model is built on the meta device (no weights, any scale): "before" is its whole state dict, "after"
leaves out the frozen ``from_pretrained`` backbones (``FaceInsight.frozen_pretrained``), which reload from
their source. AdamW adds two float32 moments per trainable parameter to both. ``--ckpt`` also reads a real
checkpoint file of the first preset: its size on disk and the bytes of its saved state dict.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from faceinsight.model.faceinsight import FaceInsight, preset_architecture

GB = 1e9


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def sizes(preset: str) -> dict[str, float]:
    config, names = preset_architecture(preset)
    with torch.device("meta"):
        model = FaceInsight(config, names, load_weights=False)
    state = model.state_dict()
    frozen = tuple(model.frozen_pretrained())
    trainable = [p for p in model.parameters() if p.requires_grad]
    moments = 2 * sum(p.numel() for p in trainable) * 4  # AdamW exp_avg and exp_avg_sq in float32
    return {
        "weights_before": nbytes(state.values()) / GB,
        "weights_after": nbytes(v for k, v in state.items() if not k.startswith(frozen)) / GB,
        "optimizer": moments / GB,
        "trainable_params": sum(p.numel() for p in trainable),
        "left_out": ", ".join(p.rstrip(".") for p in frozen) or "nothing",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--ckpt", help="a checkpoint file trained with the first preset")
    args = parser.parse_args()
    print(f"{'preset':<26}{'before GB':>11}{'after GB':>11}{'+AdamW GB':>11}{'trainable':>14}  left out")
    for preset in args.presets:
        s = sizes(preset)
        print(f"{Path(preset).name:<26}{s['weights_before']:>11.4f}{s['weights_after']:>11.4f}{s['optimizer']:>11.4f}"
              f"{s['trainable_params']:>14,}  {s['left_out']}")  # fmt: skip
    if args.ckpt:
        ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        saved = nbytes(ckpt["state_dict"].values()) / GB
        print(f"\n{args.ckpt}: {os.path.getsize(args.ckpt) / GB:.4f} GB on disk, state dict {saved:.4f} GB, "
              f"left out: {ckpt.get('faceinsight', {}).get('restored_from_source') or 'nothing'}")  # fmt: skip


if __name__ == "__main__":
    main()
