from __future__ import annotations

import copy
import itertools
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import zen

from . import analysis
from .context import SAMPLE_CONTEXT
from .shape import DEFAULT_MAX_CHARS, ShapeError, check_shape

PERIODS = ("per_day", "per_week", "per_month", "lifetime")


class ExpressionError(ValueError):
    """An expression the engine refuses, with the engine's own message."""


def _engine_message(error: Exception) -> str:
    # zen raises RuntimeError('{"type": ..., "source": ...}\n\nStack backtrace: ...')
    first = str(error).split("\n", 1)[0]
    try:
        data = json.loads(first)
    except ValueError:
        return first
    return f"{data.get('type', 'error')}: {data.get('source', first)}"


# Attribute names differ by action type; an expression may use ones the sample lacks.
_ATTRIBUTE = re.compile(
    r"""action\.attributes(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:"([^"]*)"|'([^']*)')\s*\])"""
)
# Values tried for attributes the sample does not have: a number, a string, a flag.
_TRIAL_VALUES: tuple[Any, ...] = (5.0, "x", True)
_MAX_TRIED_ATTRIBUTES = 4


def _gives(result: Any, want: str) -> bool:
    if want == "boolean":
        return isinstance(result, bool)
    if want == "number":
        return (not isinstance(result, bool) and isinstance(result, int | float)
                and math.isfinite(result))
    raise ValueError(f"unknown result kind {want!r}")


def _unknown_attributes(expression: str) -> list[str]:
    known = SAMPLE_CONTEXT["action"]["attributes"]
    names: list[str] = []
    for match in _ATTRIBUTE.finditer(expression):
        name = next(group for group in match.groups() if group is not None)
        if name not in known and name not in names:
            names.append(name)
    return names[:_MAX_TRIED_ATTRIBUTES]


def _works_with_some_attributes(expression: str, want: str) -> bool:
    """Whether the expression gives a `want` once the attributes it uses that the
    sample lacks are given some value (the real types are known only at run time)."""
    names = _unknown_attributes(expression)
    if not names:
        return False
    for values in itertools.product(_TRIAL_VALUES, repeat=len(names)):
        context = copy.deepcopy(SAMPLE_CONTEXT)
        context["action"]["attributes"].update(zip(names, values, strict=True))
        try:
            if _gives(zen.evaluate_expression(expression, context), want):
                return True
        except Exception:  # any failure just means "not with these values"
            continue
    return False


def _check_shape(expression: str, max_chars: int | None) -> None:
    try:
        check_shape(expression, max_chars)
    except ShapeError as error:
        raise ExpressionError(str(error)) from None


def validate_expression(expression: str, want: str, *,
                        max_chars: int = DEFAULT_MAX_CHARS) -> None:
    """Refuse an expression that is longer than `max_chars` or of a shape the engine
    runs unboundedly (see shape.py), that does not parse, or that does not give a `want`
    ("boolean" or "number") on a realistic context. Attributes the sample context
    lacks are tried with a number, a string and a flag before an expression is refused.
    The size and shape are checked first: nothing past them reaches the engine."""
    if want not in ("boolean", "number"):
        raise ValueError(f"unknown result kind {want!r}")
    if not isinstance(expression, str) or not expression.strip():
        raise ExpressionError("expression is empty")
    _check_shape(expression, max_chars)
    problem = zen.validate_expression(expression)
    if problem:
        raise ExpressionError(f"{problem.get('type', 'error')}: {problem.get('source', problem)}")
    try:
        zen.compile_expression(expression)
    except RuntimeError as error:
        raise ExpressionError(_engine_message(error)) from None
    try:
        result = zen.evaluate_expression(expression, SAMPLE_CONTEXT)
    except RuntimeError as error:
        if _works_with_some_attributes(expression, want):
            return
        raise ExpressionError(_engine_message(error)) from None
    if _gives(result, want):
        if want == "number":
            _refuse_constant_non_points(expression)
        return
    if result is None and _works_with_some_attributes(expression, want):
        return
    if want == "boolean":
        raise ExpressionError(f"a condition must give true or false, this gives {result!r}")
    raise ExpressionError(f"a points formula must give a number, this gives {result!r}")


