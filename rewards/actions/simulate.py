"""What draft rules would have done: replay recent real actions through the engine.

Reads only. The last `days` of accepted actions are replayed in the order they
happened, with caps and budgets counted from nothing over the replay window (what
the rules would have done had they started with it), once with the drafts (and the
live rules, unless left out) and once with the live rules alone for a baseline."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..awarding import ReplayUsage
from ..models import Action, Member
from ..rules import (
    RuleSet,
    RuleSpec,
    build_context,
    compile_rule,
    evaluate,
    member_facts,
)
from .rulebook import live_rules

CHUNK = 2000


@dataclass
class RuleFigures:
    name: str
    points: int | None = 0
    actions: int | None = 0
    capped: int | None = 0
    # Figures about fewer members than the small-cell threshold are hidden (None).
    suppressed: bool = False
    members: set[int] = field(default_factory=set, repr=False)


@dataclass
class Simulation:
    days: int
    include_live: bool
    starts_at: datetime
    ends_at: datetime
    actions_considered: int = 0
    actions_matched: int | None = 0
    members_touched: int | None = 0
    points: int | None = 0
    live_points: int | None = 0
    baseline_points: int = 0
    points_by_rule: list[RuleFigures] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    suppressed: bool = False

    @property
    def cost_change(self) -> int | None:
        """Points the scheme would issue with the drafts added to the live rules, less
        what the live rules issue alone (only when they were evaluated together)."""
        if not self.include_live or self.points is None or self.live_points is None:
            return None
        return self.points + self.live_points - self.baseline_points


def suppress_small_cells(result: Simulation, threshold: int) -> Simulation:
    """Staff see aggregates only: a draft rule that matched fewer than `threshold`
    members hides its figures (a condition matching one trip's distance would otherwise
    describe one resident's travel). Totals that include a hidden figure are hidden
    too, so no hidden figure can be worked out by subtraction; the live rules' baseline
    does not depend on the drafts and stays."""
    hidden = False
    for rule in result.points_by_rule:
        if len(rule.members) < threshold and (rule.points or rule.actions or rule.capped):
            rule.points = rule.actions = rule.capped = None
            rule.suppressed = hidden = True
    touched = result.members_touched or 0
    if 0 < touched < threshold:
        result.members_touched = None
        hidden = True
    if hidden:
        result.points = result.live_points = result.actions_matched = None
        result.suppressed = True
    for error in result.errors:
        if error["count"] < threshold:
            error["count"] = None
    return result


def _windows(occurred_at: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """Names for the local day, week (Monday first) and month an action falls in."""
    day = occurred_at.astimezone(zone).date()
    return {"per_day": day, "per_week": day - timedelta(days=day.weekday()),
            "per_month": (day.year, day.month), "lifetime": None}


@dataclass
class _Replayed:
    action_id: uuid.UUID
    member: int  # the member's number in this replay (cheaper to hash than a UUID)
    type_code: str
    occurred_at: datetime
    attributes: dict[str, Any]
    facts: dict[str, Any]
    now: datetime


def _actions(session: Session, since: datetime, until: datetime) -> Iterator[_Replayed]:
    """Accepted actions in [since, until) in the order they happened, read in chunks of
    the columns the engine needs, with each member's facts at the time."""
    members: dict[uuid.UUID, int] = {}
    facts: list[tuple[str | None, datetime]] = []  # ward, joined_at
    totals: list[int] = []
    stmt = (
        select(Action.id, Action.member_id, Action.type_code, Action.occurred_at,
               Action.attributes, Action.created_at)
        .where(Action.status == "accepted", Action.occurred_at >= since,
               Action.occurred_at < until)
        .order_by(Action.occurred_at, Action.id)
        .execution_options(yield_per=CHUNK)
    )
    for chunk in session.execute(stmt).partitions(CHUNK):
        new = sorted({row.member_id for row in chunk} - set(members))
        for start in range(0, len(new), 500):
            part = new[start : start + 500]
            before: dict[uuid.UUID, int] = {}
            # Accepted actions before the window count towards member.actions_total.
            for member_id, count in session.execute(
                select(Action.member_id, func.count(Action.id))
                .where(Action.member_id.in_(part), Action.status == "accepted",
                       Action.occurred_at < since)
                .group_by(Action.member_id)
            ):
                before[member_id] = int(count)
            for member_id, ward, joined_at in session.execute(
                select(Member.id, Member.ward, Member.joined_at).where(Member.id.in_(part))
            ):
                members[member_id] = len(facts)
                facts.append((ward, joined_at))
                totals.append(before.get(member_id, 0))
        for row in chunk:
            number = members[row.member_id]
            ward, joined_at = facts[number]
            # As ingest evaluated it: "now" is when the action was received.
            now = row.created_at or row.occurred_at
            yield _Replayed(row.id, number, row.type_code, row.occurred_at,
                            row.attributes or {},
                            member_facts(ward, joined_at, now, totals[number]), now)
            totals[number] += 1


def draft_spec(index: int, body: dict[str, Any], starts_at: datetime) -> RuleSpec:
    """A draft rule from a body as POST /v1/admin/rules takes it (status ignored). One
    with no start applies over the whole replay."""
    return RuleSpec(
        rule_id=f"draft-{index}",
        version_id=f"draft-{index}",
        version=0,
        name=body["name"],
        action_types=frozenset(body["action_types"]),
        condition=body.get("condition", "true"),
        points=body["points"],
        starts_at=body.get("starts_at") or starts_at,
        ends_at=body.get("ends_at"),
        caps={k: int(v) for k, v in (body.get("caps") or {}).items() if v is not None},
        points_caps={k: int(v) for k, v in (body.get("points_caps") or {}).items()
                     if v is not None},
        budget_points=body.get("budget_points"),
        priority=body.get("priority", 0),
        stackable=body.get("stackable", True),
        hold_days=body.get("hold_days", 0),
    )


def simulate(
    session: Session,
    drafts: Sequence[dict[str, Any]],
    *,
    days: int,
    include_live: bool,
    tz: str,
    now: datetime,
) -> Simulation:
    """Replay the last `days` of accepted actions through the drafts (bodies as for
    creating a rule, already validated) and answer what they would have awarded."""
    since = now - timedelta(days=days)
    result = Simulation(days=days, include_live=include_live, starts_at=since, ends_at=now)
    draft_rules = [compile_rule(draft_spec(i, body, since)) for i, body in enumerate(drafts)]
    live = list(live_rules(session))
    trial = RuleSet(draft_rules + live if include_live else draft_rules)
    baseline = RuleSet(live)
    trial_book, baseline_book = ReplayUsage(trial), ReplayUsage(baseline)
    zone = ZoneInfo(tz)

    figures = {rule.spec.rule_id: RuleFigures(rule.spec.name) for rule in draft_rules}
    errors: Counter[tuple[str, bool, str]] = Counter()
    members: set[int] = set()
    for action in _actions(session, since, now):
        result.actions_considered += 1
        context = build_context(action.type_code, action.occurred_at, action.attributes,
                                action.facts, action.now, tz)
        windows = _windows(action.occurred_at, zone)
        evaluation = evaluate(trial, action.type_code, action.occurred_at, context,
                              trial_book.usage(action.member, action.type_code, windows))
        draft_points = 0
        for decision in evaluation.decisions:
            rule_id = decision.spec.rule_id
            if decision.points > 0:
                trial_book.record(action.member, rule_id, decision.points, windows)
            draft = figures.get(rule_id)
            if draft is None:
                result.live_points += decision.points
                continue
            draft_points += decision.points
            draft.points += decision.points
            if decision.points > 0:
                draft.actions += 1
                draft.members.add(action.member)
            if decision.capped_by is not None and decision.points == 0:
                draft.capped += 1
                draft.members.add(action.member)
        for spec, message in evaluation.errors:
            errors[(spec.name, spec.rule_id in figures, message)] += 1
        if draft_points > 0:
            result.actions_matched += 1
            result.points += draft_points
            members.add(action.member)
        if baseline:
            base = evaluate(baseline, action.type_code, action.occurred_at, context,
                            baseline_book.usage(action.member, action.type_code, windows))
            for decision in base.decisions:
                if decision.points > 0:
                    baseline_book.record(action.member, decision.spec.rule_id,
                                         decision.points, windows)
                    result.baseline_points += decision.points
    result.members_touched = len(members)
    result.points_by_rule = [figures[rule.spec.rule_id] for rule in draft_rules]
    result.errors = [
        {"rule": name, "draft": draft, "message": message, "count": count}
        for (name, draft, message), count in sorted(errors.items(), key=lambda e: -e[1])
    ]
    return result
