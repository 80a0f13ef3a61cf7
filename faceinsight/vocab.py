"""The characteristic vocabulary: every face characteristic the model can score.

A *characteristic* is one binary question the LLM answers with Yes/No (eq. 1-2).
Binary attributes (CelebA's ``Wavy_Hair``) stand alone; categorical tasks (age
bin, gender, race, expression) are *groups* of one-hot characteristics.
A dataset's :class:`Schema` says which characteristics it labels, so datasets
with different label sets train together behind a label mask.

Label sets follow the datasets' own definitions: CelebA's 40 attributes (Liu et
al., ICCV 2015), MAAD-Face's 47 (Terhoerst et al., 2021), FairFace's age bins and
7 races (Karkkainen and Joo, WACV 2021), and the 7 basic expressions in RAF-DB's
label order (Li et al., CVPR 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Characteristic:
    """One characteristic: its identifier, the prompt text the text encoder sees, and its group."""

    name: str
    prompt: str
    group: str | None = None  # None for a stand-alone binary attribute


def _attr(name: str, prompt: str | None = None) -> Characteristic:
    return Characteristic(name, prompt or name.replace("_", " ").lower())


# CelebA's 40 attributes, in the column order of list_attr_celeba.txt.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# MAAD-Face's 47 attributes, in the column order of its annotation CSV.
MAAD_ATTRIBUTES: tuple[str, ...] = (
    "Male", "Young", "Middle_Aged", "Senior", "Asian", "White", "Black", "Rosy_Cheeks",
    "Shiny_Skin", "Bald", "Wavy_Hair", "Receding_Hairline", "Bangs", "Sideburns", "Black_Hair",
    "Blond_Hair", "Brown_Hair", "Gray_Hair", "No_Beard", "Mustache", "5_o_Clock_Shadow",
    "Goatee", "Oval_Face", "Square_Face", "Round_Face", "Double_Chin", "High_Cheekbones",
    "Chubby", "Obstructed_Forehead", "Fully_Visible_Forehead", "Brown_Eyes", "Bags_Under_Eyes",
    "Bushy_Eyebrows", "Arched_Eyebrows", "Mouth_Closed", "Smiling", "Big_Lips", "Big_Nose",
    "Pointy_Nose", "Heavy_Makeup", "Wearing_Hat", "Wearing_Earrings", "Wearing_Necktie",
    "Wearing_Lipstick", "No_Eyewear", "Eyeglasses", "Attractive",
)  # fmt: skip

_PROMPTS = {
    "5_o_Clock_Shadow": "five o'clock shadow stubble",
    "Male": "male",
    "Young": "young",
    "No_Beard": "no beard",
    "Asian": "asian person",
    "White": "white person",
    "Black": "black person",
    "No_Eyewear": "no eyewear",
}

# FairFace's age bins (its ``age`` column values) and their [low, high) years.
AGE_BINS: tuple[tuple[str, int, int], ...] = (
    ("0-2", 0, 3), ("3-9", 3, 10), ("10-19", 10, 20), ("20-29", 20, 30), ("30-39", 30, 40),
    ("40-49", 40, 50), ("50-59", 50, 60), ("60-69", 60, 70), ("more than 70", 70, 200),
)  # fmt: skip

# FairFace's 7 race categories (its ``race`` column values).
RACES: tuple[str, ...] = (
    "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern",
)  # fmt: skip

# The 7 basic expressions, in RAF-DB's label order 1..7.
EXPRESSIONS: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")


def age_bin_name(label: str) -> str:
    """Characteristic name of a FairFace age bin, e.g. ``'20-29' -> 'Age_20-29'``."""
    return "Age_70+" if label == "more than 70" else f"Age_{label}"


def race_name(label: str) -> str:
    """Characteristic name of a FairFace race, e.g. ``'East Asian' -> 'Race_East_Asian'``."""
    return "Race_" + label.replace(" ", "_")


def expression_name(label: str) -> str:
    return "Expr_" + label


def age_to_bin(years: float) -> str:
    """Name of the age-bin characteristic that holds ``years``."""
    for label, low, high in AGE_BINS:
        if low <= years < high:
            return age_bin_name(label)
    raise ValueError(f"age {years!r} is outside every age bin")


def _build() -> tuple[dict[str, Characteristic], dict[str, tuple[str, ...]]]:
    chars: dict[str, Characteristic] = {}
    for name in dict.fromkeys(CELEBA_ATTRIBUTES + MAAD_ATTRIBUTES):
        chars[name] = _attr(name, _PROMPTS.get(name))
    groups: dict[str, tuple[str, ...]] = {}

    def add_group(group: str, members: list[tuple[str, str]]) -> None:
        names = []
        for name, prompt in members:
            if name in chars:  # shared with a binary attribute (CelebA's Male)
                chars[name] = Characteristic(name, chars[name].prompt, group)
            else:
                chars[name] = Characteristic(name, prompt, group)
            names.append(name)
        groups[group] = tuple(names)

    add_group("age", [(age_bin_name(b), f"{lo} to {hi - 1} years old" if hi < 200 else "over 70 years old")
                      for b, lo, hi in AGE_BINS])  # fmt: skip
    add_group("gender", [("Male", "male"), ("Female", "female")])
    add_group("race", [(race_name(r), r.replace("_", " ").lower() + " person") for r in RACES])
    add_group("expression", [(expression_name(e), {"Happiness": "happy", "Sadness": "sad", "Anger": "angry",
                                                   "Surprise": "surprised", "Fear": "fearful",
                                                   "Disgust": "disgusted", "Neutral": "neutral expression"}[e])
                             for e in EXPRESSIONS])  # fmt: skip
    return chars, groups


VOCAB, GROUPS = _build()


@dataclass(frozen=True)
class Schema:
    """What one dataset labels: binary attributes plus fully labelled one-hot groups."""

    name: str
    attributes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [a for a in self.attributes if a not in VOCAB] + [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"schema {self.name!r} names unknown characteristics or groups: {unknown}")

    @cached_property
    def characteristics(self) -> tuple[str, ...]:
        """Every characteristic this dataset labels, attributes first, without repeats."""
        names = list(self.attributes)
        for g in self.groups:
            names += GROUPS[g]
        return tuple(dict.fromkeys(names))


SCHEMAS: dict[str, Schema] = {
    s.name: s
    for s in (
        Schema("celeba", CELEBA_ATTRIBUTES),
        Schema("celebamaskhq", CELEBA_ATTRIBUTES),
        Schema("maad", MAAD_ATTRIBUTES),
        Schema("fairface", groups=("age", "gender", "race")),
        # UTKFace's 5 races map onto FairFace's 7 with partial label masks (data/utkface.py).
        Schema("utkface", groups=("age", "gender", "race")),
        Schema("rafdb", groups=("expression",)),
        Schema("expw", groups=("expression",)),
        Schema("synthface", CELEBA_ATTRIBUTES, groups=("age", "gender", "expression")),
    )
}


def union(schemas: list[Schema]) -> list[str]:
    """The model's characteristic list for a set of datasets: their union, in first-seen order."""
    return list(dict.fromkeys(n for s in schemas for n in s.characteristics))


def prompts(names: list[str]) -> list[str]:
    return [VOCAB[n].prompt for n in names]
