from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin
from .member import Member
from .partner import Offer

REWARD_STATUSES = ("pending", "issued", "redeemed", "expired", "cancelled", "failed")


class Reward(IdMixin, Base):
    """A member's claim on an offer; becomes a voucher once a job issues it."""

    __tablename__ = "rewards"
    __table_args__ = (Index("ix_rewards_member_created", "member_id", "created_at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    cost_points: Mapped[int] = mapped_column()
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    issued_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    redeemed_at: Mapped[datetime | None] = mapped_column()
    failure_reason: Mapped[str | None] = mapped_column(Text)

    offer: Mapped[Offer] = relationship()
    member: Mapped[Member] = relationship()


class Redemption(IdMixin, Base):
    """A partner honoured a voucher. One per reward: the unique key makes it exactly once."""

    __tablename__ = "redemptions"

    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"), unique=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)

    reward: Mapped[Reward] = relationship()
