"""Face descriptions written from a face's labels: captions for CLIP pretraining, question-answer pairs for the LM.

Offline there are no face captions, so they are written from the labels, the way the caption sets behind face CLIPs
were built from attributes:

* **Captions** follow FaceCaption-15M (Dai et al., 2024, "15M Multimodal Facial Image-Text Dataset", whose CLIP-style
  model is also called FLIP): 40 CelebA-style attributes per face turned into text by grammar templates, then made
  varied and natural (there by an LLM rewrite; here by synonyms, several sentence forms and a random order). The
  paper's own encoder is FLIP-80M's (Li et al., ACM MM 2024), whose 80 M captions are web alt-texts (LAION-5B) filtered
  for faces; the tag-list form below imitates that alt-text style.
* **Question-answer pairs** follow Face-MLLM (Sun et al., 2024, "Face-MLLM: A Large Face Perception Model"), which
  re-formulates face datasets as questions with their ground-truth answers: yes/no questions about attributes, "How old
  is this person?" answered with an age, lettered multiple choices for expression and race. The question wording is
  ``faceinsight.text.qa``'s, so the LM sees the questions that ``faceinsight qa export`` asks other MLLMs.

Only what is labelled is said: every phrase carries the *facts* it states (characteristic -> value) and is used only
when the face is labelled with exactly those values, so a masked label is never mentioned and nothing is stated
wrongly. Presence is stated often, absence only sometimes and in natural words ("without glasses", "not smiling",
"clean-shaven", "slim"). All randomness comes from the ``numpy`` generator passed in: a seed gives the same text.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from faceinsight.text.qa import ATTRIBUTE_QUESTIONS, CHOICE_QUESTIONS, GENDER_QUESTION, LETTERS, OPTION_TEXT
from faceinsight.vocab import AGE_BINS, GROUPS, VOCAB, age_bin_name

Slot = Literal["adj", "with", "wear", "state", "photo", "race"]
Facts = dict[str, bool]


@dataclass(frozen=True)
class Phrase:
    """Words that state more than their feature's own label ("clean-shaven": no goatee, no mustache either), or that
    go in another slot than the feature's ("a serious expression" for not smiling)."""

    text: str
    facts: tuple[tuple[str, bool], ...] = ()
    slot: Slot | None = None


@dataclass(frozen=True)
class Feature:
    """How one binary characteristic is put into words.

    ``slot`` is where its words go in a sentence; ``present`` are synonyms for the feature being there (the label
    equals ``present_when``: False for No_Beard, whose presence is a beard); ``opposite`` are natural words for its
    absence ("slim" for not chubby); ``thing`` is what a negation names, with its article if it takes one ("a hat":
    "without a hat", "not wearing a hat", "no hat"). A feature with neither is never stated absent.
    """

    slot: Slot
    present: tuple[str | Phrase, ...]
    opposite: tuple[str | Phrase, ...] = ()
    thing: str | None = None
    present_when: bool = True


_NO_FACIAL_HAIR = (("No_Beard", True), ("Goatee", False), ("Mustache", False), ("5_o_Clock_Shadow", False))

