"""From prior samples to SynthFace's full label vector: hard fixes, age, gender, expression, label noise.

The 40 attributes come from the tree-mixture prior (``prior.py``); rule-like visual
facts are then enforced (:data:`HARD_RULES`), and the groups are drawn conditioned on
the attributes: age in years on Young, Gray_Hair and Bald; gender from Male;
expression on Smiling and Mouth_Slightly_Open. Label noise flips the *returned*
labels only; the image is rendered from the clean ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceinsight.vocab import AGE_BINS, CELEBA_ATTRIBUTES, EXPRESSIONS, GROUPS, SCHEMAS

A = {name: j for j, name in enumerate(CELEBA_ATTRIBUTES)}
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
BEARD_TYPES = ("Goatee", "Mustache", "5_o_Clock_Shadow")

# The visual facts the fixes enforce, in the rule-file syntax of DESIGN.md (documentation and tests).
HARD_RULES: tuple[str, ...] = (
    "forall x: ~Male(x) -> No_Beard(x) & ~Sideburns(x)",
    "forall x: No_Beard(x) -> ~Goatee(x) & ~Mustache(x) & ~5_o_Clock_Shadow(x)",
    "forall x: Bald(x) -> ~Bangs(x) & ~Straight_Hair(x) & ~Wavy_Hair(x)",
    "forall x: Bald(x) -> ~Black_Hair(x) & ~Blond_Hair(x) & ~Brown_Hair(x) & ~Gray_Hair(x)",
    "at_most_one(Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair)",
    "at_most_one(Straight_Hair, Wavy_Hair)",
    "forall x: Bangs(x) -> ~Receding_Hairline(x)",
)

# P(expression | Smiling, Mouth_Slightly_Open), rows in RAF-DB order (Surprise, Fear, Disgust,
# Happiness, Sadness, Anger, Neutral). A smile is mostly Happiness; an open mouth without a smile
# is mostly Surprise/Fear/Neutral; a closed unsmiling mouth is mostly Neutral. Our own choice.
EXPRESSION_GIVEN = {
    (0, 0): (0.03, 0.03, 0.08, 0.00, 0.16, 0.12, 0.58),
    (0, 1): (0.32, 0.16, 0.10, 0.00, 0.08, 0.09, 0.25),
    (1, 0): (0.02, 0.00, 0.01, 0.88, 0.01, 0.00, 0.08),
    (1, 1): (0.06, 0.01, 0.01, 0.88, 0.00, 0.01, 0.03),
}

SCHEMA = SCHEMAS["synthface"]
NUM_LABELS = len(SCHEMA.characteristics)
AGE_SLICE = slice(len(CELEBA_ATTRIBUTES), len(CELEBA_ATTRIBUTES) + len(AGE_BINS))
FEMALE = SCHEMA.characteristics.index("Female")
EXPR_SLICE = slice(FEMALE + 1, FEMALE + 1 + len(EXPRESSIONS))
assert SCHEMA.characteristics[EXPR_SLICE] == GROUPS["expression"]


def apply_hard_fixes(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Enforce :data:`HARD_RULES` on bool ``[N, 40]`` attribute rows (returns a copy).

    Where a row breaks an at-most-one rule, one of its active members is kept at random.
    """
    x = x.copy()
    female = ~x[:, A["Male"]]
    x[female, A["No_Beard"]] = True
    x[female, A["Sideburns"]] = False
    for name in BEARD_TYPES:
        x[x[:, A["No_Beard"]], A[name]] = False
    bald = x[:, A["Bald"]]
    for name in ("Bangs", "Straight_Hair", "Wavy_Hair", *HAIR_COLOURS):
        x[bald, A[name]] = False
    for group in (HAIR_COLOURS, ("Straight_Hair", "Wavy_Hair")):
        cols = [A[g] for g in group]
        active = x[:, cols]
        keep = np.argmax(active * rng.random(active.shape), axis=1)  # a random active member
        x[:, cols] = active & (np.arange(len(cols))[None, :] == keep[:, None])
    x[x[:, A["Bangs"]], A["Receding_Hairline"]] = False
    return x


