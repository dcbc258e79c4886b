"""The engine evaluates an action type's rules once per distinct set of values they
read (rules/engine.py, _outcomes): the same decisions as evaluating every action
afresh, on varied inputs, including values equal in Python but not to the engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.rules import RuleSet, RuleSpec, Usage, build_context, compile_rule, engine, evaluate

TZ = "Europe/London"
START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """No app and no database needed."""
    yield


def _rule(name: str, condition: str, points: str, types: tuple[str, ...] = ("tap",),
          **options: Any) -> Any:
    return compile_rule(RuleSpec(
        rule_id=f"rule-{name}", version_id=f"version-{name}", version=1, name=name,
        action_types=frozenset(types), condition=condition, points=points,
        starts_at=START, **options))


RULES = [
    _rule("Off-peak", "true", "(action.hour < 7 or action.hour >= 19 or action.weekday >= 6)"
          " ? 15 : 10", caps={"per_day": 3}),
    _rule("Distance", "action.attributes.distance_km > 0",
          "round(5 + action.attributes.distance_km)"),
    _rule("Ward boost", 'member.ward in ["Armley", "Roundhay"]', "5", priority=-1),
    _rule("Flagged", "action.attributes.certified == true", "100", stackable=False,
          priority=5),
    _rule("Mode", 'action.attributes.mode == "bus"', "action.attributes.count * 2"),
]

values = st.one_of(st.none(), st.booleans(), st.integers(-3, 40),
                   st.floats(-2, 40, allow_nan=False), st.sampled_from(["bus", "tram", ""]),
                   st.lists(st.integers(0, 3), max_size=2))
attributes = st.dictionaries(st.sampled_from(["distance_km", "certified", "mode", "count",
                                              "route"]), values, max_size=5)


def _decisions(ruleset: Any, moment: datetime, attrs: dict[str, Any], ward: str | None,
               usage: Usage) -> tuple[Any, ...]:
    member = {"ward": ward, "joined_at": "2025-06-01T00:00:00Z", "days_since_joined": 200,
              "actions_total": 3}
    context = build_context("tap", moment, attrs, member, NOW, TZ)
    result = evaluate(ruleset, "tap", moment, context, usage)
    return (tuple((d.spec.name, d.points, d.capped_by) for d in result.decisions),
            tuple((spec.name, message) for spec, message in result.errors))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 24 * 14 - 1), attributes,
                          st.sampled_from([None, "Armley", "Kirkstall", "Roundhay"])),
                min_size=1, max_size=40))
def test_memoised_evaluation_gives_what_fresh_evaluation_gives(actions) -> None:
    shared = RuleSet(RULES)  # memoises across the actions, as a batch does
    usage_memo, usage_fresh = Usage(), Usage()
    for hours, attrs, ward in actions:
        moment = START + timedelta(hours=hours)
        remembered = _decisions(shared, moment, attrs, ward, usage_memo)
        fresh = _decisions(RuleSet(RULES), moment, attrs, ward, usage_fresh)  # empty memo
        assert remembered == fresh
    assert usage_memo == usage_fresh


def test_values_equal_in_python_but_not_to_the_engine_are_kept_apart() -> None:
    ruleset = RuleSet([_rule("Certified", "action.attributes.certified == true", "7")])
    moment = START + timedelta(hours=12)
    outcomes = []
    for value in (True, 1, 1.0, True, "true"):
        outcomes.append(_decisions(ruleset, moment, {"certified": value}, None, Usage())[0])
    assert outcomes == [(("Certified", 7, None),), (), (), (("Certified", 7, None),), ()]


def test_negative_zero_and_key_order_are_kept_apart() -> None:
    ruleset = RuleSet([_rule("Sign", "true", "1 / action.attributes.x > 0 ? 3 : 4"),
                       _rule("First", "true", 'keys(action.attributes)[0] == "x" ? 5 : 6')])
    moment = START + timedelta(hours=12)
    for attrs in ({"x": 0.0, "y": 1}, {"x": -0.0, "y": 1}, {"y": 1, "x": 0.0}):
        remembered = _decisions(ruleset, moment, attrs, None, Usage())
        assert remembered == _decisions(RuleSet(ruleset), moment, attrs, None, Usage())


def test_shared_values_are_evaluated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ruleset = RuleSet(RULES)
    calls = []
    plan = ruleset.plan("tap")
    program = plan.program

    class Counting:
        def evaluate(self, picked: dict[str, Any]) -> Any:
            calls.append(dict(picked))
            return program.evaluate(picked)

    monkeypatch.setattr(plan, "program", Counting())
    moment = START + timedelta(hours=8)
    first = [_decisions(ruleset, moment, {"distance_km": 4.5, "mode": "bus", "count": 2},
                        "Armley", Usage()) for _ in range(5)]
    assert len(calls) == 1
    assert first[0][0] == (("Distance", 10, None), ("Mode", 4, None),
                           ("Off-peak", 10, None), ("Ward boost", 5, None))
    assert len({answer for answer in first}) == 1
    # A different distance (or a list, never memoised) is evaluated again.
    _decisions(ruleset, moment, {"distance_km": 5.5, "mode": "bus", "count": 2}, "Armley",
               Usage())
    _decisions(ruleset, moment, {"distance_km": [1], "mode": "bus"}, "Armley", Usage())
    _decisions(ruleset, moment, {"distance_km": [1], "mode": "bus"}, "Armley", Usage())
    assert len(calls) == 4


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_MEMO_SIZE", 8)
    ruleset = RuleSet(RULES)
    for n in range(30):
        _decisions(ruleset, START + timedelta(hours=9), {"distance_km": n + 0.25}, None,
                   Usage())
        assert len(ruleset.plan("tap").memo) <= 8
