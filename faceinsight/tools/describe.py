"""``faceinsight describe``: each face in words, two ways, and how often the LLM's own words contradict its answers.

* **Decoded**: the model's decided characteristics (consistent decoding by default) written out with
  ``faceinsight.text.captions``' phrase tables, every fact that has words, deterministically
  (:func:`faceinsight.text.captions.full_description`). It states only decided facts, so it never contradicts them.
* **Generated**: what the LLM itself writes after [BOS], the image and map tokens and the request "Describe this
  face." (LLaVA's free-text answer), greedy. The adapters learn this in training when ``caption_weight`` is on
  (LLaVA's alignment stage: captions written from the labels, the LLM frozen in the paper's regime).

**Contradictions** (the "hallucination" of the paper's Fig. 1 and 7): each generated description is read with
``faceinsight.text.answers``' phrase tables (negations applied) and compared with the model's own decided answers
(a characteristic said otherwise) and with the hard rules (stated facts that break one by themselves, "no beard"
and "a goatee"). The decoded descriptions, read the same way, must contradict nothing: the parser's control.

``faceinsight describe --ckpt_path X.ckpt [--config config.yaml] (--split test [--data D] | --images DIR) [--limit N]
[--json faces.jsonl] [--report report.json]`` prints each face's key and both descriptions, then the rates. Photos
(``--images``) are read as ``faceinsight predict`` reads them: every face found and described (``--crop chips``: each
image is one face), a photo with no face or an unreadable one said so (``faceinsight.data.faces``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faceinsight.data.faces import face_rows, row_records, write_summary
from faceinsight.text.answers import (
    ATTRIBUTE_PHRASES,
    attribute_table,
    find_mentions,
    group_table,
    normalize,
    parse_age,
    pronoun_gender,
)
from faceinsight.text.captions import FaceLabels, full_description
from faceinsight.text.tokens import decode_texts, end_id
from faceinsight.vocab import GROUPS

if TYPE_CHECKING:
    from faceinsight.data.module import FaceDataModule
    from faceinsight.logic import RuleSet
    from faceinsight.train.faceinsight_module import FaceInsightModule

MAX_NEW_TOKENS = 96

# ----------------------------------------------------------------------------- reading descriptions

# "smiling", "a grin": the Smiling attribute. The expression table also reads them as happiness, but captions (and
# the rules, softly) keep smiling and the expression apart: a smile word states Smiling only.
_SMILE = re.compile("|".join(f"(?:{p})" for p in ATTRIBUTE_PHRASES["Smiling"]["yes"]))
_QUESTION = re.compile(r"[^.!?]*\?")  # a sentence ending in a question mark


def statements(text: str, names: Sequence[str]) -> tuple[set[str], set[str]]:
    """The characteristics among ``names`` that ``text`` says present and says absent, by ``faceinsight.text.answers``'
    phrase tables (attributes; gender, race and expression words, else the pronouns; an age in years, a decade or a
    range). Questions
    state nothing (an LM pretrained on captions followed by question-answer pairs may go on with "Question: does
    this person have a beard?"). A group's member said present says the others absent; a characteristic said both
    ways is in both."""
    t = _QUESTION.sub(" ", normalize(text))
    mentions = find_mentions(t, attribute_table())
    for group in ("gender", "race", "expression"):
        found = find_mentions(t, group_table(group))
        mentions += [m for m in found if not (group == "expression" and _SMILE.fullmatch(t[m.start : m.end]))]
    said = [(m.characteristic, m.value) for m in mentions]
    if not {"Male", "Female"} & {n for n, _ in said} and (pronoun := pronoun_gender(t)) is not None:
        said += [(pronoun, True), ("Male", pronoun == "Male")]  # "He has a goatee": a man
    age = parse_age(t)
    if age.ok:
        said += list(age.values.items())
    wanted = set(names)
    present = {n for n, v in said if v and n in wanted}
    absent = {n for n, v in said if not v and n in wanted}
    for members in GROUPS.values():  # "a woman" says not a man; "happy" says not sad
        if present & set(members):
            absent |= {m for m in members if m in wanted and m not in present}
    return present, absent


@dataclass(frozen=True)
class Check:
    """One description read against the model's decided answers and the hard rules."""

    present: frozenset[str]  # said present
    absent: frozenset[str]  # said absent
    contradicts: tuple[str, ...]  # characteristics said otherwise than decided
    breaks: tuple[str, ...]  # hard rules the statements break by themselves

    @property
    def facts(self) -> int:
        return len(self.present | self.absent)

    def to_json(self) -> dict[str, Any]:
        return {"present": sorted(self.present), "absent": sorted(self.absent),
                "contradicts": list(self.contradicts), "breaks": list(self.breaks)}  # fmt: skip


def check(text: str, names: Sequence[str], decided: Sequence[bool], rules: RuleSet) -> Check:
    """Read ``text`` (:func:`statements`) and find what contradicts ``decided`` (bools over ``names``) and which
    hard rules its statements break, judging a rule only when the text states all of its characteristics (as
    ``faceinsight eval-text`` judges answers)."""
    from faceinsight.eval.text import supported

    present, absent = statements(text, names)
    truth = dict(zip(names, (bool(d) for d in decided), strict=True))
    contradicts = tuple(n for n in names if (n in present and not truth[n]) or (n in absent and truth[n]))
    if not len(rules):
        return Check(frozenset(present), frozenset(absent), contradicts, ())
    column = {n: i for i, n in enumerate(rules.characteristics)}
    said_yes = torch.zeros(1, len(column), dtype=torch.bool)
    said = torch.zeros_like(said_yes)
    said_yes[0, [column[n] for n in present]] = True
    said[0, [column[n] for n in present | absent]] = True
    broken = ~rules.satisfied(said_yes)[0] & supported(rules, said)[0] & rules.hard.cpu()
    breaks = tuple(r.text for r, b in zip(rules.rules, broken.tolist(), strict=True) if b)
    return Check(frozenset(present), frozenset(absent), contradicts, breaks)


def summarize(checks: Sequence[Check]) -> dict[str, Any]:
    """Rates over descriptions: the share contradicting the decided answers at least once, breaking a hard rule,
    saying a characteristic both ways, saying nothing readable; the mean number of stated characteristics; and the
    counts per characteristic and per rule."""
    n = len(checks)
    per = (lambda k: k / n) if n else (lambda k: float("nan"))
    per_characteristic = Counter(name for c in checks for name in c.contradicts)
    per_rule = Counter(rule for c in checks for rule in c.breaks)
    return {
        "descriptions": n,
        "contradicting_share": per(sum(bool(c.contradicts) for c in checks)),
        "rule_breaking_share": per(sum(bool(c.breaks) for c in checks)),
        "self_contradicting_share": per(sum(bool(c.present & c.absent) for c in checks)),
        "silent_share": per(sum(c.facts == 0 for c in checks)),
        "mean_stated_facts": per(sum(c.facts for c in checks)),
        "mean_contradicted_facts": per(sum(len(c.contradicts) for c in checks)),
        "contradictions_per_characteristic": dict(per_characteristic.most_common()),
        "hard_rules_broken": dict(per_rule.most_common()),
    }


def summary_lines(name: str, s: dict[str, Any]) -> list[str]:
    lines = [
        f"{name} descriptions ({s['descriptions']}): {100 * s['contradicting_share']:.1f}% contradict the model's "
        f"answers, {100 * s['rule_breaking_share']:.1f}% break a hard rule, {100 * s['self_contradicting_share']:.1f}% "
        f"say something both ways, {100 * s['silent_share']:.1f}% say nothing readable; "
        f"{s['mean_stated_facts']:.2f} stated and {s['mean_contradicted_facts']:.2f} contradicted characteristics "
        "on average"
    ]
    top = list(s["contradictions_per_characteristic"].items())[:8]
    if top:
        lines.append("  most contradicted: " + ", ".join(f"{k} {v}" for k, v in top))
    lines += [f"  hard rule broken {v}x: {k}" for k, v in s["hard_rules_broken"].items()]
    return lines


# ----------------------------------------------------------------------------- describing a batch


def decided_face(names: Sequence[str], decided: Sequence[bool]) -> FaceLabels:
    """The model's decided answers as a fully labelled face (no age in years)."""
    return FaceLabels.from_labels(names, np.asarray(decided, dtype=np.float32), np.ones(len(names), dtype=bool))


@dataclass(frozen=True)
class Description:
    """One face: its key, the decided-present characteristics, both descriptions and their checks."""

    key: str
    positive: tuple[str, ...]
    decoded: str
    generated: str
    decoded_check: Check
    generated_check: Check

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "positive": list(self.positive), "decoded": self.decoded,
                "generated": self.generated, "decoded_check": self.decoded_check.to_json(),
                "generated_check": self.generated_check.to_json()}  # fmt: skip


