"""Scheme staff manage a partner's till keys: several tills at once, rotation with an
overlap, retiring a leaked key at once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import g
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from ..extensions import Blueprint, db
from ..key_ring import DEFAULT_OVERLAP, key_state
from ..models import Partner, PartnerKey, utcnow
from ..partner_keys import PARTNER_KEYS
from .auth import BEARER, staff_required
from .checks import storable_text
from .common import audit, found_or_404

blp = Blueprint("partner_keys", __name__, url_prefix="/v1/admin/partners",
                description="Scheme staff: partners' till API keys")

MANAGE = ("scheme_manager",)


class TillKeyOut(Schema):
    id = fields.UUID()
    key_prefix = fields.String(allow_none=True, metadata={
        "description": "The key's first characters, to tell keys apart; null for the key "
                       "issued when the partner was registered (never stored)."})
    label = fields.String(allow_none=True)
    state = fields.String(metadata={"enum": ["active", "expiring", "expired", "retired"]})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True, metadata={
        "description": "When it stops working (the end of its overlap); null: no end set."})
    retired_at = fields.DateTime(allow_none=True)


class TillKeyIssued(TillKeyOut):
    api_key = fields.String(metadata={"description": "Shown in this answer only."})
    previous_keys_end_at = fields.DateTime(allow_none=True, metadata={
        "description": "When the keys that worked until now stop (null: they go on)."})


class TillKeyIn(Schema):
    label = fields.String(allow_none=True, validate=[validate.Length(max=100), storable_text],
                          metadata={"description": "Which till, e.g. 'Front counter'."})
    rotate = fields.Boolean(load_default=True, metadata={
        "description": "true: a rotation, the keys working now stop after overlap_days; "
                       "false: another till, the others go on working."})
    overlap_days = fields.Integer(
        load_default=DEFAULT_OVERLAP.days, validate=validate.Range(min=0, max=90),
        metadata={"description": "With rotate, how long the keys working now keep working "
                                 "beside the new one (0: they stop at once)."})


def _key_out(key: PartnerKey) -> dict[str, Any]:
    return {"id": key.id, "key_prefix": key.key_prefix, "label": key.label,
            "state": key_state(key, utcnow()), "created_at": key.created_at,
            "expires_at": key.expires_at, "retired_at": key.retired_at}


def _partner(partner_id: uuid.UUID) -> Partner:
    return found_or_404(Partner, partner_id, "No such partner.")


@blp.route("/<uuid:partner_id>/keys")
class TillKeys(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, TillKeyOut(many=True))
    @blp.alt_response(404, description="No such partner")
    @staff_required(*MANAGE)
    def get(self, partner_id: uuid.UUID):
        """The partner's till keys, newest first: prefix, label, state and times."""
        keys = [_key_out(key) for key in PARTNER_KEYS.keys_of(db.session, _partner(partner_id))]
        db.session.commit()  # the registration key, copied in on first look
        return keys

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(TillKeyIn, required=False)
    @blp.response(201, TillKeyIssued)
    @blp.alt_response(404, description="No such partner")
    def post(self, args: dict[str, Any], partner_id: uuid.UUID):
        """Issue a till key (shown only in this answer): for another till (`rotate`
        false), or to rotate, the keys working now going on for `overlap_days` (default
        7) so every till can switch over without a gap."""
        partner = _partner(partner_id)
        overlap = timedelta(days=args.get("overlap_days", DEFAULT_OVERLAP.days))
        issued = PARTNER_KEYS.issue(db.session, partner, overlap, label=args.get("label"),
                                    keep_others=not args.get("rotate", True),
                                    created_by=g.caller.id)
        audit("issue_till_key", "partner", partner.id, key_id=issued.key.id,
              key_prefix=issued.key.key_prefix, rotate=args.get("rotate", True),
              overlap_days=overlap.days)
        db.session.commit()
        return {**_key_out(issued.key), "api_key": issued.api_key,
                "previous_keys_end_at": issued.previous_keys_end_at}


@blp.route("/<uuid:partner_id>/keys/<uuid:key_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@blp.alt_response(404, description="No such partner, or no such key of it")
@staff_required(*MANAGE)
def retire(partner_id: uuid.UUID, key_id: uuid.UUID):
    """Retire a till key at once (a leaked key): requests with it are 401 from now on."""
    partner = _partner(partner_id)
    retired = PARTNER_KEYS.retire(db.session, partner, key_id)
    if retired is None:
        db.session.rollback()
        abort(404, message="The partner has no such key.")
    key, now_retired = retired
    if now_retired:
        audit("retire_till_key", "partner", partner.id, key_id=key.id,
              key_prefix=key.key_prefix)
    db.session.commit()
