"""What the scheme holds to respect residents' choices and prove card ownership: consent
given and withdrawn per purpose (a history, never edited), and each card kind's link
secret (its issuer prints link codes made with it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, utcnow

# terms: membership terms accepted (with their version); privacy_notice: the notice
# read (version); travel_data: journeys from linked travel cards are recorded;
# partner_marketing: partners may send offers; research: pseudonymised figures for
# research partners.
CONSENT_PURPOSES = ("terms", "privacy_notice", "travel_data", "partner_marketing", "research")


class Consent(IdMixin, Base):
    """One consent given (granted) or withdrawn (not granted) by a member for a purpose,
    at created_at. The latest row per purpose is the member's current choice."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_member_purpose_created", "member_id", "purpose",
                            "created_at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column()
    version: Mapped[str | None] = mapped_column(String(32))


class CardLinkSecret(Base):
    """The secret a card kind's issuer (a transport operator, the library service) makes
    link codes with; only the scheme and the issuer know it. Rotating it makes codes made
    with the old one stop working."""

    __tablename__ = "card_link_secrets"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    rotated_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_by: Mapped[uuid.UUID | None] = mapped_column()
