"""Notices that follow awards: "you earned N points", one per member per awarded batch,
on the channels the member chose and in their language."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import select

from rewards import jobs
from rewards.extensions import db
from rewards.models import Member, OutboxMessage
from rewards.notice_text import mail_language, text
from rewards.notify import Notice, deliver, devices_of, wanted_by

from . import job

log = logging.getLogger("workers.notices")


@job
def points_earned(earned: dict[str, list[int]]) -> dict[str, int]:
    """`earned`: {member id: [points, actions]}. Who wants it, and where, is read for the
    whole batch at once (most card holders have neither an address nor a phone). A
    notice that cannot be sent is logged, not retried: the points stand, and a rerun
    must not tell the others twice (each member is taken off the job's outbox row
    before being told: `_taken_off`)."""
    session = db.session
    scheme = current_app.config["SCHEME_NAME"]
    ids = sorted(uuid.UUID(member_id) for member_id, (points, _) in earned.items()
                 if points > 0)
    members: dict[uuid.UUID, tuple[str | None, str | None]] = {}  # id -> (email, locale)
    for start in range(0, len(ids), 500):
        members.update((member_id, (email, locale)) for member_id, email, locale in
                       session.execute(select(Member.id, Member.email, Member.locale).where(
                           Member.id.in_(ids[start:start + 500]),
                           Member.erased_at.is_(None))))
    wanted = wanted_by(session, list(members), "points_earned")
    devices = devices_of(session, [m for m in members if wanted[m]["push"]])
    notices = []
    for member_id, (address, locale) in members.items():
        email = address if wanted[member_id]["email"] else None
        if email is None and not devices.get(member_id):
            continue
        points, actions = earned[str(member_id)]
        subject, body = text("points_earned", mail_language(locale), points=points,
                             actions=actions, scheme=scheme)
        notices.append((member_id, Notice("points_earned", subject, body,
                                          {"points": str(points)}, email,
                                          devices.get(member_id, ()))))
    session.commit()
    summary = {"sent": 0, "skipped": len(earned) - len(notices), "failed": 0}
    for member_id, notice in notices:
        # Only members who have a device or asked for mail get this far (most card
        # holders have neither): one small commit each, beside a send that takes longer.
        _taken_off(session, [member_id])
        try:
            deliver(session, notice)
        except Exception:
            log.exception("could not send the points notice to member %s", member_id)
            summary["failed"] += 1
            continue
        summary["sent"] += 1
    return summary


def _taken_off(session: Any, member_ids: list[uuid.UUID]) -> None:
    """Take `member_ids` off this job's own outbox row (committed) before telling them:
    an attempt that stops part way (its time limit, a worker killed, a database
    restart) is followed by one that tells only those not reached yet. At most once:
    a member whose notice was under way when it stopped is not told again."""
    message_id = jobs.current_message_id()
    if message_id is None:
        return
    message = session.get(OutboxMessage, message_id)
    if message is None:
        return
    earned = dict(message.kwargs.get("earned") or {})
    for member_id in member_ids:
        earned.pop(str(member_id), None)
    message.kwargs = {**message.kwargs, "earned": earned}
    session.commit()
