"""A resident's privacy rights: their data as JSON, and consent per purpose."""

from __future__ import annotations

from flask import Response, json
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from ..consents import ConsentRefused, current, history, record
from ..export import member_export
from ..extensions import Blueprint, db
from ..models import utcnow
from ..models.privacy import CONSENT_PURPOSES
from .auth import BEARER, current_member, member_required
from .checks import List

blp = Blueprint("me_privacy", __name__, url_prefix="/v1/me",
                description="A resident's data and consents")


class ConsentStateOut(Schema):
    purpose = fields.String()
    granted = fields.Boolean()
    version = fields.String(allow_none=True)
    given_at = fields.DateTime(allow_none=True)
    withdrawn_at = fields.DateTime(allow_none=True)


class ConsentEventOut(Schema):
    purpose = fields.String()
    granted = fields.Boolean()
    version = fields.String(allow_none=True)
    at = fields.DateTime(attribute="created_at")


class ConsentsOut(Schema):
    consents = fields.List(fields.Nested(ConsentStateOut))
    history = fields.List(fields.Nested(ConsentEventOut))


class ConsentIn(Schema):
    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    granted = fields.Boolean(required=True)
    version = fields.String(load_default=None, validate=validate.Length(min=1, max=32))


class ConsentsIn(Schema):
    consents = List(fields.Nested(ConsentIn), required=True,
                           validate=validate.Length(min=1, max=len(CONSENT_PURPOSES)))


def _consents_answer() -> dict[str, object]:
    member_id = current_member().id
    return {"consents": current(db.session, member_id),
            "history": history(db.session, member_id)}


@blp.route("/consents")
class Consents(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, ConsentsOut)
    @member_required
    def get(self):
        """Each purpose's standing choice, and every choice made, oldest first."""
        return _consents_answer()

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(ConsentsIn)
    @blp.response(200, ConsentsOut)
    def put(self, args):
        """Give or withdraw consent for purposes (history is kept). Withdrawing
        travel_data stops sources' journeys being recorded for this account."""
        member = current_member()
        for index, item in enumerate(args["consents"]):
            try:
                record(db.session, member, item["purpose"], item["granted"], item["version"])
            except ConsentRefused as refused:
                db.session.rollback()
                abort(422, message=refused.message,
                      errors={"consents": {str(index): {"granted": [refused.message]}}})
        db.session.commit()
        return _consents_answer()


class MemberExport(Schema):
    """GET /v1/me/export: what rewards/export.py writes, part by part."""
    format = fields.String(metadata={"description": "The export's format and version."})
    exported_at = fields.DateTime()
    member = fields.Dict(metadata={"description": "The profile."})
    cards = fields.List(fields.Dict(), metadata={"description": "Linked cards (kind, last 4)."})
    devices = fields.List(fields.Dict())
    notification_choices = fields.List(fields.Dict())
    consents = fields.Dict(metadata={"description": "current and history."})
    balance = fields.Dict()
    ledger = fields.List(fields.Dict())
    actions = fields.List(fields.Dict())
    self_reports = fields.List(fields.Dict())
    reviews = fields.List(fields.Dict())
    rewards = fields.List(fields.Dict())
    donations = fields.List(fields.Dict())
    events = fields.List(fields.Dict(), metadata={
        "description": "Events claimed (name, code used, when)."})
    logins = fields.List(fields.Dict(), metadata={
        "description": "Logins to the app: when each started and ended, and why it ended."})


@blp.route("/export")
@blp.doc(security=BEARER)
@blp.response(200, MemberExport, content_type="application/json",
              description="Everything held about the member (docs/security.md)")
@member_required
def export():
    """Everything the scheme holds about you, as one JSON document."""
    body = member_export(db.session, current_member(), utcnow())
    return Response(json.dumps(body), mimetype="application/json", headers={
        "Content-Disposition": 'attachment; filename="my-rewards-data.json"',
        "Cache-Control": "no-store"})
