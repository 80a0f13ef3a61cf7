"""Formulas of the rule language: a small propositional AST over characteristic names.

Every rule is implicitly ``forall x``: all predicates talk about the same face, so a
rule is a propositional formula over the model's characteristics. ``&`` and ``|``
are n-ary (flattened) so that rendering and re-parsing give the same tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar, Union

import torch

GroupKind = Literal["at_least_one", "at_most_one", "exactly_one"]
GROUP_KINDS: tuple[str, ...] = ("at_least_one", "at_most_one", "exactly_one")


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Not:
    arg: Formula


@dataclass(frozen=True)
class And:
    args: tuple[Formula, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Formula, ...]


@dataclass(frozen=True)
class Implies:
    left: Formula  # antecedent
    right: Formula  # consequent


@dataclass(frozen=True)
class Iff:
    left: Formula
    right: Formula


@dataclass(frozen=True)
class Group:
    """A cardinality constraint over distinct characteristics."""

    kind: GroupKind
    names: tuple[str, ...]


Formula = Union[Var, Not, And, Or, Implies, Iff, Group]  # noqa: UP007 (forward references)


@dataclass(frozen=True)
class Rule:
    """One weighted rule. ``hard`` rules are also enforced by consistent decoding."""

    formula: Formula
    weight: float = 1.0
    hard: bool = True
    source: str = "<string>"
    line: int = 0
    variables: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", variables(self.formula))

    @property
    def text(self) -> str:
        """The normalised formula (bare names, minimal parentheses)."""
        return render(self.formula)

    @property
    def tag(self) -> str:
        kind = "hard" if self.hard else "soft"
        return f"[{kind}]" if self.weight == 1.0 else f"[{kind} {self.weight!r}]"

    def to_line(self) -> str:
        return f"{self.tag} {self.text}"


def variables(f: Formula) -> tuple[str, ...]:
    """Distinct characteristic names of a formula, in first-seen order."""
    out: dict[str, None] = {}

    def walk(g: Formula) -> None:
        match g:
            case Var(name):
                out[name] = None
            case Group(_, names):
                out.update(dict.fromkeys(names))
            case Not(a):
                walk(a)
            case And(args) | Or(args):
                for a in args:
                    walk(a)
            case Implies(a, b) | Iff(a, b):
                walk(a)
                walk(b)

    walk(f)
    return tuple(out)


# Binding strength, loosest first: <-> 1, -> 2, | 3, & 4, ~ 5, atoms 6.
def _prec(f: Formula) -> int:
    match f:
        case Iff():
            return 1
        case Implies():
            return 2
        case Or():
            return 3
        case And():
            return 4
        case Not():
            return 5
    return 6


def render(f: Formula) -> str:
    """Canonical text of a formula; ``parse(render(f)) == f`` (tested)."""

    def wrap(g: Formula, min_prec: int) -> str:
        s = render(g)
        return f"({s})" if _prec(g) < min_prec else s

    match f:
        case Var(name):
            return name
        case Group(kind, names):
            return f"{kind}({', '.join(names)})"
        case Not(a):
            return "~" + wrap(a, 5)
        case And(args):
            return " & ".join(wrap(a, 5) for a in args)
        case Or(args):
            return " | ".join(wrap(a, 4) for a in args)
        case Implies(a, b):  # right-associative
            return f"{wrap(a, 3)} -> {wrap(b, 2)}"
        case Iff(a, b):  # left-associative
            return f"{wrap(a, 1)} <-> {wrap(b, 2)}"
    raise TypeError(f"not a formula: {f!r}")


T = TypeVar("T")


@dataclass(frozen=True)
class Connectives(Generic[T]):
    """How one logic interprets the connectives; ``evaluate`` folds a formula with them."""

    neg: Callable[[T], T]
    conj: Callable[[T, T], T]
    disj: Callable[[T, T], T]
    implies: Callable[[T, T], T]
    # Optional direct semantics of a group constraint; None expands it (see expand_group).
    group: Callable[[GroupKind, list[T]], T] | None = None

    def iff(self, a: T, b: T) -> T:
        return self.conj(self.implies(a, b), self.implies(b, a))


def evaluate(f: Formula, values: Mapping[str, T], logic: Connectives[T]) -> T:
    """Truth value of ``f`` under ``logic``."""
    match f:
        case Var(name):
            return values[name]
        case Not(a):
            return logic.neg(evaluate(a, values, logic))
        case And(args):
            return _fold(logic.conj, [evaluate(a, values, logic) for a in args])
        case Or(args):
            return _fold(logic.disj, [evaluate(a, values, logic) for a in args])
        case Implies(a, b):
            return logic.implies(evaluate(a, values, logic), evaluate(b, values, logic))
        case Iff(a, b):
            return logic.iff(evaluate(a, values, logic), evaluate(b, values, logic))
        case Group(kind, names):
            if logic.group is not None:
                return logic.group(kind, [values[n] for n in names])
            return evaluate(expand_group(f), values, logic)
    raise TypeError(f"not a formula: {f!r}")


def _fold(op: Callable[[T, T], T], xs: list[T]) -> T:
    acc = xs[0]
    for x in xs[1:]:
        acc = op(acc, x)
    return acc


def expand_group(g: Group) -> Formula:
    """at_least_one = OR of members; at_most_one = AND over pairs of ~(a & b); exactly_one = both."""
    members = [Var(n) for n in g.names]
    alo: Formula = Or(tuple(members)) if len(members) > 1 else members[0]
    pairs = tuple(Not(And((a, b))) for i, a in enumerate(members) for b in members[i + 1 :])
    amo: Formula = And(pairs) if len(pairs) > 1 else pairs[0]
    return {"at_least_one": alo, "at_most_one": amo, "exactly_one": And((alo, amo))}[g.kind]


def assignment_bits(n: int) -> torch.Tensor:
    """All 2^n assignments as a bool ``[2^n, n]`` table; row a has bit k = ``(a >> k) & 1``."""
    return (torch.arange(2**n)[:, None] >> torch.arange(n)) & 1 == 1


def _count_group(kind: GroupKind, members: list[torch.Tensor]) -> torch.Tensor:
    count = torch.stack(members).long().sum(0)
    return {"at_least_one": count >= 1, "at_most_one": count <= 1, "exactly_one": count == 1}[kind]


BOOLEAN: Connectives[torch.Tensor] = Connectives(
    neg=torch.logical_not,
    conj=torch.logical_and,
    disj=torch.logical_or,
    implies=lambda a, b: torch.logical_or(torch.logical_not(a), b),
    group=_count_group,
)


def truth(f: Formula, columns: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Boolean truth of ``f`` elementwise over bool tensors (groups by counting)."""
    return evaluate(f, columns, BOOLEAN)
