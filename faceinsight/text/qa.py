"""Questions about faces, in a question-answer form any MLLM can be prompted with (the training-free protocol).

FaceInsight's paper scores other MLLMs without training them: each is prompted about a face and its free-text answer
is scored. Face-MLLM (Sun et al., 2024) re-formulates face datasets the same way, one question and its ground-truth
answer per (face, task). ``faceinsight qa export`` writes any dataset split in that form, one JSON line per (face,
question); ``faceinsight eval-text`` (``faceinsight.eval.text``) rebuilds the same questions and scores the answers.

Tasks, and how each is asked (``docs/eval_text.md``):

* ``attribute``: the paper's query "Analyze the facial features in this image." followed by one yes/no question per
  binary attribute the face is labelled for (``--attributes yesno``, the default), or by one open request to describe
  the face, whose answer is parsed for every attribute at once (``--attributes describe``).
* ``age``: "How old is this person?", answered with a number of years.
* ``gender``: "Is this person male or female?".
* ``race``, ``expression``: lettered choices "A. ... B. ...", in FairFace's and RAF-DB's label order.

A question's ``id`` is ``<sample key>::<what it asks>`` (an attribute name, a group name, or ``attributes`` for the
describe request): it ties the answer to the face whatever order an MLLM's outputs come back in.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import yaml

from faceinsight.data.base import FaceDataset, FaceSubset
from faceinsight.vocab import GROUPS, RACES, VOCAB, Schema

if TYPE_CHECKING:
    from faceinsight.data.module import DatasetSpec

QUERY = "Analyze the facial features in this image."  # the paper's query (FaceInsightModule's default `query`)
TASKS = ("attribute", "age", "gender", "race", "expression")
AttributeMode = Literal["yesno", "describe"]
SEPARATOR = "::"  # between a sample key and what the question asks, in question ids
DESCRIBE = "attributes"  # what the describe request asks, in its id

# One yes/no question per binary attribute (CelebA's 40, Liu et al. 2015; MAAD-Face's extra ones, Terhoerst et al.
# 2021). A (question, True) pair asks for the attribute's opposite: "yes" to "Does this person have a beard?" means
# No_Beard is false. Asking for the presence of a thing avoids double negatives in the question.
ATTRIBUTE_QUESTIONS: dict[str, str | tuple[str, bool]] = {
    "5_o_Clock_Shadow": "Does this person have a five o'clock shadow (light stubble)?",
    "Arched_Eyebrows": "Does this person have arched eyebrows?",
    "Attractive": "Is this person attractive?",
    "Bags_Under_Eyes": "Does this person have bags under the eyes?",
    "Bald": "Is this person bald?",
    "Bangs": "Does this person have bangs?",
    "Big_Lips": "Does this person have big lips?",
    "Big_Nose": "Does this person have a big nose?",
    "Black_Hair": "Does this person have black hair?",
    "Blond_Hair": "Does this person have blond hair?",
    "Blurry": "Is this image blurry?",
    "Brown_Hair": "Does this person have brown hair?",
    "Bushy_Eyebrows": "Does this person have bushy eyebrows?",
    "Chubby": "Is this person chubby?",
    "Double_Chin": "Does this person have a double chin?",
    "Eyeglasses": "Is this person wearing eyeglasses?",
    "Goatee": "Does this person have a goatee?",
    "Gray_Hair": "Does this person have gray hair?",
    "Heavy_Makeup": "Is this person wearing heavy makeup?",
    "High_Cheekbones": "Does this person have high cheekbones?",
    "Male": "Is this person male?",
    "Mouth_Slightly_Open": "Is this person's mouth slightly open?",
    "Mustache": "Does this person have a mustache?",
    "Narrow_Eyes": "Does this person have narrow eyes?",
    "No_Beard": ("Does this person have a beard?", True),
    "Oval_Face": "Does this person have an oval face?",
    "Pale_Skin": "Does this person have pale skin?",
    "Pointy_Nose": "Does this person have a pointy nose?",
    "Receding_Hairline": "Does this person have a receding hairline?",
    "Rosy_Cheeks": "Does this person have rosy cheeks?",
    "Sideburns": "Does this person have sideburns?",
    "Smiling": "Is this person smiling?",
    "Straight_Hair": "Does this person have straight hair?",
    "Wavy_Hair": "Does this person have wavy hair?",
    "Wearing_Earrings": "Is this person wearing earrings?",
    "Wearing_Hat": "Is this person wearing a hat?",
    "Wearing_Lipstick": "Is this person wearing lipstick?",
    "Wearing_Necklace": "Is this person wearing a necklace?",
    "Wearing_Necktie": "Is this person wearing a necktie?",
    "Young": "Is this person young?",
    # MAAD-Face's attributes beyond CelebA's
    "Middle_Aged": "Is this person middle-aged?",
    "Senior": "Is this person a senior (elderly)?",
    "Asian": "Is this person Asian?",
    "White": "Is this person White?",
    "Black": "Is this person Black?",
    "Shiny_Skin": "Does this person have shiny skin?",
    "Square_Face": "Does this person have a square face?",
    "Round_Face": "Does this person have a round face?",
    "Obstructed_Forehead": "Is this person's forehead partly covered?",
    "Fully_Visible_Forehead": "Is this person's forehead fully visible?",
    "Brown_Eyes": "Does this person have brown eyes?",
    "Mouth_Closed": "Is this person's mouth closed?",
    "No_Eyewear": ("Is this person wearing glasses or other eyewear?", True),
}

DESCRIBE_QUESTION = (
    f"{QUERY} Describe this person's facial attributes: hair, facial hair, eyebrows, eyes, nose, mouth, "
    "face shape, skin, makeup and accessories."
)
AGE_QUESTION = "How old is this person? Answer with a number of years."
GENDER_QUESTION = "Is this person male or female?"
LETTERS = "ABCDEFGHIJ"
# Option texts in the groups' label order (vocab.GROUPS): FairFace's races, RAF-DB's expressions.
OPTION_TEXT: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "race": tuple(r.replace("_", "/") for r in RACES),
    "expression": ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"),
}
CHOICE_QUESTIONS = {
    "race": "Which race best describes this person?",
    "expression": "Which facial expression does this person show?",
}


@dataclass(frozen=True)
class Question:
    """One question about one face, with its ground truth.

    ``row`` is the face's index in the split; ``characteristic`` the attribute asked about, or the group (``age``,
    ``gender``, ``race``, ``expression``), or ``attributes`` for the describe request. ``format`` is ``yes/no``,
    ``choice`` (an option's text), ``letter`` (an option's letter), ``number`` (years) or ``text`` (a description, whose
    ``options`` are the attributes it is scored on).
    ``answer`` is the ground-truth answer as the MLLM should give it; ``label`` is the vocabulary's: True/False for an
    attribute, the member's name for a group, the positive attributes' names for a description. ``inverted``: "yes"
    means the attribute is absent (No_Beard asked as "Does this person have a beard?").
    """

    id: str
    key: str
    row: int
    image: str | None
    task: str
    characteristic: str
    question: str
    format: str
    options: list[str]
    answer: str | int | float
    label: bool | str | list[str]
    inverted: bool = False
    box: list[int] | None = None

    def to_json(self, dataset: str, split: str) -> dict[str, Any]:
        """The exported line: the fields above (without ``row``), the dataset and split, and a LLaVA-style
        ``conversations`` pair (``<image>`` + question, ground-truth answer)."""
        out = {k: v for k, v in asdict(self).items() if k != "row" and (k != "box" or v is not None)}
        out = {"id": out.pop("id"), "dataset": dataset, "split": split, **out}
        out["conversations"] = [
            {"from": "human", "value": "<image>\n" + self.question},
            {"from": "gpt", "value": str(self.answer)},
        ]
        return out


def attribute_question(name: str) -> tuple[str, bool]:
    """The yes/no question about attribute ``name`` (after the paper's query) and whether "yes" means absent."""
    entry = ATTRIBUTE_QUESTIONS.get(name, f"Does this person have the attribute '{VOCAB[name].prompt}'?")
    text, inverted = (entry, False) if isinstance(entry, str) else entry
    return f"{QUERY} {text} Answer yes or no.", inverted


def choice_question(group: str) -> tuple[str, list[str]]:
    """The lettered multiple-choice question of ``group`` and its options ``["A. ...", ...]``."""
    options = [f"{LETTERS[i]}. {text}" for i, text in enumerate(OPTION_TEXT[group])]
    return f"{CHOICE_QUESTIONS[group]} {' '.join(options)}. Answer with the option's letter.", options


def tasks_of(schema: Schema) -> list[str]:
    """The tasks a dataset's labels can score: attributes if it has any, then its groups."""
    return (["attribute"] if schema.attributes else []) + [g for g in TASKS if g in schema.groups]


@dataclass
class FaceSplit:
    """One opened split: the dataset, its labels, ages, sample keys and image paths (None where there is no file)."""

    dataset: FaceDataset
    name: str
    split: str
    labels: torch.Tensor
    mask: torch.Tensor
    ages: torch.Tensor
    keys: list[str]
    images: list[str | None]
    boxes: list[list[int] | None] = field(default_factory=list)

    @property
    def schema(self) -> Schema:
        return self.dataset.schema


def build_questions(
    data: FaceSplit, tasks: Sequence[str] | None = None, attributes: AttributeMode = "yesno"
) -> list[Question]:
    """Every question the split's labels can score, face by face (unlabelled characteristics are not asked)."""
    schema = data.schema
    tasks = list(tasks or tasks_of(schema))
    unknown = [t for t in tasks if t not in tasks_of(schema)]
    if unknown:
        raise ValueError(f"{data.name} labels no {unknown}; its tasks are {tasks_of(schema)}")
    if attributes not in ("yesno", "describe"):
        raise ValueError(f"attributes must be 'yesno' or 'describe', got {attributes!r}")
    column = {c: j for j, c in enumerate(schema.characteristics)}
    out: list[Question] = []
    for row, key in enumerate(data.keys):
        common = {"key": key, "row": row, "image": data.images[row], "box": data.boxes[row] if data.boxes else None}
        for task in tasks:
            out += _questions_of_face(data, row, task, attributes, column, common)
    return out


def _questions_of_face(
    data: FaceSplit, row: int, task: str, attributes: AttributeMode, column: dict[str, int], common: dict[str, Any]
) -> Iterator[Question]:
    labels, mask = data.labels[row], data.mask[row]
    key = common["key"]
    if task == "attribute":
        known = [a for a in data.schema.attributes if mask[column[a]]]
        if attributes == "describe":
            if known:
                positive = [a for a in known if labels[column[a]] > 0.5]
                text = ", ".join(VOCAB[a].prompt for a in positive) or "none of the listed attributes"
                yield Question(f"{key}{SEPARATOR}{DESCRIBE}", task=task, characteristic=DESCRIBE,
                               question=DESCRIBE_QUESTION, format="text", options=known, answer=text, label=positive,
                               **common)  # fmt: skip
            return
        for a in known:
            text, inverted = attribute_question(a)
            truth = bool(labels[column[a]] > 0.5)
            yield Question(f"{key}{SEPARATOR}{a}", task=task, characteristic=a, question=text, format="yes/no",
                           options=["yes", "no"], answer="yes" if truth != inverted else "no", label=truth,
                           inverted=inverted, **common)  # fmt: skip
        return
    members = GROUPS[task]
    idx = [column[m] for m in members]
    if not (bool(mask[idx].all()) and int((labels[idx] > 0.5).sum()) == 1):
        return  # not fully labelled for this group (UTKFace's Asian/Others leave FairFace's races masked)
    member = members[int(labels[idx].argmax())]
    position = members.index(member)
    if task == "age":
        years = float(data.ages[row])
        answer: str | int | float = _number(years) if not math.isnan(years) else member.removeprefix("Age_")
        yield Question(f"{key}{SEPARATOR}age", task=task, characteristic="age", question=AGE_QUESTION,
                       format="number", options=[], answer=answer, label=member, **common)  # fmt: skip
    elif task == "gender":
        yield Question(f"{key}{SEPARATOR}gender", task=task, characteristic="gender", question=GENDER_QUESTION,
                       format="choice", options=list(OPTION_TEXT["gender"]), answer=OPTION_TEXT["gender"][position],
                       label=member, **common)  # fmt: skip
    else:
        text, options = choice_question(task)
        yield Question(f"{key}{SEPARATOR}{task}", task=task, characteristic=task, question=text, format="letter",
                       options=options, answer=LETTERS[position], label=member, **common)  # fmt: skip


def _number(years: float) -> int | float:
    return int(years) if float(years).is_integer() else round(years, 1)


# ----------------------------------------------------------------------------- opening a split


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which questions: dataset, kind, loader options, split, tasks, attribute mode, limit.
    ``qa export`` and ``eval-text`` share them, so the same flags rebuild the same questions."""
    parser.add_argument("--data", default=None, help="dataset folder in its native format, or 'synthface'")
    parser.add_argument("--kind", default=None, help="dataset kind (autodetected from the files when omitted)")
    parser.add_argument(
        "--options", default="{}", help="loader options as YAML, e.g. '{num_test: 8, seed: 1}' for synthface"
    )
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="default: every task the data labels")
    parser.add_argument(
        "--attributes",
        default="yesno",
        choices=("yesno", "describe"),
        help="one yes/no question per attribute, or one request to describe the face",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the split's first N faces")


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    """The ``DatasetSpec`` the arguments name (``--data synthface`` or ``--kind synthface`` needs no folder)."""
    from faceinsight.data.module import DatasetSpec
    from faceinsight.data.registry import detect_kind

    options = yaml.safe_load(args.options) or {}
    if not isinstance(options, dict):
        raise SystemExit(f"--options must be a YAML mapping such as '{{num_test: 8}}', got {args.options!r}")
    kind = args.kind or ("synthface" if args.data in (None, "synthface") else None)
    if kind == "synthface":
        return DatasetSpec(kind="synthface", options=options)
    if args.data is None:
        raise SystemExit(f"--data <folder> is needed for --kind {kind}")
    return DatasetSpec(kind=kind or detect_kind(args.data), root=str(args.data), options=options)


def open_face_split(spec: DatasetSpec, split: str, limit: int | None = None) -> FaceSplit:
    """Open one split of a dataset (through the data module's ``open_split``), with keys and image paths."""
    from faceinsight.data.module import open_split
    from faceinsight.data.segmentation.cache import dataset_keys

    dataset = open_split(spec, split)
    if limit is not None:
        dataset = FaceSubset(dataset, np.arange(min(limit, len(dataset))))
    labels, mask = dataset.label_matrix()
    keys = dataset_keys(dataset)
    repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
    if repeated:
        raise ValueError(f"{spec.kind} split {split} repeats sample keys {repeated[:5]}: questions would be ambiguous")
    images, boxes = _image_files(dataset)
    return FaceSplit(dataset, spec.kind, split, labels, mask.bool(), dataset.ages(), keys, images, boxes)


def _image_files(dataset: FaceDataset) -> tuple[list[str | None], list[list[int] | None]]:
    """Each sample's image file and face box, for loaders that read files (their ``Table``); None otherwise."""
    rows = list(range(len(dataset)))
    while isinstance(dataset, FaceSubset):
        rows = [int(dataset.indices[i]) for i in rows]
        dataset = dataset.dataset
    table = getattr(dataset, "_table", None)  # TableDataset's rows: files relative to image_root, optional boxes
    if table is None:
        return [None] * len(rows), []
    root = dataset.image_root
    images: list[str | None] = [str(root / table.files[i]) for i in rows]
    boxes = [[int(v) for v in table.boxes[i]] for i in rows] if table.boxes is not None else []
    return images, boxes


def save_images(data: FaceSplit, folder: Path) -> None:
    """Write each face as a PNG (cropped to its box where the loader crops), and point ``images`` at them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for row in range(len(data.keys)):
        path = folder / (re.sub(r"[^\w.-]+", "_", data.keys[row]).strip("_") + ".png")
        image = data.dataset[row]["image"]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        data.images[row] = str(path)
    data.boxes = []


def export_main(argv: list[str]) -> None:
    """``faceinsight qa export --data <folder | synthface> [--kind K] [--options YAML] [--split test]
    [--tasks ...] [--attributes yesno|describe] [--limit N] [--images DIR] --out questions.jsonl``."""
    parser = argparse.ArgumentParser(prog="faceinsight qa export", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="the questions, one JSON line each")
    parser.add_argument("--images", type=Path, default=None, help="also write each face as a PNG to this folder")
    args = parser.parse_args(argv)
    spec = dataset_spec(args)
    data = open_face_split(spec, args.split, args.limit)
    if args.images is not None:
        save_images(data, args.images)
    questions = build_questions(data, args.tasks, args.attributes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q.to_json(data.name, data.split)) + "\n")
    per_task = {t: sum(q.task == t for q in questions) for t in dict.fromkeys(q.task for q in questions)}
    print(
        f"{data.name} split {data.split}: {len(data.keys)} faces, {len(questions)} questions "
        f"({', '.join(f'{t} {n}' for t, n in per_task.items())}); wrote {args.out}"
    )
