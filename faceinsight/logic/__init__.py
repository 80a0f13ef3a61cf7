"""Logical constraint module (eq. 9): a rule language, its exact compiled losses, and consistent decoding."""

from faceinsight.logic.compile import RuleSet
from faceinsight.logic.decode import UnsatisfiableRules
from faceinsight.logic.formula import Rule
from faceinsight.logic.losses import LogicLoss
from faceinsight.logic.metrics import consistency_rate, failed_ratio
from faceinsight.logic.parser import RuleError, load_rules, parse_rules, resolve_rule_file

__all__ = [
    "LogicLoss",
    "Rule",
    "RuleError",
    "RuleSet",
    "UnsatisfiableRules",
    "consistency_rate",
    "failed_ratio",
    "load_rules",
    "parse_rules",
    "resolve_rule_file",
]
