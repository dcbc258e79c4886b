"""The rules engine on its own: no app, no database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.rules import (
    CONTEXT_FIELDS,
    PERIODS,
    SAMPLE_CONTEXT,
    CompiledRule,
    Decision,
    ExpressionError,
    RuleSpec,
    Usage,
    build_context,
    compile_rule,
    evaluate,
    member_facts,
    period_bounds,
    validate_expression,
)
from rewards.rules.engine import MAX_AWARD_POINTS

TZ = "Europe/London"
START = datetime(2026, 1, 1, tzinfo=UTC)
MONDAY = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday, noon in London (GMT)
MEMBER = {"ward": "Armley", "joined_at": "2025-06-01T00:00:00Z", "days_since_joined": 218}


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """These tests need no app and no database: replaces the suite's database clean-up."""
    yield


def rule(
    name: str = "Bus journey",
    *,
    rule_id: str | None = None,
    types: tuple[str, ...] = ("bus_journey",),
    condition: str = "true",
    points: str = "10",
    **options: Any,
) -> CompiledRule:
    spec = RuleSpec(
        rule_id=rule_id or f"rule-{name}",
        version_id=f"version-{name}",
        version=1,
        name=name,
        action_types=frozenset(types),
        condition=condition,
        points=points,
        starts_at=options.pop("starts_at", START),
        **options,
    )
    return compile_rule(spec)


def run(
    rules: list[CompiledRule],
    at: datetime = MONDAY,
    type_code: str = "bus_journey",
    attributes: dict[str, Any] | None = None,
    usage: Usage | None = None,
):
    context = build_context(type_code, at, attributes or {}, MEMBER, at, TZ)
    return evaluate(rules, type_code, at, context, usage if usage is not None else Usage())


def awards(evaluation) -> list[tuple[str, int, str | None]]:
    return [(d.spec.name, d.points, d.capped_by) for d in evaluation.decisions]


# -- validate_expression ----------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "true",
    "action.attributes.distance_km >= 1",
    "action.hour < 7 or action.hour >= 19",
    'member.ward in ["Armley", "Gipton & Harehills"]',
    "action.weekday >= 6 and action.attributes.mode == \"bus\"",
    # attributes the sample context does not carry are allowed
    "action.attributes.steps >= 5000",
    "action.attributes.certified",
    'action.attributes["kwh saved"] > 100',
])
def test_good_conditions_pass(expression: str) -> None:
    validate_expression(expression, "boolean")


@pytest.mark.parametrize("expression", [
    "10",
    "5 + action.attributes.distance_km",
    "round(5 + action.attributes.distance_km)",
    "action.hour < 7 or action.hour >= 19 ? 15 : 10",
    "20 * action.attributes.hours",
    "action.attributes.steps / 1000",
])
def test_good_points_formulas_pass(expression: str) -> None:
    validate_expression(expression, "number")


