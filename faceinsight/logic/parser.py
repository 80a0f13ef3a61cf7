"""Parse rule files into :class:`~faceinsight.logic.formula.Rule` lists, and load them as a RuleSet.

Syntax (grammar.lark, docs/logic.md): one rule per line with an optional ``[hard]``,
``[soft]``, ``[hard w]`` or ``[soft w]`` tag (untagged = ``[hard]``, weight 1), an
optional ``forall x:`` prefix, predicates ``Name(x)`` or bare names, and
``include path`` lines resolved relative to the including file. Every error names
file, line and column.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, v_args
from lark.exceptions import VisitError
from lark.lexer import PatternStr
from lark.tree import Meta

from faceinsight.logic.compile import RuleSet
from faceinsight.logic.formula import And, Formula, Group, Iff, Implies, Not, Or, Rule, Var
from faceinsight.vocab import VOCAB

log = logging.getLogger(__name__)


class RuleError(ValueError):
    """A rule file is malformed; the message starts with ``file:line:column``."""

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        self.source, self.line, self.column = source, line, column
        super().__init__(f"{source}:{line}:{column}: {message}")


@cache
def _lark() -> Lark:
    return Lark.open("grammar.lark", rel_to=__file__, parser="lalr", propagate_positions=True)


def _known(name: Token, source: str) -> str:
    """Check a characteristic name against the vocabulary, suggesting the closest known name."""
    if name not in VOCAB:
        close = difflib.get_close_matches(str(name), list(VOCAB), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RuleError(source, name.line, name.column, f"unknown characteristic {str(name)!r}{hint}")
    return str(name)


class _ToRules(Transformer):
    """Parse tree -> rules and include requests, checking names and predicate variables."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.pred_vars: list[Token] = []  # variables of Name(x) predicates of the rule being built

    def literal(self, children: list[Token | None]) -> Var:
        name, var = children
        if var is not None:
            self.pred_vars.append(var)
        return Var(_known(name, self.source))

    def group(self, children: list) -> Group:
        kind, *members = children
        names = tuple(m.name for m in members)
        if len(names) < 2:
            raise RuleError(self.source, kind.line, kind.column, f"{kind} needs at least two characteristics")
        if len(set(names)) != len(names):
            raise RuleError(self.source, kind.line, kind.column, f"{kind} repeats a characteristic: {names}")
        return Group(str(kind), names)  # type: ignore[arg-type]

    def not_(self, children: list[Formula]) -> Not:
        return Not(children[0])

    def and_(self, children: list[Formula]) -> And:
        return And(tuple(children))

    def or_(self, children: list[Formula]) -> Or:
        return Or(tuple(children))

    def implies(self, children: list[Formula]) -> Implies:
        return Implies(*children)

    def iff(self, children: list[Formula]) -> Iff:
        return Iff(*children)

    def tag(self, children: list[Token | None]) -> tuple[bool, float]:
        kind, number = children
        weight = 1.0 if number is None else float(number)
        if not (math.isfinite(weight) and weight > 0):
            raise RuleError(self.source, number.line, number.column, f"rule weight must be > 0, got {str(number)!r}")
        return kind == "hard", weight

    def quantifier(self, children: list[Token]) -> Token:
        return children[0]

    @v_args(meta=True)
    def rule(self, meta: Meta, children: list) -> Rule:
        tag, var, formula = children
        hard, weight = tag if tag is not None else (True, 1.0)
        expected = var if var is not None else (self.pred_vars[0] if self.pred_vars else None)
        for v in self.pred_vars:
            if v != expected:
                raise RuleError(
                    self.source, v.line, v.column, f"variable {str(v)!r} is not the rule's variable {str(expected)!r}"
                )
        self.pred_vars = []
        return Rule(formula, weight=weight, hard=hard, source=self.source, line=meta.line)

    def include(self, children: list[Token]) -> Token:
        return children[0]

    def start(self, children: list) -> list:
        return children


