from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, utcnow


class IdempotencyRecord(IdMixin, Base):
    """The first answer to a POST that moved points, replayed for retries with the same key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "key"),
        # The nightly retention run finds old answers by it (rewards/retention.py).
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    scope: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column()


class OutboxMessage(IdMixin, Base):
    """A job written in the same transaction as the change that needs it, handed to the
    queue after commit, and kept until the job has finished: a row whose `due_at` has
    passed is sent (again) by the relay, so neither Redis being down or losing its data
    nor a worker killed mid-job loses anything (see docs/jobs.md)."""

    __tablename__ = "outbox"
    __table_args__ = (
        # Jobs that gave up (done with an error), by when: /metrics counts the last hour's.
        Index("ix_outbox_failed_done_at", "done_at",
              postgresql_where=text("due_at IS NULL AND last_error IS NOT NULL"),
              sqlite_where=text("due_at IS NULL AND last_error IS NOT NULL")),
    )

    job: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Last hand-over to the queue.
    dispatched_at: Mapped[datetime | None] = mapped_column()  # read by id, never by it
    # The request (or job) that wrote it: every attempt logs under it, including one
    # the relay sends after Redis lost the first.
    request_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(default=0)
    # The last failed attempt's error while the job is in flight; kept once it gave up,
    # cleared when it succeeds.
    last_error: Mapped[str | None] = mapped_column(Text)
    # When the relay should send it (again); None once done.
    due_at: Mapped[datetime | None] = mapped_column(index=True, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column()
