from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, utcnow


class Source(IdMixin, Base):
    """A machine that reports actions (a transport operator, a leisure centre)."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(200))
    # The key issued when the source was registered. Keys issued later (rotation) live
    # in source_keys; the first rotation copies this one there, and from then on the
    # row in source_keys decides whether it still works.
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Needed in clear to check request signatures (HMAC is symmetric).
    signing_secret: Mapped[str] = mapped_column(String(128))
    action_types: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    # How old an item this source may send, in days; None: ACTION_MAX_AGE_DAYS.
    max_age_days: Mapped[int | None] = mapped_column()


class SourceKey(IdMixin, Base):
    """One API key of a source, with the secret its requests are signed with. A key
    works until it expires (the overlap after a newer key was issued) or is retired."""

    __tablename__ = "source_keys"

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, to tell keys apart; None for a registration key
    # (it was never stored, so its prefix is not known).
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    signing_secret: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column()


IMPORT_STATUSES = ("queued", "running", "done", "failed")


class SourceImport(IdMixin, Base):
    """A CSV of actions uploaded by staff for a source without an API, imported by a job."""

    __tablename__ = "source_imports"

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column()
    # The file as uploaded, until the import ends: it holds card numbers in clear, so it
    # is dropped then (the per-row report stays). Not loaded unless asked for.
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column()
    rows: Mapped[int] = mapped_column(default=0)
    rows_done: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    held: Mapped[int] = mapped_column(default=0)
    duplicate: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class SourceImportRow(Base):
    """What became of one row of an imported CSV."""

    __tablename__ = "source_import_rows"

    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source_imports.id"),
                                                 primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    external_ref: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    action_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
