"""Partners' tills: check and redeem vouchers."""

from __future__ import annotations

from flask import g
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from ..extensions import Blueprint, db
from ..vouchers import find_voucher, redeem, voucher_state
from .auth import partner_required

blp = Blueprint("partner", __name__, url_prefix="/v1/partner",
                description="Partners: check and redeem vouchers")

PARTNER_AUTH = [{"apiKey": []}, {"bearerAuth": []}]


class OfferBrief(Schema):
    id = fields.UUID()
    title = fields.String()


class VoucherSchema(Schema):
    code = fields.String()
    status = fields.Function(voucher_state)
    valid = fields.Function(lambda r: voucher_state(r) == "issued")
    offer = fields.Nested(OfferBrief)
    issued_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    redeemed_at = fields.DateTime(allow_none=True)


class RedemptionIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))


class RedemptionOut(Schema):
    id = fields.UUID()
    code = fields.String()
    offer = fields.Nested(OfferBrief)
    redeemed_at = fields.DateTime()


@blp.route("/vouchers/<string:code>")
@blp.doc(security=PARTNER_AUTH)
@blp.response(200, VoucherSchema)
@partner_required
def check_voucher(code: str):
    """Is this voucher valid here, for which offer, until when. Redeems nothing."""
    reward = find_voucher(db.session, g.caller.partner_id, code)
    if reward is None or reward.status in ("pending", "failed"):
        abort(404, message="No such voucher here.")
    return reward


@blp.route("/redemptions", methods=["POST"])
@blp.doc(security=PARTNER_AUTH)
@blp.arguments(RedemptionIn)
@blp.response(201, RedemptionOut)
@blp.alt_response(409, description="Already redeemed")
@blp.alt_response(410, description="Expired")
@partner_required
def post_redemption(args):
    """Redeem a voucher: exactly once, even when two tills try at the same moment."""
    outcome = redeem(db.session, g.caller.partner_id, args["code"])
    if outcome.status != 201:
        abort(outcome.status, message=outcome.message)
    reward = outcome.reward
    return {
        "id": outcome.redemption.id,
        "code": reward.code,
        "offer": reward.offer,
        "redeemed_at": reward.redeemed_at,
    }
