"""What staff's endpoints for a key ring share (a source's API keys in admin_sources, a
partner's till keys in partner_keys): a key as it is shown, listing, issuing and
retiring. The routes, their schemas' names and their audit entries stay each owner's."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask_smorest import abort
from marshmallow import Schema, fields, validate

from ..extensions import db
from ..key_ring import DEFAULT_OVERLAP, IssuedKey, KeyRing, key_state
from ..models import utcnow
from .common import audit

KeyView = Callable[[Any], dict[str, Any]]


def key_prefix_field(owner: str) -> fields.String:
    return fields.String(allow_none=True, metadata={
        "description": "The key's first characters, to tell keys apart; null for the key "
                       f"issued when the {owner} was registered (never stored)."})


def overlap_days_field(description: str) -> fields.Integer:
    return fields.Integer(load_default=DEFAULT_OVERLAP.days,
                          validate=validate.Range(min=0, max=90),
                          metadata={"description": description})


class KeyOut(Schema):
    """A key as listed; each ring's schema adds key_prefix (and its own fields)."""

    id = fields.UUID()
    state = fields.String(metadata={"enum": ["active", "expiring", "expired", "retired"]})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True, metadata={
        "description": "When it stops working (the end of its overlap); null: no end set."})
    retired_at = fields.DateTime(allow_none=True)


def key_out(key: Any) -> dict[str, Any]:
    return {"id": key.id, "key_prefix": key.key_prefix, "state": key_state(key, utcnow()),
            "created_at": key.created_at, "expires_at": key.expires_at,
            "retired_at": key.retired_at}


def overlap_of(args: dict[str, Any]) -> timedelta:
    """The overlap asked for (overlap_days), or the default."""
    return timedelta(days=args.get("overlap_days", DEFAULT_OVERLAP.days))


def listed(ring: KeyRing, owner: Any, view: KeyView = key_out) -> list[dict[str, Any]]:
    """The owner's keys, newest first, as `view` shows them."""
    keys = [view(key) for key in ring.keys_of(db.session, owner)]
    db.session.commit()  # the registration key, copied in on first look
    return keys


def issued_out(issued: IssuedKey, view: KeyView = key_out, **extra: Any) -> dict[str, Any]:
    """A key just issued: as listed, with the key itself (shown in this answer only)."""
    return {**view(issued.key), "api_key": issued.api_key,
            "previous_keys_end_at": issued.previous_keys_end_at, **extra}


def retire_or_404(ring: KeyRing, owner: Any, key_id: uuid.UUID, *, target_type: str,
                  action: str, missing: str) -> None:
    """Retire the owner's key at once, audited the first time; 404 saying `missing` if
    the owner has no such key."""
    retired = ring.retire(db.session, owner, key_id)
    if retired is None:
        db.session.rollback()
        abort(404, message=missing)
    key, now_retired = retired
    if now_retired:
        audit(action, target_type, owner.id, key_id=key.id, key_prefix=key.key_prefix)
    db.session.commit()
