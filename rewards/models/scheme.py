from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin

CATEGORIES = ("travel", "volunteering", "health", "housing", "climate")


class ActionType(IdMixin, Base):
    """A kind of positive action the scheme recognises (bus journey, volunteering hour)."""

    __tablename__ = "action_types"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    # Other languages: {"cy": {"name": .., "description": ..}}; name and description are English.
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict,
                                                         server_default=text("'{}'"))


class Rule(IdMixin, Base):
    """An earning rule's identity; what it does lives in its versions."""

    __tablename__ = "rules"

    name: Mapped[str] = mapped_column(String(200))
    current_version: Mapped[int] = mapped_column(default=1)
    # Points awarded under this rule (all versions) less what revocations took back (the
    # part written off, spent before the revocation, stays counted): what a budget is
    # checked against. Kept by every award and reversal under the rule's row lock;
    # `rewards ledger verify` proves it equal to the awards.
    points_awarded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Other languages: {"cy": {"name": ..}}; the name is English. Not versioned: a
    # translated name changes no award.
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict,
                                                         server_default=text("'{}'"))

    versions: Mapped[list[RuleVersion]] = relationship(
        back_populates="rule", order_by="RuleVersion.version"
    )


class RuleVersion(IdMixin, Base):
    """One immutable version of a rule. Awards point at the version that made them."""

    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id"), index=True)
    version: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    action_types: Mapped[list[Any]] = mapped_column()
    condition: Mapped[str] = mapped_column(Text)
    points: Mapped[str] = mapped_column(Text)
    caps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    points_caps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    budget_points: Mapped[int | None] = mapped_column()
    priority: Mapped[int] = mapped_column(default=0)
    stackable: Mapped[bool] = mapped_column(default=True)
    hold_days: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by: Mapped[uuid.UUID | None] = mapped_column()

    rule: Mapped[Rule] = relationship(back_populates="versions")
