"""Notices that follow awards: "you earned N points", one per member per awarded batch,
on the channels the member chose and in their language."""

from __future__ import annotations

import logging
import uuid

from flask import current_app
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import Member
from rewards.notice_text import mail_language, text
from rewards.notify import Notice, deliver, devices_of, wanted_by

from . import job

log = logging.getLogger("workers.notices")


@job
def points_earned(earned: dict[str, list[int]]) -> dict[str, int]:
    """`earned`: {member id: [points, actions]}. Who wants it, and where, is read for the
    whole batch at once (most card holders have neither an address nor a phone). A
    notice that cannot be sent is logged, not retried: the points stand, and a rerun
    must not tell the others twice."""
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
        try:
            deliver(session, notice)
        except Exception:
            log.exception("could not send the points notice to member %s", member_id)
            summary["failed"] += 1
            continue
        summary["sent"] += 1
    return summary