@torch.no_grad()
def describe_batch(module: FaceInsightModule, batch: dict[str, Any], max_new_tokens: int) -> list[Description]:
    """Both descriptions of each face of a batch, from one pass of the encoders."""
    model, names = module.model, module.model.characteristics
    if model.tokenizer is None:
        raise RuntimeError("describing faces needs the LLM's tokenizer (the model was built without weights)")
    visual = module.visual(batch)
    decided = module.decide(torch.sigmoid(model(None, visual=visual))).cpu()
    ids = model.generate(visual, module.describe_ids, end_id(model.tokenizer), max_new_tokens)
    out = []
    for key, row, generated in zip(batch["key"], decided.tolist(), decode_texts(model.tokenizer, ids), strict=True):
        decoded = full_description(decided_face(names, row)).text
        positive = tuple(n for n, d in zip(names, row, strict=True) if d)
        checks = (check(decoded, names, row, module.rules), check(generated, names, row, module.rules))
        out.append(Description(key, positive, decoded, generated, *checks))
    return out


# ----------------------------------------------------------------------------- command


def load_module(ckpt_path: Path, decoding: str) -> FaceInsightModule:
    """A FaceInsight checkpoint with its own rules and statistics (frozen backbones reloaded from their sources)."""
    from faceinsight.train.faceinsight_module import FaceInsightModule

    if not ckpt_path.is_file():
        raise SystemExit(f"faceinsight describe: no checkpoint at {ckpt_path}")
    try:
        return FaceInsightModule.load_from_checkpoint(ckpt_path, map_location="cpu", decoding=decoding).eval()
    except TypeError as e:  # another module's hyper-parameters (the specialist has no LLM to describe with)
        raise SystemExit(f"faceinsight describe: {ckpt_path} is not a FaceInsight checkpoint ({e})") from None


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``data`` section of ``--config``, else of the run's ``config.yaml`` beside the checkpoint's folder
    (``<run>/checkpoints/X.ckpt`` -> ``<run>/config.yaml``); empty when neither exists."""
    import yaml

    path = args.config or args.ckpt_path.resolve().parent.parent / "config.yaml"
    if args.config is not None and not path.is_file():
        raise SystemExit(f"faceinsight describe: no config at {path}")
    if not path.is_file():
        return {}
    return dict(yaml.safe_load(path.read_text()).get("data") or {})


def open_data(args: argparse.Namespace, module: FaceInsightModule) -> FaceDataModule:
    """The run's data module, with ``--data`` replacing its datasets and ``--images`` as the faces to describe."""
    from dataclasses import asdict

    from jsonargparse import ArgumentParser

    from faceinsight.data.module import FaceDataModule
    from faceinsight.text.qa import dataset_spec

    section = run_config(args)
    if args.data is not None or args.kind is not None or not section.get("datasets"):
        if args.images is None and args.data is None and args.kind is None:
            raise SystemExit("faceinsight describe: no data: pass --config (the run's config.yaml) or --data")
        section |= {"datasets": [asdict(dataset_spec(args))], "roots": None}
    section |= {"num_workers": 0, "with_segmaps": module.model.seg_encoder is not None, "predict_images": args.images}
    section |= {"predict_crop": args.crop, "predict_on_error": args.on_error}
    if args.segmaps is not None:
        section |= {"predict_segmaps": args.segmaps, "predict_segmap_options": json.loads(args.segmap_options)}
    parser = ArgumentParser()
    parser.add_class_arguments(FaceDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": section})).data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``faceinsight describe --ckpt_path X.ckpt [--config C] (--split S [--data D] | --images DIR) [--limit N]
    [--json faces.jsonl] [--report report.json]``; returns the report."""
    parser = argparse.ArgumentParser(prog="faceinsight describe", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", type=Path, required=True, help="a FaceInsight checkpoint")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML whose data section says the data: the run's config.yaml (default: beside the "
                             "checkpoint's folder) or a preset")  # fmt: skip
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--images", default=None, help="describe these photos instead: a folder or a list.txt")
    parser.add_argument("--data", default=None, help="another dataset for --split: a folder, or 'synthface'")
    parser.add_argument("--kind", default=None, help="its kind (autodetected when omitted)")
    parser.add_argument("--options", default="{}", help="its loader options as YAML, e.g. '{num_test: 50}'")
    parser.add_argument("--segmaps", default=None, help="the face parser for --images (default: the run's)")
    # fmt: off
    parser.add_argument("--crop", default="detect", choices=("detect", "chips"),
                        help="--images: find and describe every face (default), or each image is one face chip")
    parser.add_argument("--on_error", default="skip", choices=("skip", "raise"),
                        help="--images: skip an unreadable photo with a warning (default), or stop on it")
    # fmt: on
    parser.add_argument("--segmap_options", default="{}", help="its options as JSON, e.g. '{\"checkpoint\": ...}'")
    parser.add_argument("--limit", type=int, default=None, help="only each dataset's first N faces")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--decoding", default="consistent", choices=("consistent", "threshold"))
    parser.add_argument("--max_new_tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--json", type=Path, default=None, help="one JSON line per face")
    parser.add_argument("--report", type=Path, default=None, help="the rates as JSON (default: beside --json)")
    args = parser.parse_args(argv)

    from torch.utils.data import DataLoader, Subset

    module = load_module(args.ckpt_path, args.decoding)
    data = open_data(args, module)
    views = data.image_views() if args.images else data.views(args.split)
    names = ["images"] if args.images else data.dataset_names
    records: list[tuple[str, Description]] = []
    lines: list[dict[str, Any]] = []  # the JSON lines: descriptions, and photos with no face or skipped
    for name, view in zip(names, views, strict=True):
        rows = [r for r in row_records(view.dataset, range(len(view))) or [] if r["status"] != "face"]
        for row in rows:  # photos with no face, unreadable photos: one line each, nothing to describe
            print(f"{row['photo']}\n  {row['status']}{': ' + row['error'] if 'error' in row else ''}")
            lines.append({"dataset": name, **row})
        faces = Subset(view, face_rows(view.dataset, len(view))[: args.limit])
        for batch in DataLoader(faces, batch_size=args.batch_size):
            found = row_records(view.dataset, batch["index"].tolist()) or [{}] * len(batch["key"])
            for d, row in zip(describe_batch(module, batch, args.max_new_tokens), found, strict=True):
                records.append((name, d))
                lines.append({"dataset": name, **row, **d.to_json()})
                print(f"{d.key}\n  decoded:   {d.decoded}\n  generated: {d.generated}")
                if d.generated_check.contradicts:
                    print(f"  contradicts: {', '.join(d.generated_check.contradicts)}")
    report = {
        "checkpoint": str(args.ckpt_path),
        "data": {"images": args.images} if args.images else {"split": args.split, "datasets": names},
        "decoding": args.decoding,
        "describe_query": module.hparams.describe_query,
        "generated": summarize([d.generated_check for _, d in records]),
        "decoded": summarize([d.decoded_check for _, d in records]),
    }
    print("\n" + "\n".join(line for which in ("generated", "decoded") for line in summary_lines(which, report[which])))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text("".join(json.dumps(line) + "\n" for line in lines))
        print(f"descriptions written to {args.json}")
    if args.images:
        write_summary(views[0].dataset, args.json and args.json.with_name(f"{args.json.stem}.summary.json"))
    report_path = args.report or (args.json.with_suffix(".report.json") if args.json is not None else None)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2))
        print(f"rates written to {report_path}")
    return report
