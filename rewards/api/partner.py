"""Partners' tills and partner users: check and redeem vouchers (or a card-only
member's card and PIN), undo a mistaken redemption, see their redemptions, and
propose offers for a scheme manager to approve."""

from __future__ import annotations

import uuid
from functools import wraps
from typing import Any

from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..extensions import Blueprint, db
from ..members import PinRefused, check_card_pin
from ..models import Offer, Partner, Redemption, Reward
from ..models.reward import REDEMPTION_CHANNELS, REWARD_STATUSES
from ..reasons import Reason
from ..settlement import MONTH, month_bounds, pounds
from ..vouchers import (
    UNDO_WINDOW,
    ClaimRefused,
    Receipt,
    find_voucher,
    normalise_code,
    redeem,
    redeem_by_card,
    undo_redemption,
    voucher_state,
)
from .auth import partner_required
from .catalogue import OfferOut, OfferTerms, check_fulfilment, new_offer
from .common import audit, idempotent, paginate

blp = Blueprint("partner", __name__, url_prefix="/v1/partner",
                description="Partners: check and redeem vouchers, undo, redemptions, offers")

PARTNER_AUTH = [{"apiKey": []}, {"bearerAuth": []}]
CARD_KINDS = ("travel_card", "leisure_card", "library_card", "resident_card")
IDEMPOTENCY_HEADER = [{"in": "header", "name": "Idempotency-Key", "required": False,
                       "schema": {"type": "string"},
                       "description": "A retry with the same key and body replays the answer."}]


def _partner_user_only(view: Any) -> Any:
    """After partner_required: a till key is refused before the body is read (it may
    not use the route at all, so what its body holds does not matter)."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if partner_user_id() is None:
            abort(403, message="Offers are proposed by a partner's user account, not a till key.",
                  reason=Reason.WRONG_ROLE)
        return view(*args, **kwargs)

    return wrapper


def partner_user_id() -> uuid.UUID | None:
    """The partner's user making the request; None for a till's API key."""
    return None if request.headers.get("X-Api-Key") else g.caller.id


class OfferBrief(Schema):
    id = fields.UUID()
    title = fields.String()


class VoucherSchema(Schema):
    code = fields.String()
    status = fields.Function(voucher_state, metadata={"type": "string",
                                                      "enum": list(REWARD_STATUSES)})
    valid = fields.Function(lambda r: voucher_state(r) == "issued",
                            metadata={"type": "boolean"})
    offer = fields.Nested(OfferBrief)
    issued_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    redeemed_at = fields.DateTime(allow_none=True)


TILL_REFERENCE = fields.String(
    allow_none=True, validate=validate.Length(min=1, max=64),
    metadata={"description": "The till's own reference for the sale (a receipt number); "
                             "kept with the redemption and shown with it."})


class RedemptionIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reference = TILL_REFERENCE


class RedemptionOut(Schema):
    id = fields.UUID()
    code = fields.String()
    offer = fields.Nested(OfferBrief)
    channel = fields.String(metadata={"enum": list(REDEMPTION_CHANNELS),
                                      "description": "code, or card (card and PIN)."})
    redeemed_at = fields.DateTime()
    value_pence = fields.Integer(metadata={"description": "What the council owes for it."})
    value_gbp = fields.String(metadata={"pattern": r"^\d+\.\d\d$"})
    undone_at = fields.DateTime(allow_none=True)
    undo_until = fields.DateTime(
        allow_none=True, metadata={"description": "Until when it can be undone (none: undone)."})
    reference = fields.String(allow_none=True, metadata={
        "description": "The till's own reference, as it sent it."})


def redemption_view(receipt: Receipt) -> dict[str, Any]:
    return {
        "id": receipt.id,
        "code": receipt.code,
        "offer": {"id": receipt.offer_id, "title": receipt.offer_title},
        "channel": receipt.channel,
        "redeemed_at": receipt.redeemed_at,
        "value_pence": receipt.value_pence,
        "value_gbp": pounds(receipt.value_pence),
        "undone_at": receipt.undone_at,
        "undo_until": None if receipt.undone_at else receipt.redeemed_at + UNDO_WINDOW,
        "reference": receipt.reference,
    }


@blp.route("/vouchers/<string:code>")
@blp.doc(security=PARTNER_AUTH)
@blp.response(200, VoucherSchema)
@partner_required
def check_voucher(code: str):
    """Is this voucher valid here, for which offer, until when. Redeems nothing."""
    reward = find_voucher(db.session, g.caller.partner_id, code)
    if reward is None or reward.status in ("pending", "failed"):
        abort(404, message="No such voucher here.", reason=Reason.VOUCHER_NOT_FOUND)
    return reward


class RedemptionQuery(Schema):
    month = fields.String(validate=validate.Regexp(MONTH, error="A month as YYYY-MM."),
                          metadata={"description": "Only this month (scheme time zone)."})
    code = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "Only the redemptions of this voucher code (undone ones too)."})
    reference = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "Only those the till gave this reference."})


@blp.route("/redemptions")
class Redemptions(MethodView):
    @blp.doc(security=PARTNER_AUTH)
    @partner_required
    @blp.arguments(RedemptionQuery, location="query")
    @blp.response(200, RedemptionOut(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """This partner's redemptions, newest first, undone ones included (marked)."""
        stmt = (
            select(Redemption)
            .options(joinedload(Redemption.reward).joinedload(Reward.offer))
            .where(Redemption.partner_id == g.caller.partner_id)
            .order_by(Redemption.created_at.desc(), Redemption.id)
        )
        if "month" in args:
            start, end = month_bounds(args["month"], current_app.config["SCHEME_TIMEZONE"])
            stmt = stmt.where(Redemption.created_at >= start, Redemption.created_at < end)
        if "code" in args:
            stmt = stmt.where(Redemption.reward_id.in_(
                select(Reward.id).where(Reward.code == normalise_code(args["code"]))))
        if "reference" in args:
            stmt = stmt.where(Redemption.till_reference == args["reference"])
        return [redemption_view(Receipt.of(r, r.reward))
                for r in paginate(stmt, pagination_parameters)]

    @blp.doc(security=PARTNER_AUTH, parameters=IDEMPOTENCY_HEADER)
    @partner_required
    @blp.arguments(RedemptionIn)
    @blp.response(201, RedemptionOut, headers={"Idempotent-Replayed": {
        "description": "true when this is the answer to an earlier try with the same "
                       "Idempotency-Key", "schema": {"type": "string", "enum": ["true"]}}})
    @blp.alt_response(404, description="Unknown code, or another partner's")
    @blp.alt_response(409, description="Already redeemed")
    @blp.alt_response(410, description="Expired")
    def post(self, args):
        """Redeem a voucher: exactly once, even when two tills try at the same moment.
        With an Idempotency-Key, a retry (after a lost answer, say) gets the first
        redemption back, marked Idempotent-Replayed, instead of a 409."""
        partner_id = g.caller.partner_id
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 200:
            abort(422, message="Idempotency-Key must be 1 to 200 characters.",
                  errors={"Idempotency-Key": ["1 to 200 characters."]})
        earlier = _replay(partner_id, key, args)
        if earlier is not None:
            return earlier
        outcome = redeem(db.session, partner_id, args["code"], redeemed_by=partner_user_id(),
                         idempotency_key=key or None, reference=args.get("reference"))
        if outcome.status != 201:
            earlier = _replay(partner_id, key, args)  # the same key won a race
            if earlier is not None:
                return earlier
            abort(outcome.status, message=outcome.message, reason=outcome.reason)
        assert outcome.receipt is not None
        return redemption_view(outcome.receipt)


