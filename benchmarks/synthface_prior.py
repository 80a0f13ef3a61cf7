"""How closely SynthFace's labels reproduce CelebA's: MAE of P(j|i) and of the marginals.

Draws 100k samples from the committed prior, before and after the hard fixes
(``labels.apply_hard_fixes``), and compares them with the real CelebA and
CelebAMask-HQ labels in ``$FACEINSIGHT_DATA`` (default ``../shared/data``).

Usage: python benchmarks/synthface_prior.py [--data DIR] [--n 100000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from faceinsight.data.synthface.labels import apply_hard_fixes
from faceinsight.data.synthface.prior import default_data_dir, load_prior, load_real_labels, prior_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    real = load_real_labels(args.data)
    model, doc = load_prior()
    rng = np.random.default_rng(args.seed)
    sample = model.sample(args.n, rng)
    print(f"prior: {doc['selected']} ({len(model.weights)} components); real rows: {len(real)}; samples: {args.n}")
    for name, x in (("raw prior", sample), ("after hard fixes", apply_hard_fixes(sample, rng))):
        err = prior_errors(real, x)
        print(f"{name:17s} P(j|i) MAE {err['cooccurrence_mae']:.4f}   marginal MAE {err['marginal_mae']:.4f}")
    print("fit-time comparison of all candidate priors (from celeba_prior.json):")
    for name, row in doc["comparison"].items():
        co, co_fixed = row["cooccurrence_mae"], row["cooccurrence_mae_after_fixes"]
        marg, marg_fixed = row["marginal_mae"], row["marginal_mae_after_fixes"]
        print(f"  {name:22s} P(j|i) MAE {co:.4f} -> {co_fixed:.4f} fixed; marginal MAE {marg:.4f} -> {marg_fixed:.4f}")
    print(f"  half-vs-half real floor: P(j|i) MAE {doc['half_vs_half_floor']['cooccurrence_mae']:.4f}")


if __name__ == "__main__":
    main()
