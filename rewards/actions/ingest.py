"""A source's batch of actions: validate, dedupe, evaluate the rules, post to the ledger."""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..ledger import member_account, post, scheme_account
from ..members import card_hash
from ..models import (
    Action,
    ActionType,
    Award,
    Identifier,
    Member,
    Rule,
    Source,
    utcnow,
)
from ..rules import (
    PERIODS,
    CompiledRule,
    Evaluation,
    Usage,
    build_context,
    evaluate,
    period_bounds,
)
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


# RFC 3339 date-time: full date, T (or a space), full time, then Z or an offset. Python's
# fromisoformat alone also takes ISO 8601 forms sources should not send (20261120T0815Z).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>[Zz]|[+-]\d{2}:\d{2})?"
)
_EXAMPLE_TIME = "2026-11-20T08:15:00Z"
# The rules engine takes numbers up to 64-bit integers; larger ones fail inside it.
MAX_ATTRIBUTE_NUMBER = 2**63
# One award larger than this is a formula gone wrong (or fed absurd attributes), not
# a reward: the rule is treated as failed and the action flagged.
MAX_AWARD_POINTS = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_time(value: Any) -> datetime | str:
    """An RFC 3339 time with a zone, in UTC; or why not."""
    if not isinstance(value, str):
        return f"occurred_at must be an RFC 3339 time string, e.g. {_EXAMPLE_TIME}"
    match = _RFC3339.fullmatch(value)
    if match is None:
        return f"occurred_at must be an RFC 3339 time, e.g. {_EXAMPLE_TIME}; got {value[:40]!r}"
    if match.group("zone") is None:
        return (f"occurred_at has no time zone: end it with Z (UTC) or an offset such as "
                f"+01:00; got {value!r}")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        return f"occurred_at is not a real time ({error}); got {value!r}"


def parse_time(value: Any) -> datetime | None:
    checked = check_time(value)
    return checked if isinstance(checked, datetime) else None


def _attributes_problem(attributes: Mapping[str, Any]) -> str | None:
    """Values the database or the rules engine cannot hold: NUL characters, numbers
    that are not finite or are too large."""
    stack: list[tuple[str, Any]] = [("attributes", attributes)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if "\x00" in key:
                    return f"{path}: keys must not contain NUL characters"
                stack.append((f"{path}.{key}", inner))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", inner) for n, inner in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                return f"{path} must not contain NUL characters"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path} must be a finite number, not {value}"
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and abs(value) >= MAX_ATTRIBUTE_NUMBER):
            return f"{path} is too large: numbers must be smaller than 2^63 in size"
    return None


def validate_item(
    index: int,
    raw: Any,
    allowed_types: set[str],
    now: datetime,
    limits: Limits,
    known_types: set[str] | None = None,
) -> Item | str:
    """Decide whether one batch item is usable; if not, say why in words a source's
    developer can act on. `allowed_types` are the types this source may send,
    `known_types` all the scheme's types (to tell a typo from a missing permission)."""
    if not isinstance(raw, Mapping):
        return "each item must be a JSON object"
    ref = raw.get("external_ref")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
        return "external_ref must be a non-empty string of at most 200 characters"
    if _CONTROL.search(ref):
        return "external_ref must not contain control characters"
    type_code = raw.get("type")
    if not isinstance(type_code, str) or not type_code:
        return "type is required: an action type code such as bus_journey"
    if type_code not in allowed_types:
        if known_types is not None and type_code in known_types:
            may_send = ", ".join(sorted(allowed_types)) or "none"
            return (f"this source may not send {type_code!r} actions; "
                    f"the types it may send: {may_send}")
        if known_types is not None:
            return f"unknown type {type_code!r}: the scheme has no action type with this code"
        return f"unknown type {type_code!r} for this source"
    occurred_at = check_time(raw.get("occurred_at"))
    if isinstance(occurred_at, str):
        return occurred_at
    if occurred_at > now + limits.max_future:
        return (f"occurred_at is in the future (more than "
                f"{int(limits.max_future.total_seconds())} seconds ahead of {iso_utc(now)})")
    if occurred_at < now - limits.max_age:
        return f"occurred_at is older than {limits.max_age.days} days"
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        return "attributes must be a JSON object"
    problem = _attributes_problem(attributes)
    if problem:
        return problem
    member = raw.get("member")
    if not isinstance(member, Mapping):
        return "member is required: {kind, number} of a linked card, or {member_id}"
    item = Item(index, ref, type_code, occurred_at, dict(attributes))
    if "member_id" in member:
        try:
            item.member_id = uuid.UUID(str(member["member_id"]))
        except ValueError:
            return "member.member_id must be a member's id (a UUID)"
    else:
        kind, number = member.get("kind"), member.get("number")
        if not isinstance(kind, str) or not isinstance(number, str) or not number.strip():
            return "member needs kind and number (strings) of a linked card"
        item.card = (kind, number)
    return item


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


# Retries when a concurrent batch wins a race: the same external_ref committed first
# (unique key), or PostgreSQL breaking a lock cycle (deadlock, serialization failure).
ATTEMPTS = 4
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _retryable(error: DBAPIError) -> bool:
    if isinstance(error, IntegrityError):
        return True
    orig = error.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state in _RETRYABLE_SQLSTATES


