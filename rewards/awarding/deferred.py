"""Deferred awarding (AWARDING = "deferred"): a source's batch is recorded with its
actions `pending` and one award_queue row; a worker (workers/awarding.py) awards many
queued batches in one transaction, through the same locks, cap and budget use,
decisions and rows as a batch awarded inline (batch.py).

Exactly once: a queue row is taken FOR UPDATE SKIP LOCKED (two workers never take the
same batch), only actions still `pending` are awarded, under their members' locks (a
revocation of a pending action takes the same lock: ledger.reverse_action), and the
queue row is deleted in the transaction that writes the awards (whose keys are unique
besides). A worker that dies leaves the row, and the next run takes it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session

from ..bulk import is_postgres, one_of, pg_array
from ..models import Action, AwardQueue, utcnow
from .batch import Planner, award_many
from .decisions import Item
from .locks import lock_for_awards, lock_live_rules
from .rows import Writes

log = logging.getLogger("rewards.awarding")

AWARD_JOB = "workers.awarding.award_queued"
# Queued batches awarded together in one transaction (a batch is up to MAX_BATCH_ITEMS):
# 20,000 actions take seconds, well inside the job's timeout (jobs.LONG_JOBS) even on a
# busy machine, and a run that fails loses no more than that to its rollback.
MOST_BATCHES = 20
ERASED = "member account erased before the action was awarded"

# Called in the awarding transaction after each run with {member id: [points awarded,
# actions that earned them]} (members awarded nothing are left out): where "points
# earned" notices hang (rewards/notify.py registers one).
AwardedListener = Callable[[Session, dict[uuid.UUID, list[int]]], None]
_listeners: list[AwardedListener] = []


def on_batch_awarded(listener: AwardedListener) -> AwardedListener:
    """Register `listener` (usable as a decorator)."""
    _listeners.append(listener)
    return listener


@dataclass(frozen=True)
class AwardRun:
    batches: int = 0
    actions: int = 0
    points: int = 0
    batch_ids: tuple[uuid.UUID, ...] = ()

    def as_dict(self) -> dict[str, int]:
        return {"batches": self.batches, "actions": self.actions, "points": self.points}


def queue_for_award(session: Session, action_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """Queue a batch's pending actions (already written) in the caller's transaction,
    and (with AWARDING_JOBS, the default) a job that awards what is queued."""
    if not action_ids:
        return
    session.execute(insert(AwardQueue.__table__), [{
        "id": uuid.uuid4(), "created_at": now, "action_ids": [str(i) for i in action_ids]}])
    if current_app.config.get("AWARDING_JOBS", True):
        from .. import jobs

        jobs.enqueue(AWARD_JOB)


def award_queued(session: Session, most: int = MOST_BATCHES, now: datetime | None = None,
                 skip: Collection[uuid.UUID] = ()) -> AwardRun:
    """Award up to `most` queued batches (oldest first, leaving out those in `skip`) in
    the caller's transaction."""
    now = now or utcnow()
    postgres = is_postgres(session)
    statement = select(AwardQueue.id, AwardQueue.action_ids)
    if skip:
        statement = statement.where(AwardQueue.id.not_in(list(skip)))
    queued = session.execute(
        statement.order_by(AwardQueue.created_at, AwardQueue.id)
        .limit(most)
        .with_for_update(skip_locked=True)
    ).all()
    if not queued:
        return AwardRun()
    owners, read_pending = _reads(session, postgres, [value for _, ids in queued
                                                      for value in ids])
    # The members' locks, then the actions still pending under them: a revocation that
    # committed first has made its action `revoked`, one that comes later waits.
    members = lock_for_awards(session, owners)
    stored = read_pending()
    stored.sort(key=lambda row: (row.occurred_at, row.id))
    rules = lock_live_rules(session, {row.type_code for row in stored})
    planner = Planner(rules, current_app.config["SCHEME_TIMEZONE"])
    origins: dict[uuid.UUID, tuple[uuid.UUID | None, uuid.UUID]] = {}
    accepted = []
    gone: list[dict[str, Any]] = []
    for row in stored:
        member = members.get(row.member_id)
        if member is None or member.erased_at is not None:
            gone.append({"id": row.id, "status": "revoked", "flag_reason": ERASED,
                         "points": 0})
            continue
        origins[row.id] = (row.source_id, row.action_type_id)
        item = Item(0, row.external_ref, row.type_code, row.occurred_at,
                    dict(row.attributes or {}))
        accepted.append(planner.accept(item, row.member_id, row.id))
    writes = Writes(now)
    decided = award_many(session, postgres, planner, accepted, members,
                         lambda work: origins[work.action_id], now, writes, stamp_rows=False)
    changed = [{"id": row["id"], "status": row["status"], "flag_reason": row["flag_reason"],
                "points": row["points"]} for row in writes.actions] + gone
    writes.actions = []  # stored already: updated below, not inserted
    writes.save(session, postgres)
    _update_actions(session, postgres, changed)
    session.execute(delete(AwardQueue).where(AwardQueue.id.in_([row.id for row in queued])))
    awarded: dict[uuid.UUID, list[int]] = {}  # member -> [points, actions that earned]
    for done in decided:
        if done.points:
            total = awarded.setdefault(done.work.member_id, [0, 0])
            total[0] += done.points
            total[1] += 1
    for listener in _listeners:
        listener(session, awarded)
    return AwardRun(len(queued), len(stored), sum(points for points, _ in awarded.values()),
                    tuple(row.id for row in queued))