def _refuse_constant_non_points(expression: str) -> None:
    """A formula that gives a number with nothing to read (no action, no member) gives it
    for every action: if that is not points (negative, or past the most for one action),
    every action it matches would be flagged, so it is refused when saved."""
    if analysis.needs_of(expression) != {}:
        return  # it reads the action, the member or the time (or may: not understood)
    try:
        value = zen.evaluate_expression(expression, {})
    except RuntimeError:
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        _as_points(value)


@dataclass(frozen=True)
class RuleSpec:
    """One version of an earning rule, as plain data."""

    rule_id: str
    version_id: str
    version: int
    name: str
    action_types: frozenset[str]
    condition: str
    points: str
    starts_at: datetime
    ends_at: datetime | None = None
    caps: Mapping[str, int] = field(default_factory=dict)
    points_caps: Mapping[str, int] = field(default_factory=dict)
    budget_points: int | None = None
    priority: int = 0
    stackable: bool = True
    hold_days: int = 0


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    condition: Any
    points: Any
    # True when condition and points were compiled from spec's own text (by
    # compile_rule), so the engine may also evaluate that text its faster way.
    from_source: bool = field(default=False, compare=False, repr=False)

    def applies_to(self, action_type: str, occurred_at: datetime) -> bool:
        spec = self.spec
        if action_type not in spec.action_types:
            return False
        if occurred_at < spec.starts_at:
            return False
        return spec.ends_at is None or occurred_at < spec.ends_at


def compile_rule(spec: RuleSpec) -> CompiledRule:
    """Compile a rule's expressions. Their shape is checked again (not their length: a
    longer limit may have been set when they were saved), so one saved before the
    checks existed fails here, as a rule the engine refuses, rather than when run."""
    _check_shape(spec.condition, None)
    _check_shape(spec.points, None)
    try:
        condition = zen.compile_expression(spec.condition)
        points = zen.compile_expression(spec.points)
    except RuntimeError as error:
        raise ExpressionError(_engine_message(error)) from None
    return CompiledRule(spec=spec, condition=condition, points=points, from_source=True)


@dataclass
class Usage:
    """What a member has already used of each rule's caps, and each rule's budget.
    Keys are (rule_id, period). The caller measures them in the action's periods,
    counting awards of more than zero points (a zero award uses no cap)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    points: dict[tuple[str, str], int] = field(default_factory=dict)
    budget_spent: dict[str, int] = field(default_factory=dict)

    def record(self, rule_id: str, points: int) -> None:
        counts, totals = self.counts, self.points
        for period in PERIODS:
            key = (rule_id, period)
            counts[key] = counts.get(key, 0) + 1
            totals[key] = totals.get(key, 0) + points
        self.budget_spent[rule_id] = self.budget_spent.get(rule_id, 0) + points


class Decision(NamedTuple):
    """What one rule gives one action. capped_by names the cap (or "budget") that stopped
    it (points == 0) or cut it to what was left (points > 0, less than the formula gave).
    (A named tuple: one is made per award, and a tuple is the cheapest to make.)"""

    spec: RuleSpec
    points: int
    capped_by: str | None
    inputs: dict[str, Any]


# Decision(...) without the keyword handling of a named tuple's constructor.
_decision = tuple.__new__


@dataclass
class Evaluation:
    decisions: list[Decision] = field(default_factory=list)
    errors: list[tuple[RuleSpec, str]] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(d.points for d in self.decisions)


def period_bounds(moment: datetime, period: str, tz: str) -> tuple[datetime, datetime]:
    """The [start, end) of the scheme-local day, week (Monday first), month, or all time."""
    if period == "lifetime":
        return datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    local = moment.astimezone(ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "per_day":
        start, end = day, day + timedelta(days=1)
    elif period == "per_week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "per_month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    # Re-localise so a boundary across a clock change lands on local midnight.
    zone = ZoneInfo(tz)
    start = start.replace(tzinfo=None).replace(tzinfo=zone)
    end = end.replace(tzinfo=None).replace(tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


# One rule's award for one action; more is taken for a broken formula, not a reward.
MAX_AWARD_POINTS = 1_000_000
# Values below this round (half up) to at most MAX_AWARD_POINTS.
_MOST_BEFORE_ROUNDING = MAX_AWARD_POINTS + 0.5


def _as_points(value: Any) -> int:
    """A formula's value as whole points, rounding halves up (as the engine's round() does)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ExpressionError(f"points formula gave {value!r}, not a number")
    if value < 0:
        raise ExpressionError(f"points formula gave {value}, a negative number")
    points = math.floor(value + 0.5)
    if points > MAX_AWARD_POINTS:
        raise ExpressionError(
            f"points formula gave {value}, more than {MAX_AWARD_POINTS} points for one action"
        )
    return points




