"""The engine evaluates each action type's rules in one call on the part of the
context they read. That must never change an outcome: checked here against the
plain way (each rule on its own, on the whole context) over random rule sets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.rules import (
    PERIODS,
    CompiledRule,
    Evaluation,
    RuleSpec,
    Usage,
    build_context,
    compile_rule,
    evaluate,
    member_facts,
    rule_set,
)
from rewards.rules.analysis import flatten, is_literal, merge, needs_of, picker
from rewards.rules.engine import Decision, ExpressionError, _as_points, _engine_message

TZ = "Europe/London"
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """No app and no database here: replaces the suite's database clean-up."""
    yield


def reference(rules: Sequence[CompiledRule], action_type: str, occurred_at: datetime,
              context: dict[str, Any], usage: Usage) -> Evaluation:
    """The engine's contract, written the plain way (as it was before it was made fast)."""
    result = Evaluation()
    awarded_any = False
    ordered = sorted(rules, key=lambda r: (-r.spec.priority, r.spec.name, r.spec.rule_id))
    for rule in ordered:
        spec = rule.spec
        if not rule.applies_to(action_type, occurred_at):
            continue
        if not spec.stackable and awarded_any:
            continue
        try:
            matched = rule.condition.evaluate(context)
            if not isinstance(matched, bool):
                raise ExpressionError(f"condition gave {matched!r}, not true or false")
            if not matched:
                continue
            points = _as_points(rule.points.evaluate(context))
        except ExpressionError as error:
            result.errors.append((spec, str(error)))
            continue
        except Exception as error:
            result.errors.append((spec, _engine_message(error)))
            continue
        capped_by = cut_by = None
        for period in PERIODS:
            cap = spec.caps.get(period)
            if cap is not None and usage.counts.get((spec.rule_id, period), 0) >= cap:
                capped_by = period
                break
        if capped_by is None:
            for period in PERIODS:
                cap = spec.points_caps.get(period)
                if cap is None:
                    continue
                room = cap - usage.points.get((spec.rule_id, period), 0)
                if room <= 0:
                    capped_by = f"points_{period}"
                    break
                if room < points:
                    points, cut_by = room, f"points_{period}"
        if capped_by is None and spec.budget_points is not None:
            room = spec.budget_points - usage.budget_spent.get(spec.rule_id, 0)
            if room <= 0:
                capped_by = "budget"
            elif room < points:
                points, cut_by = room, "budget"
        inputs = {"hour": context["action"]["hour"], "weekday": context["action"]["weekday"],
                  "attributes": context["action"]["attributes"]}
        if capped_by is not None:
            result.decisions.append(Decision(spec, 0, capped_by, inputs))
            continue
        result.decisions.append(Decision(spec, points, cut_by, inputs))
        if points == 0:
            continue
        # Usage counts what this rule's caps and budget measure.
        for period in PERIODS:
            if period in spec.caps or period in spec.points_caps:
                key = (spec.rule_id, period)
                usage.counts[key] = usage.counts.get(key, 0) + 1
                usage.points[key] = usage.points.get(key, 0) + points
        if spec.budget_points is not None:
            usage.budget_spent[spec.rule_id] = usage.budget_spent.get(spec.rule_id, 0) + points
        awarded_any = True
        if not spec.stackable:
            break
    return result


