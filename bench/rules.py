"""Rules engine throughput: a 20-rule Leeds-like rule set, actions per second through
the engine's public entry point (rewards.rules.build_context + evaluate), single core,
against the same rules in other Python rule libraries in the same run.

Every engine gets the same actions and builds the same context with build_context.
For the other libraries the rule-matching loop (by action type, priority, exclusive
rules) is plain Python, so only the expression evaluation differs. Each action is
evaluated on its own (fresh cap usage, as if every member were new to each rule: no
cap binds), so all engines can be checked to agree on every action's points.

    python bench/rules.py [--actions N] [--seed S] [--repeat R]

Prints human lines, then as the last line one JSON object with the figures.
Exits non-zero if any engine disagrees on the points for the same actions."""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.demo import EAST_LEEDS, LEEDS_WARDS  # noqa: E402
from rewards.rules import (  # noqa: E402
    RuleSpec,
    Usage,
    build_context,
    compile_rule,
    evaluate,
    member_facts,
    rule_set,
)

TZ = "Europe/London"
NOW = datetime(2026, 12, 16, 9, 0, tzinfo=UTC)
PERIOD_START = datetime(2026, 10, 15, tzinfo=UTC)
PERIOD_DAYS = 60
CLEAN_AIR = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
VOLUNTEERS_WEEK = (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
ACTIVE_WARDS = ("Armley", "Beeston & Holbeck", "Middleton Park", "Killingbeck & Seacroft",
                "Hunslet & Riverside")


def v(path: str) -> dict[str, str]:
    return {"var": path}


def _in_list(words: tuple[str, ...], quote: str = '"') -> str:
    return "[" + ", ".join(f"{quote}{w}{quote}" for w in words) + "]"


@dataclass(frozen=True)
class BenchRule:
    """One rule in each library's language: (condition, points) per engine."""

    name: str
    types: tuple[str, ...]
    zen: tuple[str, str]
    cel: tuple[str, str]
    rule_engine: tuple[str, str]
    json_logic: tuple[Any, Any]
    priority: int = 0
    stackable: bool = True
    caps: dict[str, int] = field(default_factory=dict)
    points_caps: dict[str, int] = field(default_factory=dict)
    window: tuple[datetime, datetime | None] = (PERIOD_START - timedelta(days=1), None)


def same(condition: str, points: str) -> tuple[str, str]:
    return (condition, points)


OFF_PEAK_ZEN = "(action.hour < 7 or action.hour >= 19 or action.weekday >= 6) ? 15 : 10"
OFF_PEAK_CEL = "(action.hour < 7 || action.hour >= 19 || action.weekday >= 6) ? 15 : 10"
OFF_PEAK_JL = {"if": [{"or": [{"<": [v("action.hour"), 7]}, {">=": [v("action.hour"), 19]},
                              {">=": [v("action.weekday"), 6]}]}, 15, 10]}
TRAVEL = ("bus_journey", "train_journey", "cycle_hire")

RULES: tuple[BenchRule, ...] = (
    BenchRule("Bus journey", ("bus_journey",), same("true", OFF_PEAK_ZEN),
              same("true", OFF_PEAK_CEL), same("true", OFF_PEAK_ZEN), (True, OFF_PEAK_JL),
              caps={"per_day": 4}),
    BenchRule("Train journey", ("train_journey",),
              same("action.attributes.distance_km > 0", "5 + action.attributes.distance_km"),
              same("action.attributes.distance_km > 0.0", "5.0 + action.attributes.distance_km"),
              same("action.attributes.distance_km > 0", "5 + action.attributes.distance_km"),
              ({">": [v("action.attributes.distance_km"), 0]},
               {"+": [5, v("action.attributes.distance_km")]}),
              caps={"per_day": 2}),
    BenchRule("Cycle hire", ("cycle_hire",), same("action.attributes.minutes >= 10", "8"),
              same("action.attributes.minutes >= 10", "8"),
              same("action.attributes.minutes >= 10", "8"),
              ({">=": [v("action.attributes.minutes"), 10]}, 8), caps={"per_day": 2}),
    BenchRule("Long ride", ("cycle_hire",),
              same("action.attributes.distance_km >= 5", "action.attributes.distance_km"),
              same("action.attributes.distance_km >= 5.0", "action.attributes.distance_km"),
              same("action.attributes.distance_km >= 5", "action.attributes.distance_km"),
              ({">=": [v("action.attributes.distance_km"), 5]},
               v("action.attributes.distance_km"))),
    BenchRule("Volunteering", ("volunteering_hour",),
              same("action.attributes.hours > 0", "20 * action.attributes.hours"),
              same("action.attributes.hours > 0.0", "20.0 * action.attributes.hours"),
              same("action.attributes.hours > 0", "20 * action.attributes.hours"),
              ({">": [v("action.attributes.hours"), 0]}, {"*": [20, v("action.attributes.hours")]}),
              caps={"per_week": 10}),
    BenchRule("Weekend volunteering", ("volunteering_hour",),
              same("action.weekday >= 6", "10 * action.attributes.hours"),
              same("action.weekday >= 6", "10.0 * action.attributes.hours"),
              same("action.weekday >= 6", "10 * action.attributes.hours"),
              ({">=": [v("action.weekday"), 6]}, {"*": [10, v("action.attributes.hours")]})),
    BenchRule("Volunteers' Week", ("volunteering_hour",),
              same("action.attributes.hours >= 2", "50"),
              same("action.attributes.hours >= 2.0", "50"),
              same("action.attributes.hours >= 2", "50"),
              ({">=": [v("action.attributes.hours"), 2]}, 50),
              priority=5, stackable=False, window=VOLUNTEERS_WEEK),
    BenchRule("Leisure centre visit", ("leisure_visit",), same("true", "15"), same("true", "15"),
              same("true", "15"), (True, 15), caps={"per_day": 1}),
    BenchRule("Early swim", ("leisure_visit",),
              same('action.attributes.activity == "swim" and action.hour < 9', "5"),
              same('action.attributes.activity == "swim" && action.hour < 9', "5"),
              same("action.attributes.activity == 'swim' and action.hour < 9", "5"),
              ({"and": [{"==": [v("action.attributes.activity"), "swim"]},
                        {"<": [v("action.hour"), 9]}]}, 5)),
    BenchRule("parkrun", ("parkrun",), same("true", "20"), same("true", "20"), same("true", "20"),
              (True, 20), caps={"per_week": 1}),
    BenchRule("Recycling drop-off", ("recycling_drop",), same("true", "5"), same("true", "5"),
              same("true", "5"), (True, 5)),
    BenchRule("Recycling by weight", ("recycling_drop",),
              same("action.attributes.weight_kg >= 10", "action.attributes.weight_kg / 2"),
              same("action.attributes.weight_kg >= 10.0", "action.attributes.weight_kg / 2.0"),
              same("action.attributes.weight_kg >= 10", "action.attributes.weight_kg / 2"),
              ({">=": [v("action.attributes.weight_kg"), 10]},
               {"/": [v("action.attributes.weight_kg"), 2]}),
              points_caps={"per_week": 50}),
    BenchRule("Home insulation", ("home_insulation",), same("true", "500"), same("true", "500"),
              same("true", "500"), (True, 500), caps={"lifetime": 1}),
    BenchRule("Solid wall bonus", ("home_insulation",),
              same('action.attributes.measure == "solid wall insulation"', "250"),
              same('action.attributes.measure == "solid wall insulation"', "250"),
              same("action.attributes.measure == 'solid wall insulation'", "250"),
              ({"==": [v("action.attributes.measure"), "solid wall insulation"]}, 250)),
    BenchRule("East Leeds travel boost", ("bus_journey", "train_journey"),
              same(f"member.ward in {_in_list(EAST_LEEDS)}", "5"),
              same(f"member.ward in {_in_list(EAST_LEEDS)}", "5"),
              same(f"member.ward in {_in_list(EAST_LEEDS, chr(39))}", "5"),
              ({"in": [v("member.ward"), list(EAST_LEEDS)]}, 5), caps={"per_day": 2}),
    BenchRule("Off-peak rail", ("train_journey",),
              same("action.hour >= 10 and action.hour < 16 and action.weekday <= 5", "3"),
              same("action.hour >= 10 && action.hour < 16 && action.weekday <= 5", "3"),
              same("action.hour >= 10 and action.hour < 16 and action.weekday <= 5", "3"),
              ({"and": [{">=": [v("action.hour"), 10]}, {"<": [v("action.hour"), 16]},
                        {"<=": [v("action.weekday"), 5]}]}, 3)),
    BenchRule("New member welcome", TRAVEL + ("leisure_visit", "parkrun", "volunteering_hour"),
              same("member.actions_total < 5", "10"), same("member.actions_total < 5", "10"),
              same("member.actions_total < 5", "10"),
              ({"<": [v("member.actions_total"), 5]}, 10), caps={"lifetime": 5}),
    BenchRule("Clean Air November", TRAVEL,
              same("true", "action.hour >= 7 and action.hour < 10 ? 10 : 5"),
              same("true", "action.hour >= 7 && action.hour < 10 ? 10 : 5"),
              same("true", "action.hour >= 7 and action.hour < 10 ? 10 : 5"),
              (True, {"if": [{"and": [{">=": [v("action.hour"), 7]},
                                      {"<": [v("action.hour"), 10]}]}, 10, 5]}),
              window=CLEAN_AIR),
    BenchRule("Active wards health boost", ("leisure_visit", "parkrun"),
              same(f"member.ward in {_in_list(ACTIVE_WARDS)}", "10"),
              same(f"member.ward in {_in_list(ACTIVE_WARDS)}", "10"),
              same(f"member.ward in {_in_list(ACTIVE_WARDS, chr(39))}", "10"),
              ({"in": [v("member.ward"), list(ACTIVE_WARDS)]}, 10)),
    BenchRule("Loyal commuter", ("bus_journey",),
              same("member.actions_total >= 100 and member.days_since_joined >= 90", "2"),
              same("member.actions_total >= 100 && member.days_since_joined >= 90", "2"),
              same("member.actions_total >= 100 and member.days_since_joined >= 90", "2"),
              ({"and": [{">=": [v("member.actions_total"), 100]},
                        {">=": [v("member.days_since_joined"), 90]}]}, 2)),
)

# (type, share of actions)
MIX = (("bus_journey", 45), ("train_journey", 15), ("cycle_hire", 10), ("leisure_visit", 10),
       ("volunteering_hour", 7), ("recycling_drop", 7), ("parkrun", 4), ("home_insulation", 2))


@dataclass
class Action:
    type_code: str
    occurred_at: datetime
    attributes: dict[str, Any]
    member: dict[str, Any]


def make_actions(count: int, seed: int) -> list[Action]:
    rng = random.Random(seed)
    members = []
    for _ in range(2000):
        joined = PERIOD_START - timedelta(days=rng.randint(0, 400))
        members.append((rng.choice(LEEDS_WARDS), joined))
    types = [code for code, _ in MIX]
    weights = [share for _, share in MIX]
    actions = []
    for _ in range(count):
        type_code = rng.choices(types, weights)[0]
        at = PERIOD_START + timedelta(seconds=rng.randrange(PERIOD_DAYS * 86400))
        if type_code in ("bus_journey", "train_journey"):
            attributes: dict[str, Any] = {"distance_km": round(rng.uniform(0.5, 40), 1),
                                          "route": rng.choice(("1", "4", "16", "X6"))}
        elif type_code == "cycle_hire":
            attributes = {"distance_km": round(rng.uniform(0.5, 15), 1),
                          "minutes": rng.randint(3, 90)}
        elif type_code == "volunteering_hour":
            attributes = {"hours": rng.choice((0.5, 1.0, 1.5, 2.0, 3.0, 4.0))}
        elif type_code in ("leisure_visit", "parkrun"):
            attributes = {"activity": rng.choice(("swim", "gym", "class", "run"))}
        elif type_code == "recycling_drop":
            attributes = {"weight_kg": round(rng.uniform(1, 30), 1)}
        else:
            attributes = {"measure": rng.choice(("loft insulation", "cavity wall insulation",
                                                 "solid wall insulation"))}
        ward, joined = rng.choice(members)
        total = rng.choice((0, 2, 4, 7, 30, 150, 400))
        actions.append(Action(type_code, at, attributes, member_facts(ward, joined, NOW, total)))
    return actions


def zen_specs() -> list[RuleSpec]:
    return [RuleSpec(rule_id=f"rule-{i}", version_id=f"version-{i}", version=1, name=r.name,
                     action_types=frozenset(r.types), condition=r.zen[0], points=r.zen[1],
                     starts_at=r.window[0], ends_at=r.window[1], caps=r.caps,
                     points_caps=r.points_caps, priority=r.priority, stackable=r.stackable)
            for i, r in enumerate(RULES)]


def run_context_only(actions: list[Action]) -> float:
    """build_context alone: the part of every engine's time that is the same for all."""
    gc.collect()
    started = time.perf_counter()
    for action in actions:
        build_context(action.type_code, action.occurred_at, action.attributes, action.member,
                      NOW, TZ)
    return time.perf_counter() - started


def run_engine(actions: list[Action]) -> tuple[float, list[int]]:
    """The engine's public entry point, as ingest uses it."""
    rules = rule_set(compile_rule(spec) for spec in zen_specs())
    points: list[int] = []
    append = points.append
    gc.collect()
    started = time.perf_counter()
    for action in actions:
        context = build_context(action.type_code, action.occurred_at, action.attributes,
                                action.member, NOW, TZ)
        append(evaluate(rules, action.type_code, action.occurred_at, context, Usage()).points)
    return time.perf_counter() - started, points


# -- the other libraries: compile (condition, points), convert a context, evaluate ---------

Compiled = Callable[[Any], Any]


@dataclass
class Library:
    name: str
    package: str
    compile: Callable[[BenchRule], tuple[Compiled, Compiled]]
    convert: Callable[[dict[str, Any]], Any]
    default_actions: int


def _celpy() -> Library:
    import celpy

    env = celpy.Environment()

    def compile_(rule: BenchRule) -> tuple[Compiled, Compiled]:
        condition, points = (env.program(env.compile(text)) for text in rule.cel)
        return (lambda data: bool(condition.evaluate(data)),
                lambda data: float(points.evaluate(data)))

    def convert(context: dict[str, Any]) -> Any:
        return {name: celpy.json_to_cel(value) for name, value in context.items()}

    return Library("cel-python", "cel-python", compile_, convert, 2_000)


def _cel_rust() -> Library:
    import cel

    def compile_(rule: BenchRule) -> tuple[Compiled, Compiled]:
        condition, points = (cel.compile(text) for text in rule.cel)
        return condition.execute, points.execute

    return Library("common-expression-language (Rust CEL)", "common-expression-language",
                   compile_, lambda context: context, 20_000)


def _rule_engine() -> Library:
    import rule_engine

    def compile_(rule: BenchRule) -> tuple[Compiled, Compiled]:
        condition, points = (rule_engine.Rule(text) for text in rule.rule_engine)
        return condition.matches, lambda data: float(points.evaluate(data))

    return Library("rule-engine", "rule-engine", compile_, lambda context: context, 4_000)


def _json_logic() -> Library:
    from json_logic import jsonLogic

    def compile_(rule: BenchRule) -> tuple[Compiled, Compiled]:
        condition, points = rule.json_logic
        return (lambda data: jsonLogic(condition, data) is True,
                lambda data: jsonLogic(points, data))

    return Library("panzi-json-logic (JsonLogic)", "panzi-json-logic", compile_,
                   lambda context: context, 20_000)


LIBRARIES = (_json_logic, _cel_rust, _rule_engine, _celpy)


def _whole_points(value: Any) -> int:
    """As the engine takes a formula's value: rounded half up."""
    return math.floor(float(value) + 0.5)


def run_library(library: Library, actions: list[Action]) -> tuple[float, list[int]]:
    """The same matching as the engine (type, window, priority, exclusive rules) in plain
    Python around the library's expressions."""
    compiled = []
    for rule in sorted(RULES, key=lambda r: (-r.priority, r.name)):
        condition, points = library.compile(rule)
        compiled.append((rule, condition, points))
    by_type: dict[str, list[Any]] = {}
    for entry in compiled:
        for type_code in entry[0].types:
            by_type.setdefault(type_code, []).append(entry)
    convert = library.convert
    results: list[int] = []
    gc.collect()
    started = time.perf_counter()
    for action in actions:
        context = build_context(action.type_code, action.occurred_at, action.attributes,
                                action.member, NOW, TZ)
        data = convert(context)
        total, awarded = 0, False
        for rule, condition, points in by_type.get(action.type_code, ()):
            starts, ends = rule.window
            if action.occurred_at < starts or (ends is not None and action.occurred_at >= ends):
                continue
            if not rule.stackable and awarded:
                continue
            if not condition(data):
                continue
            award = _whole_points(points(data))
            if award > 0:
                total += award
                awarded = True
                if not rule.stackable:
                    break
        results.append(total)
    return time.perf_counter() - started, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=200_000,
                        help="actions through the engine (default 200,000)")
    parser.add_argument("--others", type=float, default=1.0,
                        help="scale of each other library's share of the actions (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="engine runs; the best counts")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    assert len(RULES) == 20, len(RULES)
    actions = make_actions(args.actions, args.seed)
    print(f"{len(RULES)} rules, {len(actions):,} synthetic Leeds actions "
          f"(seed {args.seed}), one core")

    best = math.inf
    engine_points: list[int] = []
    for _ in range(max(1, args.repeat)):
        elapsed, engine_points = run_engine(actions)
        best = min(best, elapsed)
    engine_rate = len(actions) / best
    total = sum(engine_points)
    print(f"  zen-engine via rewards.rules.evaluate: {engine_rate:>10,.0f} actions/s "
          f"({total:,} points)")
    context_rate = len(actions) / min(run_context_only(actions) for _ in range(2))
    print(f"  (build_context alone, in every engine's loop: {context_rate:,.0f} actions/s)")

    others: dict[str, float] = {}
    failed = False
    for make in LIBRARIES:
        try:
            library = make()
        except ImportError as error:
            print(f"  (skipped: {error}; pip install -e '.[bench]')")
            continue
        share = actions[: max(1, min(len(actions), int(library.default_actions * args.others)))]
        elapsed, points = run_library(library, share)
        for _ in range(min(args.repeat, 2) - 1):  # the best of two, as noisy as the engine's
            elapsed = min(elapsed, run_library(library, share)[0])
        rate = len(share) / elapsed
        others[library.name] = rate
        expected = engine_points[: len(share)]
        agree = points == expected
        print(f"  {library.name + ':':<39}{rate:>10,.0f} actions/s "
              f"({sum(points):,} points over the first {len(share):,} actions"
              f"{', same as the engine' if agree else ''})")
        if not agree:
            failed = True
            wrong = [i for i, (a, b) in enumerate(zip(points, expected, strict=True)) if a != b]
            print(f"MISMATCH: {library.name} gives {sum(points):,} points, the engine "
                  f"{sum(expected):,}; {len(wrong)} actions differ, e.g.:")
            for index in wrong[:5]:
                action = share[index]
                print(f"    {action.type_code} at {action.occurred_at.isoformat()} "
                      f"{action.attributes} {action.member}: {points[index]} vs {expected[index]}")

    figures: dict[str, Any] = {"actions_per_s": round(engine_rate), "rules": len(RULES),
                               "actions": len(actions), "context_only_per_s": round(context_rate)}
    if others:
        best_other = max(others, key=lambda name: others[name])
        figures.update(best_other_per_s=round(others[best_other]), best_other=best_other,
                       ratio=round(engine_rate / others[best_other], 1),
                       others={name: round(rate) for name, rate in others.items()})
        print(f"  ratio to the fastest other ({best_other}): {figures['ratio']}x")
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