def _truncated_normal(mean: np.ndarray, sd: float, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    out = rng.normal(mean, sd)
    for _ in range(50):  # rejection: redraw the few values outside [low, high)
        bad = (out < low) | (out >= high)
        if not bad.any():
            break
        out[bad] = rng.normal(mean[bad], sd)
    return np.clip(out, low, np.nextafter(high, low))


def sample_ages(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Age in years given Young, Gray_Hair and Bald (float32 ``[N]``).

    CelebA's Young roughly means under 35-40 (annotators' judgement), so Young faces
    are drawn around 25 and the rest around 48, older with gray hair or baldness.
    """
    young, gray, bald = (x[:, A[n]].astype(np.float64) for n in ("Young", "Gray_Hair", "Bald"))
    young_age = _truncated_normal(24.0 + 5.0 * gray, 6.0, 8.0, 40.0, rng)
    old_age = _truncated_normal(46.0 + 13.0 * gray + 5.0 * bald, 11.0, 30.0, 95.0, rng)
    return np.where(young > 0, young_age, old_age).astype(np.float32)


def age_bin_index(age: np.ndarray) -> np.ndarray:
    """Index of the FairFace age bin holding each age."""
    lows = np.array([low for _, low, _ in AGE_BINS[1:]])
    return np.searchsorted(lows, age, side="right")


def sample_expressions(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Expression index (RAF-DB order) given Smiling and Mouth_Slightly_Open."""
    table = np.array([[EXPRESSION_GIVEN[(s, o)] for o in (0, 1)] for s in (0, 1)])  # [2, 2, 7]
    probs = table[x[:, A["Smiling"]].astype(int), x[:, A["Mouth_Slightly_Open"]].astype(int)]
    cdf = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
    return np.minimum((rng.random(len(x))[:, None] >= cdf).sum(1), len(EXPRESSIONS) - 1)


@dataclass(frozen=True)
class CleanLabels:
    """The noise-free labels one SynthFace face is rendered from."""

    attributes: np.ndarray  # bool [N, 40]
    age: np.ndarray  # float32 [N]
    expression: np.ndarray  # int [N]


def assemble(attributes: np.ndarray, age: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """The float32 ``[N, 57]`` label matrix in ``SCHEMAS['synthface'].characteristics`` order."""
    n = len(attributes)
    out = np.zeros((n, NUM_LABELS), dtype=np.float32)
    out[:, : len(CELEBA_ATTRIBUTES)] = attributes
    out[np.arange(n), AGE_SLICE.start + age_bin_index(age)] = 1
    out[:, FEMALE] = ~attributes[:, A["Male"]]
    out[np.arange(n), EXPR_SLICE.start + expression] = 1
    return out


def _resample_other(index: np.ndarray, k: int, flip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace the flagged entries by a different class drawn uniformly."""
    return np.where(flip, (index + rng.integers(1, k, size=len(index))) % k, index)


def add_label_noise(clean: CleanLabels, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ``[N, 57]`` labels and ages: each binary attribute flips with probability ``rate``;
    each group (age bin, expression) moves to another class with probability ``rate``, gender flips with Male.

    A resampled age bin also gets a new age in years, uniform within the new bin (70+ capped at 90).
    """
    n, a = clean.attributes.shape
    attrs = clean.attributes ^ (rng.random((n, a)) < rate)
    clean_bin = age_bin_index(clean.age)
    age_flip = rng.random(n) < rate
    new_bin = _resample_other(clean_bin, len(AGE_BINS), age_flip, rng)
    lows = np.array([low for _, low, _ in AGE_BINS], dtype=np.float64)
    highs = np.array([min(high, 90) for _, _, high in AGE_BINS], dtype=np.float64)
    new_age = lows[new_bin] + rng.random(n) * (highs[new_bin] - lows[new_bin])
    age = np.where(age_flip, new_age, clean.age).astype(np.float32)
    expression = _resample_other(clean.expression, len(EXPRESSIONS), rng.random(n) < rate, rng)
    return assemble(attrs, age, expression), age


def sample_clean_labels(prior_sample: np.ndarray, rng: np.random.Generator) -> CleanLabels:
    """Fix prior samples and draw their age and expression."""
    attrs = apply_hard_fixes(prior_sample, rng)
    return CleanLabels(attrs, sample_ages(attrs, rng), sample_expressions(attrs, rng))
