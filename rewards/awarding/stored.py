"""Awarding one stored action through the same path as a batch: the same locks, cap and
budget use, decisions and rows. For actions that do not arrive in a source's batch: an
event claim, and a flagged action (or self-report) a reviewer approves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..bulk import is_postgres
from ..models import Action, Award, utcnow
from ..rules import member_facts
from .decisions import Accepted, Item
from .locks import lock_for_awards, lock_live_rules
from .rows import Writes, award_points
from .usage import UsageBook, WantedUse, actions_totals, rule_plans


class MemberGone(Exception):
    """The member's account was erased: nothing can be awarded to it."""


@dataclass(frozen=True)
class Awarded:
    points: int  # awarded now
    rule_errors: str | None  # rules that failed on it (the others still awarded)


def award_stored(session: Session, action: Action, now: datetime | None = None) -> Awarded:
    """Evaluate the live rules on `action` (already added to the session) and write its
    awards and postings in the caller's transaction; `action.points` grows by what it
    earned. Rules that awarded this action before (a flagged action whose other rules
    failed) are left out, so approving it never awards a rule twice. The caller sets
    the action's status."""
    now = now or utcnow()
    tz = current_app.config["SCHEME_TIMEZONE"]
    postgres = is_postgres(session)
    member_id = action.member_id
    # The member and rule locks first, then every read that decides, as in a batch.
    members = lock_for_awards(session, {member_id})
    rules = lock_live_rules(session, {action.type_code})
    member = members.get(member_id)
    if member is None or member.erased_at is not None:
        raise MemberGone(str(member_id))
    plans = rule_plans(rules)
    applicable = [plan for plan in plans.values()
                  if plan.rule.applies_to(action.type_code, action.occurred_at)]
    wanted = WantedUse(tz)
    windows = wanted.add(member_id, applicable, action.occurred_at,
                         action.occurred_at.astimezone(ZoneInfo(tz)).date())
    book = UsageBook()
    book.load(session, postgres, wanted.windows, wanted.budgeted)
    totals = actions_totals(session, postgres, members, rules)
    facts = member_facts(member.ward, member.joined_at, now,
                         0 if totals is None else totals.get(member_id, 0))
    item = Item(0, action.external_ref, action.type_code, action.occurred_at,
                dict(action.attributes or {}))
    already = set(session.scalars(select(Award.rule_id).where(Award.action_id == action.id)))
    writes = Writes(now)
    award_points(Accepted(item, member_id, action.id, applicable, windows), facts, book,
                 rules, plans, action.source_id, action.action_type_id, now, tz, writes,
                 skip_rules=already)
    row = writes.actions.pop()  # the action is stored already: only awards are new
    session.flush()  # the action's row before the awards that point at it
    writes.save(session, postgres)
    points = sum(award["points"] for award in writes.awards)
    action.points = (action.points or 0) + points
    return Awarded(points, row["flag_reason"] if row["status"] == "flagged" else None)
