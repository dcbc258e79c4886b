"""Scheme staff manage a partner's till keys: several tills at once, rotation with an
overlap, retiring a leaked key at once."""

from __future__ import annotations

import uuid
from typing import Any

from flask import g
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from ..extensions import Blueprint, db
from ..models import Partner, PartnerKey
from ..partner_keys import PARTNER_KEYS
from . import key_rings
from .auth import BEARER, staff_required
from .checks import storable_text
from .common import audit, found_or_404, page_of

blp = Blueprint("partner_keys", __name__, url_prefix="/v1/admin/partners",
                description="Scheme staff: partners' till API keys")

MANAGE = ("scheme_manager",)


class TillKeyOut(key_rings.KeyOut):
    key_prefix = key_rings.key_prefix_field("partner")
    label = fields.String(allow_none=True)


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
    overlap_days = key_rings.overlap_days_field(
        "With rotate, how long the keys working now keep working beside the new one (0: "
        "they stop at once).")


def _key_out(key: PartnerKey) -> dict[str, Any]:
    return {**key_rings.key_out(key), "label": key.label}


def _partner(partner_id: uuid.UUID) -> Partner:
    return found_or_404(Partner, partner_id, "No such partner.")


@blp.route("/<uuid:partner_id>/keys")
class TillKeys(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, TillKeyOut(many=True))
    @blp.alt_response(404, description="No such partner")
    @blp.paginate()
    @staff_required(*MANAGE)
    def get(self, partner_id: uuid.UUID, pagination_parameters):
        """The partner's till keys, newest first: prefix, label, state and times."""
        return page_of(key_rings.listed(PARTNER_KEYS, _partner(partner_id), _key_out),
                       pagination_parameters)

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
        overlap = key_rings.overlap_of(args)
        issued = PARTNER_KEYS.issue(db.session, partner, overlap, label=args.get("label"),
                                    keep_others=not args.get("rotate", True),
                                    created_by=g.caller.id)
        audit("issue_till_key", "partner", partner.id, key_id=issued.key.id,
              key_prefix=issued.key.key_prefix, rotate=args.get("rotate", True),
              overlap_days=overlap.days)
        db.session.commit()
        return key_rings.issued_out(issued, _key_out)


@blp.route("/<uuid:partner_id>/keys/<uuid:key_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@blp.alt_response(404, description="No such partner, or no such key of it")
@staff_required(*MANAGE)
def retire(partner_id: uuid.UUID, key_id: uuid.UUID):
    """Retire a till key at once (a leaked key): requests with it are 401 from now on."""
    key_rings.retire_or_404(PARTNER_KEYS, _partner(partner_id), key_id,
                            target_type="partner", action="retire_till_key",
                            missing="The partner has no such key.")
