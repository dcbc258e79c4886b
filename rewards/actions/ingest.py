"""A source's batch of actions: validate each item (validation.py), find its member,
drop duplicates, and answer item by item. Awarding (rewards.awarding) happens in the
same transaction (AWARDING="inline", the default: locks, cap and budget use, the rules,
the rows and earn postings) or later, by a worker (AWARDING="deferred": the actions are
recorded `pending` and the batch queued; see awarding/deferred.py and docs/ledger.md).

A batch is one transaction and a fixed handful of statements whatever its size: the
member and budget locks (inline only), then every read that decides (cards, duplicates,
cap and budget use) in grouped queries, the rules in memory, and one bulk write per
table (COPY on PostgreSQL). bench/ingest.py measures it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..awarding import (
    Accepted,
    Item,
    Planner,
    Writes,
    action_row,
    award_many,
    lock_for_awards,
    lock_live_rules,
    queue_for_award,
)
from ..bulk import is_postgres, one_of
from ..members import card_hash, rehash_cards
from ..models import Action, ActionType, Identifier, Source, utcnow
from .validation import Limits, validate_item

log = logging.getLogger("rewards.actions")


@dataclass
class BatchOutcome:
    results: list[dict[str, Any]]
    accepted: int = 0
    points: int = 0


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


def ingest_batch(session: Session, source: Source, items: Sequence[Any],
                 awarding: str | None = None) -> BatchOutcome:
    """Record a batch in one transaction. A concurrent batch carrying the same refs
    makes the insert fail on the unique key; the retry then reports them as duplicates.
    `awarding`: "inline" or "deferred" (default: the AWARDING setting)."""
    deferred = (awarding or current_app.config["AWARDING"]) == "deferred"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            outcome = _ingest(session, source, items, deferred)
            session.commit()
            return outcome
        except (IntegrityError, OperationalError) as error:
            session.rollback()
            if attempt == ATTEMPTS or not _retryable(error):
                raise
            log.info("batch from source %s lost a race (attempt %d), retrying: %s",
                     source.id, attempt, error.orig)
    raise AssertionError("unreachable")


NO_CONSENT = "no_consent: the member has withdrawn consent to travel data"


def _ingest(session: Session, source: Source, items: Sequence[Any],
            deferred: bool) -> BatchOutcome:
    config = current_app.config
    tz = config["SCHEME_TIMEZONE"]
    postgres = is_postgres(session)
    now = utcnow()
    # A source may have its own, usually shorter, limit on how old an item may be.
    max_age_days = getattr(source, "max_age_days", None)
    limits = Limits(
        max_future=timedelta(seconds=config["ACTION_MAX_FUTURE_SECONDS"]),
        max_age=timedelta(days=config["ACTION_MAX_AGE_DAYS"] if max_age_days is None
                          else max_age_days),
        max_attributes=config["ACTION_ATTRIBUTES_MAX_CHARS"],
    )
    type_ids: dict[str, uuid.UUID] = {}
    travel_types: set[str] = set()  # refused for members who withdrew travel consent
    for code, type_id, category in session.execute(
            select(ActionType.code, ActionType.id, ActionType.category)):
        type_ids[code] = type_id
        if category == "travel":
            travel_types.add(code)
    known_types = set(type_ids)
    allowed = set(source.action_types or ()) & known_types

    results: list[dict[str, Any]] = [{} for _ in items]
    valid: list[Item] = []
    for index, raw in enumerate(items):
        checked = validate_item(index, raw, allowed, now, limits, known_types)
        if isinstance(checked, str):
            ref = raw.get("external_ref") if isinstance(raw, Mapping) else None
            results[index] = _result(ref if isinstance(ref, str) else None, "rejected",
                                     reason=checked)
        else:
            valid.append(checked)

    # Members: by keyed hash of the card (one hash per distinct card), or by id.
    card_hashes = {card: card_hash(*card) for card in {item.card for item in valid if item.card}}
    card_members: dict[str, uuid.UUID] = {}
    for condition in one_of(postgres, Identifier.number_hash, set(card_hashes.values())):
        for number_hash, member_id in session.execute(
            select(Identifier.number_hash, Identifier.member_id).where(condition)
        ):
            card_members[number_hash] = member_id
    # While IDENTIFIER_KEY rotates, cards still under the previous key (re-hashed now).
    card_members.update(rehash_cards(session, {card for card, digest in card_hashes.items()
                                               if digest not in card_members}))
    wanted = {item.member_id for item in valid if item.member_id} | set(card_members.values())

    # Locks first, then every read that decides (members, duplicates, caps, budgets)
    # sees what concurrent batches committed.
    # Deferred, nothing is awarded here: the members are read, not locked, and no rule
    # is locked, so batches from several processes do not take turns.
    members = {member_id: row
               for member_id, row in lock_for_awards(session, wanted, lock=not deferred).items()
               if row.erased_at is None}
    rules = None if deferred else lock_live_rules(session, {item.type_code for item in valid})

    # Duplicates: already recorded from this source, or repeated within the batch.
    seen: dict[str, uuid.UUID] = {}
    for condition in one_of(postgres, Action.external_ref, {i.external_ref for i in valid}):
        for ref, action_id in session.execute(
            select(Action.external_ref, Action.id).where(Action.source_id == source.id,
                                                         condition)
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

    planner = None if rules is None else Planner(rules, tz)
    writes = Writes(now)
    accepted: list[Accepted] = []
    recorded_here: set[str] = set()
    for item in sorted(firsts, key=lambda i: i.occurred_at) + repeats:
        ref = item.external_ref
        if ref in seen:
            reason = ("repeats an earlier item of this batch" if ref in recorded_here
                      else "already received from this source")
            results[item.index] = _result(ref, "duplicate", seen[ref], reason)
            continue
        if item.card:
            member_id = card_members.get(card_hashes[item.card])
            reason = f"unknown card: no member has linked this {item.card[0]}"
        else:
            member_id = item.member_id
            reason = "unknown member_id: no member has this id"
        if member_id is None or member_id not in members:
            results[item.index] = _result(ref, "rejected", reason=reason)
            continue
        if item.type_code in travel_types and members[member_id].travel_data_withheld:
            results[item.index] = _result(ref, "rejected", reason=NO_CONSENT)
            continue
        action_id = writes.new_id()
        seen[ref] = action_id
        recorded_here.add(ref)
        accepted.append(Accepted(item, member_id, action_id, [], {}) if planner is None
                        else planner.accept(item, member_id, action_id))

    outcome = BatchOutcome(results)
    outcome.accepted = len(accepted)
    if deferred:
        # Recorded now, awarded by a worker (awarding.deferred): no points in the answer.
        writes.actions.extend(action_row(work, source.id, type_ids[work.item.type_code],
                                         now, "pending", None, 0) for work in accepted)
        writes.save(session, postgres)
        queue_for_award(session, [work.action_id for work in accepted], now)
        for work in accepted:
            results[work.item.index] = _result(work.item.external_ref, "accepted",
                                               work.action_id)
        return outcome
    assert planner is not None
    for done in award_many(session, postgres, planner, accepted, members,
                           lambda work: (source.id, type_ids[work.item.type_code]),
                           now, writes):
        item = done.work.item
        results[item.index] = _result(item.external_ref, "accepted", done.work.action_id,
                                      reason=done.reason if done.held else None,
                                      points=done.points)
        outcome.points += done.points
    writes.save(session, postgres)
    return outcome


def _echoed(ref: str | None) -> str | None:
    """A ref as the answer may carry it: half a surrogate pair (refused as a ref) would
    come back as an escape some JSON decoders refuse, failing the whole answer, so it
    is replaced (U+FFFD), as a decoder that accepts it would show it."""
    if ref is None or ref.isascii():
        return ref
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in ref)


def _result(
    ref: str | None,
    status: str,
    action_id: uuid.UUID | None = None,
    reason: str | None = None,
    points: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "external_ref": _echoed(ref),
        "status": status,
        "action_id": str(action_id) if action_id else None,
        "reason": reason,
    }
    # Always there, as the answer's schema says: 0 for an item that earned nothing
    # (a duplicate, a rejected item), null for one recorded but not awarded yet
    # (AWARDING=deferred: its points show in the member's actions once awarded).
    result["points"] = points if points is not None else (None if status == "accepted" else 0)
    return result
