"""The rules engine: which rules match an action and how many points each gives.

Pure: no Flask, no database. Expressions are compiled by zen-engine (GoRules),
never Python eval. The caller supplies facts about the action and member (see
`context` for every field an expression can use), and how much of each cap and
budget is already used."""

from .context import CONTEXT_FIELDS, SAMPLE_CONTEXT, build_context, member_facts
from .engine import (
    MAX_AWARD_POINTS,
    PERIODS,
    CompiledRule,
    Decision,
    Evaluation,
    ExpressionError,
    RuleSet,
    RuleSpec,
    Usage,
    compile_rule,
    evaluate,
    period_bounds,
    rule_set,
    validate_expression,
)

__all__ = [
    "CONTEXT_FIELDS",
    "MAX_AWARD_POINTS",
    "PERIODS",
    "SAMPLE_CONTEXT",
    "CompiledRule",
    "Decision",
    "Evaluation",
    "ExpressionError",
    "RuleSet",
    "RuleSpec",
    "Usage",
    "build_context",
    "compile_rule",
    "evaluate",
    "member_facts",
    "period_bounds",
    "rule_set",
    "validate_expression",
]
