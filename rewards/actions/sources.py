"""Sources' API keys: which key a request used, and rotation with an overlap.

A source is registered with one key (kept on the source row, as it always was). The
first time staff look at or rotate its keys, that key is copied into source_keys; from
then on its row there decides whether it still works. Rotating issues a new key and
secret and gives every key still working an end (the overlap, 7 days by default), so a
source's developers can switch over without a gap. Retiring a key ends it at once. The
lifecycle is a partner's till keys' too: rewards.key_ring."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..key_ring import DEFAULT_OVERLAP, IssuedKey, KeyRing, works_at
from ..models import Source, utcnow
from ..models.source import SourceKey
from ..security import api_key_hash


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class KeyRefused:
    """Why a request's key does not open the API (said to the source as a 401)."""

    message: str


def source_for_key(session: Session, api_key: str,
                   now: datetime | None = None) -> tuple[Source, list[str]] | KeyRefused:
    """The source an API key belongs to and the secrets its requests may be signed with:
    those of every key of the source working now, so a sender in the middle of a
    rotation may sign with the old secret, the new one, or both (two v1= entries)."""
    now = now or utcnow()
    digest = api_key_hash(api_key)
    # The key itself, whatever its state (to say why it is refused), and its source's
    # other keys still working, in one statement.
    of_source = select(SourceKey.source_id).where(SourceKey.key_hash == digest)
    rows = session.execute(
        select(SourceKey, Source).join(Source, Source.id == SourceKey.source_id)
        .where(SourceKey.source_id.in_(of_source),
               or_(SourceKey.key_hash == digest,
                   and_(SourceKey.retired_at.is_(None),
                        or_(SourceKey.expires_at.is_(None), SourceKey.expires_at > now))))
    ).all()
    if rows:
        source = rows[0][1]
        key = next(key for key, _ in rows if key.key_hash == digest)
        if key.retired_at is not None:
            return KeyRefused(f"The API key was retired at {_iso(key.retired_at)}; "
                              "use the source's current key.")
        if key.expires_at is not None and key.expires_at <= now:
            return KeyRefused(f"The API key expired at {_iso(key.expires_at)}, when the "
                              "overlap after a newer key ended; use the newer key.")
        signing_secrets = [key.signing_secret for key, _ in rows if works_at(key, now)]
    else:
        registered = session.scalar(select(Source).where(Source.api_key_hash == digest))
        if registered is None:
            return KeyRefused("The API key is not valid.")
        source, signing_secrets = registered, [registered.signing_secret]
    if not source.active:
        return KeyRefused("The API key is not valid: the source is not active in the scheme.")
    return source, signing_secrets


SOURCE_KEYS = KeyRing(Source, SourceKey, SourceKey.source_id, "src",
                      lambda source: {"signing_secret": source.signing_secret})


def issue_key(session: Session, source: Source, overlap: timedelta = DEFAULT_OVERLAP,
              created_by: uuid.UUID | None = None, now: datetime | None = None) -> IssuedKey:
    """A new key and secret (the key's signing_secret) for the source; the keys working
    until now keep working for `overlap` (0: they stop at once), unless they were due
    to end sooner."""
    return SOURCE_KEYS.issue(session, source, overlap, created_by=created_by, now=now,
                             signing_secret=secrets.token_hex(32))
