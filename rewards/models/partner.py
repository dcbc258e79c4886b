from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin

PARTNER_KINDS = ("business", "charity")
# proposed: a partner asked for it and a scheme manager has not decided yet.
OFFER_STATUSES = ("proposed", "live", "rejected", "retired")
LIMIT_PERIODS = ("day", "week", "month", "ever")
# internal: the scheme issues a code; webhook: the partner's system creates the pass.
FULFILMENTS = ("internal", "webhook")


class Partner(IdMixin, Base):
    """A local business that honours vouchers, or a charity that receives donations."""

    __tablename__ = "partners"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Where offers with fulfilment "webhook" are sent to be issued by the partner's own
    # system (a leisure booking system creating a pass), and the secret that signs them.
    fulfilment_url: Mapped[str | None] = mapped_column(String(500))
    # Needed in clear to sign requests (HMAC is symmetric).
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    # The secret a rotation replaced, still signing beside the new one until the moment
    # after it (the partner's system may take the new secret at any time before then).
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(128))
    previous_webhook_secret_until: Mapped[datetime | None] = mapped_column()
    # The place, for an app's map: {"mon": [{"opens": "09:00", "closes": "17:30"}], ...}.
    address: Mapped[str | None] = mapped_column(String(300))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    opening_hours: Mapped[dict[str, Any] | None] = mapped_column()
    logo_url: Mapped[str | None] = mapped_column(String(500))

    offers: Mapped[list[Offer]] = relationship(back_populates="partner")

    def webhook_secrets(self, now: datetime) -> list[str]:
        """The secrets a fulfilment request is signed with now: the current one, and
        the one it replaced while that one's overlap lasts."""
        found = [self.webhook_secret] if self.webhook_secret else []
        if self.previous_webhook_secret and self.previous_webhook_secret_until is not None \
                and self.previous_webhook_secret_until > now:
            found.append(self.previous_webhook_secret)
        return found



class PartnerKey(IdMixin, Base):
    """One till API key of a partner. The key a partner was registered with stays in
    partners.api_key_hash until the first rotation copies it here; from then on its row
    here decides. A key works until it expires (the overlap after a newer key was
    issued) or is retired."""

    __tablename__ = "partner_keys"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, to tell keys apart; None for the registration key.
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column()

class Offer(IdMixin, Base):
    """A reward in the catalogue, paid for in points, honoured by one partner.
    Columns added after the first release carry server defaults: they filled the rows
    that were there already (migration 0004)."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR claimed <= stock", name="stock_not_oversold"),
    )

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    # English; other languages in `translations`: {"cy": {"title": .., "description": ..}}.
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict,
                                                         server_default=text("'{}'"))
    category: Mapped[str | None] = mapped_column(String(32))
    cost_points: Mapped[int] = mapped_column()
    stock: Mapped[int | None] = mapped_column()
    claimed: Mapped[int] = mapped_column(default=0)
    per_member_limit: Mapped[int | None] = mapped_column()
    limit_period: Mapped[str] = mapped_column(String(8), default="ever", server_default="ever")
    voucher_valid_days: Mapped[int] = mapped_column(default=30)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="live")
    # Eligibility: None is everyone. Wards are compared without regard to case.
    eligible_wards: Mapped[list[Any] | None] = mapped_column()
    joined_after: Mapped[datetime | None] = mapped_column()
    # What the council pays the partner for each redemption, in pence.
    value_pence: Mapped[int] = mapped_column(default=0, server_default="0")
    image_url: Mapped[str | None] = mapped_column(String(500))
    points_back_on_expiry: Mapped[bool] = mapped_column(default=False, server_default=false())
    fulfilment: Mapped[str] = mapped_column(String(16), default="internal",
                                            server_default="internal")
    proposed_by: Mapped[uuid.UUID | None] = mapped_column()
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column()
    reviewed_at: Mapped[datetime | None] = mapped_column()
    review_note: Mapped[str | None] = mapped_column(Text)

    partner: Mapped[Partner] = relationship(back_populates="offers")