def _replay(partner_id: uuid.UUID, key: str | None, args: dict[str, Any]) -> Any:
    """The answer to an earlier redemption with this Idempotency-Key, if there was one;
    422 if that one asked for something else (another code or another reference)."""
    if not key:
        return None
    redemption = db.session.scalar(
        select(Redemption).options(joinedload(Redemption.reward).joinedload(Reward.offer))
        .where(Redemption.partner_id == partner_id, Redemption.idempotency_key == key))
    if redemption is None:
        return None
    if redemption.reward.code != normalise_code(args["code"]):
        abort(422, message="This Idempotency-Key was used with a different voucher code.",
              reason=Reason.IDEMPOTENCY_KEY_REUSED)
    if redemption.till_reference != args.get("reference"):
        abort(422, message="This Idempotency-Key was used with a different reference.",
              reason=Reason.IDEMPOTENCY_KEY_REUSED)
    return (redemption_view(Receipt.of(redemption, redemption.reward)), 201,
            {"Idempotent-Replayed": "true"})


class TillCardIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(CARD_KINDS))
    number = fields.String(required=True, validate=validate.Regexp(
        r"^[0-9A-Za-z \-]{6,32}$", error="6 to 32 letters and digits."))


class CardRedemptionIn(Schema):
    card = fields.Nested(TillCardIn, required=True)
    pin = fields.String(required=True, load_only=True,
                        validate=validate.Regexp(r"^[0-9]{4,6}$", error="4 to 6 digits."))
    offer_id = fields.UUID(required=True)
    reference = TILL_REFERENCE


@blp.route("/card-redemptions", methods=["POST"])
@blp.doc(security=PARTNER_AUTH, parameters=IDEMPOTENCY_HEADER)
@partner_required
@blp.arguments(CardRedemptionIn)
@blp.response(201, RedemptionOut)
@blp.alt_response(401, description="Card or PIN not recognised")
@blp.alt_response(403, description="Too many wrong PINs: the card's PIN is locked for a while")
@blp.alt_response(404, description="No such offer here")
@blp.alt_response(409, description="Not enough points, sold out, limit reached, not eligible, "
                                   "or an offer the partner's own system issues")