class _Step:
    """One rule as evaluation walks it: its checks precomputed, and where to find its
    condition and points among the outcomes of its action type's combined program."""

    __slots__ = ("rule", "spec", "rule_id", "starts_at", "ends_at", "stackable", "count_caps",
                 "points_caps", "counted", "budget", "constant", "slot")

    def __init__(self, rule: CompiledRule) -> None:
        spec = rule.spec
        rule_id = spec.rule_id
        self.rule = rule
        self.spec = spec
        self.rule_id = rule_id
        self.starts_at = spec.starts_at
        self.ends_at = spec.ends_at
        self.stackable = spec.stackable
        self.count_caps = tuple(((rule_id, period), period, spec.caps[period])
                                for period in PERIODS if spec.caps.get(period) is not None)
        self.points_caps = tuple(((rule_id, period), f"points_{period}", spec.points_caps[period])
                                 for period in PERIODS
                                 if spec.points_caps.get(period) is not None)
        # Usage keys an award must count: only the periods this rule has caps for.
        self.counted = tuple((rule_id, period) for period in PERIODS
                             if spec.caps.get(period) is not None
                             or spec.points_caps.get(period) is not None)
        self.budget = spec.budget_points
        # (condition value, points value) when both are literals; else None.
        self.constant: tuple[Any, Any] | None = None
        # Index of the condition's value in the program's outcomes (points at slot + 1).
        self.slot: int | None = None


def is_true(expression: str) -> bool:
    return expression.strip() == "true"


def _literal_value(expression: str) -> tuple[bool, Any]:
    if not analysis.is_literal(expression):
        return False, None
    try:
        return True, zen.evaluate_expression(expression, {})
    except Exception:  # noqa: BLE001 - not a literal the engine takes: evaluate it normally
        return False, None


class _Plan:
    """The rules that can apply to one action type, in evaluation order, and one
    compiled program that evaluates all their conditions and points formulas in a
    single call on just the part of the context they read. A rule's outcome is a pure
    function of the context, so evaluating some that end up skipped changes nothing;
    if the program fails, each rule is evaluated on its own to say which failed."""

    __slots__ = ("steps", "program", "pick", "width", "memo")

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.steps = tuple(_Step(rule) for rule in rules)
        self.program: Any = None
        self.pick: Any = None
        self.width = 0
        # The program's outcomes by the values it read (see _outcomes).
        self.memo: dict[Any, list[Any]] = {}
        dynamic: list[_Step] = []
        for step in self.steps:
            if not step.rule.from_source:
                continue
            spec = step.spec
            literal_condition, condition = _literal_value(spec.condition)
            if literal_condition and condition is not True:
                step.constant = (condition, None)
                continue
            literal_points, points = _literal_value(spec.points)
            if literal_condition and literal_points:
                step.constant = (condition, points)
                continue
            dynamic.append(step)
        if not dynamic:
            return
        # Read `root.prop` from a one-level dict if every expression allows it (the
        # engine converts nested dicts slowly); else from the part of the context read.
        flats = {text: analysis.flatten(text) for step in dynamic
                 for text in (step.spec.condition, step.spec.points)}
        flat = all(found is not None for found in flats.values())

        def form(text: str) -> str:
            found = flats[text]
            return found.text if flat and found is not None else text

        parts: list[str] = []
        for step in dynamic:
            spec = step.spec
            if is_true(spec.condition):  # the points formula alone decides
                parts += ["true", f"({form(spec.points)})"]
            else:
                condition_text = form(spec.condition)
                parts += [f"({condition_text})",
                          f"({condition_text}) == true ? ({form(spec.points)}) : null"]
        try:
            self.program = zen.compile_expression("[" + ", ".join(parts) + "]")
        except Exception:  # noqa: BLE001 - evaluate these rules one by one instead
            return
        for index, step in enumerate(dynamic):
            step.slot = 2 * index
        self.width = len(parts)
        if flat:
            self.pick = analysis.flat_picker(f for f in flats.values() if f is not None)
        else:
            self.pick = analysis.picker(analysis.merge(analysis.needs_of(text) for text in flats))