CONDITIONS = [
    "true", "false", "1", "action.hour < 7 or action.hour >= 19",
    "action.attributes.distance_km >= 2", "action.attributes.mode == \"bus\"",
    'member.ward in ["Armley", "Gipton & Harehills"]', "member.actions_total < 3",
    "member.days_since_joined <= 30", "action.weekday >= 6", "action.attributes.steps > 10",
    "action.attributes.distance_km", "len(keys(action.attributes)) > 1",
    "$root.action.hour > 8", "`${action.type}` == \"bus_journey\"",
    'action["hour"] >= 12', "now > \"2026\"", 'action.type == "bus_journey"',
    "action.hour in [0..9]", "action.attributes.flag",
    "action . hour > 3 and member .ward != null", "action__hour > 3",
    'action.attributes["distance_km"] > 1 and action.attributes.mode == "bus"',
    "len(keys(action)) == 5 and action.hour >= 0", 'member.ward == "member.ward"',
    "action.weekday in [member.actions_total..7]",
]
POINTS = [
    "10", "0", "2.5", "-3", "1000001", "5 + action.attributes.distance_km",
    "round(action.attributes.distance_km * 2)", "action.hour < 7 ? 15 : 10",
    "action.attributes.hours * 2", "action.attributes.mode", "20 * action.attributes.hours",
    "member.actions_total", "true", "1/0", "max([action.hour, 3])",
    "len(keys({ h: action.hour })) + member.days_since_joined",
    "action.attributes.distance_km ?? 1",
]
ATTRIBUTES = st.fixed_dictionaries({}, optional={
    "distance_km": st.one_of(st.floats(min_value=0, max_value=40, allow_nan=False),
                             st.integers(0, 40)),
    "mode": st.sampled_from(["bus", "train", "tram"]),
    "hours": st.one_of(st.integers(0, 8), st.just("two")),
    "steps": st.integers(0, 20),
    "flag": st.booleans(),
})
RULE = st.fixed_dictionaries({
    "types": st.sets(st.sampled_from(["bus_journey", "train_journey"]), min_size=1),
    "condition": st.sampled_from(CONDITIONS),
    "points": st.sampled_from(POINTS),
    "priority": st.integers(-1, 2),
    "stackable": st.booleans(),
    "per_day": st.one_of(st.none(), st.integers(0, 3)),
    "points_per_day": st.one_of(st.none(), st.integers(0, 40)),
    "budget": st.one_of(st.none(), st.integers(1, 60)),
    "late_start": st.booleans(),
})


def _compile(index: int, options: dict[str, Any]) -> CompiledRule:
    return compile_rule(RuleSpec(
        rule_id=f"rule-{index}", version_id=f"version-{index}", version=1,
        name=f"Rule {index % 3}", action_types=frozenset(options["types"]),
        condition=options["condition"], points=options["points"],
        starts_at=START + timedelta(days=3 if options["late_start"] else 0),
        caps={"per_day": options["per_day"]} if options["per_day"] is not None else {},
        points_caps=({"per_day": options["points_per_day"]}
                     if options["points_per_day"] is not None else {}),
        budget_points=options["budget"], priority=options["priority"],
        stackable=options["stackable"],
    ))


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(RULE, min_size=1, max_size=6),
    actions=st.lists(st.tuples(st.sampled_from(["bus_journey", "train_journey", "walk"]),
                               st.integers(0, 6 * 24 - 1), ATTRIBUTES,
                               st.sampled_from(["Armley", "Gipton & Harehills", None]),
                               st.integers(0, 6)),
                     min_size=1, max_size=8),
)
def test_fast_path_decides_exactly_as_the_plain_way(
    rules: list[dict[str, Any]], actions: list[tuple[str, int, dict[str, Any], Any, int]],
) -> None:
    compiled = [_compile(i, options) for i, options in enumerate(rules)]
    fast_usage, plain_usage = Usage(), Usage()
    ruleset = rule_set(compiled)
    for type_code, hours, attributes, ward, total in actions:
        at = START + timedelta(hours=hours)
        member = member_facts(ward, START - timedelta(days=20), at, total)
        context = build_context(type_code, at, attributes, member, at, TZ)
        fast = evaluate(ruleset, type_code, at, context, fast_usage)
        plain = reference(compiled, type_code, at, context, plain_usage)
        assert fast.decisions == plain.decisions
        assert fast.errors == plain.errors
        assert fast_usage == plain_usage


def test_a_plain_list_and_a_rule_set_agree_and_the_set_is_reused() -> None:
    rules = [_compile(0, {"types": {"bus_journey"}, "condition": "action.hour < 9",
                          "points": "action.hour", "priority": 0, "stackable": True,
                          "per_day": None, "points_per_day": None, "budget": None,
                          "late_start": False})]
    assert rule_set(rules) is rule_set(list(rules))
    assert rule_set(rule_set(rules)) is rule_set(rules)
    at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    context = build_context("bus_journey", at, {}, member_facts(None, START, at), at, TZ)
    assert evaluate(rules, "bus_journey", at, context, Usage()).points == 8


