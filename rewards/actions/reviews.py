"""Self-reports and the review queue.

A self-report is stored at once as a flagged action (awarding nothing) with the member's
description and optional photo; so the queue is simply the flagged actions: those held
by a control, those a rule failed on, and self-reports. A reviewer approves (the action
is awarded through the same rules path as a batch) or rejects with a reason (anything
it had earned is reversed); the member sees the outcome and the reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..awarding import MemberGone, award_stored, lock_for_reversals
from ..ledger import lock_member, reverse_action
from ..models import Action, ActionType, Member, utcnow
from ..models.review import Review, SelfReport, SelfReportPhoto
from ..reasons import Refused

AWAITING = "self-reported: awaiting review"
PHOTO_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


def photo_type(data: bytes) -> str | None:
    """image/jpeg or image/png by the file's first bytes (never by its name or the
    type the client claims), or None."""
    for content_type, magic in PHOTO_TYPES.items():
        if data.startswith(magic):
            return content_type
    return None


def self_report_status(action_status: str) -> str:
    return {"flagged": "pending", "accepted": "approved"}.get(action_status, "rejected")


class ReviewRefused(Refused):
    """A review cannot be decided as asked."""


def reports_today(session: Session, member_id: uuid.UUID, now: datetime) -> tuple[int, datetime]:
    """Self-reports in the last 24 hours, and when the oldest of them was made."""
    count, oldest = session.execute(
        select(func.count(SelfReport.id), func.min(SelfReport.created_at))
        .where(SelfReport.member_id == member_id,
               SelfReport.created_at > now - timedelta(days=1))
    ).one()
    return int(count or 0), oldest or now


def reports_waiting(session: Session, member_id: uuid.UUID) -> int:
    """The member's self-reports still waiting for a reviewer."""
    return int(session.scalar(
        select(func.count(SelfReport.id)).join(Action, Action.id == SelfReport.action_id)
        .where(SelfReport.member_id == member_id, Action.status == "flagged")) or 0)


def submit_self_report(
    session: Session,
    member: Member,
    action_type: ActionType,
    occurred_at: datetime,
    description: str,
    photo: bytes | None = None,
    now: datetime | None = None,
) -> SelfReport:
    """Record the report and its held action in the caller's transaction."""
    now = now or utcnow()
    report_id = uuid.uuid4()
    action = Action(id=uuid.uuid4(), source_id=None, external_ref=f"self-report:{report_id}",
                    member_id=member.id, action_type_id=action_type.id,
                    type_code=action_type.code, occurred_at=occurred_at,
                    attributes={"self_report_id": str(report_id)}, status="flagged",
                    flag_reason=AWAITING, points=0, origin="self_report", created_at=now)
    report = SelfReport(id=report_id, member_id=member.id, action_id=action.id,
                        description=description, created_at=now,
                        photo_type=photo_type(photo) if photo else None,
                        photo_size=len(photo) if photo else None)
    session.add(action)
    session.flush()
    session.add(report)
    session.flush()
    if photo:
        session.add(SelfReportPhoto(self_report_id=report.id, content=photo, created_at=now))
    return report


@dataclass(frozen=True)
class Decided:
    review: Review
    action: Action
    rule_errors: str | None = None


def _flagged(session: Session, action_id: uuid.UUID) -> Action:
    """The action, locked, if it waits for review. The member's account lock comes
    first, in the order revocations take it, so the two cannot wait on each other."""
    member_id = session.scalar(select(Action.member_id).where(Action.id == action_id))
    if member_id is None:
        raise ReviewRefused(404, "No such action under review.")
    lock_member(session, member_id)
    action = session.scalar(select(Action).where(Action.id == action_id).with_for_update()
                            .execution_options(populate_existing=True))
    assert action is not None
    if action.status != "flagged":
        earlier = session.scalar(select(Review).where(Review.action_id == action.id))
        if earlier is not None:
            raise ReviewRefused(409, f"This action was {earlier.decision} already, at "
                                     f"{earlier.created_at:%Y-%m-%d %H:%M} UTC.")
        raise ReviewRefused(409, f"This action is {action.status}, not waiting for review.")
    return action


def _record(session: Session, review: Review) -> None:
    session.add(review)
    try:
        session.flush()
    except IntegrityError:  # another reviewer's decision committed first
        raise ReviewRefused(409, "Another reviewer decided this action at the same "
                                 "moment.") from None


def approve(session: Session, action_id: uuid.UUID, reviewer_id: uuid.UUID | None,
            note: str | None = None, now: datetime | None = None) -> Decided:
    """Award the action now, under the rules live now (caps counted in the windows it
    happened in); it becomes accepted. In the caller's transaction."""
    now = now or utcnow()
    action = _flagged(session, action_id)
    held_reason = action.flag_reason
    try:
        awarded = award_stored(session, action, now)
    except MemberGone:
        raise ReviewRefused(409, "The member's account has been erased; nothing can be "
                                 "awarded to it.") from None
    action.status, action.flag_reason = "accepted", None
    review = Review(action_id=action.id, member_id=action.member_id, decision="approved",
                    reason=note, held_reason=held_reason, points=awarded.points,
                    reviewer_id=reviewer_id, created_at=now)
    _record(session, review)
    return Decided(review, action, awarded.rule_errors)


def reject(session: Session, action_id: uuid.UUID, reviewer_id: uuid.UUID | None,
           reason: str, now: datetime | None = None) -> Decided:
    """Revoke the action with the reviewer's reason (shown to the member); whatever it
    had earned (rules that did not fail on it) is reversed. In the caller's transaction."""
    now = now or utcnow()
    action = _flagged(session, action_id)
    held_reason = action.flag_reason
    lock_for_reversals(session, [action.member_id], [action.id])
    reversal = reverse_action(session, action, f"Rejected on review: {reason}", now)
    review = Review(action_id=action.id, member_id=action.member_id, decision="rejected",
                    reason=reason, held_reason=held_reason,
                    points=reversal.points_reversed + reversal.points_written_off,
                    reviewer_id=reviewer_id, created_at=now)
    _record(session, review)
    return Decided(review, action)
