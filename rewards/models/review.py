"""Self-reported actions and the review queue."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, utcnow

REVIEW_DECISIONS = ("approved", "rejected")


class SelfReport(IdMixin, Base):
    """A member's own account of an action, with evidence. It is stored as a held
    (flagged) action at once, so it joins the review queue like any flagged action."""

    __tablename__ = "self_reports"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actions.id"), unique=True)
    description: Mapped[str] = mapped_column(Text)
    # The photo's type (image/jpeg or image/png) and size, if one was sent.
    photo_type: Mapped[str | None] = mapped_column(String(32))
    photo_size: Mapped[int | None] = mapped_column()
    # Set when the photo's bytes were deleted under SELF_REPORT_PHOTO_RETENTION_DAYS, with
    # the period then in force (staff and the resident's export say "removed after N days").
    photo_removed_at: Mapped[datetime | None] = mapped_column()
    photo_removed_after_days: Mapped[int | None] = mapped_column()


class SelfReportPhoto(Base):
    """The photo sent with a self-report, kept in the database (so every API and
    worker process sees it) and loaded only when a reviewer opens it."""

    __tablename__ = "self_report_photos"

    self_report_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("self_reports.id"),
                                                      primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(IdMixin, Base):
    """A reviewer's decision on a flagged action: one per action (the unique key)."""

    __tablename__ = "reviews"

    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actions.id"), unique=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    # The reviewer's words (required to reject), shown to the member.
    reason: Mapped[str | None] = mapped_column(Text)
    # Why the action was held, as it stood when decided.
    held_reason: Mapped[str | None] = mapped_column(Text)
    points: Mapped[int] = mapped_column(default=0)
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column()