@blp.alt_response(410, description="The offer has ended")
def post_card_redemption(args):
    """A member without a phone: card number and PIN instead of a code. Claims one of
    this partner's offers, issues and redeems the voucher in one transaction. Five
    wrong PINs lock the card's PIN for 15 minutes."""
    partner_id = g.caller.partner_id
    card = args["card"]
    try:
        member = check_card_pin(db.session, card["kind"], card["number"], args["pin"])
    except PinRefused as refused:
        db.session.commit()  # the wrong try is kept: five lock the PIN
        locked = refused.message.startswith("Too many")
        abort(403 if locked else 401, message=refused.message,
              reason=Reason.PIN_LOCKED if locked else Reason.INVALID_CREDENTIALS)
    db.session.commit()  # the right PIN clears earlier wrong tries, whatever happens next

    def produce() -> tuple[dict[str, Any], int]:
        try:
            outcome = redeem_by_card(db.session, partner_id, member, args["offer_id"],
                                     redeemed_by=partner_user_id(),
                                     reference=args.get("reference"))
        except ClaimRefused as refused:
            db.session.rollback()
            abort(refused.status, message=refused.message, reason=refused.reason)
        assert outcome.receipt is not None
        db.session.flush()
        return RedemptionOut().dump(redemption_view(outcome.receipt)), 201

    return idempotent(f"partner:{partner_id}:card-redemptions", produce)


@blp.route("/redemptions/<uuid:redemption_id>/undo", methods=["POST"])
@blp.doc(security=PARTNER_AUTH)
@partner_required
@blp.response(200, RedemptionOut)
@blp.alt_response(404, description="Unknown redemption, or another partner's")
@blp.alt_response(409, description="Undone already, more than 10 minutes ago, or the "
                                   "voucher's redemption was undone once before")
def undo(redemption_id: uuid.UUID):
    """Undo a mistake at the till, within 10 minutes and once per voucher: a voucher
    redeemed by code is valid again; one redeemed by card and PIN is cancelled and
    its points go back to the member."""
    outcome = undo_redemption(db.session, g.caller.partner_id, redemption_id,
                              undone_by=partner_user_id())
    if outcome.status != 200:
        db.session.rollback()
        abort(outcome.status, message=outcome.message, reason=outcome.reason)
    assert outcome.receipt is not None
    db.session.commit()
    return redemption_view(outcome.receipt)


# -- offers a partner proposes ---------------------------------------------------------------

class PartnerOfferOut(OfferOut):
    class Meta:
        # Who at the council reviewed it is staff's business: no staff ids to partners.
        exclude = ("reviewed_by",)


@blp.route("/offers")
class PartnerOffers(MethodView):
    @blp.doc(security=PARTNER_AUTH)
    @partner_required
    @blp.response(200, PartnerOfferOut(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """This partner's offers, whatever their status (proposed, live, rejected, retired)."""
        stmt = (select(Offer).where(Offer.partner_id == g.caller.partner_id)
                .order_by(Offer.created_at.desc(), Offer.id))
        return paginate(stmt, pagination_parameters)

    @blp.doc(security=[{"bearerAuth": []}])
    @partner_required
    @_partner_user_only
    @blp.arguments(OfferTerms)
    @blp.response(201, PartnerOfferOut)
    @blp.alt_response(403, description="A till key, or a charity")
    @blp.alt_response(409, description="Too many of the partner's offers are waiting for a "
                                       "decision (too_many_pending)")
    def post(self, args):
        """Propose an offer. It waits, `proposed`, until a scheme manager approves it;
        only then do residents see it. For a partner's user (not a till key). A partner
        has at most OFFER_PROPOSALS_PENDING_MAX (20) proposals waiting at once."""
        # The partner's row is locked: concurrent proposals take turns, so the count of
        # those waiting is exact.
        partner = db.session.scalar(select(Partner).where(Partner.id == g.caller.partner_id)
                                    .with_for_update(key_share=True))
        assert partner is not None
        if partner.kind != "business":
            abort(403, message="Charities receive donations; they do not offer rewards.")
        check_fulfilment(partner, args["fulfilment"])
        most = current_app.config["OFFER_PROPOSALS_PENDING_MAX"]
        waiting = db.session.scalar(select(func.count(Offer.id)).where(
            Offer.partner_id == partner.id, Offer.status == "proposed"))
        if waiting >= most:
            db.session.rollback()
            abort(409, reason=Reason.TOO_MANY_PENDING,
                  message=f"This partner has {waiting} offers waiting for the council's "
                          f"decision, the most allowed; propose more once some are decided.")
        offer = new_offer(partner, args, status="proposed", proposed_by=g.caller.id)
        db.session.flush()
        audit("propose", "offer", offer.id, title=offer.title)
        db.session.commit()
        return offer

