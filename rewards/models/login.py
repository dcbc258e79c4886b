"""Logins that can end, and counters that slow guessing down."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin


class LoginSession(IdMixin, Base):
    """One login: a resident's refresh-token family, a staff token, a partner page
    cookie. Every token and cookie names its session; revoking the row ends them all.
    `generation` is the only refresh token of the family still good: an older one
    coming back means it was copied, and the whole family is revoked."""

    __tablename__ = "login_sessions"

    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    staff_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"),
                                                            index=True)
    kind: Mapped[str] = mapped_column(String(16))  # member | staff | partner_page
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(default=0)


class LoginThrottle(Base):
    """Failed tries against one account (or one address asking for codes), whether or
    not the account exists: the key is a digest, never the address itself."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()