# CelebA's 40 attributes (Liu et al., ICCV 2015) and MAAD-Face's (Terhoerst et al., 2021). Male, the hair colours and
# textures are said by the subject noun and the hair phrase. Words are chosen so that faceinsight.text.answers' phrase
# tables read them back as the same characteristic and value (tests/test_pretrain.py checks it).
FEATURES: dict[str, Feature] = {
    "5_o_Clock_Shadow": Feature("with", ("stubble", "a five o'clock shadow", "light stubble"), thing="stubble"),
    "Arched_Eyebrows": Feature("with", ("arched eyebrows", "arched brows")),
    "Attractive": Feature("adj", ("attractive", "good-looking")),
    "Bags_Under_Eyes": Feature("with", ("bags under the eyes", "dark circles under the eyes")),
    "Bald": Feature("adj", ("bald", "bald-headed", Phrase("a shaved head", slot="with"))),
    "Bangs": Feature("with", ("bangs", "a fringe"), thing="bangs"),
    "Big_Lips": Feature("with", ("full lips", "big lips"), opposite=("thin lips",)),
    "Big_Nose": Feature("with", ("a big nose", "a large nose"), opposite=("a small nose",)),
    "Blurry": Feature("photo", ("blurry", "blurred"), opposite=("sharp",)),
    "Bushy_Eyebrows": Feature("with", ("bushy eyebrows", "thick eyebrows")),
    "Chubby": Feature("adj", ("chubby", "plump"), opposite=("slim", "slender")),
    "Double_Chin": Feature("with", ("a double chin",)),
    "Eyeglasses": Feature("wear", ("glasses", "eyeglasses", "spectacles"), thing="glasses"),
    "Goatee": Feature("with", ("a goatee",), thing="a goatee"),
    "Heavy_Makeup": Feature("wear", ("heavy makeup", "a lot of makeup", "dramatic makeup"), thing="makeup"),
    "High_Cheekbones": Feature("with", ("high cheekbones", "prominent cheekbones")),
    "Mouth_Slightly_Open": Feature(
        "with",
        (
            Phrase("a slightly open mouth", (("Mouth_Closed", False),)),
            Phrase("parted lips", (("Mouth_Closed", False),)),
        ),
        opposite=(Phrase("a closed mouth", (("Mouth_Closed", True),)),),
    ),
    "Mustache": Feature("with", ("a mustache", "a moustache"), thing="a mustache"),
    "Narrow_Eyes": Feature("with", ("narrow eyes",)),
    "No_Beard": Feature(
        "with",
        ("a beard", "a full beard"),
        opposite=(Phrase("clean-shaven", _NO_FACIAL_HAIR, slot="adj"),),
        thing="a beard",
        present_when=False,
    ),
    "Oval_Face": Feature("with", ("an oval face",)),
    "Pale_Skin": Feature("with", ("pale skin", "a pale complexion")),
    "Pointy_Nose": Feature("with", ("a pointy nose", "a pointed nose")),
    "Receding_Hairline": Feature("with", ("a receding hairline",)),
    "Rosy_Cheeks": Feature("with", ("rosy cheeks",)),
    "Sideburns": Feature("with", ("sideburns",), thing="sideburns"),
    "Smiling": Feature(
        "state",
        ("smiling", "grinning", Phrase("a smile", slot="with")),
        opposite=(Phrase("a serious expression", slot="with"),),
        thing="smiling",
    ),
    "Wearing_Earrings": Feature("wear", ("earrings",), thing="earrings"),
    "Wearing_Hat": Feature("wear", ("a hat", "a cap"), thing="a hat"),
    "Wearing_Lipstick": Feature("wear", ("lipstick",), thing="lipstick"),
    "Wearing_Necklace": Feature("wear", ("a necklace",), thing="a necklace"),
    "Wearing_Necktie": Feature("wear", ("a tie", "a necktie"), thing="a tie"),
    "Young": Feature("adj", ("young", "youthful"), opposite=("older",)),
    # MAAD-Face's attributes beyond CelebA's
    "Middle_Aged": Feature("adj", (Phrase("middle-aged", (("Young", False),)),)),
    "Senior": Feature("adj", (Phrase("elderly", (("Young", False),)), Phrase("senior", (("Young", False),)))),
    "Asian": Feature("race", ("asian",)),
    "White": Feature("race", ("white", "caucasian")),
    "Black": Feature("race", ("black",)),
    "Shiny_Skin": Feature("with", ("shiny skin", "oily skin")),
    "Square_Face": Feature("with", ("a square face", "a square jaw")),
    "Round_Face": Feature("with", ("a round face",)),
    "Obstructed_Forehead": Feature("with", ("a partly covered forehead",)),
    "Fully_Visible_Forehead": Feature("with", ("a fully visible forehead",)),
    "Brown_Eyes": Feature("with", ("brown eyes",)),
    "Mouth_Closed": Feature(
        "with",
        (Phrase("a closed mouth", (("Mouth_Slightly_Open", False),)),),
        opposite=(Phrase("a slightly open mouth", (("Mouth_Slightly_Open", True),)),),
    ),
    "No_Eyewear": Feature("wear", ("glasses", "eyeglasses"), thing="glasses", present_when=False),
}
# What stating one fact also states: the same thing under another dataset's name. MAAD-Face's No_Eyewear is CelebA's
# Eyeglasses negated; its White, Black and Asian are FairFace's races (Karkkainen and Joo, WACV 2021).
IMPLIES: dict[tuple[str, bool], tuple[tuple[str, bool], ...]] = {
    ("Eyeglasses", True): (("No_Eyewear", False),),
    ("Eyeglasses", False): (("No_Eyewear", True),),
    ("No_Eyewear", True): (("Eyeglasses", False),),
    ("No_Eyewear", False): (("Eyeglasses", True),),
    ("White", True): (("Race_White", True),),
    ("Race_White", True): (("White", True),),
    ("Black", True): (("Race_Black", True),),
    ("Race_Black", True): (("Black", True),),
    ("Race_East_Asian", True): (("Asian", True),),
    ("Race_Southeast_Asian", True): (("Asian", True),),
}
HAIR_COLOURS: dict[str, tuple[str, ...]] = {
    "Black_Hair": ("black",),
    "Blond_Hair": ("blond", "blonde", "golden"),
    "Brown_Hair": ("brown", "chestnut"),
    "Gray_Hair": ("gray", "grey", "silver"),
}
HAIR_TEXTURES: dict[str, tuple[str, ...]] = {"Wavy_Hair": ("wavy", "curly"), "Straight_Hair": ("straight", "sleek")}
EXPRESSION_WORDS: dict[str, tuple[str, ...]] = {
    "Expr_Surprise": ("surprised", "astonished"),
    "Expr_Fear": ("scared", "fearful", "frightened"),
    "Expr_Disgust": ("disgusted",),
    "Expr_Happiness": ("happy", "cheerful", "joyful"),
    "Expr_Sadness": ("sad", "unhappy"),
    "Expr_Anger": ("angry", "furious"),
    "Expr_Neutral": ("calm",),
}
RACE_WORDS: dict[str, tuple[str, ...]] = {
    "Race_White": ("white", "caucasian"),
    "Race_Black": ("black",),
    "Race_Latino_Hispanic": ("latino", "hispanic"),
    "Race_East_Asian": ("east asian",),
    "Race_Southeast_Asian": ("southeast asian",),
    "Race_Indian": ("indian",),  # not "south asian": read as MAAD-Face's Asian
    "Race_Middle_Eastern": ("middle eastern",),
}
# Subject nouns by (gender, age class); None: not said.
NOUNS: dict[tuple[str | None, str | None], tuple[str, ...]] = {
    ("Male", None): ("man", "guy", "gentleman"),
    ("Female", None): ("woman", "lady"),
    (None, None): ("person", "face", "individual"),
    ("Male", "baby"): ("baby boy",),
    ("Female", "baby"): ("baby girl",),
    (None, "baby"): ("baby", "infant"),
    ("Male", "child"): ("boy", "little boy"),
    ("Female", "child"): ("girl", "little girl"),
    (None, "child"): ("child", "kid"),
    ("Male", "teen"): ("teenage boy",),
    ("Female", "teen"): ("teenage girl",),
    (None, "teen"): ("teenager",),
}
PRONOUNS: dict[str | None, tuple[str, str, bool]] = {  # subject, possessive, takes a singular verb
    "Male": ("he", "his", True),
    "Female": ("she", "her", True),
    None: ("they", "their", False),
}
NON_GENDERED = (("this person", "their", True), ("the person", "their", True))
DECADES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties", "nineties")
PHOTO_WORDS = ("photo", "picture", "portrait", "close-up", "headshot")
FORMS = ("phrase", "sentences", "tags")