def _describe(terminal: str) -> str:
    """Readable name of a grammar terminal for error messages."""
    if terminal in ("_NL", "$END"):
        return "end of line"
    pattern = _lark().get_terminal(terminal).pattern
    return repr(pattern.value) if isinstance(pattern, PatternStr) else terminal.lower()


def _syntax_error(error: UnexpectedInput, source: str, text: str) -> RuleError:
    if isinstance(error, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return RuleError(source, len(lines), len(lines[-1]) + 1, "unexpected end of file")
    if isinstance(error, UnexpectedToken):
        got = "end of line" if error.token.type == "_NL" else repr(str(error.token))
        expected = sorted({_describe(name) for name in error.accepts or error.expected})
        what = f"unexpected {got}; expected one of: {', '.join(expected)}"
    elif isinstance(error, UnexpectedCharacters):
        what = f"unexpected character {error.char!r}"
    else:
        what = str(error)
    return RuleError(source, error.line, error.column, f"{what}\n{error.get_context(text).rstrip()}")


def _parse(text: str, source: str, base: Path, stack: tuple[Path, ...], seen: set[Path]) -> list[Rule]:
    """Rules of one text with its includes expanded in place (each file at most once; cycles are errors)."""
    try:
        tree = _lark().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as e:
        raise _syntax_error(e, source, text) from None
    try:
        items = _ToRules(source).transform(tree)
    except VisitError as e:  # lark wraps errors raised in the transformer
        raise e.orig_exc from None
    rules: list[Rule] = []
    for item in items:
        if isinstance(item, Rule):
            rules.append(item)
            continue
        path = (base / str(item)).resolve()
        if path in stack:
            chain = " -> ".join(str(p) for p in (*stack, path))
            raise RuleError(source, item.line, item.column, f"include cycle: {chain}")
        if path in seen:
            log.debug("%s already included; skipping the repeat at %s:%d", path, source, item.line)
            continue
        if not path.is_file():
            raise RuleError(source, item.line, item.column, f"included file {str(item)!r} not found ({path})")
        seen.add(path)
        rules += _parse(path.read_text(), str(path), path.parent, (*stack, path), seen)
    return rules


def _rule_set(rules: list[Rule], characteristics: Sequence[str]) -> RuleSet:
    """Keep the rules whose characteristics the model predicts; log one line per dropped rule.

    The dropped rules are kept as ``RuleSet.dropped`` (``file:line: rule``) so a run can report them.
    """
    wanted = set(characteristics)
    kept, dropped = [], []
    for r in rules:
        missing = [v for v in r.variables if v not in wanted]
        if missing:
            log.info("%s:%d: rule %r dropped: the model does not predict %s", r.source, r.line, r.text, missing)
            dropped.append(f"{r.source}:{r.line}: {r.text}")
        else:
            kept.append(r)
    rule_set = RuleSet(kept, characteristics)
    rule_set.dropped = dropped
    return rule_set


def parse_rules(text: str, characteristics: Sequence[str], source: str = "<string>") -> RuleSet:
    """Rule set from text; includes resolve relative to the current directory."""
    return _rule_set(_parse(text, source, Path.cwd(), (), set()), characteristics)


def load_rules(paths: Sequence[str | Path], characteristics: Sequence[str]) -> RuleSet:
    """Rule set from files, in order; ``characteristics`` is the model's ordered characteristic list."""
    rules: list[Rule] = []
    seen: set[Path] = set()
    for p in paths:
        path = Path(p).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"rule file not found: {p}")
        if path in seen:
            continue
        seen.add(path)
        rules += _parse(path.read_text(), str(p), path.parent, (path,), seen)
    return _rule_set(rules, characteristics)


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where ``rules/`` lives in a source checkout


def resolve_rule_file(path: str | Path) -> Path:
    """A rule file relative to the working directory, else to the project root (where ``rules/`` lives)."""
    candidate = Path(path)
    if not candidate.exists() and (PROJECT_ROOT / candidate).exists():
        return PROJECT_ROOT / candidate
    return candidate
