"""A resident's rewards: claiming an offer, the list, one reward and its voucher's QR
code. The routes are the `me` blueprint's (/v1/me/rewards)."""

from __future__ import annotations

import io
import uuid

import segno
from flask import Response, g, has_request_context, request, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields
from sqlalchemy import select

from ..extensions import db
from ..i18n import localise, preferences
from ..models import Reward
from ..models.partner import FULFILMENTS
from ..models.reward import REWARD_STATUSES
from ..reasons import Reason
from ..vouchers import Claimed, ClaimRefused, claim_offer, voucher_state
from .auth import BEARER, caller_later, current_member, member_required, resident_claim
from .catalogue import PartnerBrief
from .common import idempotent, paginate, reads_only
from .contract import IDEMPOTENCY_KEY
from .me import blp


class ClaimIn(Schema):
    offer_id = fields.UUID(required=True)


def _title(reward: Reward) -> str:
    offer = reward.offer
    member = g.get("member") if has_request_context() else None
    locale = member.locale if member is not None else reward.member.locale
    wanted = preferences(request.headers.get("Accept-Language") if has_request_context()
                         else None, locale)
    return localise(offer.title, offer.description, offer.translations, wanted)[0]


class RewardSchema(Schema):
    id = fields.UUID()
    offer_id = fields.UUID()
    title = fields.Function(_title, metadata={"type": "string"})
    partner = fields.Nested(PartnerBrief, attribute="offer.partner")
    status = fields.Function(voucher_state, metadata={"type": "string",
                                                      "enum": list(REWARD_STATUSES)})
    cost_points = fields.Integer()
    fulfilment = fields.Function(lambda r: r.offer.fulfilment, metadata={
        "type": "string", "enum": list(FULFILMENTS),
        "description": "internal: show the code at the till; webhook: a pass from the "
                       "partner's own booking system."})
    code = fields.Function(lambda r: r.code or r.partner_code, allow_none=True,
                           metadata={"type": "string"})
    partner_reference = fields.String(allow_none=True)
    qr_svg_url = fields.Method("qr_url", allow_none=True, metadata={"type": "string"})
    issued_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    redeemed_at = fields.DateTime(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()

    def qr_url(self, reward: Reward) -> str | None:
        if not (reward.code or reward.partner_code):
            return None
        return url_for("me.RewardQr", reward_id=reward.id, _external=False)



@blp.route("/rewards")
class Rewards(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, RewardSchema(many=True))
    @blp.paginate()
    @reads_only
    @member_required
    def get(self, pagination_parameters):
        """The resident's rewards, newest first."""
        stmt = (
            select(Reward)
            .where(Reward.member_id == current_member().id)
            .order_by(Reward.created_at.desc(), Reward.id)
        )
        return paginate(stmt, pagination_parameters)

    @blp.doc(
        security=BEARER,
        parameters=[IDEMPOTENCY_KEY],
    )
    @resident_claim
    @blp.arguments(ClaimIn)
    @blp.response(202, RewardSchema)
    @blp.alt_response(404, description="No such offer, or not live")
    @blp.alt_response(409, description="Not enough points, sold out, limit reached, not "
                                       "eligible, or not open yet")
    @blp.alt_response(410, description="The offer has ended")
    def post(self, args):
        """Claim an offer: the points are held now and a job issues the voucher."""
        # The token's check rides on the claim's first statement: the id now, the row
        # (ward, joined_at, locale) once that statement is read.
        member = caller_later()

        def produce():
            try:
                claimed = claim_offer(db.session, member, args["offer_id"])
            except ClaimRefused as refused:
                db.session.rollback()
                abort(refused.status, message=refused.message, reason=refused.reason)
            return claim_answer(claimed, member.locale), 202

        return idempotent(f"member:{member.id}:rewards", produce)


def claim_answer(claimed: Claimed, locale: str | None) -> dict:
    """RewardSchema's answer for a reward just claimed, from what the claim read and
    wrote (a pending reward: no code, nothing issued yet), without entities or a
    schema's dump on the hottest write. tests/test_rewards.py holds it to the schema's."""
    offer = claimed.offer
    # The environ, not request.headers: a missing header is None there, where werkzeug's
    # headers raise and catch an error (most claims send none).
    wanted = preferences(request.environ.get("HTTP_ACCEPT_LANGUAGE"), locale)
    return {
        "id": str(claimed.id),
        "offer_id": str(offer.id),
        "title": localise(offer.title, offer.description, offer.translations, wanted)[0],
        "partner": {"id": str(offer.partner_id), "name": offer.partner_name},
        "status": "pending",
        "cost_points": claimed.cost_points,
        "fulfilment": offer.fulfilment,
        "code": None,
        "partner_reference": None,
        "qr_svg_url": None,
        "issued_at": None,
        "expires_at": None,
        "redeemed_at": None,
        "failure_reason": None,
        "created_at": claimed.created_at.isoformat(),
    }


def _own_reward(reward_id: uuid.UUID) -> Reward:
    reward = db.session.scalar(
        select(Reward).where(Reward.id == reward_id, Reward.member_id == current_member().id)
    )
    if reward is None:
        abort(404, message="No such reward.")
    return reward


@blp.route("/rewards/<uuid:reward_id>")
@blp.doc(security=BEARER)
@blp.response(200, RewardSchema)
@member_required
def reward(reward_id: uuid.UUID):
    """One reward; the voucher code once issued."""
    return _own_reward(reward_id)


@blp.route("/rewards/<uuid:reward_id>/qr.svg", endpoint="RewardQr")
@blp.doc(security=BEARER)
@blp.response(200, content_type="image/svg+xml", description="The voucher code as a QR code")
@member_required
def reward_qr(reward_id: uuid.UUID):
    """The voucher as a QR code to show at the till."""
    item = _own_reward(reward_id)
    code = item.code or item.partner_code
    if not code:
        abort(409, message="The voucher has not been issued yet.",
              reason=Reason.VOUCHER_NOT_ISSUED)
    buffer = io.BytesIO()
    segno.make(code, error="m").save(buffer, kind="svg", scale=8, border=2)
    return Response(buffer.getvalue(), mimetype="image/svg+xml")
