"""Score any MLLM from its free-text answers (the paper's training-free protocol).

``faceinsight eval-text answers.jsonl --data <dataset folder | synthface> [--kind K] [--split test] [--rules ...]
[--json out.json]`` rebuilds the questions ``faceinsight qa export`` wrote (the same data flags give the same
questions), matches each answer line to its question by ``id``, parses it (``faceinsight.text.answers``) and prints:

* the metric table of ``faceinsight test`` (``DatasetMetrics`` per task, next to the majority-class baseline of the
  training split, ``faceinsight.eval.baseline.majority_baseline``), over the questions whose answer parsed; the baseline
  answers the same questions;
* per task, how many questions were answered, and the shares of answers that were well formed (Face-MLLM's Fig. 4),
  refused ("Beyond Specialization" reports about 21% refusals on age for one commercial model), malformed, hedged;
* logical consistency: the share of answered faces whose parsed answers break at least one hard rule (a face
  answered "no beard" and "goatee", as in FaceInsight's Fig. 1), only over rules whose characteristics were all
  answered for that face, and the faces whose answers contradict each other;
* the age MAE and CS@5 of the parsed ages in years, where the data gives ages in years.

An answer line is ``{"id": ..., "answer": "..."}`` (``question_id`` and ``text``, LLaVA's output names, are read
too). A line that is not such an object, an id no question has and an id given twice are errors naming the file,
line and value; a question without an answer is counted as missing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from faceinsight.eval.metrics import AgeMetrics, DatasetMetrics
from faceinsight.text.answers import Parsed, parse_answer
from faceinsight.text.qa import (
    DESCRIBE,
    SEPARATOR,
    TASKS,
    FaceSplit,
    Question,
    add_data_arguments,
    build_questions,
    dataset_spec,
    open_face_split,
)
from faceinsight.vocab import GROUPS, Schema

if TYPE_CHECKING:
    from faceinsight.logic import RuleSet
    from faceinsight.model.correlation import CooccurrenceStats

DEFAULT_RULES = ["rules/celeba.rules", "rules/demographics.rules", "rules/expression.rules"]
DEFAULT_RULES_OF = {"maad": ["rules/maad.rules"]}  # MAAD-Face repeats CelebA's shared rules in its own file
HEDGED_SCORE = 0.75  # P(yes) given to a hedged yes (1 - this to a hedged no): ranks below a plain answer for mAP


class AnswerFileError(ValueError):
    """An answers file line is malformed, names an unknown id, or repeats one; the message starts ``file:line:``."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Answer:
    id: str
    text: str
    line: int


def read_answers(path: Path, questions: Mapping[str, Question]) -> dict[str, Answer]:
    """The answers in ``path`` (JSON lines), keyed by question id; every id must be a question's, once."""
    out: dict[str, Answer] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise AnswerFileError(path, n, f"not valid JSON ({e.msg}): {raw[:100]!r}") from None
        if not isinstance(obj, dict):
            raise AnswerFileError(path, n, f"expected a JSON object with 'id' and 'answer', got {raw[:100]!r}")
        qid = obj["id"] if "id" in obj else obj.get("question_id")
        text = obj["answer"] if "answer" in obj else obj.get("text")
        if not isinstance(qid, str):
            raise AnswerFileError(path, n, f"'id' must be a question id string, got {qid!r}")
        if not isinstance(text, str):
            raise AnswerFileError(path, n, f"'answer' of {qid!r} must be a string, got {text!r}")
        if qid not in questions:
            raise AnswerFileError(path, n, f"unknown id {qid!r}: {_unknown_hint(qid, questions)}")
        if qid in out:
            raise AnswerFileError(path, n, f"duplicate id {qid!r} (first answered at line {out[qid].line})")
        out[qid] = Answer(qid, text, n)
    return out


def _unknown_hint(qid: str, questions: Mapping[str, Question]) -> str:
    key, _, what = qid.rpartition(SEPARATOR)
    keys = {q.key for q in questions.values()}
    if not key:
        return f"question ids are '<sample key>{SEPARATOR}<what it asks>'"
    if key not in keys:
        return (
            "no face of this split has that key (were the questions exported with other --data, --split, "
            "--options or --limit?)"
        )
    if what == DESCRIBE:
        return "a describe answer, but these questions are yes/no ones (pass --attributes describe)"
    return f"that face has no such question (not labelled for {what!r}, or not among --tasks/--attributes)"


