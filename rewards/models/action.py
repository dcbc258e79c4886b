from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin

if TYPE_CHECKING:
    from .ledger import Posting
    from .member import Member
    from .scheme import RuleVersion

# "pending": recorded, not yet awarded (deferred awarding, rewards/awarding/deferred.py).
ACTION_STATUSES = ("accepted", "flagged", "revoked", "pending")
# How an action reached the scheme: a source's signed batch, a CSV staff uploaded for
# a source, an event claim code, or a member's self-report.
ACTION_ORIGINS = ("source", "csv", "claim", "self_report")


class Action(IdMixin, Base):
    """A positive action by a member: reported by a source, claimed with an event
    code, or self-reported. Flagged actions award nothing until a reviewer decides."""

    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("source_id", "external_ref"),
        Index("ix_actions_member_occurred", "member_id", "occurred_at"),
        # The review queue: only flagged actions are in this index, so keeping it
        # costs the accepted majority nothing.
        Index("ix_actions_flagged", "created_at", postgresql_where=text("status = 'flagged'"),
              sqlite_where=text("status = 'flagged'")),
        # The dashboard's rollups read actions by day, and find what changed since.
        Index("ix_actions_occurred_at", "occurred_at"),
        Index("ix_actions_created_at", "created_at"),
        Index("ix_actions_revoked_at", "revoked_at",
              postgresql_where=text("revoked_at IS NOT NULL"),
              sqlite_where=text("revoked_at IS NOT NULL")),
    )

    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id"))
    external_ref: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    action_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("action_types.id"))
    type_code: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column()
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    flag_reason: Mapped[str | None] = mapped_column(Text)
    points: Mapped[int] = mapped_column(default=0)
    # Set by a reversal: an action that earned nothing leaves no other trace of it, and
    # the dashboard's refresh finds changed days by such moments.
    revoked_at: Mapped[datetime | None] = mapped_column()
    # A server default too: batches write their rows without naming it.
    origin: Mapped[str] = mapped_column(String(16), default="source", server_default="source")

    awards: Mapped[list[Award]] = relationship(back_populates="action")
    member: Mapped[Member] = relationship()


class Award(IdMixin, Base):
    """What one rule version gave for one action, with the inputs that decided it.
    An award with zero points and `capped_by` set explains an action over a cap; with
    points, `capped_by` says which cap or budget cut it to what was left."""

    __tablename__ = "awards"
    __table_args__ = (
        UniqueConstraint("action_id", "rule_id"),
        Index("ix_awards_rule_member_occurred", "rule_id", "member_id", "occurred_at"),
        # Revocations since the dashboard's last refresh; only revoked awards are in it.
        Index("ix_awards_revoked_at", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL"),
              sqlite_where=text("revoked_at IS NOT NULL")),
    )

    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actions.id"))
    # No foreign keys on member_id and rule_id: the action and the rule version name
    # both, and each key would cost a lookup for every award written.
    member_id: Mapped[uuid.UUID] = mapped_column()
    rule_id: Mapped[uuid.UUID] = mapped_column()
    rule_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rule_versions.id"))
    rule_version: Mapped[int] = mapped_column()
    rule_name: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column()
    capped_by: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column()
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    posting_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("postings.id"))
    # Set when the action is revoked: the award no longer counts against caps, and only
    # its points_written_off (spent by the member before the revocation, so paid by the
    # scheme) still count against its rule's budget.
    revoked_at: Mapped[datetime | None] = mapped_column()
    points_written_off: Mapped[int] = mapped_column(default=0, server_default="0")

    action: Mapped[Action] = relationship(back_populates="awards")
    posting: Mapped[Posting | None] = relationship()
    rule_version_row: Mapped[RuleVersion] = relationship()


class AwardQueue(IdMixin, Base):
    """A batch of actions recorded `pending` and waiting to be awarded (AWARDING =
    "deferred"): one row per batch, written in the batch's transaction and deleted in
    the one that awards it, so a batch is awarded exactly once."""

    __tablename__ = "award_queue"
    __table_args__ = (Index("ix_award_queue_created_at", "created_at"),)

    # The batch's action ids, as text (JSON on every backend).
    action_ids: Mapped[list[Any]] = mapped_column(default=list)