@pytest.mark.parametrize("expression", ["action.hour >", "1 +", "(", "foo("])
def test_syntax_error_is_refused_with_the_engines_message(expression: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        validate_expression(expression, "boolean")
    message = str(caught.value)
    assert message.startswith("parserError: ")
    assert "Stack backtrace" not in message
    assert "\n" not in message


def test_syntax_error_message_says_where() -> None:
    with pytest.raises(ExpressionError, match=r"Unexpected end of unary expression at \(13, 13\)"):
        validate_expression("action.hour >", "boolean")


@pytest.mark.parametrize("expression", ["1", "action.hour + 1", "action.attributes.distance_km"])
def test_condition_giving_a_number_is_refused(expression: str) -> None:
    with pytest.raises(ExpressionError, match="a condition must give true or false"):
        validate_expression(expression, "boolean")


@pytest.mark.parametrize("expression", ['"ten"', "true", "action.hour > 3",
                                        "action.attributes.mode", "1/0"])
def test_points_giving_a_string_bool_or_nothing_is_refused(expression: str) -> None:
    with pytest.raises(ExpressionError, match="a points formula must give a number"):
        validate_expression(expression, "number")


def test_type_error_over_known_attributes_is_refused() -> None:
    with pytest.raises(ExpressionError, match="^vmError: "):
        validate_expression("action.attributes.mode + 1", "number")
    with pytest.raises(ExpressionError, match="^vmError: "):
        validate_expression("action.attributes.steps + action.attributes.mode * 2", "number")


@pytest.mark.parametrize("expression", ["", "   ", "\n"])
def test_empty_expression_is_refused(expression: str) -> None:
    for want in ("boolean", "number"):
        with pytest.raises(ExpressionError, match="empty"):
            validate_expression(expression, want)


def test_non_string_expression_is_refused() -> None:
    with pytest.raises(ExpressionError):
        validate_expression(None, "number")  # type: ignore[arg-type]


def test_compile_rule_refuses_a_bad_expression() -> None:
    with pytest.raises(ExpressionError, match="parserError"):
        rule(points="1 +")


# -- matching ---------------------------------------------------------------------

def test_matches_by_action_type() -> None:
    rules = [rule("Bus", types=("bus_journey", "tram_journey")),
             rule("Walk", types=("walk",), points="3")]
    assert awards(run(rules, type_code="bus_journey")) == [("Bus", 10, None)]
    assert awards(run(rules, type_code="tram_journey")) == [("Bus", 10, None)]
    assert awards(run(rules, type_code="walk")) == [("Walk", 3, None)]
    assert run(rules, type_code="taxi").decisions == []


def test_validity_window_starts_inclusive_ends_exclusive() -> None:
    starts = datetime(2026, 2, 1, tzinfo=UTC)
    ends = datetime(2026, 3, 1, tzinfo=UTC)
    rules = [rule(starts_at=starts, ends_at=ends)]
    second = timedelta(seconds=1)
    assert run(rules, at=starts - second).decisions == []
    assert awards(run(rules, at=starts)) == [("Bus journey", 10, None)]
    assert awards(run(rules, at=ends - second)) == [("Bus journey", 10, None)]
    assert run(rules, at=ends).decisions == []


def test_open_ended_rule_applies_far_ahead() -> None:
    assert run([rule()], at=datetime(2031, 1, 1, tzinfo=UTC)).points == 10


def test_false_condition_gives_no_decision() -> None:
    rules = [rule(condition="action.attributes.distance_km >= 1")]
    evaluation = run(rules, attributes={"distance_km": 0.5})
    assert evaluation.decisions == [] and evaluation.errors == [] and evaluation.points == 0
    assert run(rules, attributes={"distance_km": 1}).points == 10


# -- points -----------------------------------------------------------------------

@pytest.mark.parametrize(("distance", "points"), [
    (0, 5), (3, 8), (3.2, 8), (3.49, 8), (3.5, 9), (4.5, 10), (2.5, 8), (12.7, 18),
])
def test_points_formula_over_attributes_rounds_halves_up(distance: float, points: int) -> None:
    rules = [rule(points="5 + action.attributes.distance_km")]
    evaluation = run(rules, attributes={"distance_km": distance})
    assert evaluation.points == points
    assert isinstance(evaluation.decisions[0].points, int)


def test_rounding_agrees_with_the_engines_round() -> None:
    for value in (0.5, 1.5, 2.5, 3.5, 7.25, 7.75):
        ours = run([rule(points=f"{value}")]).points
        engine = run([rule(points=f"round({value})")]).points
        assert ours == engine, value


def test_off_peak_uses_local_hour() -> None:
    rules = [rule(points="action.hour < 7 or action.hour >= 19 ? 15 : 10")]
    assert run(rules, at=datetime(2026, 1, 5, 6, 59, tzinfo=UTC)).points == 15
    assert run(rules, at=datetime(2026, 1, 5, 7, 0, tzinfo=UTC)).points == 10
    assert run(rules, at=datetime(2026, 1, 5, 18, 59, tzinfo=UTC)).points == 10
    assert run(rules, at=datetime(2026, 1, 5, 19, 0, tzinfo=UTC)).points == 15
    # In summer London is UTC+1: 18:30 UTC is 19:30 local, off-peak.
    assert run(rules, at=datetime(2026, 7, 6, 18, 30, tzinfo=UTC)).points == 15
    assert run(rules, at=datetime(2026, 7, 6, 5, 30, tzinfo=UTC)).points == 15
    assert run(rules, at=datetime(2026, 7, 6, 6, 30, tzinfo=UTC)).points == 10


def test_context_facts() -> None:
    at = datetime(2026, 7, 5, 23, 30, tzinfo=UTC)  # Monday 00:30 in London
    context = build_context("bus_journey", at, {"distance_km": 2}, MEMBER, at, TZ)
    assert context["action"] == {
        "type": "bus_journey",
        "occurred_at": "2026-07-05T23:30:00Z",
        "hour": 0,
        "weekday": 1,
        "attributes": {"distance_km": 2},
    }
    assert context["member"] == MEMBER
    assert context["now"] == "2026-07-05T23:30:00Z"


def test_decision_records_inputs() -> None:
    evaluation = run([rule(points="action.attributes.distance_km")],
                     attributes={"distance_km": 4})
    assert evaluation.decisions == [
        Decision(evaluation.decisions[0].spec, 4, None,
                 {"hour": 12, "weekday": 1, "attributes": {"distance_km": 4}})
    ]


# -- count caps -------------------------------------------------------------------

@pytest.mark.parametrize("period", PERIODS)
def test_count_cap(period: str) -> None:
    rules = [rule(caps={period: 2})]
    usage = Usage()
    results = [awards(run(rules, usage=usage)) for _ in range(4)]
    assert results == [
        [("Bus journey", 10, None)],
        [("Bus journey", 10, None)],
        [("Bus journey", 0, period)],
        [("Bus journey", 0, period)],
    ]
    assert usage.counts[("rule-Bus journey", period)] == 2
    assert usage.points[("rule-Bus journey", period)] == 20


def test_count_cap_reads_usage_measured_by_the_caller() -> None:
    rules = [rule(caps={"per_day": 4, "per_week": 10})]
    usage = Usage(counts={("rule-Bus journey", "per_day"): 1,
                          ("rule-Bus journey", "per_week"): 10})
    assert awards(run(rules, usage=usage)) == [("Bus journey", 0, "per_week")]
    usage = Usage(counts={("rule-Bus journey", "per_day"): 4,
                          ("rule-Bus journey", "per_week"): 10})
    assert awards(run(rules, usage=usage)) == [("Bus journey", 0, "per_day")]


def test_zero_cap_awards_nothing() -> None:
    assert awards(run([rule(caps={"lifetime": 0})])) == [("Bus journey", 0, "lifetime")]


def test_caps_are_per_rule() -> None:
    rules = [rule("A", caps={"per_day": 1}), rule("B", points="3", caps={"per_day": 1})]
    usage = Usage(counts={("rule-A", "per_day"): 1})
    assert awards(run(rules, usage=usage)) == [("A", 0, "per_day"), ("B", 3, None)]


# -- points caps ------------------------------------------------------------------

def test_points_cap_cuts_the_award_then_caps() -> None:
    rules = [rule(points="15", points_caps={"per_day": 40})]
    usage = Usage()
    results = [awards(run(rules, usage=usage)) for _ in range(4)]
    assert results == [
        [("Bus journey", 15, None)],
        [("Bus journey", 15, None)],
        [("Bus journey", 10, "points_per_day")],  # cut to what the cap left
        [("Bus journey", 0, "points_per_day")],
    ]


def test_points_cap_uses_the_tightest_room() -> None:
    rules = [rule(points="15", points_caps={"per_day": 100, "per_month": 50})]
    usage = Usage(points={("rule-Bus journey", "per_day"): 10,
                          ("rule-Bus journey", "per_month"): 42})
    assert awards(run(rules, usage=usage)) == [("Bus journey", 8, "points_per_month")]
    assert awards(run(rules, usage=usage)) == [("Bus journey", 0, "points_per_month")]


def test_count_cap_is_checked_before_points_cap() -> None:
    rules = [rule(caps={"per_day": 1}, points_caps={"per_day": 10})]
    usage = Usage(counts={("rule-Bus journey", "per_day"): 1},
                  points={("rule-Bus journey", "per_day"): 10})
    assert awards(run(rules, usage=usage)) == [("Bus journey", 0, "per_day")]


# -- budget -----------------------------------------------------------------------

def test_budget_cuts_the_award_then_caps() -> None:
    rules = [rule(points="30", budget_points=70)]
    usage = Usage()
    results = [awards(run(rules, usage=usage)) for _ in range(4)]
    assert results == [
        [("Bus journey", 30, None)],
        [("Bus journey", 30, None)],
        [("Bus journey", 10, "budget")],  # cut to what the budget left
        [("Bus journey", 0, "budget")],
    ]
    assert usage.budget_spent == {"rule-Bus journey": 70}


def test_budget_spent_by_others_counts() -> None:
    rules = [rule(points="30", budget_points=1000)]
    assert run(rules, usage=Usage(budget_spent={"rule-Bus journey": 990})).points == 10
    assert awards(run(rules, usage=Usage(budget_spent={"rule-Bus journey": 1000}))) == [
        ("Bus journey", 0, "budget")]


def test_member_caps_come_before_budget() -> None:
    rules = [rule(caps={"per_day": 1}, budget_points=5)]
    usage = Usage(counts={("rule-Bus journey", "per_day"): 1},
                  budget_spent={"rule-Bus journey": 5})
    assert awards(run(rules, usage=usage)) == [("Bus journey", 0, "per_day")]


# -- priority and stacking --------------------------------------------------------

def test_rules_run_by_priority_and_stack() -> None:
    rules = [rule("Low", points="1", priority=1), rule("High", points="5", priority=9),
             rule("Mid", points="3", priority=5)]
    evaluation = run(rules)
    assert awards(evaluation) == [("High", 5, None), ("Mid", 3, None), ("Low", 1, None)]
    assert evaluation.points == 9


def test_exclusive_higher_priority_rule_stops_lower_ones() -> None:
    rules = [rule("Stacking", points="1", priority=1),
             rule("Exclusive", points="20", priority=10, stackable=False),
             rule("Also exclusive", points="7", priority=5, stackable=False)]
    assert awards(run(rules)) == [("Exclusive", 20, None)]


def test_exclusive_rule_after_a_stackable_award_is_skipped() -> None:
    rules = [rule("Stacking", points="2", priority=10),
             rule("Exclusive", points="20", priority=5, stackable=False),
             rule("Lower stacking", points="1", priority=1)]
    assert awards(run(rules)) == [("Stacking", 2, None), ("Lower stacking", 1, None)]


def test_exclusive_rule_that_does_not_match_stops_nothing() -> None:
    rules = [rule("Exclusive", points="20", priority=10, stackable=False,
                  condition="action.hour < 6"),
             rule("Stacking", points="2")]
    assert awards(run(rules)) == [("Stacking", 2, None)]


def test_capped_exclusive_rule_stops_nothing() -> None:
    rules = [rule("Exclusive", points="20", priority=10, stackable=False, caps={"per_day": 1}),
             rule("Stacking", points="2")]
    usage = Usage(counts={("rule-Exclusive", "per_day"): 1})
    assert awards(run(rules, usage=usage)) == [("Exclusive", 0, "per_day"),
                                                ("Stacking", 2, None)]


def test_zero_point_award_uses_no_cap_and_stops_nothing() -> None:
    rules = [rule("Exclusive", points="action.attributes.distance_km", priority=10,
                  stackable=False, caps={"per_day": 1}),
             rule("Stacking", points="2")]
    usage = Usage()
    assert awards(run(rules, attributes={"distance_km": 0.2}, usage=usage)) == [
        ("Exclusive", 0, None), ("Stacking", 2, None)]
    assert ("rule-Exclusive", "per_day") not in usage.counts
    assert awards(run(rules, attributes={"distance_km": 4}, usage=usage)) == [
        ("Exclusive", 4, None)]


def test_equal_priority_order_is_stable_by_name() -> None:
    rules = [rule("b", points="1"), rule("a", points="2", stackable=False)]
    assert awards(run(rules)) == [("a", 2, None)]
    assert awards(run(list(reversed(rules)))) == [("a", 2, None)]


# -- errors at run time -----------------------------------------------------------

def test_rule_failing_at_run_time_is_listed_and_others_still_run() -> None:
    rules = [rule("Broken", points="action.attributes.distance_km * 2", priority=10),
             rule("Fine", points="4")]
    evaluation = run(rules, attributes={})
    assert awards(evaluation) == [("Fine", 4, None)]
    [(spec, message)] = evaluation.errors
    assert spec.name == "Broken"
    assert message.startswith("vmError: ")
    assert "Stack backtrace" not in message


def test_condition_failing_or_not_boolean_is_an_error() -> None:
    rules = [rule("Compare", condition="action.attributes.steps > 1000"),
             rule("Number", condition="action.attributes.steps"),
             rule("Fine", points="1")]
    evaluation = run(rules, attributes={"steps": "lots"})
    assert awards(evaluation) == [("Fine", 1, None)]
    messages = {spec.name: message for spec, message in evaluation.errors}
    assert messages["Compare"].startswith("vmError: ")
    assert "not true or false" in messages["Number"]


@pytest.mark.parametrize(("formula", "attributes", "expected"), [
    ("action.attributes.distance_km - 10", {"distance_km": 3}, "negative"),
    ("action.attributes.mode", {"mode": "bus"}, "not a number"),
    ("action.attributes.flag", {"flag": True}, "not a number"),
    ("action.attributes.missing", {}, "not a number"),
    ("1/0", {}, "not a number"),
    ("2^40", {}, "more than"),
])
def test_bad_points_are_an_error(formula: str, attributes: dict[str, Any], expected: str) -> None:
    evaluation = run([rule(points=formula)], attributes=attributes)
    assert evaluation.decisions == []
    [(_, message)] = evaluation.errors
    assert expected in message


def test_largest_award_is_allowed() -> None:
    assert run([rule(points=str(MAX_AWARD_POINTS))]).points == MAX_AWARD_POINTS


def test_context_the_engine_cannot_take_is_an_error_not_a_crash() -> None:
    # Python's JSON parser accepts NaN, so a source can send it.
    evaluation = run([rule(points="action.attributes.distance_km")],
                     attributes={"distance_km": float("nan")})
    assert evaluation.decisions == []
    assert len(evaluation.errors) == 1


def test_exclusive_rule_that_would_be_skipped_is_not_run() -> None:
    rules = [rule("Stacking", points="2", priority=10),
             rule("Broken exclusive", points="action.attributes.nope * 2", stackable=False)]
    evaluation = run(rules)
    assert awards(evaluation) == [("Stacking", 2, None)]
    assert evaluation.errors == []


def test_failed_rule_uses_no_cap_or_budget() -> None:
    usage = Usage()
    run([rule(points="action.attributes.x * 2", caps={"per_day": 1}, budget_points=5)],
        usage=usage)
    assert usage == Usage()


# -- periods ----------------------------------------------------------------------

def _hours(bounds: tuple[datetime, datetime]) -> float:
    start, end = bounds
    return (end - start).total_seconds() / 3600


def test_ordinary_day_in_winter_and_summer() -> None:
    assert period_bounds(datetime(2026, 1, 5, 12, tzinfo=UTC), "per_day", TZ) == (
        datetime(2026, 1, 5, 0, tzinfo=UTC), datetime(2026, 1, 6, 0, tzinfo=UTC))
    # 23:30 UTC on 6 July is 00:30 on 7 July in London.
    assert period_bounds(datetime(2026, 7, 6, 23, 30, tzinfo=UTC), "per_day", TZ) == (
        datetime(2026, 7, 6, 23, tzinfo=UTC), datetime(2026, 7, 7, 23, tzinfo=UTC))


@pytest.mark.parametrize("moment", [
    datetime(2026, 3, 29, 0, 0, tzinfo=UTC),  # local midnight, GMT
    datetime(2026, 3, 29, 0, 59, tzinfo=UTC),  # just before the clocks go forward
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:00 BST
    datetime(2026, 3, 29, 22, 59, tzinfo=UTC),  # 23:59 BST
])
def test_spring_forward_day_is_23_hours(moment: datetime) -> None:
    bounds = period_bounds(moment, "per_day", TZ)
    assert bounds == (datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 23, tzinfo=UTC))
    assert _hours(bounds) == 23