# Outcomes kept per action type's plan; past this the memo starts again (a bound on
# memory when the values read are many: distances, times to the second).
_MEMO_SIZE = 4096
_SCALARS = (str, int, float, bool, type(None))


def _scalar(value: Any) -> Any:
    """A value as a key, or _NOT when it is not a scalar. The type goes with it, so 1,
    1.0 and True (equal in Python, not to the engine) never share outcomes, nor do 0.0
    and -0.0."""
    kind = type(value)
    if kind not in _SCALARS:
        return _NOT
    if kind is float and value == 0:
        return (kind, repr(value))
    return (kind, value)


_NOT = object()


def _memo_key(picked: dict[str, Any]) -> tuple[Any, ...] | None:
    """The values a program reads, as a key: each name with its value, a one-level dict
    (such as the attributes) as its items in their order. None when something read is
    anything else (a list, a nested dict): then it is not memoised."""
    key: list[Any] = []
    for name, value in picked.items():
        if type(value) is dict:
            items: list[Any] = []
            for inner, item in value.items():
                scalar = _scalar(item)
                if scalar is _NOT:
                    return None
                items.append((inner, scalar))
            key.append((name, tuple(items)))
            continue
        scalar = _scalar(value)
        if scalar is _NOT:
            return None
        key.append((name, scalar))
    return tuple(key)


def _outcomes(plan: _Plan, context: dict[str, Any]) -> Any:
    """The combined program's outcomes on the part of `context` it reads, evaluated
    once per distinct set of values read: an outcome is a pure function of them, and
    most actions of a type share them (a bus tap reads its hour, weekday and ward).
    None if the program fails or the context is not one it can read."""
    picked = plan.pick(context)
    if picked is None:
        return None
    key = _memo_key(picked)
    if key is not None:
        found = plan.memo.get(key)
        if found is not None:
            return found
    outcomes = plan.program.evaluate(picked)
    if type(outcomes) is not list or len(outcomes) != plan.width:
        return None
    if key is not None:
        if len(plan.memo) >= _MEMO_SIZE:
            plan.memo.clear()
        plan.memo[key] = outcomes
    return outcomes


def _order(rule: CompiledRule) -> tuple[int, str, str]:
    return (-rule.spec.priority, rule.spec.name, rule.spec.rule_id)


class RuleSet(tuple):  # type: ignore[type-arg]
    """Compiled rules in evaluation order (highest priority first, then name), with a
    plan per action type built on first use. Make one per set of live rule versions
    and reuse it: `evaluate` takes a plain list too, but then finds or builds the set."""

    def __new__(cls, rules: Iterable[CompiledRule]) -> RuleSet:
        ruleset = super().__new__(cls, sorted(rules, key=_order))
        ruleset._plans = {}
        return ruleset

    _plans: dict[str, _Plan]

    def plan(self, action_type: str) -> _Plan:
        plan = self._plans.get(action_type)
        if plan is None:
            plan = _Plan([rule for rule in self if action_type in rule.spec.action_types])
            self._plans[action_type] = plan
        return plan


# Sets built for plain lists of rules, by the identity of the rules in them. Each entry
# keeps its rules alive, so an id cannot be reused while its entry exists.
_SETS_KEPT = 64
_sets: dict[tuple[int, ...], tuple[tuple[CompiledRule, ...], RuleSet]] = {}
_sets_lock = threading.Lock()


def rule_set(rules: Iterable[CompiledRule]) -> RuleSet:
    """The RuleSet for these rules (the same object again for the same rules)."""
    if isinstance(rules, RuleSet):
        return rules
    rules = tuple(rules)
    key = tuple(map(id, rules))
    found = _sets.get(key)
    if found is not None and all(a is b for a, b in zip(found[0], rules, strict=True)):
        return found[1]
    ruleset = RuleSet(rules)
    with _sets_lock:
        while len(_sets) >= _SETS_KEPT:
            del _sets[next(iter(_sets))]
        _sets[key] = (rules, ruleset)
    return ruleset