@dataclass
class CaptionStyle:
    """How much a caption says: each present feature is named with ``p_present``, each absent one with ``p_absent``
    (at most ``max_absent`` per caption); the gender with ``p_gender``, the age with ``p_age``. ``forms`` weighs the
    three forms: one noun phrase ("a smiling young woman with wavy brown hair"), sentences ("A photo of a woman. She
    has wavy brown hair. She is not wearing glasses."), and an alt-text tag list ("woman, wavy hair, no glasses")."""

    p_present: float = 0.8
    p_absent: float = 0.15
    max_absent: int = 2
    p_gender: float = 0.9
    p_age: float = 0.6
    forms: dict[str, float] = field(default_factory=lambda: {"phrase": 0.45, "sentences": 0.35, "tags": 0.2})


@dataclass(frozen=True)
class FaceLabels:
    """What is known about one face: its labelled characteristics (masked ones are left out) and its age in years.

    The gender group's two members are one fact: a face labelled for one (CelebA's Male) is known for both.
    ``known`` lists the model's characteristics: a phrase may imply something about a characteristic outside it
    ("a closed mouth" is MAAD-Face's Mouth_Closed), which is then no label to contradict or leave masked.
    """

    values: Mapping[str, bool]
    age: float | None = None
    known: frozenset[str] = frozenset()  # the model's characteristics (empty: any fact must be labelled)

    @classmethod
    def from_labels(
        cls, names: Sequence[str], labels: Tensor | np.ndarray, mask: Tensor | np.ndarray, age: float | None = None
    ) -> FaceLabels:
        """From label and mask rows over ``names`` (the data module's K characteristics) and an age (NaN: unknown)."""
        labels, mask = np.asarray(labels), np.asarray(mask).astype(bool)
        values = {n: bool(labels[i] > 0.5) for i, n in enumerate(names) if mask[i]}
        # Gender is a two-member one-hot group: CelebA's Male label alone also says whether the face is Female.
        for one, other in (("Male", "Female"), ("Female", "Male")):
            if one in values and other not in values and other in names:
                values[other] = not values[one]
        years = None if age is None or math.isnan(float(age)) else float(age)
        return cls(values, years, frozenset(names))

    def holds(self, facts: Mapping[str, bool] | Sequence[tuple[str, bool]]) -> bool:
        """Whether every fact is labelled with that value; a fact about a characteristic outside the model's list
        (``known``) is no label and does not count."""
        items = facts.items() if isinstance(facts, Mapping) else facts
        return all(
            self.values[n] == v if n in self.values else bool(self.known) and n not in self.known for n, v in items
        )

    def member(self, group: str) -> str | None:
        """The group's member when the face is labelled for the whole group with exactly one positive."""
        members = GROUPS[group]
        if not all(m in self.values for m in members):
            return None
        positive = [m for m in members if self.values[m]]
        return positive[0] if len(positive) == 1 else None

    def gender(self) -> tuple[str | None, Facts]:
        """``Male``, ``Female`` or None, with the labels that say it (CelebA's Male attribute, the gender group)."""
        facts = {n: self.values[n] for n in ("Male", "Female") if n in self.values}
        male, female = facts.get("Male"), facts.get("Female")
        if male is True and female is not True:
            return "Male", facts
        if (male is False and female is not False) or (female is True and male is None):
            return "Female", facts
        return None, {}

    def age_span(self) -> tuple[str | None, int, int] | None:
        """The age as (labelled bin or None, low, high) years, [low, high); from the age group, else from the age in
        years (its decade); None when neither is known."""
        member = self.member("age")
        for label, low, high in AGE_BINS:
            if age_bin_name(label) == member:
                return member, low, high
        spans = [(low, high) for _, low, high in AGE_BINS if self.age is not None and low <= self.age < high]
        return (None, *spans[0]) if spans else None