@pytest.mark.parametrize("moment", [
    datetime(2026, 10, 24, 23, 0, tzinfo=UTC),  # local midnight, BST
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 01:30 BST, the first time
    datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 01:30 GMT, the second time
    datetime(2026, 10, 25, 23, 59, tzinfo=UTC),  # 23:59 GMT
])
def test_autumn_back_day_is_25_hours(moment: datetime) -> None:
    bounds = period_bounds(moment, "per_day", TZ)
    assert bounds == (datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 26, 0, tzinfo=UTC))
    assert _hours(bounds) == 25


def test_days_either_side_of_the_clock_changes() -> None:
    before, _ = period_bounds(datetime(2026, 3, 28, 23, 59, tzinfo=UTC), "per_day", TZ)
    after, _ = period_bounds(datetime(2026, 3, 29, 23, 0, tzinfo=UTC), "per_day", TZ)
    assert before == datetime(2026, 3, 28, 0, tzinfo=UTC)
    assert after == datetime(2026, 3, 29, 23, tzinfo=UTC)
    assert _hours(period_bounds(datetime(2026, 3, 30, 12, tzinfo=UTC), "per_day", TZ)) == 24
    assert _hours(period_bounds(datetime(2026, 10, 26, 12, tzinfo=UTC), "per_day", TZ)) == 24


