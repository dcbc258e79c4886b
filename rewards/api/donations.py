"""Donating points to charity partners, and what staff see of it."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from ..donations import MAX_DONATION, DonationRefused, donate, totals
from ..extensions import Blueprint, db
from ..ledger import account_balance, member_account
from ..models import Partner
from ..models.donation import Donation
from .auth import BEARER, current_member, member_required, staff_required
from .caching import cached
from .common import idempotent, paginate
from .contract import IDEMPOTENCY_KEY

blp = Blueprint("donations", __name__, url_prefix="/v1",
                description="Giving points to charity partners")


class CharityOut(Schema):
    id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)


class DonationIn(Schema):
    charity_id = fields.UUID(required=True)
    points = fields.Integer(required=True, strict=True,
                            validate=validate.Range(min=1, max=MAX_DONATION))


class DonationOut(Schema):
    id = fields.UUID()
    charity = fields.Nested(CharityOut)
    points = fields.Integer()
    created_at = fields.DateTime()


class DonationMade(DonationOut):
    available = fields.Integer(metadata={"description": "Your points left to spend."})


class CharityTotalOut(Schema):
    charity_id = fields.UUID()
    name = fields.String()
    points = fields.Integer(allow_none=True)
    donations = fields.Integer(allow_none=True)
    donors = fields.Integer(allow_none=True, metadata={
        "description": "Members who gave; with points and donations hidden (null) when "
                       "fewer than DASHBOARD_MIN_CELL members gave."})


class DonationTotalsOut(Schema):
    donated = fields.Integer(allow_none=True, metadata={
        "description": "Points ever donated; null while a charity's figures are hidden."})
    earned = fields.Integer(metadata={"description": "Points ever earned (awarded, less "
                                                     "reversed awards)."})
    share = fields.Float(allow_none=True, metadata={"description": "donated / earned."})
    charities = fields.List(fields.Nested(CharityTotalOut))


@blp.route("/charities")
@cached(300, private=True)  # signed in: only the caller's own cache keeps it
@blp.doc(security=BEARER)
@member_required
@blp.response(200, CharityOut(many=True))
@blp.paginate()
def charities(pagination_parameters):
    """Charities you can give points to."""
    stmt = (select(Partner).where(Partner.kind == "charity", Partner.active.is_(True))
            .order_by(Partner.name, Partner.id))
    return paginate(stmt, pagination_parameters)


@blp.route("/me/donations")
class MyDonations(MethodView):
    @blp.doc(security=BEARER)
    @member_required
    @blp.response(200, DonationOut(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """Your donations, newest first."""
        stmt = (select(Donation).where(Donation.member_id == current_member().id)
                .order_by(Donation.created_at.desc(), Donation.id))
        return paginate(stmt, pagination_parameters)

    @blp.doc(security=BEARER, parameters=[IDEMPOTENCY_KEY])
    @member_required
    @blp.arguments(DonationIn)
    @blp.response(201, DonationMade)
    @blp.alt_response(404, description="No such charity")
    @blp.alt_response(409, description="Not enough points")
    def post(self, args):
        """Give points to a charity partner."""
        member = current_member()

        def produce():
            try:
                donation = donate(db.session, member.id, args["charity_id"], args["points"])
            except DonationRefused as refused:
                db.session.rollback()
                abort(refused.status, message=refused.message, reason=refused.reason)
            db.session.flush()
            left = account_balance(db.session, member_account(db.session, member.id).id)
            body = DonationMade().dump({"id": donation.id, "charity": donation.charity,
                                        "points": donation.points,
                                        "created_at": donation.created_at, "available": left})
            return body, 201

        return idempotent(f"member:{member.id}:donations", produce)


@blp.route("/admin/donations")
@blp.doc(security=BEARER)
@blp.response(200, DonationTotalsOut)
@staff_required("scheme_manager", "analyst")
def donation_totals():
    """Points donated per charity, and the share of all points ever earned that were
    donated. Donor counts under the suppression threshold are hidden."""
    result = totals(db.session, int(current_app.config["DASHBOARD_MIN_CELL"]))
    return {"donated": result.donated, "earned": result.earned, "share": result.share,
            "charities": result.charities}
