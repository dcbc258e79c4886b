"""The scheme's wards, as the council publishes them, and the postcode lookup it loads:
a member's ward (which unlocks ward-only offers) comes from these, never free text."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Ward(Base):
    __tablename__ = "wards"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)  # e.g. an ONS code
    name: Mapped[str] = mapped_column(String(100), unique=True)


class WardPostcode(Base):
    """Which ward a full postcode is in (normalised: capitals, no spaces)."""

    __tablename__ = "ward_postcodes"

    postcode: Mapped[str] = mapped_column(String(8), primary_key=True)
    ward_code: Mapped[str] = mapped_column(ForeignKey("wards.code"), index=True)