def ingest_batch(session: Session, source: Source, items: Sequence[Any]) -> BatchOutcome:
    """Record a batch in one transaction. A concurrent batch carrying the same refs
    makes the insert fail on the unique key; the retry then reports them as duplicates."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            outcome = _ingest(session, source, items)
            session.commit()
            return outcome
        except (IntegrityError, OperationalError) as error:
            session.rollback()
            if attempt == ATTEMPTS or not _retryable(error):
                raise
            log.info("batch from source %s lost a race (attempt %d), retrying: %s",
                     source.id, attempt, error.orig)
    raise AssertionError("unreachable")


def lock_for_awards(
    session: Session, member_ids: set[uuid.UUID], rules: Sequence[CompiledRule]
) -> None:
    """Caps are counted per member and budgets per rule from the awards already
    stored, so two transactions awarding at once must not both read the same counts
    and then both award. Anything that awards under rules takes these locks first,
    then reads: each member's row and each budgeted rule's row, in one order (no lock
    cycles), until commit. FOR NO KEY UPDATE, so inserts that merely reference the
    rows (actions, awards, postings) and spenders (who lock the member's account) are
    not blocked. On SQLite this renders nothing: BEGIN IMMEDIATE already lets one
    writer in at a time."""
    ids = sorted(member_ids)
    for chunk_start in range(0, len(ids), 500):
        session.execute(
            select(Member.id)
            .where(Member.id.in_(ids[chunk_start : chunk_start + 500]))
            .order_by(Member.id)
            .with_for_update(key_share=True)
        )
    budgeted = sorted({uuid.UUID(r.spec.rule_id) for r in rules
                       if r.spec.budget_points is not None})
    if budgeted:
        session.execute(
            select(Rule.id).where(Rule.id.in_(budgeted)).order_by(Rule.id)
            .with_for_update(key_share=True)
        )


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
        checked = validate_item(index, raw, allowed, now, limits, set(types))
        ref = raw.get("external_ref") if isinstance(raw, Mapping) else None
        if isinstance(checked, str):
            results[index] = _result(ref if isinstance(ref, str) else None, "rejected",
                                     reason=checked)
        else:
            valid.append(checked)

    # Members: by keyed hash of the card, or by id.
    item_hashes = {item.index: card_hash(*item.card) for item in valid if item.card}
    card_members: dict[str, uuid.UUID] = {}
    hashes = sorted(set(item_hashes.values()))
    for chunk_start in range(0, len(hashes), 500):
        for number_hash, member_id in session.execute(
            select(Identifier.number_hash, Identifier.member_id).where(
                Identifier.number_hash.in_(hashes[chunk_start : chunk_start + 500])
            )
        ):
            card_members[number_hash] = member_id
    ids = {item.member_id for item in valid if item.member_id}
    members: dict[uuid.UUID, Member] = {}
    wanted = sorted(ids | set(card_members.values()))
    for chunk_start in range(0, len(wanted), 500):
        for member in session.scalars(
            select(Member).where(Member.id.in_(wanted[chunk_start : chunk_start + 500]))
        ):
            if member.erased_at is None:
                members[member.id] = member

    rules = live_rules(session)
    # Locks first, then every read that decides (duplicates, caps, budgets) sees what
    # concurrent batches committed.
    lock_for_awards(session, set(members), rules)

    # Duplicates: already recorded from this source, or repeated within the batch.
    refs = sorted({item.external_ref for item in valid})
    seen: dict[str, uuid.UUID] = {}
    for chunk_start in range(0, len(refs), 500):
        chunk = refs[chunk_start : chunk_start + 500]
        for ref, action_id in session.execute(
            select(Action.external_ref, Action.id).where(
                Action.source_id == source.id, Action.external_ref.in_(chunk)
            )
        ):
            seen[ref] = action_id

    # Each ref's first item is the one that counts; the rest repeat it. First items go
    # in time order (so caps fall on the latest actions), repeats after them.
    firsts: list[Item] = []
    repeats: list[Item] = []
    refs_in_batch: set[str] = set()
    for item in valid:
        (repeats if item.external_ref in refs_in_batch else firsts).append(item)
        refs_in_batch.add(item.external_ref)

    book = _UsageBook(session, config["SCHEME_TIMEZONE"])
    issuance = scheme_account(session, "scheme:issuance")
    outcome = BatchOutcome(results)
    recorded_here: set[str] = set()
    for item in sorted(firsts, key=lambda i: i.occurred_at) + repeats:
        if item.external_ref in seen:
            reason = ("repeats an earlier item of this batch"
                      if item.external_ref in recorded_here
                      else "already received from this source")
            results[item.index] = _result(
                item.external_ref, "duplicate", seen[item.external_ref], reason
            )
            continue
        if item.card:
            member_id = card_members.get(item_hashes[item.index])
            reason = f"unknown card: no member has linked this {item.card[0]}"
        else:
            member_id = item.member_id
            reason = "unknown member_id: no member has this id"
        member = members.get(member_id) if member_id else None
        if member is None:
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
        recorded_here.add(item.external_ref)
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
    try:
        evaluation = evaluate(rules, action.type_code, action.occurred_at, context, usage)
    except Exception as error:  # noqa: BLE001 - the engine failed outside any one rule
        log.exception("rules engine failed on action %s", action.id)
        message = f"{type(error).__name__}: {str(error)[:200]}"
        evaluation = Evaluation(errors=[
            (rule.spec, message) for rule in rules
            if rule.applies_to(action.type_code, action.occurred_at)
        ])
    for decision in list(evaluation.decisions):
        if decision.points > MAX_AWARD_POINTS:
            evaluation.decisions.remove(decision)
            evaluation.errors.append((decision.spec, (
                f"points formula gave {decision.points}, more than one award may give "
                f"({MAX_AWARD_POINTS})")))
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
