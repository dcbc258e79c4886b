"""A key ring: the API keys of one owner (a source, a partner), with one lifecycle.

An owner is registered with one key, kept on the owner's row. The first time staff look
at, rotate or retire its keys, that key is copied into the ring's table; from then on
its row there decides whether it still works. Issuing a key as a rotation gives every
key still working an end (the overlap, 7 days by default), unless it was due to end
sooner, so the owner can switch over without a gap. Retiring a key ends it at once.

What differs between owners (the tables, what a key carries besides its digest: a
source's signing secret, a partner till's label) is said by the KeyRing; how a key is
checked on a request is each owner's own (rewards.actions.sources,
rewards.partner_keys)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from .models import utcnow
from .security import api_key_hash, new_api_key

DEFAULT_OVERLAP = timedelta(days=7)
PREFIX_LENGTH = 12


@dataclass(frozen=True)
class IssuedKey:
    key: Any
    api_key: str  # shown once, never stored
    previous_keys_end_at: datetime | None  # when the keys that worked until now stop


def works_at(key: Any, now: datetime) -> bool:
    return key.retired_at is None and (key.expires_at is None or key.expires_at > now)


def key_state(key: Any, now: datetime) -> str:
    if key.retired_at is not None:
        return "retired"
    if key.expires_at is None:
        return "active"
    return "expiring" if key.expires_at > now else "expired"


@dataclass(frozen=True)
class KeyRing:
    owner: type[Any]  # the model registered with a key: has id, api_key_hash, created_at
    key: type[Any]  # the model of the ring's keys
    owner_id: InstrumentedAttribute[uuid.UUID]  # the key's column naming its owner
    kind: str  # what a new key starts with: "src", "ptn"
    registration: Callable[[Any], dict[str, Any]]  # the copied registration key's extras

    def _of(self, owner: Any) -> Any:
        return select(self.key).where(self.owner_id == owner.id)

    def adopt_registration_key(self, session: Session, owner: Any) -> None:
        """Copy the key the owner was registered with into the ring, once."""
        if session.scalar(select(self.key.id).where(self.key.key_hash == owner.api_key_hash)):
            return
        try:
            with session.begin_nested():  # a concurrent adoption undoes only itself
                session.add(self.key(**{self.owner_id.key: owner.id},
                                     key_hash=owner.api_key_hash, key_prefix=None,
                                     created_at=owner.created_at,
                                     **self.registration(owner)))
        except IntegrityError:
            pass

    def keys_of(self, session: Session, owner: Any) -> list[Any]:
        """The owner's keys, newest first."""
        self.adopt_registration_key(session, owner)
        return list(session.scalars(self._of(owner).order_by(self.key.created_at.desc(),
                                                             self.key.id)))

    def issue(self, session: Session, owner: Any, overlap: timedelta = DEFAULT_OVERLAP, *,
              keep_others: bool = False, created_by: uuid.UUID | None = None,
              now: datetime | None = None, **fields: Any) -> IssuedKey:
        """A new key (with `fields`, the ring's own columns). With `keep_others` the keys
        working now are left alone; otherwise (a rotation) they keep working for
        `overlap` (0: they stop at once), unless they were due to end sooner."""
        now = now or utcnow()
        # One rotation of an owner at a time: both would otherwise shorten the same keys.
        session.scalar(select(self.owner.id).where(self.owner.id == owner.id).with_for_update())
        self.adopt_registration_key(session, owner)
        ended: datetime | None = None
        if not keep_others:
            ends = now + overlap
            for key in session.scalars(self._of(owner)):
                if works_at(key, now):
                    if key.expires_at is None or key.expires_at > ends:
                        key.expires_at = ends
                    ended = max(ended or key.expires_at, key.expires_at)
        api_key = new_api_key(self.kind)
        key = self.key(id=uuid.uuid4(), **{self.owner_id.key: owner.id},
                       key_hash=api_key_hash(api_key), key_prefix=api_key[:PREFIX_LENGTH],
                       created_by=created_by, created_at=now, **fields)
        session.add(key)
        session.flush()
        return IssuedKey(key, api_key, ended)

    def retire(self, session: Session, owner: Any, key_id: uuid.UUID,
               now: datetime | None = None) -> tuple[Any, bool] | None:
        """End a key at once (a leaked key, say): the key, and whether this retired it
        (False: it was retired before). None if the owner has no such key."""
        self.adopt_registration_key(session, owner)
        key = session.scalar(self._of(owner).where(self.key.id == key_id).with_for_update())
        if key is None:
            return None
        if key.retired_at is not None:
            return key, False
        key.retired_at = now or utcnow()
        return key, True