@pytest.mark.parametrize(("moment", "start", "end"), [
    # Wednesday 7 January 2026: the week of Monday 5 January.
    (datetime(2026, 1, 7, 15, tzinfo=UTC),
     datetime(2026, 1, 5, 0, tzinfo=UTC), datetime(2026, 1, 12, 0, tzinfo=UTC)),
    # Monday 00:00 exactly belongs to the new week; Sunday 23:59 to the old one.
    (datetime(2026, 1, 12, 0, 0, tzinfo=UTC),
     datetime(2026, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 19, 0, tzinfo=UTC)),
    (datetime(2026, 1, 11, 23, 59, tzinfo=UTC),
     datetime(2026, 1, 5, 0, tzinfo=UTC), datetime(2026, 1, 12, 0, tzinfo=UTC)),
    # Summer: Monday 00:00 BST is Sunday 23:00 UTC.
    (datetime(2026, 7, 5, 23, 0, tzinfo=UTC),
     datetime(2026, 7, 5, 23, tzinfo=UTC), datetime(2026, 7, 12, 23, tzinfo=UTC)),
    (datetime(2026, 7, 5, 22, 59, tzinfo=UTC),
     datetime(2026, 6, 28, 23, tzinfo=UTC), datetime(2026, 7, 5, 23, tzinfo=UTC)),
    # The week holding the spring change is 167 hours; the autumn one 169.
    (datetime(2026, 3, 29, 12, tzinfo=UTC),
     datetime(2026, 3, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 23, tzinfo=UTC)),
    (datetime(2026, 10, 25, 12, tzinfo=UTC),
     datetime(2026, 10, 18, 23, tzinfo=UTC), datetime(2026, 10, 26, 0, tzinfo=UTC)),
])
def test_weeks_start_monday_local(moment: datetime, start: datetime, end: datetime) -> None:
    assert period_bounds(moment, "per_week", TZ) == (start, end)
    assert start.astimezone(ZoneInfo(TZ)).weekday() == 0
    assert start.astimezone(ZoneInfo(TZ)).time() == time(0, 0)