# ----------------------------------------------------------------------------- scoring


@dataclass
class TaskCounts:
    """Answers to one task's questions: how many were asked, answered, well formed, refused, malformed, hedged."""

    questions: int = 0
    answered: int = 0
    ok: int = 0
    refused: int = 0
    malformed: int = 0
    hedged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return self.questions - self.answered

    def rates(self) -> dict[str, float]:
        n = self.answered
        share = (lambda k: k / n) if n else (lambda k: math.nan)
        return {"well_formed": share(self.ok), "refused": share(self.refused), "malformed": share(self.malformed),
                "hedged": share(self.hedged)}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        reasons = dict(sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        return {"questions": self.questions, "answered": self.answered, "missing": self.missing,
                "well_formed_n": self.ok, "refused_n": self.refused, "malformed_n": self.malformed,
                "hedged_n": self.hedged, **self.rates(), "malformed_reasons": reasons}  # fmt: skip


@dataclass
class Scored:
    """Parsed answers laid out over the split's faces and characteristics (schema order).

    ``probs``/``mask`` per part: ``attribute`` (yes/no or description answers) and ``group`` (age, gender, race,
    expression), kept apart because a characteristic can be both (SynthFace's Male is an attribute and a gender).
    ``said_yes``/``said_no``: what the face's answers assert, every task together; ``years``: parsed ages."""

    probs: dict[str, Tensor]
    mask: dict[str, Tensor]
    said_yes: Tensor
    said_no: Tensor
    years: Tensor
    answered_face: Tensor
    counts: dict[str, TaskCounts]


def score(data: FaceSplit, questions: list[Question], answers: Mapping[str, Answer]) -> Scored:
    """Parse every answer and place it at its face and characteristics."""
    chars = list(data.schema.characteristics)
    column = {c: j for j, c in enumerate(chars)}
    n, k = len(data.keys), len(chars)
    probs = {part: torch.zeros(n, k) for part in ("attribute", "group")}
    mask = {part: torch.zeros(n, k, dtype=torch.bool) for part in ("attribute", "group")}
    said_yes, said_no = torch.zeros(n, k, dtype=torch.bool), torch.zeros(n, k, dtype=torch.bool)
    years = torch.full((n,), math.nan)
    answered_face = torch.zeros(n, dtype=torch.bool)
    counts: dict[str, TaskCounts] = {}
    for q in questions:
        c = counts.setdefault(q.task, TaskCounts())
        c.questions += 1
        answer = answers.get(q.id)
        if answer is None:
            continue
        c.answered += 1
        parsed = parse_answer(q, answer.text)
        setattr(c, parsed.status, getattr(c, parsed.status) + 1)
        if not parsed.ok:
            if parsed.status == "malformed":
                c.reasons[parsed.reason] = c.reasons.get(parsed.reason, 0) + 1
            continue
        c.hedged += parsed.hedged
        answered_face[q.row] = True
        values = _values(q, parsed)
        part = "attribute" if q.task == "attribute" else "group"
        for name, value in values.items():
            j = column[name]
            probs[part][q.row, j] = _probability(value, parsed.hedged)
            mask[part][q.row, j] = data.mask[q.row, j]
            (said_yes if value else said_no)[q.row, j] = True
        if q.task == "age":
            years[q.row] = parsed.age
    return Scored(probs, mask, said_yes, said_no, years, answered_face, counts)


def _values(q: Question, parsed: Parsed) -> dict[str, bool]:
    """The answer's value for every characteristic its question scores: a group answer is one-hot over the group."""
    if q.task == "attribute":
        return parsed.values
    return {m: parsed.values.get(m, False) for m in GROUPS[q.task]}


def _probability(value: bool, hedged: bool) -> float:
    if hedged:
        return HEDGED_SCORE if value else 1 - HEDGED_SCORE
    return 1.0 if value else 0.0


def _task_metrics(schema: Schema, chars: list[str], hard: Tensor, tasks: set[str]) -> tuple[Any, Any]:
    """``DatasetMetrics`` for the attribute task and for the groups (which also hold the consistency metric), over
    the tasks asked."""

    no_rules = torch.zeros(0, dtype=torch.bool)
    attributes = schema.attributes if "attribute" in tasks else ()
    groups = tuple(g for g in schema.groups if g in tasks)
    return (
        DatasetMetrics(Schema(schema.name, attributes=attributes), chars, no_rules),
        DatasetMetrics(Schema(schema.name, groups=groups), chars, hard),
    )


def _merge(attribute: dict[str, float], group: dict[str, float], age: dict[str, float]) -> dict[str, float]:
    """One metrics dict in ``DatasetMetrics.compute``'s order: attributes, groups, age, consistency."""
    consistency = ("consistency", "consistency_all", "mean_rule_violation")
    out = {**attribute, **{k: v for k, v in group.items() if k not in consistency}, **age}
    return out | {k: group[k] for k in consistency if k in group}


def supported(rules: RuleSet, answered: Tensor) -> Tensor:
    """bool ``[N, R]``: every characteristic of rule r was answered for face n (a rule is only judged there)."""
    column = {c: i for i, c in enumerate(rules.characteristics)}
    incidence = torch.zeros(len(rules), len(rules.characteristics))
    for j, r in enumerate(rules.rules):
        incidence[j, [column[v] for v in r.variables]] = 1.0
    return ((~answered).float() @ incidence.T) == 0


def evaluate(
    data: FaceSplit, questions: list[Question], answers: Mapping[str, Answer], rules: RuleSet, stats: CooccurrenceStats
) -> dict[str, Any]:
    """Metrics of the parsed answers and of the majority baseline, answer counts, and consistency, JSON-ready."""
    from faceinsight.eval.baseline import majority_baseline

    chars = list(data.schema.characteristics)
    s = score(data, questions, answers)
    labels = data.labels.float()
    prior, decided = majority_baseline(stats, s.probs["attribute"])
    rows = s.answered_face
    hard = rules.hard.cpu()
    # Consistency: what each face's answers assert, every task together; a rule counts where all its
    # characteristics were answered. Two answers at odds on one characteristic assert it (and its rules see it).
    # The baseline is judged on the same rules of the same faces.
    judged = supported(rules, s.said_yes | s.said_no)
    satisfied = rules.satisfied(s.said_yes) | ~judged
    baseline_satisfied = rules.satisfied(decided) | ~judged

    tasks = {q.task for q in questions}
    model_a, model_g = _task_metrics(data.schema, chars, hard, tasks)
    base_a, base_g = _task_metrics(data.schema, chars, hard, tasks)
    model_a.update(s.probs["attribute"], s.probs["attribute"] >= 0.5, labels, s.mask["attribute"])
    base_a.update(prior, decided, labels, s.mask["attribute"])
    age_known = ~torch.isnan(s.years)  # the age question parsed: the baseline is scored on the same faces
    base_ages = torch.where(age_known, data.ages.float(), torch.full_like(data.ages.float(), math.nan))
    no_ages = torch.full_like(base_ages, math.nan)  # the model's ages are the parsed years, scored below
    model_g.update(s.probs["group"], s.probs["group"] >= 0.5, labels, s.mask["group"], no_ages, satisfied[rows])
    base_g.update(prior, decided, labels, s.mask["group"], base_ages, baseline_satisfied[rows])

    ages = AgeMetrics()
    ages.update_years(s.years, data.ages.float())
    age = {f"age/{k}": v for k, v in ages.compute().items() if not math.isnan(v)}
    model = _merge(model_a.compute(), model_g.compute(), age)
    baseline = _merge(base_a.compute(), base_g.compute(), {})

    hard_violated = (~satisfied[rows][:, hard]).any(1)
    per_rule = (~satisfied[rows]).sum(0).tolist()
    contradictory = (s.said_yes & s.said_no).any(1)
    name = data.name
    counts = dict(sorted(s.counts.items(), key=lambda kv: TASKS.index(kv[0])))
    total = TaskCounts()
    for c in counts.values():
        for f in ("questions", "answered", "ok", "refused", "malformed", "hedged"):
            setattr(total, f, getattr(total, f) + getattr(c, f))
    return {
        "model": {name: model},
        "majority_baseline": {name: baseline},
        "answers": {**{t: c.to_json() for t, c in counts.items()}, "all": total.to_json()},
        "consistency": {
            "answered_faces": int(rows.sum()),
            "hard_rules": int(rules.hard.sum()),
            "faces_violating_a_hard_rule": int(hard_violated.sum()),
            "violating_share": int(hard_violated.sum()) / len(hard_violated) if len(hard_violated) else math.nan,
            "contradictory_faces": int(contradictory.sum()),
            "rule_violations": {
                r.text: {"hard": r.hard, "faces": int(v)} for r, v in zip(rules.rules, per_rule, strict=True) if v
            },
        },
    }


# ----------------------------------------------------------------------------- report


def answers_table(report: dict[str, Any]) -> str:
    """Per task: questions, answered, missing, and the shares of the answers that were well formed, refused,
    malformed and hedged."""
    head = ("task", "questions", "answered", "missing", "well-formed", "refused", "malformed", "hedged")
    lines = [f"{head[0]:<12}" + "".join(f"{h:>12}" for h in head[1:]), "-" * 96]
    for task, c in report["answers"].items():
        counts = [c["questions"], c["answered"], c["missing"]]
        rates = [c["well_formed"], c["refused"], c["malformed"], c["hedged"]]
        lines.append(f"{task:<12}" + "".join(f"{v:>12d}" for v in counts) + "".join(f"{v:>12.4f}" for v in rates))
    return "\n".join(lines)


def consistency_lines(report: dict[str, Any]) -> list[str]:
    c = report["consistency"]
    if not c["hard_rules"]:
        return ["consistency: no hard rule applies to these characteristics"]
    share = c["violating_share"]
    out = [
        f"consistency: {c['faces_violating_a_hard_rule']} of {c['answered_faces']} answered faces "
        f"({100 * share:.1f}%) break at least one of {c['hard_rules']} hard rules; "
        f"faces whose answers contradict each other: {c['contradictory_faces']}"
    ]
    for text, v in sorted(c["rule_violations"].items(), key=lambda kv: -kv[1]["faces"]):
        out.append(f"  {'hard' if v['hard'] else 'soft'}  {v['faces']:>6} faces  {text}")
    return out


def main(argv: list[str]) -> dict[str, Any]:
    """``faceinsight eval-text answers.jsonl --data <folder | synthface> [--kind K] [--options YAML] [--split test]
    [--tasks ...] [--attributes yesno|describe] [--limit N] [--rules R ...] [--json out.json]``."""
    parser = argparse.ArgumentParser(prog="faceinsight eval-text", description=__doc__.splitlines()[0])
    parser.add_argument("answers", type=Path, help="JSON lines {'id': question id, 'answer': free text}")
    add_data_arguments(parser)
    parser.add_argument(
        "--rules", nargs="*", default=None, help=f"rule files (default: {' '.join(DEFAULT_RULES)}; none: --rules)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)

    from faceinsight.data.module import open_split
    from faceinsight.eval.baseline import format_table
    from faceinsight.logic import load_rules, resolve_rule_file
    from faceinsight.model.correlation import CooccurrenceStats

    spec = dataset_spec(args)
    data = open_face_split(spec, args.split, args.limit)
    questions = build_questions(data, args.tasks, args.attributes)
    by_id = {q.id: q for q in questions}
    try:
        answers = read_answers(args.answers, by_id)
    except (AnswerFileError, FileNotFoundError) as e:
        raise SystemExit(f"faceinsight eval-text: {e}") from None
    chars = list(data.schema.characteristics)
    rule_files = DEFAULT_RULES_OF.get(spec.kind, DEFAULT_RULES) if args.rules is None else args.rules
    rules = load_rules([resolve_rule_file(r) for r in rule_files], chars)
    stats = CooccurrenceStats(chars)
    train = open_split(spec, "train")  # the baseline's positive rates, as `faceinsight test` takes them
    if len(train):
        train_labels, train_mask = train.label_matrix()
        stats.update(train_labels.float(), train_mask.bool())
    report = evaluate(data, questions, answers, rules, stats)
    report = {
        "answers_file": str(args.answers),
        "data": {"kind": spec.kind, "root": spec.root, "options": spec.options, "split": args.split,
                 "faces": len(data.keys), "questions": len(questions), "attributes": args.attributes,
                 "baseline_train_rows": len(train)},
        "rules": {"files": rule_files, "compiled": len(rules), "hard": int(rules.hard.sum()),
                  "dropped": len(rules.dropped)},
        **report,
    }  # fmt: skip
    note = "" if len(train) else "; no training split: the baseline's positive rates are 0.5"
    print(f"{args.answers}: {len(answers)} answers to {len(questions)} questions about {len(data.keys)} faces of "
          f"{spec.kind} split {args.split}{note}")  # fmt: skip
    print(format_table(report["model"], report["majority_baseline"]))
    print()
    print(answers_table(report))
    print()
    print("\n".join(consistency_lines(report)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"report written to {args.json}")
    return report