_STORED_COLUMNS = (Action.id, Action.member_id, Action.source_id, Action.action_type_id,
                   Action.external_ref, Action.type_code, Action.occurred_at,
                   Action.attributes)
# The queued ids as one array literal, unnested once and joined by primary key (their
# text is read from the queue rows as it is: no id objects made and dumped again).
_QUEUED = "unnest(CAST(CAST(:ids AS text) AS uuid[])) AS q(id) JOIN actions AS a ON a.id = q.id"
_OWNERS_SQL = text(f"SELECT DISTINCT a.member_id FROM {_QUEUED}")
_PENDING_SQL = text(
    "SELECT a.id, a.member_id, a.source_id, a.action_type_id, a.external_ref, a.type_code, "
    f"a.occurred_at, a.attributes FROM {_QUEUED} WHERE a.status = 'pending'")


def _reads(session: Session, postgres: bool,
           queued: list[str]) -> tuple[set[uuid.UUID], Callable[[], list[Any]]]:
    """The members owning the queued actions, and a function reading the actions still
    pending (called once their members are locked)."""
    if postgres:
        ids = {"ids": "{" + ",".join(queued) + "}"}
        owners = set(session.scalars(_OWNERS_SQL, ids))
        return owners, lambda: list(session.execute(_PENDING_SQL, ids))
    action_ids = {uuid.UUID(value) for value in queued}
    owners = set()
    for condition in one_of(postgres, Action.id, action_ids):
        owners.update(session.scalars(select(Action.member_id).where(condition).distinct()))

    def pending() -> list[Any]:
        stored: list[Any] = []
        for condition in one_of(postgres, Action.id, action_ids):
            stored.extend(session.execute(
                select(*_STORED_COLUMNS).where(condition, Action.status == "pending")))
        return stored

    return owners, pending


# Most actions come out accepted with no reason: only their ids and points are sent,
# as array literals the server parses once (a list of values is dumped one by one).
_UPDATE_ACCEPTED_SQL = text("""
UPDATE actions AS a SET status = 'accepted', flag_reason = NULL, points = v.points
FROM unnest(CAST(CAST(:ids AS text) AS uuid[]), CAST(CAST(:points AS text) AS integer[]))
     AS v(id, points)
WHERE a.id = v.id
""")
_UPDATE_SQL = text("""
UPDATE actions AS a SET status = v.status, flag_reason = v.flag_reason, points = v.points
FROM unnest(CAST(CAST(:ids AS text) AS uuid[]), CAST(:statuses AS text[]),
            CAST(:reasons AS text[]), CAST(:points AS integer[]))
     AS v(id, status, flag_reason, points)
WHERE a.id = v.id
""")


def _update_actions(session: Session, postgres: bool, rows: list[dict[str, Any]]) -> None:
    """Each action's status, flag reason and points, as awarding decided them."""
    if not rows:
        return
    if postgres:
        plain = [row for row in rows if row["status"] == "accepted" and row["flag_reason"] is None]
        if plain:
            session.execute(_UPDATE_ACCEPTED_SQL, {
                "ids": pg_array(row["id"] for row in plain),
                "points": "{" + ",".join(str(int(row["points"])) for row in plain) + "}"})
        rows = [row for row in rows
                if row["status"] != "accepted" or row["flag_reason"] is not None]
        if not rows:
            return
        session.execute(_UPDATE_SQL, {
            "ids": pg_array(row["id"] for row in rows),
            "statuses": [row["status"] for row in rows],
            "reasons": [row["flag_reason"] for row in rows],
            "points": [row["points"] for row in rows],
        })
        return
    table = Action.__table__
    session.connection().execute(
        update(table).where(table.c.id == bindparam("b_id")).values(
            status=bindparam("b_status"), flag_reason=bindparam("b_reason"),
            points=bindparam("b_points")),
        [{"b_id": row["id"], "b_status": row["status"], "b_reason": row["flag_reason"],
          "b_points": row["points"]} for row in rows])


def queue_strays(session: Session, older_than: timedelta = timedelta(minutes=10),
                 within: timedelta = timedelta(days=3), now: datetime | None = None) -> int:
    """The sweep: pending actions recorded between `within` and `older_than` ago that no
    queued batch names (none should exist: an action and its queue row are written in
    one transaction) are queued again as one batch. Returns how many."""
    now = now or utcnow()
    queued: set[str] = set()
    for (ids,) in session.execute(select(AwardQueue.action_ids)):
        queued.update(ids)
    strays = [action_id for action_id in session.scalars(
        select(Action.id).where(Action.created_at >= now - within,
                                Action.created_at < now - older_than,
                                Action.status == "pending"))
              if str(action_id) not in queued]
    if strays:
        log.warning("%d pending action(s) were in no award batch: queued again", len(strays))
        queue_for_award(session, strays, now)
    return len(strays)