@pytest.mark.parametrize(("moment", "start", "end"), [
    (datetime(2026, 1, 15, tzinfo=UTC),
     datetime(2026, 1, 1, 0, tzinfo=UTC), datetime(2026, 2, 1, 0, tzinfo=UTC)),
    (datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
     datetime(2026, 2, 1, 0, tzinfo=UTC), datetime(2026, 3, 1, 0, tzinfo=UTC)),
    (datetime(2028, 2, 29, 12, tzinfo=UTC),  # leap year
     datetime(2028, 2, 1, 0, tzinfo=UTC), datetime(2028, 3, 1, 0, tzinfo=UTC)),
    # March starts in GMT and ends in BST.
    (datetime(2026, 3, 31, 22, 59, tzinfo=UTC),
     datetime(2026, 3, 1, 0, tzinfo=UTC), datetime(2026, 3, 31, 23, tzinfo=UTC)),
    # 23:00 UTC on 31 March is 1 April in London.
    (datetime(2026, 3, 31, 23, 0, tzinfo=UTC),
     datetime(2026, 3, 31, 23, tzinfo=UTC), datetime(2026, 4, 30, 23, tzinfo=UTC)),
    (datetime(2026, 10, 31, 12, tzinfo=UTC),
     datetime(2026, 9, 30, 23, tzinfo=UTC), datetime(2026, 11, 1, 0, tzinfo=UTC)),
    (datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
     datetime(2026, 12, 1, 0, tzinfo=UTC), datetime(2027, 1, 1, 0, tzinfo=UTC)),
])
def test_months(moment: datetime, start: datetime, end: datetime) -> None:
    assert period_bounds(moment, "per_month", TZ) == (start, end)


