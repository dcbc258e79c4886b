"""Settling every member due something: expiry (daily) and pending releases (hourly).

Each member is settled in a transaction of their own under their lock, so a long run
holds no lock for long and a run that dies halfway is finished by the next one.
Running either twice changes nothing the second time. The scheduled jobs in
workers/ledger.py and `rewards ledger expire|release` both call these."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from .expiry import expire_member, members_with_expired_lots
from .pending import members_with_due_pending, release_member

log = logging.getLogger("rewards.ledger")


@dataclass
class RunSummary:
    members: int = 0
    points: int = 0
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"members": self.members, "points": self.points, "failed": len(self.failed)}


class RunFailed(RuntimeError):
    def __init__(self, name: str, summary: RunSummary) -> None:
        super().__init__(f"{name} failed for {len(summary.failed)} member(s): "
                         f"{', '.join(summary.failed[:10])}")
        self.summary = summary


def _per_member(
    session: Session,
    name: str,
    members: list[uuid.UUID],
    settle: Callable[[uuid.UUID], int],
) -> RunSummary:
    summary = RunSummary()
    for member_id in members:
        try:
            points = settle(member_id)
            session.commit()
        except Exception:  # one member's trouble must not hold up everyone else's
            session.rollback()
            log.exception("%s failed for member %s", name, member_id)
            summary.failed.append(str(member_id))
            continue
        if points:
            summary.members += 1
            summary.points += points
    log.info("%s: %d points for %d member(s)", name, summary.points, summary.members)
    if summary.failed:
        # Fail the run so a job is retried; members already settled are skipped then.
        raise RunFailed(name, summary)
    return summary


def expire_all(session: Session, now: datetime) -> RunSummary:
    """Expire what is left of every member's lots that expired by `now`."""
    members = members_with_expired_lots(session, now)
    session.commit()
    return _per_member(session, "expiry", members,
                       lambda member_id: expire_member(session, member_id, now))


def release_all(session: Session, now: datetime) -> RunSummary:
    """Move every pending credit due by `now` to its member's available account."""
    members = members_with_due_pending(session, now)
    session.commit()
    return _per_member(session, "pending release", members,
                       lambda member_id: release_member(session, member_id, now))
