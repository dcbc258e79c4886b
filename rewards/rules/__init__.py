"""The rules engine: which rules match an action and how many points each gives.

Pure: no Flask, no database. Expressions are compiled by zen-engine (GoRules),
never Python eval. The caller supplies facts about the action and member, and
how much of each cap and budget is already used."""

from .engine import (
    PERIODS,
    CompiledRule,
    Decision,
    Evaluation,
    ExpressionError,
    RuleSpec,
    Usage,
    build_context,
    compile_rule,
    evaluate,
    period_bounds,
    validate_expression,
)

__all__ = [
    "PERIODS",
    "CompiledRule",
    "Decision",
    "Evaluation",
    "ExpressionError",
    "RuleSpec",
    "Usage",
    "build_context",
    "compile_rule",
    "evaluate",
    "period_bounds",
    "validate_expression",
]
