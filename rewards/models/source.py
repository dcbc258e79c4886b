from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin


class Source(IdMixin, Base):
    """A machine that reports actions (a transport operator, a leisure centre)."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(200))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Needed in clear to check request signatures (HMAC is symmetric).
    signing_secret: Mapped[str] = mapped_column(String(128))
    action_types: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
