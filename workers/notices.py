"""Notices that follow awards: "you earned N points", one per member per awarded batch,
on the channels the member chose and in their language."""

from __future__ import annotations

import logging
import uuid

from flask import current_app

from rewards.extensions import db
from rewards.models import Member
from rewards.notice_text import mail_language, text
from rewards.notify import deliver, plan

from . import job

log = logging.getLogger("workers.notices")


@job
def points_earned(earned: dict[str, list[int]]) -> dict[str, int]:
    """`earned`: {member id: [points, actions]}. A notice that cannot be sent is logged,
    not retried: the points stand, and a rerun must not tell the others twice."""
    session = db.session
    summary = {"sent": 0, "skipped": 0, "failed": 0}
    scheme = current_app.config["SCHEME_NAME"]
    for member_id, (points, actions) in sorted(earned.items()):
        member = session.get(Member, uuid.UUID(member_id))
        if member is None or member.erased_at is not None or points <= 0:
            summary["skipped"] += 1
            continue
        language = mail_language(member.locale)
        subject, body = text("points_earned", language, points=points, actions=actions,
                             scheme=scheme)
        notice = plan(session, member, "points_earned", subject, body,
                      {"points": str(points)})
        session.commit()
        if not notice.email and not notice.devices:
            summary["skipped"] += 1
            continue
        try:
            deliver(session, notice)
        except Exception:
            log.exception("could not send the points notice to member %s", member_id)
            summary["failed"] += 1
            continue
        summary["sent"] += 1
    return summary