def test_lifetime_and_unknown_period() -> None:
    start, end = period_bounds(MONDAY, "lifetime", TZ)
    assert start <= datetime(2000, 1, 1, tzinfo=UTC) and end >= datetime(2100, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        period_bounds(MONDAY, "per_fortnight", TZ)


def test_bounds_hold_the_moment_everywhere() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for hours in range(0, 24 * 400, 7):
        at = moment + timedelta(hours=hours, minutes=13)
        for period in PERIODS:
            start, end = period_bounds(at, period, TZ)
            assert start <= at < end, (at, period)
            assert start.tzinfo is not None and end.tzinfo is not None


# -- property: caps hold over any sequence of actions ------------------------------

def _usage_for(history: list[tuple[datetime, int]], at: datetime, rule_id: str) -> Usage:
    """Usage as a caller measures it: awards of more than zero points in each window."""
    usage = Usage()
    for period in PERIODS:
        start, end = period_bounds(at, period, TZ)
        inside = [points for moment, points in history if start <= moment < end and points > 0]
        usage.counts[(rule_id, period)] = len(inside)
        usage.points[(rule_id, period)] = sum(inside)
    usage.budget_spent[rule_id] = sum(points for _, points in history)
    return usage


caps_values = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
points_caps_values = st.one_of(st.none(), st.integers(min_value=0, max_value=80))
actions = st.lists(
    st.tuples(
        # minutes after Monday 23 March 2026 00:00 UTC: two weeks, across the spring change
        st.integers(min_value=0, max_value=14 * 24 * 60 - 1),
        st.floats(min_value=0, max_value=40, allow_nan=False),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    per_day=caps_values,
    per_week=caps_values,
    points_per_day=points_caps_values,
    points_per_week=points_caps_values,
    budget=st.one_of(st.none(), st.integers(min_value=1, max_value=300)),
    actions=actions,
)
def test_caps_hold_for_any_sequence_of_actions(
    per_day: int | None,
    per_week: int | None,
    points_per_day: int | None,
    points_per_week: int | None,
    budget: int | None,
    actions: list[tuple[int, float]],
) -> None:
    caps = {k: v for k, v in (("per_day", per_day), ("per_week", per_week)) if v is not None}
    points_caps = {k: v for k, v in (("per_day", points_per_day), ("per_week", points_per_week))
                   if v is not None}
    base = rule("Journey", points="action.attributes.distance_km")
    compiled = compile_rule(replace(base.spec, caps=caps, points_caps=points_caps,
                                    budget_points=budget))
    origin = datetime(2026, 3, 23, tzinfo=UTC)
    history: list[tuple[datetime, int]] = []
    for minutes, distance in sorted(actions):
        at = origin + timedelta(minutes=minutes)
        usage = _usage_for(history, at, compiled.spec.rule_id)
        evaluation = run([compiled], at=at, attributes={"distance_km": distance}, usage=usage)
        assert evaluation.errors == []
        [decision] = evaluation.decisions
        assert 0 <= decision.points <= int(distance + 0.5)
        if decision.points < int(distance + 0.5):
            assert decision.capped_by is not None  # nothing is cut without naming the cap
        elif decision.points > 0:
            assert decision.capped_by is None
        history.append((at, decision.points))

    for period, count_cap, points_cap in (("per_day", per_day, points_per_day),
                                          ("per_week", per_week, points_per_week)):
        windows: dict[datetime, list[int]] = {}
        for moment, points in history:
            start, _ = period_bounds(moment, period, TZ)
            windows.setdefault(start, []).append(points)
        for points in windows.values():
            if count_cap is not None:
                assert sum(1 for p in points if p > 0) <= count_cap
            if points_cap is not None:
                assert sum(points) <= points_cap
    if budget is not None:
        assert sum(points for _, points in history) <= budget


@settings(max_examples=200, deadline=None)
@given(
    per_day=st.integers(min_value=0, max_value=6),
    points_per_day=st.integers(min_value=0, max_value=60),
    distances=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=30),
)
def test_one_day_with_one_usage_carried_along(
    per_day: int, points_per_day: int, distances: list[float]
) -> None:
    compiled = rule("Day", points="action.attributes.distance_km", caps={"per_day": per_day},
                    points_caps={"per_day": points_per_day})
    usage = Usage()
    awarded = []
    for index, distance in enumerate(distances):
        at = MONDAY + timedelta(minutes=index)
        [decision] = run([compiled], at=at, attributes={"distance_km": distance},
                         usage=usage).decisions
        awarded.append(decision.points)
    assert sum(awarded) <= points_per_day
    assert sum(1 for p in awarded if p > 0) <= per_day
    assert usage.points.get(("rule-Day", "per_day"), 0) == sum(awarded)
    # Nothing was cut for no reason: if the caps were not reached, everything was paid.
    if sum(awarded) < points_per_day and sum(1 for p in awarded if p > 0) < per_day:
        assert awarded == [int(d + 0.5) for d in distances]


# -- the context --------------------------------------------------------------------

def test_member_facts() -> None:
    joined = datetime(2025, 12, 1, 9, 30, tzinfo=UTC)
    now = datetime(2026, 1, 5, 9, 29, tzinfo=UTC)
    assert member_facts("Armley", joined, now, 41) == {
        "ward": "Armley",
        "joined_at": "2025-12-01T09:30:00Z",
        "days_since_joined": 34,
        "actions_total": 41,
    }
    # Joined "after" now (clocks disagree): never a negative number of days.
    assert member_facts(None, now + timedelta(hours=1), now)["days_since_joined"] == 0
    assert member_facts(None, joined, now)["actions_total"] == 0


def _paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        found: set[str] = set()
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            if path == "action.attributes":
                found.add("action.attributes.*")
            else:
                found |= _paths(inner, path)
        return found
    return {prefix}


def test_documented_fields_sample_and_built_context_agree() -> None:
    at = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    built = build_context("bus_journey", at, {"distance_km": 1},
                          member_facts("Armley", START, at, 3), at, TZ)
    assert _paths(built) == set(CONTEXT_FIELDS) == _paths(SAMPLE_CONTEXT)


@pytest.mark.parametrize("expression", [
    "member.actions_total < 5",
    "member.days_since_joined <= 30 and member.actions_total >= 1",
    'date(member.joined_at) < date("2026-01-01")',
    "date(now) > date(action.occurred_at)",
])
def test_member_counts_can_be_used_in_conditions(expression: str) -> None:
    validate_expression(expression, "boolean")


def test_member_counts_decide() -> None:
    rules = [rule("Welcome", condition="member.actions_total < 3", points="25")]
    at = MONDAY
    for total, points in ((0, 25), (2, 25), (3, 0), (40, 0)):
        context = build_context("bus_journey", at, {}, member_facts("Armley", START, at, total),
                                at, TZ)
        assert evaluate(rules, "bus_journey", at, context, Usage()).points == points
