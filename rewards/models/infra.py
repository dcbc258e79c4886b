from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin


class IdempotencyRecord(IdMixin, Base):
    """The first answer to a POST that moved points, replayed for retries with the same key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    scope: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column()


class OutboxMessage(IdMixin, Base):
    """A job written in the same transaction as the change that needs it, dispatched
    to the queue after commit, so Redis being down loses nothing."""

    __tablename__ = "outbox"

    job: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dispatched_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
