from __future__ import annotations

import json
import math
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


def validate_expression(expression: str, want: str) -> None:
    """Refuse an expression that does not parse, or that does not give a `want`
    ("boolean" or "number") on a realistic context."""
    if not isinstance(expression, str) or not expression.strip():
        raise ExpressionError("expression is empty")
    problem = zen.validate_expression(expression)
    if problem:
        raise ExpressionError(f"{problem.get('type', 'error')}: {problem.get('source', problem)}")
    try:
        result = zen.evaluate_expression(expression, SAMPLE_CONTEXT)
    except RuntimeError as error:
        raise ExpressionError(_engine_message(error)) from None
    if want == "boolean" and not isinstance(result, bool):
        raise ExpressionError(f"a condition must give true or false, this gives {result!r}")
    if want == "number" and (isinstance(result, bool) or not isinstance(result, int | float)):
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
    Keys are (rule_id, period). The caller measures them in the action's periods."""

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


def _as_points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ExpressionError(f"points formula gave {value!r}, not a number")
    if value < 0:
        raise ExpressionError(f"points formula gave {value}, a negative number")
    return int(round(value))


def evaluate(
    rules: Sequence[CompiledRule],
    action_type: str,
    occurred_at: datetime,
    context: dict[str, Any],
    usage: Usage,
) -> Evaluation:
    """Decide the awards for one action. Rules run by priority (highest first); an
    exclusive (non-stackable) rule applies only if nothing has been awarded yet and
    stops the rest. `usage` is updated with what is awarded here, so a batch can
    evaluate several actions of one member in order."""
    result = Evaluation()
    awarded_any = False
    ordered = sorted(rules, key=lambda r: (-r.spec.priority, r.spec.name, r.spec.rule_id))
    for rule in ordered:
        spec = rule.spec
        if not rule.applies_to(action_type, occurred_at):
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
        except RuntimeError as error:
            result.errors.append((spec, _engine_message(error)))
            continue
        if not spec.stackable and awarded_any:
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
        usage.record(spec.rule_id, points)
        awarded_any = True
        if not spec.stackable:
            break
    return result
