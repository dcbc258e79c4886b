from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import zen

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


# A context shaped like a real one, used to catch type errors when a rule is saved.
SAMPLE_CONTEXT: dict[str, Any] = {
    "action": {
        "type": "bus_journey",
        "occurred_at": "2026-01-05T08:30:00Z",
        "hour": 8,
        "weekday": 1,
        "attributes": {"distance_km": 5.0, "hours": 2, "mode": "bus", "route": "1"},
    },
    "member": {"ward": "Headingley & Hyde Park", "joined_at": "2025-06-01T00:00:00Z",
               "days_since_joined": 218},
    "now": "2026-01-05T08:31:00Z",
}


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


def validate_expression(expression: str, want: str) -> None:
    """Refuse an expression that does not parse, or that does not give a `want`
    ("boolean" or "number") on a realistic context. Attributes the sample context
    lacks are tried with a number, a string and a flag before an expression is refused."""
    if want not in ("boolean", "number"):
        raise ValueError(f"unknown result kind {want!r}")
    if not isinstance(expression, str) or not expression.strip():
        raise ExpressionError("expression is empty")
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
        return
    if result is None and _works_with_some_attributes(expression, want):
        return
    if want == "boolean":
        raise ExpressionError(f"a condition must give true or false, this gives {result!r}")
    raise ExpressionError(f"a points formula must give a number, this gives {result!r}")


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

    def applies_to(self, action_type: str, occurred_at: datetime) -> bool:
        spec = self.spec
        if action_type not in spec.action_types:
            return False
        if occurred_at < spec.starts_at:
            return False
        return spec.ends_at is None or occurred_at < spec.ends_at


def compile_rule(spec: RuleSpec) -> CompiledRule:
    try:
        condition = zen.compile_expression(spec.condition)
        points = zen.compile_expression(spec.points)
    except RuntimeError as error:
        raise ExpressionError(_engine_message(error)) from None
    return CompiledRule(spec=spec, condition=condition, points=points)


@dataclass
class Usage:
    """What a member has already used of each rule's caps, and each rule's budget.
    Keys are (rule_id, period). The caller measures them in the action's periods,
    counting awards of more than zero points (a zero award uses no cap)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    points: dict[tuple[str, str], int] = field(default_factory=dict)
    budget_spent: dict[str, int] = field(default_factory=dict)

    def record(self, rule_id: str, points: int) -> None:
        for period in PERIODS:
            key = (rule_id, period)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.points[key] = self.points.get(key, 0) + points
        self.budget_spent[rule_id] = self.budget_spent.get(rule_id, 0) + points


@dataclass(frozen=True)
class Decision:
    """What one rule gives one action. points == 0 with capped_by says which cap stopped it."""

    spec: RuleSpec
    points: int
    capped_by: str | None
    inputs: dict[str, Any]


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


def build_context(
    action_type: str,
    occurred_at: datetime,
    attributes: Mapping[str, Any],
    member: Mapping[str, Any],
    now: datetime,
    tz: str,
) -> dict[str, Any]:
    local = occurred_at.astimezone(ZoneInfo(tz))
    return {
        "action": {
            "type": action_type,
            "occurred_at": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "hour": local.hour,
            "weekday": local.isoweekday(),
            "attributes": dict(attributes),
        },
        "member": dict(member),
        "now": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


# One rule's award for one action; more is taken for a broken formula, not a reward.
MAX_AWARD_POINTS = 1_000_000


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
    updated with what is awarded here, so a batch can evaluate several actions of one
    member in order."""
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
        except Exception as error:  # the engine's errors, or a context it cannot take
            result.errors.append((spec, _engine_message(error)))
            continue
        capped_by = None
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
                points = min(points, room)
        if capped_by is None and spec.budget_points is not None:
            room = spec.budget_points - usage.budget_spent.get(spec.rule_id, 0)
            if room <= 0:
                capped_by = "budget"
            else:
                points = min(points, room)
        inputs = {
            "hour": context["action"]["hour"],
            "weekday": context["action"]["weekday"],
            "attributes": context["action"]["attributes"],
        }
        if capped_by is not None:
            result.decisions.append(Decision(spec, 0, capped_by, inputs))
            continue
        result.decisions.append(Decision(spec, points, None, inputs))
        if points == 0:
            # Nothing awarded: no cap is used, and an exclusive rule does not stop the rest.
            continue
        usage.record(spec.rule_id, points)
        awarded_any = True
        if not spec.stackable:
            break
    return result
