from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from .action import Action
    from .member import Member
    from .reward import Reward

from .base import Base, IdMixin, utcnow

# Scheme-side accounts. Member accounts are "member:<id>:available" and ":pending".
# What a posting records (LedgerLine.kind in the API).
POSTING_KINDS = ("earn", "pending_release", "adjustment", "hold", "capture", "release",
                 "refund", "reversal", "expiry", "donation")

SCHEME_ACCOUNTS = (
    "scheme:issuance",  # where earned points come from (goes negative as points are issued)
    "scheme:rewards_held",  # points reserved by a pending reward claim
    "scheme:rewards_spent",  # points captured when a voucher is issued
    "scheme:expired",
    "scheme:donated",
    "scheme:adjustments",
    "scheme:written_off",
)


# Postings whose credit to a member's available account is a lot (ledger.lots.LOT_KINDS).
LOT_POSTINGS = "kind IN ('earn', 'pending_release', 'adjustment')"


class Account(Base):
    """A ledger account. Its balance is the sum of its lines, never a stored number."""

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Relationships here also tell the unit of work to insert the parent row first.
    member: Mapped[Member | None] = relationship()


class Posting(IdMixin, Base):
    """One balanced movement of points. Append-only: corrections are new postings."""

    __tablename__ = "postings"

    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    # System postings carry a unique key so a retried job cannot post twice.
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Whose posting it is, for listing; no foreign key (the lines' accounts say it too).
    member_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    # Indexed (where set): reversing an action and releasing pending points look up its
    # postings.
    action_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("actions.id"))
    reward_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rewards.id"))
    # A credit of points is a lot: spendable from available_at (pending until then),
    # gone at expires_at. Both are terms of the posting, not state; lots are derived.
    # Indexed where set: every query through them asks for a value, and holds, spends,
    # refunds and releases carry none, so their rows stay out of the indexes.
    available_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    # The earlier posting this one carries on (a pending credit released to available).
    # No foreign key, so SQLite can add and drop the column without copying the table.
    origin_id: Mapped[uuid.UUID | None] = mapped_column()

    lines: Mapped[list[PostingLine]] = relationship(back_populates="posting")

    __table_args__ = (
        # A member's lots by expiry, read backwards: what is left of them is read from the
        # newest end (ledger.lots), stopping at the balance.
        Index("ix_postings_member_lots", "member_id", "expires_at",
              postgresql_where=text(LOT_POSTINGS), sqlite_where=text(LOT_POSTINGS)),
        # Where set (only release and refund postings carry an origin; only credits a
        # moment): index just those.
        *(Index(f"ix_postings_{column}", column, postgresql_where=text(f"{column} IS NOT NULL"),
                sqlite_where=text(f"{column} IS NOT NULL"))
          for column in ("origin_id", "action_id", "available_at", "expires_at")),
    )
    action: Mapped[Action | None] = relationship()
    reward: Mapped[Reward | None] = relationship()


class PostingLine(Base):
    __tablename__ = "posting_lines"
    __table_args__ = (Index("ix_posting_lines_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    posting_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("postings.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    posting: Mapped[Posting] = relationship(back_populates="lines")
    account: Mapped[Account] = relationship()


class MemberTotals(Base):
    """A member's running totals: the sums of their available and pending accounts'
    lines and the points awards issued to them (less reversals). Written only by the
    database's trigger on posting_lines (migration 0025), in the transaction that adds
    the lines, so it is exact whenever the lines are; `rewards ledger verify` checks it.
    A member with no lines yet has no row: every total is 0."""

    __tablename__ = "member_totals"

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[int] = mapped_column(BigInteger)
    issued: Mapped[int] = mapped_column(BigInteger)