# -- what an expression reads -------------------------------------------------------

@pytest.mark.parametrize(("expression", "needs"), [
    ("true", {}),
    ("10", {}),
    ("action.hour < 7", {"action": {"hour"}}),
    ("action.hour < 7 or action.weekday >= 6", {"action": {"hour", "weekday"}}),
    ("action.attributes.distance_km * 2", {"action": {"attributes"}}),
    ('member.ward in ["action.hour", "now"]', {"member": {"ward"}}),
    ("member . ward == 'x'", {"member": {"ward"}}),
    ('action["hour"]', {"action": None}),
    ("len(keys(action))", {"action": None}),
    ("now > '2026'", {"now": None}),
    ("[1..action.hour]", {"action": {"hour"}}),
    ("action.hour in [0..member.actions_total]",
     {"action": {"hour"}, "member": {"actions_total"}}),
    ("action.attributes.member", {"action": {"attributes"}}),
])
def test_needs(expression: str, needs: dict[str, Any]) -> None:
    found = needs_of(expression)
    assert found == {root: (None if keys is None else frozenset(keys))
                     for root, keys in needs.items()}


@pytest.mark.parametrize("expression", [
    "$root.action.hour", "`${action.hour}`", '"a\\"b" == action.type', "'unclosed",
])
def test_anything_unclear_reads_the_whole_context(expression: str) -> None:
    assert needs_of(expression) is None
    assert merge([{"action": frozenset({"hour"})}, needs_of(expression)]) is None
    context = {"action": {"hour": 1}, "now": "x"}
    assert picker(None)(context) is context


@pytest.mark.parametrize(("expression", "text", "props", "wholes"), [
    ("action.hour < 7 or member . ward == 'x'", "action__hour < 7 or member__ward == 'x'",
     {("action", "hour"), ("member", "ward")}, set()),
    ('member.ward in ["action.hour", "now"]', 'member__ward in ["action.hour", "now"]',
     {("member", "ward")}, set()),
    ("action.attributes.distance_km * 2", "action__attributes.distance_km * 2",
     {("action", "attributes")}, set()),
    ("action.hour in [0..member.actions_total]", "action__hour in [0..member__actions_total]",
     {("action", "hour"), ("member", "actions_total")}, set()),
    ('action["hour"] > 1 and now > "2026"', 'action["hour"] > 1 and now > "2026"',
     set(), {"action", "now"}),
    ("action..hour + x.member.ward", "action..hour + x.member.ward", set(), {"action"}),
])
def test_flatten_reads_root_properties_as_flat_names(
        expression: str, text: str, props: set[tuple[str, str]], wholes: set[str]) -> None:
    flat = flatten(expression)
    assert flat is not None
    assert (flat.text, flat.props, flat.wholes) == (text, props, wholes)
    # It reads what needs_of says, by the same scan.
    assert needs_of(expression) == {**{root: frozenset(p for r, p in props if r == root)
                                       for root, _ in props},
                                    **dict.fromkeys(wholes)}


@pytest.mark.parametrize("expression", ["action.__x == 1", "`${action.hour}`", "'unclosed"])
def test_flatten_refuses_what_it_cannot_rewrite_safely(expression: str) -> None:
    assert flatten(expression) is None


def test_picker_takes_only_what_is_read() -> None:
    pick = picker(merge([needs_of("action.hour > 1"), needs_of("member.ward == 'A'"),
                         needs_of("action.weekday")]))
    context = build_context("bus_journey", START, {"x": 1},
                            member_facts("A", START, START, 4), START, TZ)
    assert pick(context) == {"action": {"hour": 0, "weekday": 4}, "member": {"ward": "A"}}


@pytest.mark.parametrize(("expression", "literal"), [
    ("true", True), (" 10 ", True), ("-2.5", True), ("false", True),
    ("1 + 1", False), ("action.hour", False), ('"10"', False), ("1e3", False),
])
def test_literals(expression: str, literal: bool) -> None:
    assert is_literal(expression) is literal
