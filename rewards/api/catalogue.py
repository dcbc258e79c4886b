"""The reward catalogue: what residents see (in their language, only what they may
claim), and how staff manage partners and offers, approving what partners propose."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from .. import reads
from ..catalogue import catalogue_rows, claims_of, eligible, live_offers, stock_left
from ..extensions import Blueprint, db
from ..i18n import localise, preferences
from ..ledger import member_available
from ..models import Offer, Partner, utcnow
from ..models.partner import FULFILMENTS, LIMIT_PERIODS, OFFER_STATUSES, PARTNER_KINDS
from ..outbound import url_problem
from ..reasons import Reason
from ..security import api_key_hash, new_api_key
from ..settlement import GBP_DOC, pounds
from ..wards import ward_names
from .auth import BEARER, current_resident, resident_read, staff_required
from .caching import cached
from .checks import Dict, List
from .common import Moment, audit, counted, found_or_404, paginate, reads_only
from .fastdump import json_answer
from .pages import numbered_page_view
from .places import PlaceIn, PlaceOut, image_url_field

offers_blp = Blueprint("offers", __name__, url_prefix="/v1/offers",
                       description="The reward catalogue")
admin_blp = Blueprint("admin_catalogue", __name__, url_prefix="/v1/admin",
                      description="Partners and offers: registering, approving, retiring")

MANAGE = ("scheme_manager",)
# How long a replaced webhook secret goes on signing beside the new one, unless asked.
WEBHOOK_SECRET_OVERLAP = timedelta(days=1)
LANGUAGE = validate.Regexp(r"^[a-z]{2,3}$", error="A language code such as cy or pl.")
# Languages an offer may be written in besides English: more than any council speaks.
TRANSLATIONS_MAX = 50


# -- schemas shared with the partner API --------------------------------------------------

class TranslationSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))


class OfferTerms(Schema):
    """An offer's terms, as staff create it or a partner proposes it."""

    title = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"description": "In English."})
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    translations = Dict(
        keys=fields.String(validate=LANGUAGE), values=fields.Nested(TranslationSchema),
        load_default=dict, most=TRANSLATIONS_MAX,
        metadata={"description": 'Other languages: {"cy": {"title": .., "description": ..}}.'})
    category = fields.String(allow_none=True, validate=validate.Length(max=32))
    cost_points = fields.Integer(required=True, validate=validate.Range(min=1, max=10_000_000))
    stock = fields.Integer(allow_none=True, validate=counted(),
                           metadata={"description": "How many can be claimed; none: unlimited."})
    per_member_limit = fields.Integer(allow_none=True, validate=counted(1))
    limit_period = fields.String(load_default="ever", validate=validate.OneOf(LIMIT_PERIODS),
                                 metadata={"description": "The period per_member_limit counts "
                                                          "claims over (scheme time zone)."})
    voucher_valid_days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=730))
    starts_at = Moment(allow_none=True)
    ends_at = Moment(allow_none=True)
    eligible_wards = List(
        fields.String(validate=validate.Length(min=1, max=100)), allow_none=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Only members in these wards; none: everyone."})
    joined_after = Moment(
        allow_none=True, metadata={"description": "Only members who joined on or after this."})
    value_pence = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100_000_00),
                                 metadata={"description": "What the council pays the partner "
                                                          "per redemption, in pence."})
    points_back_on_expiry = fields.Boolean(
        load_default=False,
        metadata={"description": "Whether an unredeemed voucher's points return when it expires."})
    fulfilment = fields.String(
        load_default="internal", validate=validate.OneOf(FULFILMENTS),
        metadata={"description": "internal: the scheme issues a code; webhook: the partner's "
                                 "own system issues the pass (its fulfilment_url)."})
    image_url = image_url_field("A picture of the offer")

    @validates_schema
    def check(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ValidationError({"ends_at": ["ends_at must be after starts_at."]})


class OfferIn(OfferTerms):
    partner_id = fields.UUID(required=True)


class OfferOut(Schema):
    id = fields.UUID()
    partner_id = fields.UUID()
    title = fields.String()
    description = fields.String(allow_none=True)
    translations = fields.Dict(keys=fields.String(), values=fields.Nested(TranslationSchema))
    category = fields.String(allow_none=True)
    cost_points = fields.Integer()
    stock = fields.Integer(allow_none=True)
    claimed = fields.Function(claims_of, metadata={"type": "integer"})
    stock_left = fields.Function(stock_left, allow_none=True, metadata={"type": "integer"})
    per_member_limit = fields.Integer(allow_none=True)
    limit_period = fields.String(metadata={"enum": list(LIMIT_PERIODS)})
    voucher_valid_days = fields.Integer()
    starts_at = fields.DateTime(allow_none=True)
    ends_at = fields.DateTime(allow_none=True)
    eligible_wards = fields.List(fields.String(), allow_none=True)
    joined_after = fields.DateTime(allow_none=True)
    value_pence = fields.Integer()
    value_gbp = fields.Function(lambda offer: pounds(offer.value_pence), metadata=GBP_DOC)
    points_back_on_expiry = fields.Boolean()
    fulfilment = fields.String(metadata={"enum": list(FULFILMENTS)})
    status = fields.String(metadata={"enum": list(OFFER_STATUSES)})
    proposed_by = fields.UUID(allow_none=True)
    reviewed_by = fields.UUID(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    review_note = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    created_at = fields.DateTime()


def check_fulfilment(partner: Partner, fulfilment: str) -> None:
    if fulfilment == "webhook" and not partner.fulfilment_url:
        abort(422, message="The partner has no fulfilment endpoint.",
              errors={"fulfilment": ["Set the partner's fulfilment_url first."]})


def new_offer(partner: Partner, args: dict[str, Any], **extra: Any) -> Offer:
    wards, unknown = ward_names(db.session, args.get("eligible_wards") or ())
    if unknown:
        abort(422, reason=Reason.UNKNOWN_WARD, message="Not one of the scheme's wards.",
              errors={"eligible_wards": [f"Not one of GET /v1/wards: {', '.join(unknown)}."]})
    offer = Offer(
        id=uuid.uuid4(),
        partner_id=partner.id,
        **{key: value for key, value in args.items()
           if key not in ("partner_id", "eligible_wards")},
        eligible_wards=wards or None,
        **extra,
    )
    db.session.add(offer)
    return offer


# -- what residents see ----------------------------------------------------------------------

class PartnerBrief(Schema):
    id = fields.UUID()
    name = fields.String()


class CatalogueOffer(Schema):
    id = fields.UUID()
    title = fields.String()
    description = fields.String(allow_none=True)
    language = fields.String(metadata={"description": "The language title and description "
                                                      "are in (English when not translated)."})
    category = fields.String(allow_none=True)
    partner = fields.Nested(PartnerBrief)
    cost_points = fields.Integer()
    affordable = fields.Boolean(metadata={"description": "cost_points <= your available points"})
    stock = fields.Integer(allow_none=True)
    stock_left = fields.Integer(allow_none=True, metadata={"description": "None: unlimited."})
    per_member_limit = fields.Integer(allow_none=True)
    limit_period = fields.String(metadata={"enum": list(LIMIT_PERIODS)})
    voucher_valid_days = fields.Integer()
    points_back_on_expiry = fields.Boolean()
    fulfilment = fields.String(metadata={"enum": list(FULFILMENTS)})
    starts_at = fields.DateTime(allow_none=True)
    ends_at = fields.DateTime(allow_none=True)
    image_url = fields.String(allow_none=True)


class CatalogueQuery(Schema):
    category = fields.String(validate=validate.Length(min=1, max=32))
    partner_id = fields.UUID()
    affordable = fields.Boolean(
        metadata={"description": "true: only offers costing no more than your available points."})


def _wanted_languages(member: Any) -> list[str]:
    """Accept-Language, else the member's (entity or `current_resident()` row) locale."""
    return preferences(request.headers.get("Accept-Language"), member.locale)


def _catalogue_view(offer: Any, wanted: list[str], available: int,
                    partner: Any = None) -> dict[str, Any]:
    """An offer (entity, or a live_offer_rows row with `partner` given) as residents
    see it."""
    title, description, language = localise(offer.title, offer.description,
                                            offer.translations, wanted)
    return {
        "id": offer.id, "title": title, "description": description, "language": language,
        "category": offer.category, "partner": partner or offer.partner,
        "cost_points": offer.cost_points,
        "affordable": offer.cost_points <= available, "stock": offer.stock,
        "stock_left": stock_left(offer), "per_member_limit": offer.per_member_limit,
        "limit_period": offer.limit_period, "voucher_valid_days": offer.voucher_valid_days,
        "points_back_on_expiry": offer.points_back_on_expiry, "fulfilment": offer.fulfilment,
        "starts_at": offer.starts_at, "ends_at": offer.ends_at, "image_url": offer.image_url,
    }


def _available(member: Any) -> int:
    return member_available(db.session, member.id)


@offers_blp.route("")
@cached(60, private=True)
@offers_blp.doc(security=BEARER)
@reads_only
@resident_read
@numbered_page_view(offers_blp, CatalogueQuery, CatalogueOffer(many=True))
def list_offers(args, pagination_parameters):
    """Offers open now that you may claim (your ward, when you joined), cheapest first,
    with how many are left; in your language (Accept-Language, else your profile's)."""
    stmt, available_points = catalogue_rows()
    params = {"now": utcnow(), "member": g.caller.id}
    if not {"category", "partner_id", "affordable"} & set(args):
        rows = reads.rows(stmt, params)  # the whole catalogue: a statement built once
    else:  # narrowed: built for this request
        if "category" in args:
            stmt = stmt.where(Offer.category == args["category"])
        if "partner_id" in args:
            stmt = stmt.where(Offer.partner_id == args["partner_id"])
        if args.get("affordable"):
            stmt = stmt.where(Offer.cost_points <= available_points)
        rows = db.session.execute(stmt, params).all()
    # With no offer to show, the points are not shown either.
    available = int(rows[0].available) if rows else 0
    # Eligibility is decided per offer in Python: the live catalogue is small. The
    # caller's row came with the first statement (`resident_read`).
    member = current_resident()
    offers = eligible(rows, member.ward, member.joined_at)
    pagination_parameters.item_count = len(offers)
    page, size = pagination_parameters.page, pagination_parameters.page_size
    wanted = _wanted_languages(member)
    return json_answer(CatalogueOffer, [
        _catalogue_view(offer, wanted, available,
                        {"id": offer.partner_id, "name": offer.partner_name})
        for offer in offers[(page - 1) * size:page * size]]), {}


@offers_blp.route("/<uuid:offer_id>")
@cached(60, private=True)
@offers_blp.doc(security=BEARER)
@offers_blp.response(200, CatalogueOffer)
@resident_read
def get_offer(offer_id: uuid.UUID):
    """One offer; 404 if it is not open now or not for you."""
    member = current_resident()
    offer = db.session.scalar(live_offers(utcnow()).where(Offer.id == offer_id))
    if offer is None or not eligible([offer], member.ward, member.joined_at):
        abort(404, message="No such offer.")
    return _catalogue_view(offer, _wanted_languages(member), _available(member))


# -- partners (staff) ----------------------------------------------------------------------

def _public_endpoint(url: str | None) -> None:
    """Refused at save time as at call time: loopback, private, metadata addresses, and
    plain http outside development (rewards/outbound.py)."""
    if url is None:
        return
    config = current_app.config
    allow_private = bool(config.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS"))
    problem = url_problem(url, allow_private=allow_private,
                          allow_http=allow_private or bool(config.get("DEVELOPMENT")))
    if problem:
        raise ValidationError(problem)


def _http_url() -> fields.Url:
    return fields.Url(schemes={"http", "https"}, require_tld=False, allow_none=True,
                      validate=[validate.Length(max=500), _public_endpoint],
                      metadata={"description": "Where the partner's own system issues passes "
                                               "for its offers with fulfilment webhook."})


class PartnerIn(PlaceIn):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(PARTNER_KINDS))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    fulfilment_url = _http_url()


class PartnerPatch(PlaceIn):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    fulfilment_url = _http_url()
    active = fields.Boolean()


class PartnerOut(PlaceOut):
    id = fields.UUID()
    name = fields.String()
    kind = fields.String(metadata={"enum": list(PARTNER_KINDS)})
    description = fields.String(allow_none=True)
    fulfilment_url = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = fields.DateTime()


class PartnerCreated(PartnerOut):
    api_key = fields.String(metadata={"description": "The till key; shown only here."})
    webhook_secret = fields.String(
        metadata={"description": "Signs fulfilment requests to the partner; shown only here."})


class SecretOut(Schema):
    webhook_secret = fields.String()
    previous_secret_until = fields.DateTime(allow_none=True, metadata={
        "description": "Until when requests are signed with the replaced secret too (a "
                       "second v1= entry); null when it stopped at once."})


class SecretRotationIn(Schema):
    overlap_days = fields.Integer(
        load_default=WEBHOOK_SECRET_OVERLAP.days, validate=validate.Range(min=0, max=90),
        metadata={"description": "How long requests go on being signed with the replaced "
                                 "secret as well, so the partner can switch its system over "
                                 "without refusing any (0: it stops at once, for a leaked "
                                 "secret)."})


def _partner(partner_id: uuid.UUID) -> Partner:
    return found_or_404(Partner, partner_id, "No such partner.")


@admin_blp.route("/partners")
class Partners(MethodView):
    @admin_blp.doc(security=BEARER)
    @admin_blp.response(200, PartnerOut(many=True))
    @admin_blp.paginate()
    @staff_required(*MANAGE)
    def get(self, pagination_parameters):
        """Partners."""
        return paginate(select(Partner).order_by(Partner.name), pagination_parameters)

    @admin_blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @admin_blp.arguments(PartnerIn)
    @admin_blp.response(201, PartnerCreated)
    def post(self, args):
        """Register a partner. Its till API key and webhook secret are shown only here."""
        key = new_api_key("ptn")
        secret = secrets.token_hex(32)
        partner = Partner(**args, api_key_hash=api_key_hash(key), webhook_secret=secret)
        db.session.add(partner)
        db.session.flush()
        audit("create", "partner", partner.id, name=partner.name)
        db.session.commit()
        partner.api_key = key  # shown in this answer only, never stored in clear
        return partner


@admin_blp.route("/partners/<uuid:partner_id>")
class PartnerItem(MethodView):
    @admin_blp.doc(security=BEARER)
    @admin_blp.response(200, PartnerOut)
    @staff_required(*MANAGE)
    def get(self, partner_id: uuid.UUID):
        """One partner."""
        return _partner(partner_id)

    @admin_blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @admin_blp.arguments(PartnerPatch)
    @admin_blp.response(200, PartnerOut)
    def patch(self, args, partner_id: uuid.UUID):
        """Rename, describe, set the fulfilment endpoint, or (in)activate a partner."""
        partner = _partner(partner_id)
        for name, value in args.items():
            setattr(partner, name, value)
        audit("update", "partner", partner.id, changed=sorted(args))
        db.session.commit()
        return partner


@admin_blp.route("/partners/<uuid:partner_id>/webhook-secret", methods=["POST"])
@admin_blp.doc(security=BEARER)
@staff_required(*MANAGE)
@admin_blp.arguments(SecretRotationIn, required=False)
@admin_blp.response(200, SecretOut)
def rotate_webhook_secret(args: dict[str, Any], partner_id: uuid.UUID):
    """A new secret for signing fulfilment requests (shown only in this answer).

    For `overlap_days` (default 1) each request carries a signature under the replaced
    secret too (`X-Signature: t=...,v1=<new>,v1=<old>`), so the partner's system may
    take the new secret at any moment meanwhile; then the old one stops. A secret
    replaced before (an earlier rotation still in its overlap) stops at once."""
    partner = _partner(partner_id)
    overlap = timedelta(days=args.get("overlap_days", WEBHOOK_SECRET_OVERLAP.days))
    until = utcnow() + overlap if overlap and partner.webhook_secret else None
    partner.previous_webhook_secret = partner.webhook_secret if until else None
    partner.previous_webhook_secret_until = until
    partner.webhook_secret = secrets.token_hex(32)
    audit("rotate_webhook_secret", "partner", partner.id, overlap_days=overlap.days)
    db.session.commit()
    return {"webhook_secret": partner.webhook_secret, "previous_secret_until": until}


# -- offers (staff) ------------------------------------------------------------------------

class OfferQuery(Schema):
    status = fields.String(validate=validate.OneOf(OFFER_STATUSES))
    partner_id = fields.UUID()


class OfferApproveIn(Schema):
    cost_points = fields.Integer(validate=validate.Range(min=1, max=10_000_000),
                                 metadata={"description": "Change the cost as you approve."})
    value_pence = fields.Integer(validate=validate.Range(min=0, max=100_000_00),
                                 metadata={"description": "Change the value as you approve."})
    note = fields.String(validate=validate.Length(max=2000))


class OfferRejectIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


def _offer(offer_id: uuid.UUID, lock: bool = False) -> Offer:
    return found_or_404(Offer, offer_id, "No such offer.", lock=lock)


@admin_blp.route("/offers")
class Offers(MethodView):
    @admin_blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @admin_blp.arguments(OfferQuery, location="query")
    @admin_blp.response(200, OfferOut(many=True))
    @admin_blp.paginate()
    def get(self, args, pagination_parameters):
        """All offers, newest first; `status=proposed` for those waiting for approval."""
        stmt = select(Offer).order_by(Offer.created_at.desc(), Offer.id)
        if "status" in args:
            stmt = stmt.where(Offer.status == args["status"])
        if "partner_id" in args:
            stmt = stmt.where(Offer.partner_id == args["partner_id"])
        return paginate(stmt, pagination_parameters)

    @admin_blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @admin_blp.arguments(OfferIn)
    @admin_blp.response(201, OfferOut)
    def post(self, args):
        """Add an offer. An offer staff create is live at once."""
        partner = db.session.get(Partner, args["partner_id"])
        if partner is None:
            abort(422, message="Unknown partner.", errors={"partner_id": ["No such partner."]})
        if partner.kind != "business":
            abort(422, message="Offers belong to business partners.",
                  errors={"partner_id": ["This partner is a charity."]})
        check_fulfilment(partner, args["fulfilment"])
        offer = new_offer(partner, args, status="live", reviewed_by=g.caller.id,
                          reviewed_at=utcnow())
        db.session.flush()
        audit("create", "offer", offer.id, title=offer.title)
        db.session.commit()
        return offer


@admin_blp.route("/offers/<uuid:offer_id>")
@admin_blp.doc(security=BEARER)
@admin_blp.response(200, OfferOut)
@staff_required(*MANAGE)
def get_admin_offer(offer_id: uuid.UUID):
    """One offer, whatever its status."""
    return _offer(offer_id)


def _decide(offer_id: uuid.UUID, status: str, action: str, note: str | None,
            changes: dict[str, Any]) -> Offer:
    offer = _offer(offer_id, lock=True)
    if offer.status != "proposed":
        abort(409, reason=Reason.WRONG_STATE,
              message=f"Only a proposed offer can be {action}d; this one is "
                           f"{offer.status}.")
    for name, value in changes.items():
        setattr(offer, name, value)
    offer.status = status
    offer.reviewed_by = g.caller.id
    offer.reviewed_at = utcnow()
    offer.review_note = note
    audit(action, "offer", offer.id, status=status, note=note, **changes)
    db.session.commit()
    return offer


@admin_blp.route("/offers/<uuid:offer_id>/approve", methods=["POST"])
@admin_blp.doc(security=BEARER)
@staff_required(*MANAGE)
@admin_blp.arguments(OfferApproveIn)
@admin_blp.response(200, OfferOut)
@admin_blp.alt_response(409, description="The offer is not waiting for approval")
def approve_offer(args, offer_id: uuid.UUID):
    """Approve a partner's proposal: it goes live (optionally at another cost or value)."""
    changes = {k: v for k, v in args.items() if k in ("cost_points", "value_pence")}
    return _decide(offer_id, "live", "approve", args.get("note"), changes)


@admin_blp.route("/offers/<uuid:offer_id>/reject", methods=["POST"])
@admin_blp.doc(security=BEARER)
@staff_required(*MANAGE)
@admin_blp.arguments(OfferRejectIn)
@admin_blp.response(200, OfferOut)
@admin_blp.alt_response(409, description="The offer is not waiting for approval")
def reject_offer(args, offer_id: uuid.UUID):
    """Reject a partner's proposal, saying why (the partner sees the reason)."""
    return _decide(offer_id, "rejected", "reject", args["reason"], {})


@admin_blp.route("/offers/<uuid:offer_id>/retire", methods=["POST"])
@admin_blp.doc(security=BEARER)
@admin_blp.response(200, OfferOut)
@admin_blp.alt_response(409, description="The offer is not live")
@staff_required(*MANAGE)
def retire_offer(offer_id: uuid.UUID):
    """Take a live offer out of the catalogue. Vouchers already issued stay valid."""
    offer = _offer(offer_id, lock=True)
    if offer.status != "live":
        abort(409, message=f"Only live offers can be retired; this one is {offer.status}.",
              reason=Reason.WRONG_STATE)
    offer.status = "retired"
    audit("retire", "offer", offer.id)
    db.session.commit()
    return offer
