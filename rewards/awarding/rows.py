"""The rows awarding writes: an action's row (its status and points), one award row per
rule that decided on it, and the earn postings, which the ledger writes
(ledger.post_earns). Kept as plain dicts and inserted table by table, many rows a
statement: no ORM objects, no unit-of-work flushes."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..actions.rulebook import log_rule_failures
from ..bulk import insert_rows
from ..ids import IdPool
from ..ledger import Earn, add_points_awarded, post_earns
from ..models import Action, Award
from ..rules import CompiledRule
from .decisions import Accepted, decide, flag_reason
from .usage import RulePlan, UsageBook


@dataclass
class Writes:
    """The rows a batch (or one stored action's awarding) writes."""

    now: datetime  # when the batch is evaluated
    actions: list[dict[str, Any]] = field(default_factory=list)
    awards: list[dict[str, Any]] = field(default_factory=list)
    earns: list[Earn] = field(default_factory=list)
    new_id: IdPool = field(default_factory=IdPool)

    def save(self, session: Session, postgres: bool) -> None:
        # Parents before children: postings point at actions, awards at postings.
        if self.actions:
            insert_rows(session, Action.__table__, self.actions, postgres)
        post_earns(session, self.earns, self.now, postgres, self.new_id)
        if self.awards:
            insert_rows(session, Award.__table__, self.awards, postgres)
        totals: dict[uuid.UUID, int] = {}
        for award in self.awards:
            totals[award["rule_id"]] = totals.get(award["rule_id"], 0) + award["points"]
        add_points_awarded(session, totals)


def award_points(
    work: Accepted,
    member: Mapping[str, Any],
    book: UsageBook,
    rules: Sequence[CompiledRule],
    plans: Mapping[str, RulePlan],
    source_id: uuid.UUID | None,
    action_type_id: uuid.UUID,
    now: datetime,
    tz: str,
    writes: Writes,
    created_at: datetime | None = None,
    skip_rules: Collection[uuid.UUID] = (),
) -> tuple[int, str]:
    """Evaluate the live `rules` on one action and add its action row, awards and
    postings to `writes`; returns the points awarded and the action's status.
    Its rows are stamped `created_at` (default `now`, the time the rules see). Rules
    in `skip_rules` (by rule id) awarded it before: they write nothing now."""
    stamp = now if created_at is None else created_at
    item, member_id = work.item, work.member_id
    evaluation = decide(work, member, book, rules, now, tz)
    reason = flag_reason(evaluation)
    if reason is not None:
        log_rule_failures(evaluation.errors, work.action_id)
    total = 0
    earns: dict[int, Earn] = {}  # by hold_days
    for decision in evaluation.decisions:
        spec = decision.spec
        plan = plans[spec.version_id]
        if plan.rule_id in skip_rules:
            continue
        posting_id = None
        if decision.points > 0:
            earn = earns.get(spec.hold_days)
            if earn is None:
                earn = earns[spec.hold_days] = Earn(
                    writes.new_id(), work.action_id, member_id, spec.hold_days, stamp,
                    spec.rule_id)
                writes.earns.append(earn)
            earn.points += decision.points
            earn.reasons.append(f"{spec.name} v{spec.version}")
            posting_id = earn.posting_id
            book.record(member_id, plan, decision.points, work.windows)
            total += decision.points
        writes.awards.append({
            "id": writes.new_id(),
            "created_at": stamp,
            "action_id": work.action_id,
            "member_id": member_id,
            "rule_id": plan.rule_id,
            "rule_version_id": plan.version_id,
            "rule_version": spec.version,
            "rule_name": spec.name,
            "points": decision.points,
            "capped_by": decision.capped_by,
            "occurred_at": item.occurred_at,
            "inputs": decision.inputs,
            "posting_id": posting_id,
            "revoked_at": None,
            "points_written_off": 0,
        })
    status = "flagged" if reason is not None else "accepted"
    writes.actions.append(action_row(work, source_id, action_type_id, stamp, status,
                                     reason, total))
    return total, status


def action_row(work: Accepted, source_id: uuid.UUID | None, action_type_id: uuid.UUID,
               created_at: datetime, status: str, flag_reason: str | None,
               points: int) -> dict[str, Any]:
    item = work.item
    return {
        "id": work.action_id,
        "created_at": created_at,
        "source_id": source_id,
        "external_ref": item.external_ref,
        "member_id": work.member_id,
        "action_type_id": action_type_id,
        "type_code": item.type_code,
        "occurred_at": item.occurred_at,
        "attributes": item.attributes,
        "status": status,
        "flag_reason": flag_reason,
        "points": points,
    }
