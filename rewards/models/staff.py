from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin

ROLES = ("admin", "scheme_manager", "reviewer", "analyst", "desk", "partner")


class StaffUser(IdMixin, Base):
    """A council staff member or a partner's user; logs in with a password."""

    __tablename__ = "staff_users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    active: Mapped[bool] = mapped_column(default=True)
    # Lockout after wrong passwords is in login_throttles (it also covers unknown emails).
    # TOTP second factor: the secret (sealed: rewards/sealed.py), when it was confirmed,
    # the last time step used.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column()
    totp_last_step: Mapped[int | None] = mapped_column()


class AuditEntry(IdMixin, Base):
    """Who did what to which object: written for every staff change."""

    __tablename__ = "audit_log"

    actor_id: Mapped[uuid.UUID | None] = mapped_column()
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
