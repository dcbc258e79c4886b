"""Awarding many actions in one transaction: a source's batch as it arrives (inline),
or many queued batches at once (deferred.py). The caller has locked the members' rows
and the live rules (locks.py); this reads cap and budget use, each member's action
count and the controls' history once, then takes the actions in order.

The actions' rows are built here either way (writes.actions): inline they are
inserted, deferred they update the rows stored on arrival."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..actions.screening import control_book
from ..models import utcnow
from ..rules import CompiledRule, member_facts
from .decisions import Accepted, Item
from .rows import Writes, action_row, award_points
from .usage import RulePlan, UsageBook, WantedUse, actions_totals, rule_plans

_TICK = timedelta(microseconds=1)


@dataclass
class Decided:
    """What one action came to: its points, status and (flagged) reason."""

    work: Accepted
    points: int
    status: str
    reason: str | None
    held: bool = False  # by a control (reason "held for review: ..."), not a rule failing


@dataclass
class Planner:
    """The live rules (locked) by action type, and the cap windows and budgets the
    actions taken so far fall in: what the UsageBook must read."""

    rules: Sequence[CompiledRule]
    tz: str
    plans: dict[str, RulePlan] = field(init=False)
    wanted: WantedUse = field(init=False)
    _by_type: dict[str, list[RulePlan]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.plans = rule_plans(self.rules)
        self.wanted = WantedUse(self.tz)
        self._zone = ZoneInfo(self.tz)
        for plan in self.plans.values():
            for type_code in plan.rule.spec.action_types:
                self._by_type.setdefault(type_code, []).append(plan)

    def accept(self, item: Item, member_id: uuid.UUID, action_id: uuid.UUID) -> Accepted:
        applicable = [plan for plan in self._by_type.get(item.type_code, ())
                      if plan.rule.applies_to(item.type_code, item.occurred_at)]
        windows = self.wanted.add(member_id, applicable, item.occurred_at,
                                  item.occurred_at.astimezone(self._zone).date())
        return Accepted(item, member_id, action_id, applicable, windows)


def award_many(
    session: Any,
    postgres: bool,
    planner: Planner,
    accepted: Sequence[Accepted],
    members: Mapping[uuid.UUID, Any],
    origin: Callable[[Accepted], tuple[uuid.UUID | None, uuid.UUID]],
    now: datetime,
    writes: Writes,
    stamp_rows: bool = True,
) -> list[Decided]:
    """Decide and build the rows of `accepted` (in the order given: caps fall on the
    later ones). `origin(work)`: the action's (source id, action type id). With
    `stamp_rows`, rows are stamped when made, strictly increasing in that order (so
    lists ordered by created_at keep it); otherwise they are stamped `now`."""
    book = UsageBook()
    book.load(session, postgres, planner.wanted.windows, planner.wanted.budgeted)
    totals = actions_totals(session, postgres, members, planner.rules)
    # Controls before points (too many in an hour, implausible travel): the members'
    # stored actions nearby, read under the member locks, then each action in turn.
    controls = control_book(session, [(work.member_id, work.item.type_code,
                                       work.item.occurred_at, work.item.attributes)
                                      for work in accepted])
    decided: list[Decided] = []
    facts: dict[uuid.UUID, dict[str, Any]] = {}
    stamp = now - _TICK
    tz = planner.tz
    for work in accepted:
        stamp = max(utcnow(), stamp + _TICK) if stamp_rows else now
        item = work.item
        source_id, type_id = origin(work)
        held = controls.check(work.member_id, item.type_code, item.occurred_at,
                              item.attributes)
        if held is not None:
            # Held for review: stored flagged, no rule runs until a reviewer approves.
            writes.actions.append(action_row(work, source_id, type_id, stamp, "flagged",
                                             held, 0))
            decided.append(Decided(work, 0, "flagged", held, held=True))
            continue
        member_id = work.member_id
        member = facts.get(member_id)
        if member is None or totals is not None:
            row = members[member_id]
            member = facts[member_id] = member_facts(
                row.ward, row.joined_at, now, 0 if totals is None else totals.get(member_id, 0))
        points, status = award_points(work, member, book, planner.rules, planner.plans,
                                      source_id, type_id, now, tz, writes, created_at=stamp)
        if totals is not None and status == "accepted":
            totals[member_id] = totals.get(member_id, 0) + 1
        decided.append(Decided(work, points, status, writes.actions[-1]["flag_reason"]))
    return decided
