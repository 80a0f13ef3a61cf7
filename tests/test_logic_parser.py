"""Rule language: syntax, precedence, names, errors, includes, round trips."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceinsight.logic import RuleError, UnsatisfiableRules, load_rules, parse_rules
from faceinsight.logic.formula import And, Formula, Group, Iff, Implies, Not, Or, Var, render
from faceinsight.vocab import CELEBA_ATTRIBUTES, VOCAB

ALL = list(VOCAB)
RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
A, B, C, D = (Var(n) for n in ("Bald", "Bangs", "Wavy_Hair", "Smiling"))


def one(text: str, names: list[str] | None = None) -> Formula:
    rs = parse_rules(text, names or ALL)
    assert len(rs.rules) == 1
    return rs.rules[0].formula


def test_precedence_and_associativity() -> None:
    assert one("Bald | Bangs & Wavy_Hair") == Or((A, And((B, C))))
    assert one("~Bald & Bangs") == And((Not(A), B))
    assert one("Bald -> Bangs -> Wavy_Hair") == Implies(A, Implies(B, C))
    assert one("Bald <-> Bangs <-> Wavy_Hair") == Iff(Iff(A, B), C)
    assert one("Bald -> Bangs <-> Wavy_Hair | Smiling") == Iff(Implies(A, B), Or((C, D)))
    assert one("(Bald -> Bangs) -> Wavy_Hair") == Implies(Implies(A, B), C)
    assert one("forall x: Bald(x) -> ~Bangs(x) & ~Wavy_Hair(x)") == Implies(A, And((Not(B), Not(C))))


def test_names_with_digits_dashes_and_plus() -> None:
    f = one("Age_20-29->~Age_70+ & 5_o_Clock_Shadow")
    assert f == Implies(Var("Age_20-29"), And((Not(Var("Age_70+")), Var("5_o_Clock_Shadow"))))
    assert one("at_most_one(Age_0-2(x), Age_70+)") == Group("at_most_one", ("Age_0-2", "Age_70+"))


def test_tags_weights_and_comments() -> None:
    rs = parse_rules(
        "# header\n\n[soft 0.25] Bald -> ~Bangs  # why\nBangs\n[hard 2] exactly_one(Male, Female)\r\n", ALL
    )
    assert [(r.hard, r.weight, r.line) for r in rs.rules] == [(False, 0.25, 3), (True, 1.0, 4), (True, 2.0, 5)]
    assert rs.rules[0].to_line() == "[soft 0.25] Bald -> ~Bangs"


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("Bald -> ~Bangs\n[hard] Bald -> ~Wavy_Hiar\n", 2, 17, "did you mean 'Wavy_Hair'"),
        ("Bald -> & Bangs\n", 1, 9, "unexpected '&'"),
        ("forall x: Bald(x) -> Bangs(y)\n", 1, 28, "variable 'y'"),
        ("[soft 0] Bald\n", 1, 7, "weight must be > 0"),
        ("at_most_one(Bald, Bald)\n", 1, 1, "repeats"),
        ("Bald $ Bangs\n", 1, 6, r"unexpected '\$'"),
        ("Bald -> (Bangs\n", 1, 15, r"unexpected end of line; expected one of: '\)'"),
    ],
)
def test_errors_name_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(RuleError, match=fragment) as info:
        parse_rules(text, ALL, source="my.rules")
    assert (info.value.source, info.value.line, info.value.column) == ("my.rules", line, column)
    assert str(info.value).startswith(f"my.rules:{line}:{column}:")


def test_includes_relative_once_and_cycles(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.rules").write_text("include ../b.rules\nBald -> ~Bangs\n")
    (tmp_path / "b.rules").write_text("exactly_one(Male, Female)\n")
    (tmp_path / "main.rules").write_text("include sub/a.rules\ninclude b.rules\nSmiling\n")
    rs = load_rules([tmp_path / "main.rules"], ALL)
    assert [r.text for r in rs.rules] == ["exactly_one(Male, Female)", "Bald -> ~Bangs", "Smiling"]
    (tmp_path / "b.rules").write_text("include sub/a.rules\n")
    with pytest.raises(RuleError, match="include cycle") as info:
        load_rules([tmp_path / "main.rules"], ALL)
    assert info.value.line == 1
    with pytest.raises(RuleError, match="not found"):
        parse_rules("include nowhere.rules\n", ALL)


def test_rules_outside_the_model_are_dropped_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="faceinsight.logic.parser"):
        rs = parse_rules("exactly_one(Male, Female)\nBald -> ~Bangs\n", list(CELEBA_ATTRIBUTES))
    assert [r.text for r in rs.rules] == ["Bald -> ~Bangs"]
    assert len(caplog.records) == 1 and "Female" in caplog.records[0].getMessage()


def test_unsatisfiable_hard_rules_are_reported_at_load() -> None:
    with pytest.raises(UnsatisfiableRules, match="Bald"):
        parse_rules(
            "[hard] Bald -> Bangs\n[hard] Bangs -> ~Bald\n[hard] Bald | Wavy_Hair\n[hard] Wavy_Hair -> Bald\n", ALL
        )
    # the same rules are fine when one is soft
    parse_rules("[hard] Bald -> Bangs\n[hard] Bangs -> ~Bald\n[hard] Bald | Wavy_Hair\n[soft] Wavy_Hair -> Bald\n", ALL)


def test_too_many_variables_is_a_clear_error() -> None:
    names = list(CELEBA_ATTRIBUTES[:13])
    with pytest.raises(ValueError, match="<string>:1: rule has 13 variables"):
        parse_rules(" | ".join(names) + "\n", ALL)
    parse_rules(f"at_most_one({', '.join(names)})\n", ALL)  # groups use closed forms: no cap


@pytest.mark.parametrize("name", ["celeba", "maad", "demographics", "expression"])
def test_shipped_rule_files_load_and_round_trip(name: str) -> None:
    rs = load_rules([RULES_DIR / f"{name}.rules"], ALL)
    assert len(rs.rules) > 0
    again = parse_rules(rs.to_text(), ALL)
    assert [r.to_line() for r in again.rules] == [r.to_line() for r in rs.rules]
    assert again.to_text() == rs.to_text()


def test_celeba_rules_have_the_22_mutual_exclusions() -> None:
    rs = load_rules([RULES_DIR / "celeba.rules"], list(CELEBA_ATTRIBUTES))
    exclusions = [r for r in rs.rules if isinstance(r.formula, Implies) and isinstance(r.formula.right, Not)
                  and isinstance(r.formula.left, Var) and isinstance(r.formula.right.arg, Var)]  # fmt: skip
    assert len(exclusions) >= 22


POOL = ["5_o_Clock_Shadow", "Age_20-29", "Age_70+", "Bald", "Bangs", "Male"]


def formulas(max_leaves: int = 8) -> st.SearchStrategy[Formula]:
    groups = st.builds(
        Group,
        st.sampled_from(["at_least_one", "at_most_one", "exactly_one"]),
        st.lists(st.sampled_from(POOL), min_size=2, max_size=4, unique=True).map(tuple),
    )
    leaves = st.one_of(st.sampled_from(POOL).map(Var), groups)

    def extend(children: st.SearchStrategy[Formula]) -> st.SearchStrategy[Formula]:
        nary = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.one_of(
            children.map(Not),
            nary.map(And),
            nary.map(Or),
            st.builds(Implies, children, children),
            st.builds(Iff, children, children),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


@settings(max_examples=150, deadline=None)
@given(formulas())
def test_render_then_parse_is_identity(f: Formula) -> None:
    assert one("[soft] " + render(f) + "\n") == f