def evaluate(
    rules: Sequence[CompiledRule],
    action_type: str,
    occurred_at: datetime,
    context: dict[str, Any],
    usage: Usage,
) -> Evaluation:
    """Decide the awards for one action. Rules run by priority (highest first); an
    exclusive (non-stackable) rule applies only if nothing has been awarded yet and,
    when it awards points, stops the rest. A rule that fails (bad types, a negative
    or absurd number) is listed in `errors` and the others still run. `usage` is
    updated with what is awarded here (in the periods each rule has caps for, and its
    budget), so a batch can evaluate several actions of one member in order. Pass a
    RuleSet (see rule_set) to save rebuilding it on every call."""
    result = Evaluation()
    ruleset = rules if type(rules) is RuleSet else rule_set(rules)
    plan = ruleset._plans.get(action_type) or ruleset.plan(action_type)
    if not plan.steps:
        return result
    outcomes: Any = None
    if plan.program is not None:
        try:
            outcomes = _outcomes(plan, context)
        except Exception:  # noqa: BLE001 - some rule fails: each runs alone below, to say which
            outcomes = None
    counts, totals, spent = usage.counts, usage.points, usage.budget_spent
    decisions = result.decisions
    action = context["action"]
    inputs: dict[str, Any] | None = None
    awarded_any = False
    for step in plan.steps:
        if occurred_at < step.starts_at or (step.ends_at is not None
                                            and occurred_at >= step.ends_at):
            continue
        if not step.stackable and awarded_any:
            continue
        spec = step.spec
        try:
            slot = step.slot
            if slot is not None and outcomes is not None:
                matched = outcomes[slot]
                if matched is False:
                    continue
                raw = outcomes[slot + 1]
            elif step.constant is not None:
                matched, raw = step.constant
            else:
                matched = step.rule.condition.evaluate(context)
                if matched is True:
                    raw = step.rule.points.evaluate(context)
            if matched is not True:
                if matched is False:
                    continue
                raise ExpressionError(f"condition gave {matched!r}, not true or false")
            # The usual case inline; anything else gets _as_points' checks and messages.
            if (type(raw) is float or type(raw) is int) and 0 <= raw < _MOST_BEFORE_ROUNDING:
                points = int(raw + 0.5)
            else:
                points = _as_points(raw)
        except ExpressionError as error:
            result.errors.append((spec, str(error)))
            continue
        except Exception as error:  # the engine's errors, or a context it cannot take
            result.errors.append((spec, _engine_message(error)))
            continue
        rule_id = step.rule_id
        capped_by = cut_by = None
        for key, period, cap in step.count_caps:
            if counts.get(key, 0) >= cap:
                capped_by = period
                break
        if capped_by is None:
            for key, label, cap in step.points_caps:
                room = cap - totals.get(key, 0)
                if room <= 0:
                    capped_by = label
                    break
                if room < points:
                    points, cut_by = room, label
        if capped_by is None and step.budget is not None:
            room = step.budget - spent.get(rule_id, 0)
            if room <= 0:
                capped_by = "budget"
            elif room < points:
                points, cut_by = room, "budget"
        if inputs is None:  # the same for every decision on this action
            inputs = {"hour": action["hour"], "weekday": action["weekday"],
                      "attributes": action["attributes"]}
        if capped_by is not None:
            decisions.append(_decision(Decision, (spec, 0, capped_by, inputs)))
            continue
        decisions.append(_decision(Decision, (spec, points, cut_by, inputs)))
        if points == 0:
            # Nothing awarded: no cap is used, and an exclusive rule does not stop the rest.
            continue
        # What this rule's caps and budget measure (Usage.record counts every period).
        for key in step.counted:
            counts[key] = counts.get(key, 0) + 1
            totals[key] = totals.get(key, 0) + points
        if step.budget is not None:
            spent[rule_id] = spent.get(rule_id, 0) + points
        awarded_any = True
        if not step.stackable:
            break
    return result
