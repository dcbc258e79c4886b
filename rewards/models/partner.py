from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin

PARTNER_KINDS = ("business", "charity")


class Partner(IdMixin, Base):
    """A local business that honours vouchers, or a charity that receives donations."""

    __tablename__ = "partners"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)

    offers: Mapped[list[Offer]] = relationship(back_populates="partner")


class Offer(IdMixin, Base):
    """A reward in the catalogue, paid for in points, honoured by one partner."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR claimed <= stock", name="stock_not_oversold"),
    )

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(32))
    cost_points: Mapped[int] = mapped_column()
    stock: Mapped[int | None] = mapped_column()
    claimed: Mapped[int] = mapped_column(default=0)
    per_member_limit: Mapped[int | None] = mapped_column()
    voucher_valid_days: Mapped[int] = mapped_column(default=30)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="live")

    partner: Mapped[Partner] = relationship(back_populates="offers")
