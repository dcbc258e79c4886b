"""A partner's till API keys: several at once, rotated with an overlap, retired at once
when leaked (the same lifecycle as a source's keys: the ring, rewards.key_ring).

The key a partner was registered with lives in partners.api_key_hash until the first
rotation (or listing) copies it into partner_keys; from then on its row there decides
whether it still works. A till's key check is one query either way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, literal, null, select, union_all
from sqlalchemy.orm import Session

from .key_ring import KeyRing
from .models import Partner, PartnerKey, utcnow
from .security import api_key_hash


@dataclass(frozen=True)
class TillKeyRefused:
    """Why a till's key does not open the API (a 401)."""

    message: str


def partner_for_key(session: Session, api_key: str,
                    now: datetime | None = None) -> uuid.UUID | TillKeyRefused:
    """The partner whose till holds `api_key`, if the key works now."""
    now = now or utcnow()
    session.flush()  # what the session holds unwritten, as a query of its own would see it
    row = session.connection().execute(_key_stmt(), {"digest": api_key_hash(api_key)}).first()
    if row is None:
        return TillKeyRefused("The API key is not valid.")
    partner_id, active, expires_at, retired_at, _ = row
    if retired_at is not None:
        return TillKeyRefused("The API key was retired; use the partner's current key.")
    if expires_at is not None and expires_at <= now:
        return TillKeyRefused("The API key expired when the overlap after a newer key "
                              "ended; use the newer key.")
    if not active:
        return TillKeyRefused("The API key is not valid: the partner is not active.")
    return partner_id


@cache
def _key_stmt() -> Any:
    """Built once (a till sends it with every redemption; building it cost more than
    running it): the partner and the key's state by the key's digest."""
    digest = bindparam("digest", type_=PartnerKey.key_hash.type)
    rotated = (select(Partner.id, Partner.active, PartnerKey.expires_at, PartnerKey.retired_at,
                      literal(0).label("rank"))
               .join(PartnerKey, PartnerKey.partner_id == Partner.id)
               .where(PartnerKey.key_hash == digest))
    registered = (select(Partner.id, Partner.active, null(), null(), literal(1))
                  .where(Partner.api_key_hash == digest,
                         ~exists().where(PartnerKey.key_hash == digest)))
    return union_all(rotated, registered)


PARTNER_KEYS = KeyRing(Partner, PartnerKey, PartnerKey.partner_id, "ptn",
                       lambda partner: {"label": "registration"})
