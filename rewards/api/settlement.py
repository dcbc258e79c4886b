"""Monthly settlement: what the council owes each partner, as JSON or CSV; staff see
every partner, a partner sees its own."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from marshmallow import Schema, fields, validate

from ..extensions import Blueprint, db
from ..settlement import GBP_DOC, MONTH, PartnerSettlement, as_csv, month_bounds, pounds, settle
from .auth import BEARER, partner_required, staff_required
from .catalogue import PartnerBrief
from .partner import PARTNER_AUTH

blp = Blueprint("settlements", __name__, url_prefix="/v1",
                description="Monthly settlement with partners (JSON or CSV)")


class SettlementQuery(Schema):
    month = fields.String(required=True,
                          validate=validate.Regexp(MONTH, error="A month as YYYY-MM."),
                          metadata={"description": "The month, in the scheme's time zone."})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")),
                           metadata={"description": "csv for a spreadsheet (or send "
                                                    "Accept: text/csv)."})


class OfferLineOut(Schema):
    offer_id = fields.UUID()
    title = fields.String()
    basis = fields.String(metadata={
        "enum": ["redeemed", "issued"],
        "description": "redeemed: at a till or the page (undone ones left out); issued: "
                       "passes the partner's own system issued."})
    count = fields.Integer()
    value_pence = fields.Integer()
    value_gbp = fields.Function(lambda line: pounds(line.value_pence), metadata=GBP_DOC)


class PartnerSettlementOut(Schema):
    partner = fields.Nested(PartnerBrief)
    count = fields.Integer()
    value_pence = fields.Integer()
    value_gbp = fields.Function(lambda item: pounds(item.value_pence), metadata=GBP_DOC)
    offers = fields.List(fields.Nested(OfferLineOut))


class SettlementOut(Schema):
    month = fields.String()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    currency = fields.String()
    count = fields.Integer()
    value_pence = fields.Integer()
    value_gbp = fields.String()
    partners = fields.List(fields.Nested(PartnerSettlementOut))


def _answer(args: dict[str, Any], settlements: list[PartnerSettlement]) -> Any:
    month = args["month"]
    wants_csv = args["format"] == "csv" or (
        request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
        and "application/json" not in request.accept_mimetypes.values())
    if wants_csv:
        return Response(as_csv(month, settlements), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="settlement-{month}.csv"'})
    start, end = month_bounds(month, current_app.config["SCHEME_TIMEZONE"])
    total = sum(item.value_pence for item in settlements)
    return {
        "month": month, "starts_at": start, "ends_at": end,
        "currency": current_app.config["SCHEME_CURRENCY"],
        "count": sum(item.count for item in settlements), "value_pence": total,
        "value_gbp": pounds(total), "partners": settlements,
    }


CSV_RESPONSE = {"content": {"application/json": {"schema": SettlementOut},
                            "text/csv": {"schema": {"type": "string"}}},
                "description": "JSON; or with format=csv (or Accept: text/csv) CSV, one row "
                               "per partner and offer and a total row per partner."}


@blp.route("/admin/settlements")
@blp.doc(security=BEARER, responses={"200": CSV_RESPONSE})
@staff_required("scheme_manager")
@blp.arguments(SettlementQuery, location="query")
@blp.response(200, SettlementOut)
def admin_settlements(args):
    """Every partner owed something for the month: count and value per offer, exact
    (what the council pays). Not for analysts: their figures suppress small counts, and
    an offer's exact count would give back what the dashboard's `rewards` hides."""
    return _answer(args, settle(db.session, args["month"],
                                current_app.config["SCHEME_TIMEZONE"]))


@blp.route("/partner/settlements")
@blp.doc(security=PARTNER_AUTH, responses={"200": CSV_RESPONSE})
@partner_required
@blp.arguments(SettlementQuery, location="query")
@blp.response(200, SettlementOut)
def partner_settlements(args):
    """What the council owes this partner for the month, per offer."""
    return _answer(args, settle(db.session, args["month"],
                                current_app.config["SCHEME_TIMEZONE"],
                                partner_id=g.caller.partner_id))
