"""Sources' API keys: which key a request used, and rotation with an overlap.

A source is registered with one key (kept on the source row, as it always was). The
first time staff look at or rotate its keys, that key is copied into source_keys; from
then on its row there decides whether it still works. Rotating issues a new key and
secret and gives every key still working an end (the overlap, 7 days by default), so a
source's developers can switch over without a gap. Retiring a key ends it at once."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Source, utcnow
from ..models.source import SourceKey
from ..security import api_key_hash, new_api_key

DEFAULT_OVERLAP = timedelta(days=7)
PREFIX_LENGTH = 12


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class KeyRefused:
    """Why a request's key does not open the API (said to the source as a 401)."""

    message: str


def source_for_key(session: Session, api_key: str,
                   now: datetime | None = None) -> tuple[Source, str] | KeyRefused:
    """The source an API key belongs to and the secret its requests are signed with."""
    now = now or utcnow()
    digest = api_key_hash(api_key)
    found = session.execute(
        select(SourceKey, Source).join(Source, Source.id == SourceKey.source_id)
        .where(SourceKey.key_hash == digest)
    ).first()
    if found is not None:
        key, source = found
        if key.retired_at is not None:
            return KeyRefused(f"The API key was retired at {_iso(key.retired_at)}; "
                              "use the source's current key.")
        if key.expires_at is not None and key.expires_at <= now:
            return KeyRefused(f"The API key expired at {_iso(key.expires_at)}, when the "
                              "overlap after a newer key ended; use the newer key.")
        secret = key.signing_secret
    else:
        registered = session.scalar(select(Source).where(Source.api_key_hash == digest))
        if registered is None:
            return KeyRefused("The API key is not valid.")
        source, secret = registered, registered.signing_secret
    if not source.active:
        return KeyRefused("The API key is not valid: the source is not active in the scheme.")
    return source, secret


def adopt_registration_key(session: Session, source: Source) -> None:
    """Copy the key the source was registered with into source_keys, once."""
    if session.scalar(select(SourceKey.id).where(SourceKey.key_hash == source.api_key_hash)):
        return
    try:
        with session.begin_nested():  # a concurrent adoption undoes only itself
            session.add(SourceKey(source_id=source.id, key_hash=source.api_key_hash,
                                  key_prefix=None, signing_secret=source.signing_secret,
                                  created_at=source.created_at))
    except IntegrityError:
        pass


def keys_of(session: Session, source: Source) -> list[SourceKey]:
    adopt_registration_key(session, source)
    return list(session.scalars(
        select(SourceKey).where(SourceKey.source_id == source.id)
        .order_by(SourceKey.created_at.desc(), SourceKey.id)
    ))


@dataclass(frozen=True)
class IssuedKey:
    key: SourceKey
    api_key: str  # shown once, never stored
    signing_secret: str
    previous_keys_end_at: datetime | None  # when the keys that worked until now stop


def issue_key(session: Session, source: Source, overlap: timedelta = DEFAULT_OVERLAP,
              created_by: uuid.UUID | None = None, now: datetime | None = None) -> IssuedKey:
    """A new key and secret for the source; the keys working until now keep working
    for `overlap` (0: they stop at once), unless they were due to end sooner."""
    now = now or utcnow()
    # One rotation of a source at a time: both would otherwise shorten the same keys.
    session.scalar(select(Source.id).where(Source.id == source.id).with_for_update())
    adopt_registration_key(session, source)
    ends = now + overlap
    ended: datetime | None = None
    for key in session.scalars(select(SourceKey).where(SourceKey.source_id == source.id)):
        if key.works_at(now):
            if key.expires_at is None or key.expires_at > ends:
                key.expires_at = ends
            ended = max(ended or key.expires_at, key.expires_at)
    api_key = new_api_key("src")
    secret = secrets.token_hex(32)
    key = SourceKey(id=uuid.uuid4(), source_id=source.id, key_hash=api_key_hash(api_key),
                    key_prefix=api_key[:PREFIX_LENGTH], signing_secret=secret,
                    created_by=created_by, created_at=now)
    session.add(key)
    session.flush()
    return IssuedKey(key, api_key, secret, ended)


def retire_key(session: Session, source: Source, key_id: uuid.UUID,
               now: datetime | None = None) -> tuple[SourceKey, bool] | None:
    """End a key at once (a leaked key, say): the key, and whether this retired it (False:
    it was retired before). None if the source has no such key."""
    adopt_registration_key(session, source)
    key = session.scalar(
        select(SourceKey).where(SourceKey.id == key_id, SourceKey.source_id == source.id)
        .with_for_update()
    )
    if key is None:
        return None
    if key.retired_at is not None:
        return key, False
    key.retired_at = now or utcnow()
    return key, True


def key_state(key: SourceKey, now: datetime) -> str:
    if key.retired_at is not None:
        return "retired"
    if key.expires_at is None:
        return "active"
    return "expiring" if key.expires_at > now else "expired"
