"""The key ring both a source's API keys and a partner's till keys live by: adopting the
registration key once, rotation with an overlap that never lengthens a key, another
key beside the others, retiring at once and only once."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from rewards.actions.sources import SOURCE_KEYS
from rewards.extensions import db
from rewards.key_ring import PREFIX_LENGTH, key_state
from rewards.models import Partner, Source
from rewards.partner_keys import PARTNER_KEYS
from rewards.security import api_key_hash

T = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def _source(session: Session) -> Source:
    source = Source(name="First Bus", api_key_hash=secrets.token_hex(32),
                    signing_secret=secrets.token_hex(16), action_types=[],
                    created_at=T - 30 * DAY)
    session.add(source)
    session.flush()
    return source


def _partner(session: Session) -> Partner:
    partner = Partner(name="Laynes Espresso", kind="business",
                      api_key_hash=secrets.token_hex(32), created_at=T - 30 * DAY)
    session.add(partner)
    session.flush()
    return partner


# A ring, how to register an owner, what a new key of it carries, what the copied
# registration key carries (from its owner), and how its keys start.
RINGS = {
    "source": (SOURCE_KEYS, _source, {"signing_secret": "new-secret"},
               lambda owner: {"signing_secret": owner.signing_secret}, "src_"),
    "partner": (PARTNER_KEYS, _partner, {"label": "Back counter"},
                lambda owner: {"label": "registration"}, "ptn_"),
}


@pytest.fixture(params=sorted(RINGS))
def ring(request: pytest.FixtureRequest) -> tuple[Any, ...]:
    return RINGS[request.param]


def test_the_registration_key_is_adopted_once_with_the_ring_s_own_fields(
        ctx: None, ring: tuple[Any, ...]) -> None:
    keys, register, _, adopted, _ = ring
    owner = register(db.session)
    first = keys.keys_of(db.session, owner)
    assert len(first) == 1
    (registration,) = first
    assert registration.key_hash == owner.api_key_hash and registration.key_prefix is None
    assert registration.created_at == owner.created_at
    assert registration.expires_at is None and registration.retired_at is None
    for name, value in adopted(owner).items():
        assert getattr(registration, name) == value
    db.session.commit()
    db.session.expire_all()
    assert [key.id for key in keys.keys_of(db.session, owner)] == [registration.id]


def test_rotation_ends_the_working_keys_but_never_later_than_they_were_due(
        ctx: None, ring: tuple[Any, ...]) -> None:
    keys, register, fields, _, starts = ring
    owner: Any = register(db.session)
    other: Any = register(db.session)
    [registration] = keys.keys_of(db.session, owner)
    [others] = keys.keys_of(db.session, other)

    first = keys.issue(db.session, owner, 3 * DAY, now=T, **fields)
    assert first.previous_keys_end_at == T + 3 * DAY
    assert registration.expires_at == T + 3 * DAY
    assert first.api_key.startswith(starts)
    assert first.key.key_prefix == first.api_key[:PREFIX_LENGTH]
    assert first.key.key_hash == api_key_hash(first.api_key)
    for name, value in fields.items():
        assert getattr(first.key, name) == value

    # A longer overlap a day later: the registration key keeps its sooner end.
    second = keys.issue(db.session, owner, 7 * DAY, now=T + DAY, **fields)
    assert registration.expires_at == T + 3 * DAY
    assert first.key.expires_at == T + 8 * DAY
    assert second.previous_keys_end_at == T + 8 * DAY

    # Another key beside them (a second till): nothing else changes.
    beside = keys.issue(db.session, owner, timedelta(0), keep_others=True, now=T + 2 * DAY,
                        **fields)
    assert beside.previous_keys_end_at is None
    assert (registration.expires_at, first.key.expires_at, second.key.expires_at) == (
        T + 3 * DAY, T + 8 * DAY, None)
    assert others.expires_at is None  # another owner's keys are never touched
    db.session.commit()
    db.session.expire_all()

    listed = keys.keys_of(db.session, owner)
    assert [key.id for key in listed] == [beside.key.id, second.key.id, first.key.id,
                                          registration.id]
    assert [key_state(key, T + 4 * DAY) for key in listed] == [
        "active", "active", "expiring", "expired"]

    # No overlap: the keys working now stop at once; an expired key is left as it was.
    now = T + 5 * DAY
    last = keys.issue(db.session, owner, timedelta(0), now=now, **fields)
    assert last.previous_keys_end_at == now
    assert [key_state(key, now) for key in keys.keys_of(db.session, owner)] == [
        "active", "expired", "expired", "expired", "expired"]
    assert registration.expires_at == T + 3 * DAY


def test_retiring_ends_a_key_at_once_and_only_once(ctx: None, ring: tuple[Any, ...]) -> None:
    keys, register, fields, _, _ = ring
    owner, other = register(db.session), register(db.session)
    issued = keys.issue(db.session, owner, now=T, **fields)

    retired = keys.retire(db.session, owner, issued.key.id, now=T + DAY)
    assert retired == (issued.key, True)
    assert issued.key.retired_at == T + DAY
    assert keys.retire(db.session, owner, issued.key.id, now=T + 2 * DAY) == (issued.key, False)
    assert issued.key.retired_at == T + DAY
    assert key_state(issued.key, T) == "retired"

    # Not another owner's key, nor one that does not exist.
    assert keys.retire(db.session, other, issued.key.id) is None
    assert keys.retire(db.session, owner, uuid.uuid4()) is None

    # A retired key is not one the next rotation gives an end to.
    again = keys.issue(db.session, owner, DAY, now=T + 3 * DAY, **fields)
    assert issued.key.expires_at is None
    # Only the registration key, still in its first overlap (to T + 7 days), ends sooner.
    assert again.previous_keys_end_at == T + 4 * DAY
    db.session.rollback()

