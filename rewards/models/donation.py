"""Donations of points to charity partners."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin
from .ledger import Posting
from .partner import Partner


class Donation(IdMixin, Base):
    """A member gave points to a charity: one posting from the member's available
    account to scheme:donated, recorded here per charity."""

    __tablename__ = "donations"
    __table_args__ = (Index("ix_donations_member_created", "member_id", "created_at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    charity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    points: Mapped[int] = mapped_column()
    posting_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("postings.id"), unique=True)

    charity: Mapped[Partner] = relationship()
    # Also tells the unit of work to insert the posting first.
    posting: Mapped[Posting] = relationship()
