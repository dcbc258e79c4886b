"""Council staff creating events whose claim codes residents scan."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import current_app, g, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from ..actions.claims import MAX_SINGLE_USE_CODES, create_event, display_code, sheet_token
from ..extensions import Blueprint, db
from ..models import ActionType
from ..models.event import EVENT_MODES, Event, EventCode
from .auth import BEARER, staff_required
from .checks import storable_json, storable_text
from .common import Moment, audit, counted, found_or_404, paginate

blp = Blueprint("events", __name__, url_prefix="/v1/admin/events",
                description="Events with claim codes (volunteering, one-off activities)")

MANAGE = ("scheme_manager",)
MAX_ATTRIBUTES_BYTES = 4096


class EventIn(Schema):
    name = fields.String(required=True,
                         validate=[validate.Length(min=1, max=200), storable_text])
    action_type = fields.String(required=True, validate=storable_text, metadata={
        "description": "The action type code a claim becomes, e.g. volunteering_hour."})
    starts_at = Moment(required=True)
    ends_at = Moment(required=True)
    max_claims = fields.Integer(allow_none=True, validate=counted(1), metadata={
        "description": "At most this many claims in all (default: no limit; a single-use "
                       "event is limited by its codes anyway)."})
    mode = fields.String(load_default="shared", validate=validate.OneOf(EVENT_MODES),
                         metadata={"description": "shared: one code for everyone; "
                                                  "single_use: one code per attendee."})
    codes = fields.Integer(validate=validate.Range(min=1, max=MAX_SINGLE_USE_CODES), metadata={
        "description": "single_use only: how many codes to make (a sheet to print)."})
    attributes = fields.Dict(
        keys=fields.String(), load_default=dict, validate=storable_json,
        metadata={"description": "Given to the rules as the claim's action.attributes, e.g. "
                                 '{"hours": 2} for a two-hour volunteering session.'})

    @validates_schema
    def check(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            errors["ends_at"] = ["ends_at must be after starts_at."]
        if data.get("mode") == "single_use" and not data.get("codes"):
            errors["codes"] = ["A single_use event needs codes: how many to make."]
        if data.get("mode", "shared") == "shared" and data.get("codes") not in (None, 1):
            errors["codes"] = ["codes is for single_use events; a shared event has one code."]
        try:
            size = len(json.dumps(data.get("attributes") or {}, allow_nan=False))
        except ValueError:
            errors["attributes"] = ["attributes must hold finite numbers."]
        else:
            if size > MAX_ATTRIBUTES_BYTES:
                errors["attributes"] = [f"attributes may take {MAX_ATTRIBUTES_BYTES} bytes "
                                        "as JSON."]
        if errors:
            raise ValidationError(errors)


class EventCodeOut(Schema):
    code = fields.String()
    claimed_at = fields.DateTime(allow_none=True)


class EventOut(Schema):
    id = fields.UUID()
    name = fields.String()
    action_type = fields.String(attribute="type_code")
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    max_claims = fields.Integer(allow_none=True)
    claims = fields.Integer(metadata={"description": "Claims made so far."})
    mode = fields.String(metadata={"enum": list(EVENT_MODES)})
    attributes = fields.Dict()
    created_at = fields.DateTime()


class EventDetail(EventOut):
    code = fields.String(allow_none=True, metadata={
        "description": "shared: the code residents scan (also on the sheet)."})
    codes = fields.List(fields.Nested(EventCodeOut), metadata={
        "description": "single_use: every code, and when it was used."})
    sheet_url = fields.String(metadata={
        "description": "The printable sheet of QR codes: a signed link that works for "
                       "EVENT_SHEET_LINK_TTL seconds (default an hour), and only while the "
                       "login that asked for it lasts."})


def _detail(event: Event, codes: list[EventCode]) -> dict[str, Any]:
    caller = g.caller
    token = sheet_token(event.id, current_app.config["EVENT_SHEET_LINK_TTL"], caller.id,
                        caller.role, caller.session_id)
    shown = sorted(codes, key=lambda c: (c.created_at, c.code))
    return {
        **{name: getattr(event, name) for name in (
            "id", "name", "type_code", "starts_at", "ends_at", "max_claims", "claims", "mode",
            "attributes", "created_at")},
        "code": display_code(shown[0].code) if event.mode == "shared" and shown else None,
        "codes": ([{"code": display_code(c.code), "claimed_at": c.claimed_at} for c in shown]
                  if event.mode == "single_use" else []),
        "sheet_url": url_for("event_pages.sheet", event_id=event.id, token=token),
    }


@blp.route("")
class Events(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, EventOut(many=True))
    @blp.paginate()
    @staff_required(*MANAGE)
    def get(self, pagination_parameters):
        """Events, the latest-starting first."""
        return paginate(select(Event).order_by(Event.starts_at.desc(), Event.id),
                        pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(EventIn)
    @blp.response(201, EventDetail)
    def post(self, args: dict[str, Any]):
        """Create an event: 201 with its code (shared) or codes (single_use), and a link
        to a printable sheet of QR codes."""
        action_type = db.session.scalar(select(ActionType)
                                        .where(ActionType.code == args["action_type"]))
        if action_type is None:
            abort(422, message="Unknown action type.", errors={"action_type": [
                f"unknown action type {args['action_type']!r}"]})
        event, codes = create_event(
            db.session, name=args["name"], action_type=action_type,
            starts_at=args["starts_at"], ends_at=args["ends_at"], mode=args["mode"],
            codes=args.get("codes") or 1, max_claims=args.get("max_claims"),
            attributes=args["attributes"], created_by=g.caller.id)
        audit("create", "event", event.id, name=event.name, mode=event.mode,
              codes=len(codes), action_type=event.type_code)
        db.session.commit()
        return _detail(event, codes)


@blp.route("/<uuid:event_id>")
@blp.doc(security=BEARER)
@blp.response(200, EventDetail)
@blp.alt_response(404, description="No such event")
@staff_required(*MANAGE)
def get_event(event_id: uuid.UUID):
    """An event with its code(s), how many claims it has had, and a fresh sheet link."""
    event = found_or_404(Event, event_id, "No such event.")
    codes = list(db.session.scalars(select(EventCode).where(EventCode.event_id == event.id)))
    return _detail(event, codes)
