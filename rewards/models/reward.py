from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin
from .member import Member
from .partner import Offer, Partner

REWARD_STATUSES = ("pending", "issued", "redeemed", "expired", "cancelled", "failed")
# code: a voucher code typed or scanned at a till or on the page; card: a member
# without a phone, by card and PIN (claimed, issued and redeemed at once).
REDEMPTION_CHANNELS = ("code", "card")


class Reward(IdMixin, Base):
    """A member's claim on an offer; becomes a voucher once a job issues it."""

    __tablename__ = "rewards"
    __table_args__ = (
        Index("ix_rewards_member_created", "member_id", "created_at"),
        # The expiry and reminder jobs look for issued vouchers by expiry time.
        Index("ix_rewards_status_expires", "status", "expires_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    cost_points: Mapped[int] = mapped_column()
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    # A partner-fulfilled reward: the code or pass the partner's system gave.
    partner_code: Mapped[str | None] = mapped_column(String(200))
    partner_reference: Mapped[str | None] = mapped_column(String(200))
    issued_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    redeemed_at: Mapped[datetime | None] = mapped_column()
    expiry_reminded_at: Mapped[datetime | None] = mapped_column()
    failure_reason: Mapped[str | None] = mapped_column(Text)

    offer: Mapped[Offer] = relationship()
    member: Mapped[Member] = relationship()


class Redemption(IdMixin, Base):
    """A partner honoured a voucher. At most one standing redemption per reward: the
    partial unique index makes it exactly once; an undone one stays, marked undone."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("uq_redemptions_reward_standing", "reward_id", unique=True,
              sqlite_where=text("undone_at IS NULL"),
              postgresql_where=text("undone_at IS NULL")),
        Index("ix_redemptions_partner_created", "partner_id", "created_at"),
        # The dashboard's redemptions of a period (forecast, owed to partners) by when.
        Index("ix_redemptions_created", "created_at", sqlite_where=text("undone_at IS NULL"),
              postgresql_where=text("undone_at IS NULL")),
        # A till's retry with the same Idempotency-Key finds the redemption it made.
        Index("uq_redemptions_partner_idempotency_key", "partner_id", "idempotency_key",
              unique=True, sqlite_where=text("idempotency_key IS NOT NULL"),
              postgresql_where=text("idempotency_key IS NOT NULL")),
        Index("ix_redemptions_partner_till_reference", "partner_id", "till_reference",
              sqlite_where=text("till_reference IS NOT NULL"),
              postgresql_where=text("till_reference IS NOT NULL")),
    )

    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16), default="code", server_default="code")
    # What the council owes the partner for it, fixed when it happened.
    value_pence: Mapped[int] = mapped_column(default=0, server_default="0")
    redeemed_by: Mapped[uuid.UUID | None] = mapped_column()  # the partner's user, if any
    undone_at: Mapped[datetime | None] = mapped_column()
    undone_by: Mapped[uuid.UUID | None] = mapped_column()
    # The till's Idempotency-Key for the request that made it, and the till's own
    # reference for the sale (a receipt number), both as the till sent them.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    till_reference: Mapped[str | None] = mapped_column(String(64))

    reward: Mapped[Reward] = relationship()
    partner: Mapped[Partner] = relationship()
