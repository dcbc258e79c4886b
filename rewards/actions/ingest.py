"""A source's batch of actions: validate, dedupe, evaluate the rules, post to the ledger."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..ledger import member_account, post, scheme_account
from ..members import card_hash
from ..models import Action, ActionType, Award, Identifier, Member, Source, utcnow
from ..rules import PERIODS, CompiledRule, Usage, build_context, evaluate, period_bounds
from .rulebook import live_rules

log = logging.getLogger("rewards.actions")


@dataclass
class Item:
    """A batch item that passed validation."""

    index: int
    external_ref: str
    type_code: str
    occurred_at: datetime
    attributes: dict[str, Any]
    card: tuple[str, str] | None = None
    member_id: uuid.UUID | None = None


@dataclass
class Limits:
    max_future: timedelta
    max_age: timedelta


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def validate_item(
    index: int,
    raw: Any,
    allowed_types: set[str],
    now: datetime,
    limits: Limits,
) -> Item | str:
    """Decide whether one batch item is usable; if not, say why in words a source's
    developer can act on."""
    if not isinstance(raw, Mapping):
        return "each item must be a JSON object"
    ref = raw.get("external_ref")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
        return "external_ref must be a non-empty string of at most 200 characters"
    type_code = raw.get("type")
    if not isinstance(type_code, str) or not type_code:
        return "type is required: an action type code such as bus_journey"
    if type_code not in allowed_types:
        return f"unknown type {type_code!r} for this source"
    occurred_at = parse_time(raw.get("occurred_at"))
    if occurred_at is None:
        return "occurred_at must be an RFC 3339 time with a zone, e.g. 2026-11-20T08:15:00Z"
    if occurred_at > now + limits.max_future:
        return "occurred_at is in the future"
    if occurred_at < now - limits.max_age:
        return f"occurred_at is older than {limits.max_age.days} days"
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        return "attributes must be a JSON object"
    member = raw.get("member")
    if not isinstance(member, Mapping):
        return "member is required: {kind, number} of a linked card, or {member_id}"
    item = Item(index, ref, type_code, occurred_at, dict(attributes))
    if "member_id" in member:
        try:
            item.member_id = uuid.UUID(str(member["member_id"]))
        except ValueError:
            return "member.member_id is not a valid id"
    else:
        kind, number = member.get("kind"), member.get("number")
        if not isinstance(kind, str) or not isinstance(number, str) or not number.strip():
            return "member needs kind and number (strings) of a linked card"
        item.card = (kind, number)
    return item


@dataclass
class BatchOutcome:
    results: list[dict[str, Any]]
    accepted: int = 0
    points: int = 0


@dataclass
class _UsageBook:
    """Cap and budget use, loaded from awards once per (member, rule, period window)
    and counted forward as this batch awards points."""

    session: Session
    tz: str
    counts: dict[tuple[uuid.UUID, str, str, datetime], tuple[int, int]] = field(
        default_factory=dict
    )
    budgets: dict[str, int] = field(default_factory=dict)

    def usage_for(self, member_id: uuid.UUID, rules: Sequence[CompiledRule], at: datetime) -> Usage:
        usage = Usage()
        for rule in rules:
            spec = rule.spec
            if spec.caps or spec.points_caps:
                for period in PERIODS:
                    if period not in spec.caps and period not in spec.points_caps:
                        continue
                    count, points = self._window(member_id, spec.rule_id, period, at)
                    usage.counts[(spec.rule_id, period)] = count
                    usage.points[(spec.rule_id, period)] = points
            if spec.budget_points is not None:
                usage.budget_spent[spec.rule_id] = self._budget(spec.rule_id)
        return usage

    def _window(
        self, member_id: uuid.UUID, rule_id: str, period: str, at: datetime
    ) -> tuple[int, int]:
        start, end = period_bounds(at, period, self.tz)
        key = (member_id, rule_id, period, start)
        if key not in self.counts:
            row = self.session.execute(
                select(func.count(Award.id), func.coalesce(func.sum(Award.points), 0)).where(
                    Award.member_id == member_id,
                    Award.rule_id == uuid.UUID(rule_id),
                    Award.points > 0,
                    Award.occurred_at >= start,
                    Award.occurred_at < end,
                )
            ).one()
            self.counts[key] = (int(row[0]), int(row[1]))
        return self.counts[key]

    def _budget(self, rule_id: str) -> int:
        if rule_id not in self.budgets:
            self.budgets[rule_id] = int(
                self.session.scalar(
                    select(func.coalesce(func.sum(Award.points), 0)).where(
                        Award.rule_id == uuid.UUID(rule_id)
                    )
                )
                or 0
            )
        return self.budgets[rule_id]

    def record(self, member_id: uuid.UUID, rule_id: str, points: int, at: datetime) -> None:
        for period in PERIODS:
            start, _ = period_bounds(at, period, self.tz)
            key = (member_id, rule_id, period, start)
            if key in self.counts:
                count, total = self.counts[key]
                self.counts[key] = (count + 1, total + points)
        if rule_id in self.budgets:
            self.budgets[rule_id] += points


def ingest_batch(session: Session, source: Source, items: Sequence[Any]) -> BatchOutcome:
    """Record a batch; a concurrent batch carrying the same refs makes the insert
    fail on the unique key, and the retry then reports them as duplicates."""
    try:
        outcome = _ingest(session, source, items)
        session.commit()
        return outcome
    except IntegrityError:
        session.rollback()
        outcome = _ingest(session, source, items)
        session.commit()
        return outcome


def _ingest(session: Session, source: Source, items: Sequence[Any]) -> BatchOutcome:
    config = current_app.config
    now = utcnow()
    limits = Limits(
        max_future=timedelta(seconds=config["ACTION_MAX_FUTURE_SECONDS"]),
        max_age=timedelta(days=config["ACTION_MAX_AGE_DAYS"]),
    )
    types = {t.code: t for t in session.scalars(select(ActionType))}
    allowed = set(source.action_types or ()) & set(types)

    results: list[dict[str, Any]] = [{} for _ in items]
    valid: list[Item] = []
    for index, raw in enumerate(items):
        checked = validate_item(index, raw, allowed, now, limits)
        ref = raw.get("external_ref") if isinstance(raw, Mapping) else None
        if isinstance(checked, str):
            results[index] = _result(ref if isinstance(ref, str) else None, "rejected",
                                     reason=checked)
        else:
            valid.append(checked)

    # Duplicates: already recorded from this source, or repeated within the batch.
    refs = [item.external_ref for item in valid]
    seen: dict[str, uuid.UUID | None] = {}
    for chunk_start in range(0, len(refs), 500):
        chunk = refs[chunk_start : chunk_start + 500]
        for ref, action_id in session.execute(
            select(Action.external_ref, Action.id).where(
                Action.source_id == source.id, Action.external_ref.in_(chunk)
            )
        ):
            seen[ref] = action_id

    # Members: by keyed hash of the card, or by id.
    hashes = {card_hash(*item.card): item for item in valid if item.card}
    card_members: dict[str, uuid.UUID] = {}
    if hashes:
        for number_hash, member_id in session.execute(
            select(Identifier.number_hash, Identifier.member_id).where(
                Identifier.number_hash.in_(list(hashes))
            )
        ):
            card_members[number_hash] = member_id
    ids = {item.member_id for item in valid if item.member_id}
    members: dict[uuid.UUID, Member] = {}
    wanted = ids | set(card_members.values())
    if wanted:
        members = {
            m.id: m
            for m in session.scalars(select(Member).where(Member.id.in_(list(wanted))))
            if m.erased_at is None
        }

    rules = live_rules(session)
    book = _UsageBook(session, config["SCHEME_TIMEZONE"])
    issuance = scheme_account(session, "scheme:issuance")
    outcome = BatchOutcome(results)
    for item in sorted(valid, key=lambda i: i.occurred_at):
        if item.external_ref in seen:
            results[item.index] = _result(
                item.external_ref, "duplicate", seen[item.external_ref],
                "already received from this source",
            )
            continue
        member_id = card_members.get(card_hash(*item.card)) if item.card else item.member_id
        member = members.get(member_id) if member_id else None
        if member is None:
            reason = "unknown card: no member has linked it" if item.card else "unknown member"
            results[item.index] = _result(item.external_ref, "rejected", reason=reason)
            continue
        action = Action(
            id=uuid.uuid4(),
            source_id=source.id,
            external_ref=item.external_ref,
            member_id=member.id,
            action_type_id=types[item.type_code].id,
            type_code=item.type_code,
            occurred_at=item.occurred_at,
            attributes=item.attributes,
        )
        session.add(action)
        seen[item.external_ref] = action.id
        award_points(session, action, member, rules, book, issuance, now)
        outcome.accepted += 1
        outcome.points += action.points
        results[item.index] = _result(item.external_ref, "accepted", action.id,
                                      points=action.points)
    session.flush()
    return outcome


def member_facts(member: Member, now: datetime) -> dict[str, Any]:
    return {
        "ward": member.ward,
        "joined_at": member.joined_at.isoformat().replace("+00:00", "Z"),
        "days_since_joined": max((now - member.joined_at).days, 0),
    }


def award_points(
    session: Session,
    action: Action,
    member: Member,
    rules: Sequence[CompiledRule],
    book: _UsageBook,
    issuance: Any,
    now: datetime,
) -> None:
    tz = current_app.config["SCHEME_TIMEZONE"]
    context = build_context(
        action.type_code, action.occurred_at, action.attributes, member_facts(member, now), now, tz
    )
    usage = book.usage_for(member.id, rules, action.occurred_at)
    evaluation = evaluate(rules, action.type_code, action.occurred_at, context, usage)
    for spec, message in evaluation.errors:
        log.warning("rule %s v%s failed on action %s: %s", spec.name, spec.version,
                    action.id, message)
    if evaluation.errors:
        action.status = "flagged"
        action.flag_reason = "; ".join(
            f"rule {spec.name} v{spec.version} failed: {message}"
            for spec, message in evaluation.errors
        )
    total = 0
    for decision in evaluation.decisions:
        spec = decision.spec
        award = Award(
            action_id=action.id,
            member_id=member.id,
            rule_id=uuid.UUID(spec.rule_id),
            rule_version_id=uuid.UUID(spec.version_id),
            rule_version=spec.version,
            rule_name=spec.name,
            points=decision.points,
            capped_by=decision.capped_by,
            occurred_at=action.occurred_at,
            inputs=decision.inputs,
        )
        if decision.points > 0:
            target = member_account(session, member.id,
                                    "pending" if spec.hold_days else "available")
            posting = post(
                session,
                "earn",
                f"{spec.name} v{spec.version}",
                [(issuance, -decision.points), (target, decision.points)],
                key=f"award:{action.id}:{spec.rule_id}",
                member_id=member.id,
                action_id=action.id,
            )
            award.posting_id = posting.id
            book.record(member.id, spec.rule_id, decision.points, action.occurred_at)
            total += decision.points
        session.add(award)
    action.points = total


def _result(
    ref: str | None,
    status: str,
    action_id: uuid.UUID | None = None,
    reason: str | None = None,
    points: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "external_ref": ref,
        "status": status,
        "action_id": str(action_id) if action_id else None,
        "reason": reason,
    }
    if points is not None:
        result["points"] = points
    return result
