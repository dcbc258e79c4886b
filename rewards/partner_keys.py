"""A partner's till API keys: several at once, rotated with an overlap, retired at once
when leaked (the same lifecycle as a source's keys, rewards.actions.sources).

The key a partner was registered with lives in partners.api_key_hash until the first
rotation (or listing) copies it into partner_keys; from then on its row there decides
whether it still works. A till's key check is one query either way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, literal, null, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .actions.sources import DEFAULT_OVERLAP, PREFIX_LENGTH, key_state
from .models import Partner, PartnerKey, utcnow
from .security import api_key_hash, new_api_key

__all__ = ["DEFAULT_OVERLAP", "IssuedTillKey", "TillKeyRefused", "issue_till_key",
           "key_state", "partner_for_key", "retire_till_key", "till_keys_of"]


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


def _adopt_registration_key(session: Session, partner: Partner) -> None:
    if session.scalar(select(PartnerKey.id).where(PartnerKey.key_hash == partner.api_key_hash)):
        return
    try:
        with session.begin_nested():  # a concurrent adoption undoes only itself
            session.add(PartnerKey(partner_id=partner.id, key_hash=partner.api_key_hash,
                                   key_prefix=None, label="registration",
                                   created_at=partner.created_at))
    except IntegrityError:
        pass


def till_keys_of(session: Session, partner: Partner) -> list[PartnerKey]:
    _adopt_registration_key(session, partner)
    return list(session.scalars(
        select(PartnerKey).where(PartnerKey.partner_id == partner.id)
        .order_by(PartnerKey.created_at.desc(), PartnerKey.id)))


@dataclass(frozen=True)
class IssuedTillKey:
    key: PartnerKey
    api_key: str  # shown once, never stored
    previous_keys_end_at: datetime | None


def issue_till_key(session: Session, partner: Partner, overlap: timedelta = DEFAULT_OVERLAP,
                   *, label: str | None = None, keep_others: bool = False,
                   created_by: uuid.UUID | None = None,
                   now: datetime | None = None) -> IssuedTillKey:
    """A new till key. With `keep_others` (another till) the keys working now are left
    alone; otherwise (a rotation) they keep working for `overlap` (0: they stop at
    once), unless they were due to end sooner."""
    now = now or utcnow()
    # One rotation of a partner at a time: both would otherwise shorten the same keys.
    session.scalar(select(Partner.id).where(Partner.id == partner.id).with_for_update())
    _adopt_registration_key(session, partner)
    ended: datetime | None = None
    if not keep_others:
        ends = now + overlap
        for key in session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner.id)):
            if key.retired_at is None and (key.expires_at is None or key.expires_at > now):
                if key.expires_at is None or key.expires_at > ends:
                    key.expires_at = ends
                ended = max(ended or key.expires_at, key.expires_at)
    api_key = new_api_key("ptn")
    key = PartnerKey(id=uuid.uuid4(), partner_id=partner.id, key_hash=api_key_hash(api_key),
                     key_prefix=api_key[:PREFIX_LENGTH], label=label, created_by=created_by,
                     created_at=now)
    session.add(key)
    session.flush()
    return IssuedTillKey(key, api_key, ended)


def retire_till_key(session: Session, partner: Partner, key_id: uuid.UUID,
                    now: datetime | None = None) -> tuple[PartnerKey, bool] | None:
    """End a key at once: the key and whether this retired it; None if no such key."""
    _adopt_registration_key(session, partner)
    key = session.scalar(select(PartnerKey).where(
        PartnerKey.id == key_id, PartnerKey.partner_id == partner.id).with_for_update())
    if key is None:
        return None
    if key.retired_at is not None:
        return key, False
    key.retired_at = now or utcnow()
    return key, True
