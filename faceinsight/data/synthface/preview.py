"""``faceinsight synthface preview``: a PNG grid of SynthFace faces beside their colour-coded parsing maps."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from faceinsight.data.synthface.dataset import SynthFace
from faceinsight.data.synthface.render import NUM_CLASSES, SynthFaceConfig

# A fixed colour per CelebAMask-HQ class (0 background .. 18 cloth).
PALETTE = np.array(
    [[0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204], [0, 255, 255],
     [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0], [0, 0, 153], [0, 0, 204],
     [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51], [0, 204, 0]], dtype=np.uint8,
)  # fmt: skip
assert len(PALETTE) == NUM_CLASSES


def label_words(dataset: SynthFace, index: int, max_words: int = 4) -> list[str]:
    """Short caption: expression, age bin, gender and a few positive attributes."""
    labels = dataset.label_matrix()[0][index]
    names = dataset.schema.characteristics
    on = [names[j] for j in np.flatnonzero(labels.numpy() > 0.5)]
    groups = [n.replace("Expr_", "") for n in on if n.startswith(("Expr_", "Age_"))]
    groups.append("Male" if "Male" in on else "Female")
    skip = {"Male", "Female", "No_Beard", "Young", "Attractive"}
    attrs = [n for n in on if n in dataset.schema.attributes and n not in skip][:max_words]
    return [" ".join(groups), *(a.replace("_", " ") for a in attrs)]


def preview_grid(dataset: SynthFace, n: int, scale: int = 2) -> Image.Image:
    """Tiles of [face | map] with caption lines below each pair."""
    size = dataset.config.size * scale
    cols = max(1, min(n, 4))
    rows = math.ceil(n / cols)
    text_h = 12 * 5 + 6
    tile_w, tile_h = 2 * size + 8, size + text_h
    grid = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        sample = dataset[i]
        face = Image.fromarray(sample["image"].permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
        seg = Image.fromarray(PALETTE[sample["segmap"].numpy()]).resize((size, size), Image.NEAREST)
        x, y = (i % cols) * tile_w, (i // cols) * tile_h
        grid.paste(face, (x, y))
        grid.paste(seg, (x + size, y))
        for k, line in enumerate(label_words(dataset, i)):
            draw.text((x + 2, y + size + 1 + 12 * k), line, fill=(0, 0, 0))
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="faceinsight synthface preview", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("samples.png"))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--difficulty", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    dataset = SynthFace(args.n, seed=args.seed, config=SynthFaceConfig(size=args.size, difficulty=args.difficulty))
    preview_grid(dataset, args.n, scale=max(1, 128 // args.size)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
