from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin, utcnow


class Member(IdMixin, Base):
    """A resident (or visitor) taking part in the scheme."""

    __tablename__ = "members"

    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    ward: Mapped[str | None] = mapped_column(String(100))
    # When the member last changed it themselves: at most once every WARD_CHANGE_DAYS
    # (a ward unlocks ward-only offers and ward rules).
    ward_changed_at: Mapped[datetime | None] = mapped_column()
    locale: Mapped[str] = mapped_column(String(16), default="en")
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column()
    # Assisted enrolment at a council desk: no email or phone, a card and a PIN.
    postcode_district: Mapped[str | None] = mapped_column(String(8))
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    pin_failures: Mapped[int] = mapped_column(default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column()
    # Lockouts so far (each doubles the next); after PIN_MAX_LOCKS, blocked until a desk
    # unlocks the card.
    pin_locks: Mapped[int] = mapped_column(default=0)
    pin_blocked_at: Mapped[datetime | None] = mapped_column()
    enrolled_by: Mapped[uuid.UUID | None] = mapped_column()
    # Optional, given by the member: only ever shown as an age band in aggregates.
    birth_year: Mapped[int | None] = mapped_column()
    # The member withdrew consent to travel data (see consents): sources' travel items
    # for them are refused. Kept here so ingest reads it with the member's row.
    travel_data_withheld: Mapped[bool] = mapped_column(default=False, server_default=false())

    identifiers: Mapped[list[Identifier]] = relationship(back_populates="member")


class Identifier(IdMixin, Base):
    """A card linked to a member. The number is kept only as a keyed hash."""

    __tablename__ = "identifiers"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    number_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    # Which IDENTIFIER_KEY made number_hash (a fingerprint, not the key); None: before 0006.
    key_id: Mapped[str | None] = mapped_column(String(16))

    member: Mapped[Member] = relationship(back_populates="identifiers")


class OtpCode(IdMixin, Base):
    """A one-time login code; only keyed hashes of the code and of the address it was
    sent to are stored (anyone may ask for a code for any address), and the nightly
    login-records purge deletes it a day after it was asked for."""

    __tablename__ = "otp_codes"
    __table_args__ = (Index("ix_otp_codes_email_hash_created", "email_hash", "created_at"),)

    email_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None] = mapped_column()