@dataclass(frozen=True)
class Caption:
    """A caption and the facts it states (characteristic -> value), and the age in years when it says a number."""

    text: str
    facts: Facts
    age: float | None = None


@dataclass
class _Words:
    """The words chosen for one caption, by slot, before a form puts them in order."""

    gender: str | None = None
    age_class: str | None = None  # baby, child, teen: said by the noun
    age: tuple[int, int] | None = None  # [low, high) years said
    years: float | None = None  # a number of years said
    race: str | None = None
    adjs: list[str] = field(default_factory=list)
    withs: list[str] = field(default_factory=list)
    wears: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    absent: list[tuple[Slot, str]] = field(default_factory=list)  # (slot, thing): "no bangs", "not wearing a hat"
    photo: str | None = None
    facts: Facts = field(default_factory=dict)
    # How each binary feature was said: (feature, its words or None for a negation, whether said present).
    said: dict[str, tuple[Feature, str | Phrase | None, bool]] = field(default_factory=dict)
    expression: tuple[str, str] | None = None  # (member, the words placed), for counterfactuals

    def place(self, slot: Slot, text: str) -> None:
        if slot == "race":
            self.race = text
        elif slot == "photo":
            self.photo = text
        else:
            self.slot_list(slot).append(text)

    def unplace(self, slot: Slot, text: str) -> None:
        if slot == "race":
            self.race = None
        elif slot == "photo":
            self.photo = None
        else:
            self.slot_list(slot).remove(text)

    def slot_list(self, slot: Slot) -> list[str]:
        return {"adj": self.adjs, "with": self.withs, "wear": self.wears, "state": self.states}[slot]

    def copy(self) -> _Words:
        lists = {k: list(getattr(self, k)) for k in ("adjs", "withs", "wears", "states", "absent")}
        return replace(self, **lists, facts=dict(self.facts), said=dict(self.said))


def _pick(rng: np.random.Generator, options: Sequence[str | Phrase]) -> str | Phrase:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _bare(thing: str) -> str:
    return thing.removeprefix("a ").removeprefix("an ")


def _closure(facts: Mapping[str, bool]) -> Facts:
    """``facts`` and what they imply (``IMPLIES``)."""
    out = dict(facts)
    for item in facts.items():
        out.update(IMPLIES.get(item, ()))
    return out


def _state(face: FaceLabels, w: _Words, facts: Mapping[str, bool]) -> bool:
    """Record ``facts`` (and their implications) as said when the face's labels hold them all; else say nothing."""
    full = _closure(facts)
    if not face.holds(full):
        return False
    w.facts.update(full)
    return True


def _facts(name: str, value: bool, choice: str | Phrase | None) -> Facts:
    return {name: value, **dict(choice.facts if isinstance(choice, Phrase) else ())}


def _choose(face: FaceLabels, rng: np.random.Generator, style: CaptionStyle) -> _Words:
    """Which labelled facts this caption states, and in which words."""
    w = _Words()
    gender, gender_facts = face.gender()
    if gender is not None and rng.random() < style.p_gender and _state(face, w, gender_facts):
        w.gender = gender
    _choose_age(face, rng, style, w)
    _choose_hair(face, rng, style, w)
    absent: list[tuple[str, Feature, str | Phrase | None]] = []
    for name in rng.permutation(sorted(face.values)).tolist():
        feature = FEATURES.get(name) or (Feature("with", (VOCAB[name].prompt,)) if VOCAB[name].group is None else None)
        if feature is None or name in ("Male", *HAIR_COLOURS, *HAIR_TEXTURES) or name in w.facts:
            continue  # said elsewhere, or already implied (No_Eyewear by Eyeglasses)
        value = face.values[name]
        if value == feature.present_when:
            choice = _pick(rng, feature.present)
            if rng.random() < style.p_present and _state(face, w, _facts(name, value, choice)):
                _place(w, feature, choice)
                w.said[name] = (feature, choice, True)
        else:
            options = (*feature.opposite, *([None] if feature.thing else []))
            ways = [o for o in options if face.holds(_closure(_facts(name, value, o)))]
            if ways and rng.random() < style.p_absent:
                absent.append((name, feature, ways[int(rng.integers(len(ways)))]))
    for name, feature, way in absent[: style.max_absent]:
        if name in w.facts or not _state(face, w, _facts(name, face.values[name], way)):
            continue
        if way is None:
            w.absent.append((feature.slot, feature.thing or ""))
        else:
            _place(w, feature, way)
        w.said[name] = (feature, way, False)
    _choose_groups(face, rng, style, w)
    return w


