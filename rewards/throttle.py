"""Slowing guessing down, per account: failed logins lock the account with a back-off
that doubles (whether or not the account exists, so the answer tells nothing), and a
row per key that concurrent requests for one address queue on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import utcnow
from .models.login import LoginThrottle
from .security import keyed_hash


def throttle_key(purpose: str, value: str) -> str:
    """A keyed digest (IDENTIFIER_KEY): the table must not become a list of addresses
    someone tried. A plain SHA-256 of an address is as good as the address to anyone
    holding a list of addresses to hash, so it would outlive the account's erasure."""
    return f"{purpose}:{keyed_hash(value.strip().lower(), f'throttle:{purpose}')}"


def lock_row(session: Session, key: str) -> LoginThrottle:
    """The key's row, created if need be, locked until the caller's transaction ends:
    concurrent requests for one key take turns (SQLite serialises writers already)."""
    row = session.scalar(select(LoginThrottle).where(LoginThrottle.key == key)
                         .with_for_update())
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.execute(insert(LoginThrottle).values(key=key, failures=0,
                                                          updated_at=utcnow()))
    except IntegrityError:
        pass  # made by a concurrent request just now; wait for its lock below
    return session.scalars(select(LoginThrottle).where(LoginThrottle.key == key)
                           .with_for_update().execution_options(populate_existing=True)).one()


def lock_seconds(failures: int, after: int, base: int, ceiling: int) -> int:
    """How long `failures` wrong tries in a row lock the account: none below `after`,
    then `base` seconds, doubling with each further failure, at most `ceiling`."""
    if failures < after:
        return 0
    return min(ceiling, base * 2 ** min(failures - after, 30))


@dataclass
class Locked(Exception):
    retry_after: int


def check_not_locked(row: LoginThrottle, now: datetime | None = None) -> None:
    now = now or utcnow()
    if row.locked_until is not None and row.locked_until > now:
        raise Locked(max(1, math.ceil((row.locked_until - now).total_seconds())))


def record_failure(row: LoginThrottle, now: datetime | None = None,
                   after: int | None = None) -> None:
    """Count a wrong try; `after` wrong tries in a row (LOGIN_LOCK_AFTER unless given)
    lock the key with the back-off above."""
    config = current_app.config
    now = now or utcnow()
    row.failures += 1
    row.updated_at = now
    seconds = lock_seconds(row.failures, config["LOGIN_LOCK_AFTER"] if after is None else after,
                           config["LOGIN_LOCK_SECONDS"], config["LOGIN_LOCK_MAX_SECONDS"])
    if seconds:
        row.locked_until = now + timedelta(seconds=seconds)


def record_success(row: LoginThrottle) -> None:
    row.failures = 0
    row.locked_until = None
    row.updated_at = utcnow()


def purge_throttles(session: Session, before: datetime) -> int:
    """Delete counters last touched before `before` whose lock (if any) has ended: an
    address idle that long starts again from no failures. Commits. A row a request holds
    locked is waited for, and kept if that request counted a failure meanwhile."""
    now = utcnow()
    result = session.execute(delete(LoginThrottle).where(
        or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        or_(LoginThrottle.updated_at < before,
            and_(LoginThrottle.updated_at.is_(None), LoginThrottle.failures == 0))))
    session.commit()
    return int(result.rowcount or 0)
