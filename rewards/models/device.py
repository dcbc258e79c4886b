"""A member's phones (push tokens) and what they want to be told, on which channel."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin

PLATFORMS = ("fcm", "apns")
# What the scheme tells members about; scheme_news is off until a member turns it on.
NOTIFICATION_KINDS = ("voucher_ready", "voucher_expiring", "points_earned", "scheme_news")
CHANNELS = ("push", "email")
# Points come with every journey a card records: a mail for each batch would bury the
# member's inbox, so points notices are pushed, and mailed only to those who ask.
OFF_UNLESS_CHOSEN = frozenset({("scheme_news", "push"), ("scheme_news", "email"),
                               ("points_earned", "email")})


class Device(IdMixin, Base):
    __tablename__ = "devices"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    platform: Mapped[str] = mapped_column(String(8))
    token: Mapped[str] = mapped_column(String(400), unique=True)
    last_seen_at: Mapped[datetime | None] = mapped_column()


class NotificationPreference(Base):
    """A member's choice for one kind on one channel (no row: the default)."""

    __tablename__ = "notification_preferences"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool] = mapped_column()