def _place(w: _Words, feature: Feature, choice: str | Phrase) -> None:
    if isinstance(choice, Phrase):
        w.place(choice.slot or feature.slot, choice.text)
    else:
        w.place(feature.slot, choice)


def _unplace(w: _Words, feature: Feature, choice: str | Phrase | None) -> None:
    if choice is None:
        w.absent.remove((feature.slot, feature.thing or ""))
    elif isinstance(choice, Phrase):
        w.unplace(choice.slot or feature.slot, choice.text)
    else:
        w.unplace(feature.slot, choice)


def _flip(w: _Words, rng: np.random.Generator) -> _Words | None:
    """A copy of ``w`` that contradicts one fact it states: a present feature said absent or the reverse ("with
    glasses" -> "without glasses"), the other gender, or another expression. None when nothing said can flip."""
    flippable = [n for n, (f, _, present) in w.said.items() if not present or f.opposite or f.thing]
    options = flippable + (["gender"] if w.gender else []) + (["expression"] if w.expression else [])
    if not options:
        return None
    what = options[int(rng.integers(len(options)))]
    new = w.copy()
    if what == "gender":
        new.gender = "Female" if w.gender == "Male" else "Male"
    elif what == "expression":
        member, text = w.expression  # type: ignore[misc]
        others = [m for m in EXPRESSION_WORDS if m != member]
        word = EXPRESSION_WORDS[others[int(rng.integers(len(others)))]][0]
        slot = new.adjs if text in new.adjs else new.withs
        slot[slot.index(text)] = word if slot is new.adjs else f"{_article(word)} {word} expression"
    else:
        feature, choice, present = w.said[what]
        _unplace(new, feature, choice)
        if present:
            ways: list[str | Phrase | None] = [*feature.opposite, *([None] if feature.thing else [])]
        else:
            ways = list(feature.present)
        way = ways[int(rng.integers(len(ways)))]
        if way is None:
            new.absent.append((feature.slot, feature.thing or ""))
        else:
            _place(new, feature, way)
    return new


def _choose_age(face: FaceLabels, rng: np.random.Generator, style: CaptionStyle, w: _Words) -> None:
    """The age, said with ``p_age`` when known: a child's noun, and/or words ("in her thirties", "about 34")."""
    span = face.age_span()
    if span is None or rng.random() >= style.p_age:
        return
    member, low, high = span
    if member is not None and not _state(face, w, {member: True}):
        return
    w.age = (low, high)
    if face.age is not None and (member is None or rng.random() < 0.7):
        w.years = face.age
    if high <= 3:
        w.age_class = "baby"
    elif high <= 10:
        w.age_class = "child"
    elif high <= 20 and (face.age is None or face.age >= 13):
        w.age_class = "teen"


def _choose_hair(face: FaceLabels, rng: np.random.Generator, style: CaptionStyle, w: _Words) -> None:
    """One hair phrase from the labelled colours and texture: "wavy brown hair"."""
    colours = [n for n in HAIR_COLOURS if face.values.get(n) and rng.random() < style.p_present]
    textures = [n for n in HAIR_TEXTURES if face.values.get(n) and rng.random() < style.p_present][:1]
    if not colours and not textures:
        return
    words = [str(_pick(rng, HAIR_TEXTURES[n])) for n in textures]
    if colours:
        words.append(str(_pick(rng, HAIR_COLOURS[colours[0]])))
    w.withs.append(" ".join(words) + " hair")
    # A second colour (a noisy label) gets its own phrase: in "black and gray hair" a lone "black" reads as a race.
    w.withs += [f"{_pick(rng, HAIR_COLOURS[n])} hair" for n in colours[1:]]
    _state(face, w, dict.fromkeys(colours + textures, True))


def _choose_groups(face: FaceLabels, rng: np.random.Generator, style: CaptionStyle, w: _Words) -> None:
    """Expression and race, when their group is labelled."""
    expression = face.member("expression")
    if expression is not None and rng.random() < style.p_present:
        word = str(_pick(rng, EXPRESSION_WORDS[expression]))
        if (
            expression == "Expr_Neutral"
            and rng.random() < 0.5
            and _state(face, w, {expression: True, "Smiling": False})
        ):
            w.withs.append("a neutral expression")  # read as "not smiling" too: only when that is labelled
        elif _state(face, w, {expression: True}):
            w.expression = (expression, word if rng.random() < 0.5 else f"{_article(word)} {word} expression")
            (w.adjs if w.expression[1] == word else w.withs).append(w.expression[1])
    race = face.member("race")
    if race is not None and w.race is None and rng.random() < style.p_present and _state(face, w, {race: True}):
        word = str(_pick(rng, RACE_WORDS[race]))
        w.race = "latina" if word == "latino" and w.gender == "Female" else word


