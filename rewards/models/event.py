"""Events with claim codes (volunteering sessions, one-off activities)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin

EVENT_MODES = ("shared", "single_use")


class Event(IdMixin, Base):
    """Something residents attend and claim points for by scanning a code, within a
    window and up to an optional number of claims."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("max_claims IS NULL OR claims <= max_claims", name="claims_within_max"),
    )

    name: Mapped[str] = mapped_column(String(200))
    action_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("action_types.id"))
    type_code: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    max_claims: Mapped[int | None] = mapped_column()
    claims: Mapped[int] = mapped_column(default=0)
    mode: Mapped[str] = mapped_column(String(16), default="shared")
    # Passed to the rules as the claim's action.attributes (e.g. hours of volunteering).
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column()


class EventCode(IdMixin, Base):
    """A code that claims an event: one shared by everyone, or one per attendee."""

    __tablename__ = "event_codes"

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    # Single-use codes only: when and by whom it was used.
    claimed_at: Mapped[datetime | None] = mapped_column()
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))


class EventClaim(IdMixin, Base):
    """A member's claim of an event; the unique key makes it once per member."""

    __tablename__ = "event_claims"
    __table_args__ = (UniqueConstraint("event_id", "member_id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("event_codes.id"))
    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actions.id"), unique=True)
