"""Bounds on a rule expression's size and shape (rewards/rules/shape.py): no app, no
database. The worst expressions within the bounds are run through the engine here, so a
bound loosened too far shows up as a slow test or a crash, not in production."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import zen

from rewards.actions.rulebook import compiled
from rewards.rules import ExpressionError, RuleSpec, compile_rule, validate_expression
from rewards.rules.shape import DEFAULT_MAX_CHARS, MAX_DEPTH, ShapeError, check_shape

ACCEPTED = [
    "true",
    "action.hour in [7..9]",
    "action.hour not in (7..9]",
    "action.attributes.distance_km in [0.5..2.5)",
    'member.ward in ["Armley", "Beeston"]',
    "some(action.attributes.stops, # in [1..5])",
    # A closure in another's array argument runs once, not once per item.
    "count(filter(action.attributes.stops, # > 1), # > 2) > 0",
    '"1..5" == \'a..b\'',  # ".." inside strings is no range
    "`${action.hour}..` == \"1..\"",
    "round(action.attributes.distance_km * 1.5)",
    "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH,
    "`a${ {a: 1}.a }b` == 'a1b'",
    'matches(action.attributes.card, "^[A-Z]{2}[0-9]{6}$")',
    'matches(action.attributes.day, "^\\d{4}-\\d{2}-\\d{2}$") and "{a}" != "{9"',
]

REFUSED = [
    ("x" * (DEFAULT_MAX_CHARS + 1), "at most 2000 characters, this has 2001"),
    ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), "nest at most 32 deep"),
    ("[" * 40 + "]" * 40, "nest at most 32 deep"),
    ("{a: " * 33 + "1" + "}" * 33, "nest at most 32 deep"),
    ("`${" * 33 + "1" + "}`" * 33, "nest at most 32 deep"),
    ("count([0..1000000000], # > 5) > 0", "may only follow `in`"),
    ("len([1..5]) > 0", "may only follow `in`"),
    ("x in ([1..5])", "may only follow `in`"),
    ("[1..5]", "may only follow `in`"),
    ("map(a, map(b, #))", "another closure"),
    # The engine compiles the pattern on every call: 100 ms for this one.
    ('matches(action.attributes.x, ".{9999}")', "may total at most 256"),
    ('matches(action.attributes.x, "(.{30}){30}")', "may total at most 256"),
    ('extract(x, "a{200}") == null or matches(x, "b{57}")', "may total at most 256"),
    ("`${x}a{ 300 }` == 'a'", "may total at most 256"),
    ("count(a, some(b, # > 1)) > 0", "another closure"),
]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_ordinary_shapes_are_accepted(expression: str) -> None:
    check_shape(expression)


@pytest.mark.parametrize(("expression", "expected"), REFUSED)
def test_shapes_past_the_bounds_are_refused(expression: str, expected: str) -> None:
    with pytest.raises(ShapeError, match=re.escape(expected)):
        check_shape(expression)


def test_the_length_bound_is_the_callers() -> None:
    check_shape("1" * 50, max_chars=50)
    with pytest.raises(ShapeError, match="at most 49 characters, this has 50"):
        check_shape("1" * 50, max_chars=49)
    check_shape("true or " * 1000 + "true", max_chars=None)  # shape only


def test_validate_refuses_before_the_engine_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: object) -> None:
        raise AssertionError("the engine was called")

    for name in ("validate_expression", "compile_expression", "evaluate_expression"):
        monkeypatch.setattr(zen, name, never)
    for expression, expected in REFUSED:
        with pytest.raises(ExpressionError, match=re.escape(expected)):
            validate_expression(expression, "boolean")
    with pytest.raises(ExpressionError, match="at most 10 characters"):
        validate_expression("action.hour > 1", "boolean", max_chars=10)


def _spec(condition: str, points: str = "10") -> RuleSpec:
    return RuleSpec(rule_id="r", version_id="v", version=1, name="Saved before the bounds",
                    action_types=frozenset({"bus_journey"}), condition=condition,
                    points=points, starts_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_a_rule_saved_before_the_bounds_is_unusable_not_run() -> None:
    # The engine would allocate the whole range for every action (or abort the process).
    spec = _spec("count([0..1000000000], # > 5) > 0")
    with pytest.raises(ExpressionError, match="may only follow `in`"):
        compile_rule(spec)
    rule = compiled(spec)  # as the rule book loads it: every use fails, the rule is skipped
    with pytest.raises(ExpressionError, match="cannot be compiled"):
        rule.condition.evaluate({})
    # A long expression saved under a higher RULE_EXPRESSION_MAX_CHARS still runs.
    compile_rule(_spec("true or " * 500 + "true"))


# The longest or deepest each kind of construct can be within the bounds. The engine
# parses and evaluates recursively: these must not overflow its stack (which would end
# the whole process, not fail the test). Their time, each under 2 ms except the
# costliest regular expression at about 20 ms, is measured outside the suite.
N = DEFAULT_MAX_CHARS
WORST = {
    "not": "!" * (N - 4) + "true",
    "negation": "-" * (N - 1) + "1",
    "sum": "1" + "+1" * ((N - 1) // 2),
    "power": "1" + "^1" * ((N - 1) // 2),
    "ternary": "true ? 1 : " * ((N - 1) // 11) + "1",
    "property": "action" + ".a" * ((N - 6) // 2),
    "and": "true" + " and true" * ((N - 4) // 9),
    "brackets": "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH,
    "closure": "count([" + ",".join(["1"] * 980) + "], # > 0) > 0",
    "huge number": "9" * N,
    "regular expression": 'matches("a", "' + "." * (N - 22) + '.{256}")',
    "regular expressions": " or ".join(['matches("a", ".{3}")'] * 83),
}


@pytest.mark.parametrize("name", sorted(WORST))
def test_the_worst_within_the_bounds_runs(name: str) -> None:
    expression = WORST[name]
    assert len(expression) <= N
    check_shape(expression)
    try:
        zen.compile_expression(expression).evaluate(
            {"action": {"a": None, "hour": 9, "attributes": {}}, "member": {}})
    except RuntimeError:
        pass  # refused by the engine (a number past its range): refused, not run