def _age_words(w: _Words, rng: np.random.Generator, possessive: str, singular: bool) -> tuple[str, str, str]:
    """The age said three ways: after the noun ("in her thirties"), as a predicate ("looks about 34 years old") and as
    a tag ("thirties"). A child's or teenager's noun says it alone unless a number of years is said."""
    if w.age is None:
        return "", "", ""
    low, high = w.age
    s = "s" if singular else ""
    be = "is" if singular else "are"
    if w.years is not None:
        n = round(w.years)
        options = [
            (f"about {n} years old", f"look{s} about {n} years old", f"{n} years old"),
            (f"aged about {n}", f"appear{s} to be around {n}", f"around {n} years old"),
        ]
        if n >= 20:
            decade = DECADES[min(n // 10 - 1, len(DECADES) - 1)]
            options.append((f"in {possessive} {decade}", f"{be} in {possessive} {decade}", decade))
        return options[int(rng.integers(len(options)))]
    if w.age_class is not None:
        return "", "", ""
    if high >= 200:
        return f"over {low}", f"{be} over {low} years old", f"over {low}"
    decade = DECADES[low // 10 - 1]
    between = f"between {low} and {high - 1} years old"
    if rng.random() < 0.5:
        return f"in {possessive} {decade}", f"{be} in {possessive} {decade}", decade
    return f"aged {low} to {high - 1}", f"{be} {between}", between


def caption(face: FaceLabels, rng: np.random.Generator, style: CaptionStyle | None = None) -> Caption:
    """A caption of ``face`` in one of three forms, stating only labelled facts (see the module docstring)."""
    style = style or CaptionStyle()
    w = _choose(face, rng, style)
    return Caption(_render(w, rng, style), dict(w.facts), w.years)


def caption_pair(
    face: FaceLabels, rng: np.random.Generator, style: CaptionStyle | None = None
) -> tuple[Caption, str | None]:
    """A caption of ``face`` and its counterfactual twin: the same words, but one stated fact contradicted ("with
    glasses" -> "without glasses", "woman" -> "man", "happy" -> "sad"), or None when nothing said can be. The twin is
    a hard negative for contrastive training (NegCLIP, Yuksekgonul et al., ICLR 2023): it cannot be told from the
    true caption without reading that one fact, negation included."""
    style = style or CaptionStyle()
    w = _choose(face, rng, style)
    flipped = _flip(w, rng)
    twin = copy.deepcopy(rng)  # the twin is rendered with the same draws: same forms, words and order
    text = _render(w, rng, style)
    return Caption(text, dict(w.facts), w.years), None if flipped is None else _render(flipped, twin, style)


class FirstChoice(np.random.Generator):
    """A generator that never draws: every probability test passes (``random()`` is 0), every pick is the first
    option, every shuffle keeps the order. ``caption`` driven by it says each fact its style allows in its first
    words, in a fixed order (:func:`full_description`). Methods not overridden draw from a fixed seed."""

    def __init__(self) -> None:
        super().__init__(np.random.PCG64(0))

    def random(self, *args: object, **kwargs: object) -> float:
        return 0.0

    def integers(self, *args: object, **kwargs: object) -> int:
        return 0

    def permutation(self, x: int | Sequence[str], *args: object, **kwargs: object) -> np.ndarray:
        return np.arange(x) if isinstance(x, int | np.integer) else np.asarray(x)

    def choice(self, a: int, *args: object, p: np.ndarray | None = None, **kwargs: object) -> int:
        return int(np.argmax(p)) if p is not None else 0


def all_facts_style() -> CaptionStyle:
    """Every fact said: each present and each absent feature that has words, the gender and the age; as sentences."""
    return CaptionStyle(p_present=1.0, p_absent=1.0, max_absent=len(VOCAB), p_gender=1.0, p_age=1.0,
                        forms={"sentences": 1.0})  # fmt: skip


def full_description(face: FaceLabels, style: CaptionStyle | None = None) -> Caption:
    """``face`` in words, deterministically: ``caption`` with :class:`FirstChoice` and :func:`all_facts_style` (or
    ``style``). The same facts give the same text, and it states only facts of ``face``, so the description of a
    model's decoded answers never contradicts them."""
    return caption(face, FirstChoice(), style or all_facts_style())


def _render(w: _Words, rng: np.random.Generator, style: CaptionStyle) -> str:
    """The chosen words in one of the forms, by ``style.forms``."""
    noun = str(_pick(rng, NOUNS[(w.gender, w.age_class)]))
    subject, possessive, singular = PRONOUNS[w.gender]
    if w.gender is None and rng.random() < 0.5:
        subject, possessive, singular = NON_GENDERED[int(rng.integers(len(NON_GENDERED)))]
    age = _age_words(w, rng, possessive, singular)
    weights = np.array([style.forms.get(f, 0.0) for f in FORMS])
    form = FORMS[int(rng.choice(len(FORMS), p=weights / weights.sum()))]
    if form == "tags":
        return _tags(w, noun, age[2], rng)
    if form == "sentences":
        return _sentences(w, noun, age[1], rng, subject, singular)
    return _phrase(w, noun, age[0], rng)


def _subject(w: _Words, noun: str, rng: np.random.Generator, with_states: bool) -> str:
    """ "a smiling young east asian woman": adjectives in random order, the race next to the noun."""
    words = [*w.adjs, *(w.states if with_states else [])]
    words = [words[i] for i in rng.permutation(len(words))]
    head = " ".join([*words, *([w.race] if w.race else []), noun])
    return f"{_article(head)} {head}"


def _photo(w: _Words, rng: np.random.Generator, always: bool = False) -> str:
    """ "a blurry photo of ", "a portrait of ", or nothing."""
    kind = str(_pick(rng, PHOTO_WORDS))
    if w.photo:
        return f"{_article(w.photo)} {w.photo} {kind} of "
    return f"{_article(kind)} {kind} of " if always or rng.random() < 0.5 else ""


def _shuffled(items: Sequence[str], rng: np.random.Generator) -> list[str]:
    return [items[i] for i in rng.permutation(len(items))]


def _phrase(w: _Words, noun: str, age: str, rng: np.random.Generator) -> str:
    """One noun phrase: "a smiling young woman in her thirties with wavy brown hair and heavy makeup, without
    glasses"."""
    text = _photo(w, rng) + _subject(w, noun, rng, with_states=True)
    if age:
        text += f", {age}," if age.startswith("about") else f" {age}"
    withs, wears = _shuffled(w.withs, rng), _shuffled(w.wears, rng)
    if wears and (not withs or rng.random() < 0.5):  # accessories join the with-list or get their own clause
        text += f" with {_join(withs)} and" if withs else ""
        text += f" wearing {_join(wears)}"
    elif withs or wears:
        text += f" with {_join(withs + wears)}"
    text = text.rstrip(",")
    for slot, thing in w.absent:
        if slot == "state":
            text += f", not {thing}"
        else:
            text += f", without {thing}" if rng.random() < 0.6 else f", with no {_bare(thing)}"
    return text


def _sentences(w: _Words, noun: str, age: str, rng: np.random.Generator, subject: str, singular: bool) -> str:
    """ "A photo of a young woman. She has wavy brown hair. She is wearing earrings. She is not smiling." """
    be, have = ("is", "has") if singular else ("are", "have")
    lead = _photo(w, rng, always=True) + _subject(w, noun, rng, with_states=False)
    sentences = [f"{subject} {age}"] if age else []
    if w.withs:
        sentences.append(f"{subject} {have} {_join(_shuffled(w.withs, rng))}")
    if w.wears:
        sentences.append(f"{subject} {be} wearing {_join(_shuffled(w.wears, rng))}")
    if w.states:
        sentences.append(f"{subject} {be} {_join(_shuffled(w.states, rng))}")
    for slot, thing in w.absent:
        if slot == "state":
            sentences.append(f"{subject} {be} not {thing}")
        elif slot == "wear":
            sentences.append(f"{subject} {be} not wearing {thing}")
        else:
            sentences.append(f"{subject} {have} no {_bare(thing)}")
    sentences = _shuffled(sentences, rng)
    return " ".join(s[0].upper() + s[1:] + "." for s in [lead, *sentences])


def _tags(w: _Words, noun: str, age: str, rng: np.random.Generator) -> str:
    """Alt-text style: "young woman, wavy brown hair, earrings, smiling, no glasses, thirties"."""
    adjs = _shuffled(w.adjs, rng)
    head = " ".join([*adjs[:1], *([w.race] if w.race else []), noun])
    tags = [*adjs[1:], *w.withs, *w.wears, *w.states]
    tags += [f"not {thing}" if slot == "state" else f"no {_bare(thing)}" for slot, thing in w.absent]
    tags += [age] if age else []
    tags += [f"{w.photo} photo"] if w.photo else []
    tags = _shuffled(tags, rng)
    return ", ".join([head, *tags] if rng.random() < 0.7 else [*tags, head])


# ----------------------------------------------------------------------------- question-answer pairs (Face-MLLM)


@dataclass(frozen=True)
class QA:
    """One question about a face, its ground-truth answer and the facts the answer states."""

    question: str
    answer: str
    facts: Facts


def questions(face: FaceLabels) -> list[QA]:
    """Every question the face's labels answer: yes/no per binary attribute, age, gender, expression and race."""
    out: list[QA] = []
    for name, value in face.values.items():
        if VOCAB[name].group is not None:
            continue
        entry = ATTRIBUTE_QUESTIONS.get(name, f"Does this person have {VOCAB[name].prompt}?")
        text, inverted = (entry, False) if isinstance(entry, str) else entry
        out.append(QA(text, "Yes." if value != inverted else "No.", {name: value}))
    gender, facts = face.gender()
    if gender is not None:
        out.append(QA(GENDER_QUESTION, f"{gender}.", facts))
    span = face.age_span()
    if span is not None:
        member, low, high = span
        if face.age is not None:
            answer = f"About {round(face.age)}."
        else:
            answer = f"Over {low}." if high >= 200 else f"Between {low} and {high - 1}."
        out.append(QA("How old is this person?", answer, {member: True} if member is not None else {}))
    for group in ("expression", "race"):
        member = face.member(group)
        if member is not None:
            options = OPTION_TEXT[group]
            listed = " ".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
            i = GROUPS[group].index(member)
            out.append(QA(f"{CHOICE_QUESTIONS[group]} {listed}", f"{LETTERS[i]}. {options[i]}.", {member: True}))
    return out


def states(qa: QA, facts: Mapping[str, bool]) -> bool:
    """Whether a caption stating ``facts`` (with what they imply, as ``Caption.facts`` records them) says the answer to
    ``qa``: every fact the answer states is among them, with the same value. An age answered in years only (no age-bin
    fact) is never stated."""
    return bool(qa.facts) and all(facts.get(n) == v for n, v in qa.facts.items())


def qa_pairs(
    face: FaceLabels,
    rng: np.random.Generator,
    n: int,
    stated: Mapping[str, bool] | None = None,
    stated_share: float | None = None,
) -> list[QA]:
    """``n`` of the face's questions (all when it has fewer), drawn at random without repeats.

    With ``stated_share``, each question is drawn from those whose answer ``stated`` (a caption's facts) says with
    that probability, from the others otherwise (from whichever are left when one kind runs out): how often the LM is
    asked to read its context rather than guess. None draws uniformly, as many of either as the face has."""
    pool = questions(face)
    if stated_share is None:
        return [pool[i] for i in rng.permutation(len(pool))[:n]]
    pools: dict[bool, list[QA]] = {True: [], False: []}
    for i in rng.permutation(len(pool)):
        pools[states(pool[i], stated or {})].append(pool[i])
    out: list[QA] = []
    for _ in range(min(n, len(pool))):
        kind = bool(rng.random() < stated_share)
        out.append(pools[kind if pools[kind] else not kind].pop())
    return out


@dataclass(frozen=True)
class Asked:
    """One question of a document: the characteristics its answer is about (the QA's facts), the answer, and whether
    the caption before it states that answer."""

    characteristics: tuple[str, ...]
    answer: str
    stated: bool

    @property
    def yes_no(self) -> bool:
        return self.answer in ("Yes.", "No.")


@dataclass(frozen=True)
class Document:
    """A language-modelling document: its text, the caption it opens with and a record of each question asked."""

    text: str
    caption: Caption
    asked: tuple[Asked, ...]


def write_document(
    face: FaceLabels,
    rng: np.random.Generator,
    n_questions: int = 4,
    style: CaptionStyle | None = None,
    stated_share: float | None = None,
) -> Document:
    """A caption, then ``n_questions`` question-answer pairs (``stated_share``: see :func:`qa_pairs`), with what each
    question asks and whether the caption states its answer: the record a reading test needs without parsing text."""
    said = caption(face, rng, style)
    text, asked = said.text, []
    for qa in qa_pairs(face, rng, n_questions, said.facts, stated_share):
        text += f" Question: {qa.question} Answer: {qa.answer}"
        asked.append(Asked(tuple(qa.facts), qa.answer, states(qa, said.facts)))
    return Document(text, said, tuple(asked))


def document(
    face: FaceLabels, rng: np.random.Generator, n_questions: int = 4, style: CaptionStyle | None = None
) -> str:
    """A face-description text for language modelling: a caption, then ``n_questions`` question-answer pairs."""
    return write_document(face, rng, n_questions, style).text


def faces_of(names: Sequence[str], labels: Tensor, mask: Tensor, ages: Tensor | None = None) -> list[FaceLabels]:
    """One :class:`FaceLabels` per row of ``labels``/``mask`` ``[N, K]`` over ``names`` (and ``ages`` ``[N]``)."""
    labels_np = labels.detach().cpu().float().numpy()
    mask_np = mask.detach().cpu().bool().numpy()
    ages_np = ages.detach().cpu().float().numpy() if ages is not None else np.full(len(labels_np), np.nan)
    return [FaceLabels.from_labels(names, labels_np[i], mask_np[i], float(ages_np[i])) for i in range(len(labels_np))]


def batch_captions(
    names: Sequence[str], batch: Mapping[str, Any], rng: np.random.Generator, style: CaptionStyle | None = None
) -> list[str]:
    """One caption per face of a data-module batch, written from its labels, mask and age."""
    faces = faces_of(names, batch["labels"], batch["label_mask"], batch["age"])
    return [caption(face, rng, style).text for face in faces]


def stated_labels(names: Sequence[str], facts: Mapping[str, bool]) -> tuple[Tensor, Tensor]:
    """Facts as a label row and mask over ``names`` (for comparing what a caption says with the labels)."""
    labels, mask = torch.zeros(len(names)), torch.zeros(len(names), dtype=torch.bool)
    for i, n in enumerate(names):
        if n in facts:
            labels[i], mask[i] = float(facts[n]), True
    return labels, mask
