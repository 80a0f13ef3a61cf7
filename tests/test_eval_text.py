"""Scoring other MLLMs from free text: question export, the answer parser, and `faceinsight eval-text`.

Answers are hand-written fixtures in tests/fixtures/answers/ (JSONL). The metric test checks every figure against
values computed by hand from SynthFace's first 3 test faces (all male, happy, ages 25.2, 22.8, 58.3).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from faceinsight.cli import run
from faceinsight.eval.text import main as eval_text
from faceinsight.text.answers import parse_age, parse_choice, parse_description, parse_yes_no
from faceinsight.vocab import CELEBA_ATTRIBUTES

FIXTURES = Path(__file__).parent / "fixtures" / "answers"
SYNTH = ["--data", "synthface", "--options", "{num_test: 3, num_train: 100}"]


def cases(name: str) -> list:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]
    return [pytest.param(r, id=r.get("case", r["answer"])) for r in rows]


# ----------------------------------------------------------------------------- the parser, case by case


@pytest.mark.parametrize("case", cases("yesno.jsonl"))
def test_yes_no_answers(case):
    parsed = parse_yes_no(case["answer"], case["characteristic"], case.get("inverted", False))
    got = parsed.values[case["characteristic"]] if parsed.ok else parsed.status
    assert got == case["expect"], parsed
    if "hedged" in case:
        assert parsed.hedged == case["hedged"], parsed


@pytest.mark.parametrize("case", cases("age.jsonl"))
def test_age_answers(case):
    parsed = parse_age(case["answer"])
    assert (parsed.age if parsed.ok else parsed.status) == case["expect"], parsed
    if "hedged" in case:
        assert parsed.hedged == case["hedged"], parsed


@pytest.mark.parametrize("case", cases("choice.jsonl"))
def test_choice_answers(case):
    parsed = parse_choice(case["answer"], case["group"], case["lettered"])
    assert (next(iter(parsed.values)) if parsed.ok else parsed.status) == case["expect"], parsed
    if "hedged" in case:
        assert parsed.hedged == case["hedged"], parsed


@pytest.mark.parametrize("case", cases("describe.jsonl"))
def test_descriptions(case):
    parsed = parse_description(case["answer"], CELEBA_ATTRIBUTES)
    assert parsed.status == case.get("status", "ok"), parsed
    for name, value in case.get("expect", {}).items():
        assert parsed.values[name] == value, (name, parsed)
    assert parsed.contradictions == tuple(case.get("contradictions", ()))


@pytest.mark.parametrize("case", cases("refusals.jsonl"))
def test_refusals_are_refusals_in_every_task(case):
    text = case["answer"]
    statuses = {
        parse_yes_no(text, "Smiling").status,
        parse_age(text).status,
        parse_choice(text, "race", lettered=True).status,
        parse_description(text, CELEBA_ATTRIBUTES).status,
    }
    assert statuses == {"refused"}


def test_majority_baseline_is_the_training_positive_rate():
    from faceinsight.eval.baseline import majority_baseline
    from faceinsight.model.correlation import CooccurrenceStats

    stats = CooccurrenceStats(["Smiling", "Bald", "Male"])
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, True], [True, True, False], [True, True, False]])
    stats.update(labels, mask)
    probs, decided = majority_baseline(stats, torch.zeros(2, 3))
    assert torch.allclose(probs, torch.tensor([[0.75, 0.25, 0.5]] * 2))  # Male: 1 of its 2 labelled rows
    assert decided.tolist() == [[True, False, True]] * 2


# ----------------------------------------------------------------------------- export


def test_qa_export_writes_one_line_per_face_and_question(tmp_path, capsys):
    out = tmp_path / "questions.jsonl"
    run(["qa", "export", *SYNTH, "--split", "test", "--out", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 * (40 + 3)  # 40 attributes, age, gender, expression per face
    assert len({q["id"] for q in lines}) == len(lines)
    by_id = {q["id"]: q for q in lines}
    beard = by_id["synthface/2/0::No_Beard"]  # asked as "Does this person have a beard?": face 0 has one
    assert beard["question"].startswith("Analyze the facial features in this image.")
    assert (beard["inverted"], beard["label"], beard["answer"]) == (True, False, "yes")
    expression = by_id["synthface/2/1::expression"]
    assert expression["options"][:2] == ["A. surprise", "B. fear"] and expression["answer"] == "D"
    assert expression["label"] == "Expr_Happiness" and "A. surprise B. fear" in expression["question"]
    assert by_id["synthface/2/2::age"]["answer"] == 58.3 and by_id["synthface/2/2::age"]["label"] == "Age_50-59"
    assert by_id["synthface/2/0::gender"]["options"] == ["male", "female"]
    assert beard["conversations"][0]["value"] == "<image>\n" + beard["question"]
    assert "129 questions" in capsys.readouterr().out


def test_qa_export_ids_are_the_sample_keys_and_images_can_be_written(tmp_path):
    from faceinsight.data.module import DatasetSpec, open_split

    out, images = tmp_path / "q.jsonl", tmp_path / "faces"
    run(["qa", "export", *SYNTH, "--tasks", "expression", "--limit", "2", "--images", str(images), "--out", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    test = open_split(DatasetSpec(options={"num_test": 3}), "test")
    assert [q["key"] for q in lines] == [test[0]["key"], test[1]["key"]]
    assert all(Path(q["image"]).is_file() and q["image"].endswith(".png") for q in lines)


# ----------------------------------------------------------------------------- eval-text


def test_eval_text_metrics_match_hand_computed_values(tmp_path, capsys):
    report = eval_text([str(FIXTURES / "synthface_mixed.jsonl"), *SYNTH, "--json", str(tmp_path / "r.json")])
    model, base = report["model"]["synthface"], report["majority_baseline"]["synthface"]
    # Attribute answers (pred/truth): face 0 Eyeglasses n/n, Smiling y/y, No_Beard y/n, Goatee y/y, Mustache n/y
    # (hedged); face 1 Smiling y/y (hedged), No_Beard y/y; face 2 Eyeglasses y/n, Smiling n/y, Male y/y.
    # Per-attribute accuracy 1/2, 2/3, 1/2, 1, 0, 1 -> 0.6111; per face P = R = F1 = 2/3, 1, 1/2 -> 0.7222.
    assert model["attributes/accuracy"] == pytest.approx(11 / 18, abs=1e-6)
    for k in ("precision", "recall", "f1"):
        assert model[f"attributes/{k}"] == pytest.approx((2 / 3 + 1 + 0.5) / 3, abs=1e-6)
    # AP: Smiling, Goatee, Mustache, Male 1; No_Beard 0.5 (both at score 1, one positive); Eyeglasses no positive
    assert model["attributes/mAP"] == pytest.approx(0.9, abs=1e-6)
    # Baseline on the same questions: training rates give Smiling and No_Beard yes, the rest no -> 1, 1, 1/2, 0, 0, 0
    assert base["attributes/accuracy"] == pytest.approx(2.5 / 6, abs=1e-6)
    # Age: 27.5 ("late twenties") and 30 ("about 30"); "I see 2 eyes" is malformed
    assert model["age/accuracy"] == 0.5
    assert model["age/mae"] == pytest.approx((abs(27.5 - 25.1742) + abs(30 - 22.8066)) / 2, abs=1e-3)
    assert model["age/cs@5"] == 0.5
    # Gender: male right, a refusal, "She is a woman" wrong; expression: D, B, D against D, D, D
    assert (model["gender/accuracy"], model["gender/precision"]) == (0.5, 1.0)
    assert model["gender/f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert model["expression/accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert base["gender/accuracy"] == 0.0  # the training split is mostly female (0.61), these faces are male
    # Consistency: face 0 says "No beard." and "Yes, a goatee." (No_Beard -> ~Goatee); face 2 says Male (attribute)
    # and female (gender): exactly_one(Male, Female). Face 1 breaks no hard rule.
    assert model["consistency"] == pytest.approx(1 / 3, abs=1e-6)
    c = report["consistency"]
    assert (c["answered_faces"], c["faces_violating_a_hard_rule"], c["contradictory_faces"]) == (3, 2, 1)
    assert c["rule_violations"]["No_Beard -> ~Goatee"] == {"hard": True, "faces": 1}
    assert c["rule_violations"]["exactly_one(Male, Female)"] == {"hard": True, "faces": 1}
    # Answers: attribute 13 of 120 answered, 10 well formed, 1 refused, 2 malformed ("banana", "No, she has a
    # beard"), 2 hedged; the blank line in the file is skipped; question_id/text are read as id/answer.
    a = report["answers"]
    assert (a["attribute"]["questions"], a["attribute"]["answered"], a["attribute"]["missing"]) == (120, 13, 107)
    assert [a["attribute"][k] for k in ("well_formed_n", "refused_n", "malformed_n", "hedged_n")] == [10, 1, 2, 2]
    assert a["attribute"]["well_formed"] == pytest.approx(10 / 13)
    assert (a["age"]["malformed_n"], a["gender"]["refused_n"], a["expression"]["well_formed"]) == (1, 1, 1.0)
    assert (a["all"]["questions"], a["all"]["answered"], a["all"]["well_formed_n"]) == (129, 22, 17)
    out = capsys.readouterr().out
    assert "attributes/accuracy" in out and "majority" in out and "well-formed" in out
    assert "2 of 3 answered faces (66.7%) break at least one of" in out
    assert json.loads((tmp_path / "r.json").read_text())["model"] == report["model"]


def test_eval_text_baseline_age_is_the_modules(tmp_path, capsys):
    from faceinsight.data.module import DatasetSpec, open_split
    from faceinsight.eval.metrics import AGE_BIN_YEARS
    from faceinsight.vocab import GROUPS, SCHEMAS

    ages = tmp_path / "ages.jsonl"  # the age answers alone: with --tasks age, any other id is unknown
    ages.write_text(
        "".join(x + "\n" for x in (FIXTURES / "synthface_mixed.jsonl").read_text().split("\n") if "::age" in x)
    )
    report = eval_text([str(ages), *SYNTH, "--tasks", "age"])
    labels, _ = open_split(DatasetSpec(options={"num_train": 100}), "train").label_matrix()
    chars = SCHEMAS["synthface"].characteristics
    rates = torch.stack([labels[:, chars.index(b)].mean() for b in GROUPS["age"]]).double()
    estimate = float((rates * torch.tensor([AGE_BIN_YEARS[b] for b in GROUPS["age"]])).sum() / rates.sum())
    expected = (abs(estimate - 25.1742) + abs(estimate - 22.8066)) / 2  # the faces whose age answer parsed
    assert report["majority_baseline"]["synthface"]["age/mae"] == pytest.approx(expected, abs=1e-3)
    assert set(report["answers"]) == {"age", "all"}


def test_eval_text_describe_mode_and_no_rules(capsys):
    args = [str(FIXTURES / "synthface_describe.jsonl"), *SYNTH, "--attributes", "describe", "--tasks", "attribute"]
    report = eval_text(args)
    a = report["answers"]["attribute"]
    assert (a["questions"], a["well_formed_n"], a["refused_n"], a["hedged_n"]) == (3, 2, 1, 1)
    c = report["consistency"]  # face 1: "no beard, but he has a goatee"
    assert (c["answered_faces"], c["faces_violating_a_hard_rule"]) == (2, 1)
    assert "No_Beard -> ~Goatee" in c["rule_violations"]
    none = eval_text([*args, "--rules"])
    assert "consistency" not in none["model"]["synthface"] and none["rules"]["compiled"] == 0
    assert none["model"]["synthface"]["attributes/accuracy"] == report["model"]["synthface"]["attributes/accuracy"]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("unknown_id.jsonl", r"unknown_id.jsonl:3: unknown id 'synthface/2/7::Smiling': no face of this split"),
        ("duplicate_id.jsonl", r"duplicate_id.jsonl:3: duplicate id 'synthface/2/0::Smiling' \(first .* line 1\)"),
        ("not_json.jsonl", r"not_json.jsonl:2: not valid JSON .*answer: yes"),
        ("answer_not_text.jsonl", r"answer_not_text.jsonl:1: 'answer' of 'synthface/2/0::Smiling' must be a string"),
        ("describe_for_yesno.jsonl", r"describe_for_yesno.jsonl:1: unknown id .*pass --attributes describe"),
    ],
)
def test_eval_text_names_the_file_line_and_value_of_a_bad_answer(fixture, message):
    with pytest.raises(SystemExit, match=message):
        run(["eval-text", str(FIXTURES / fixture), *SYNTH])


def test_eval_text_on_real_celebahq(shared_data, tmp_path, capsys):
    """Real CelebA-HQ labels: exported questions answered with their own ground truth score perfectly."""
    data = ["--data", str(shared_data / "celebahq64"), "--kind", "celebamaskhq", "--limit", "2"]
    questions = tmp_path / "q.jsonl"
    run(["qa", "export", *data, "--out", str(questions)])
    lines = [json.loads(line) for line in questions.read_text().splitlines()]
    assert len(lines) == 2 * 40 and all(Path(q["image"]).is_file() for q in lines)
    answers = tmp_path / "a.jsonl"
    answers.write_text("".join(json.dumps({"id": q["id"], "answer": f"{q['answer']}."}) + "\n" for q in lines))
    report = eval_text([str(answers), *data])
    model = report["model"]["celebamaskhq"]
    assert model["attributes/accuracy"] == 1.0 and model["attributes/f1"] == 1.0
    assert report["answers"]["all"]["well_formed"] == 1.0
    assert not math.isnan(report["majority_baseline"]["celebamaskhq"]["attributes/accuracy"])
