"""A resident's own ways in: event claim codes and self-reported actions."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select

from ..actions.claims import ClaimRefused, claim
from ..actions.reviews import (
    photo_type,
    reports_today,
    reports_waiting,
    self_report_status,
    submit_self_report,
)
from ..extensions import db
from ..members import lock_member
from ..models import Action, ActionType, utcnow
from ..models.review import Review, SelfReport
from ..notify import enqueue_points_earned
from ..photos import UnreadablePhoto, without_metadata
from ..reasons import Reason
from ..retention import photo_removed_text
from .auth import BEARER, current_member, member_required
from .checks import storable_text
from .common import idempotent
from .contract import IDEMPOTENCY_KEY
from .me import AwardSchema
from .uploads import FileUpload, UploadBlueprint, body_limit, read_upload

blp = UploadBlueprint("me_actions", __name__, url_prefix="/v1/me",
                      description="A resident's event claims and self-reported actions")

# -- claim codes --------------------------------------------------------------------

class EventClaimIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64), metadata={
        "description": "The code from the event's QR (ABCD-EFGH-JKMN; spaces, hyphens and "
                       "case do not matter)."})


class EventClaimOut(Schema):
    id = fields.UUID(metadata={"description": "The action the claim became."})
    type = fields.String(attribute="type_code")
    occurred_at = fields.DateTime()
    status = fields.String(metadata={
        "enum": ["accepted", "flagged"],
        "description": "accepted, or flagged: held for review by a control (points 0 until "
                       "a reviewer approves; reason says why)."})
    points = fields.Integer()
    reason = fields.String(attribute="flag_reason", allow_none=True)
    awards = fields.List(fields.Nested(AwardSchema))
    event_id = fields.UUID()
    event_name = fields.String()
    created_at = fields.DateTime()


@blp.route("/claims", methods=["POST"])
@blp.doc(security=BEARER, parameters=[IDEMPOTENCY_KEY])
@member_required
@blp.arguments(EventClaimIn)
@blp.response(201, EventClaimOut)
@blp.alt_response(404, description="No such code")
@blp.alt_response(409, description="Claims not open yet; already claimed by this member; a "
                                   "single-use code used already; the event is full")
@blp.alt_response(410, description="Claims for the event have closed")
def post_claim(args: dict[str, Any]):
    """Claim an event with its code: 201, the action it became and its points.

    Each member claims an event once. The claim is an action of the event's type and
    goes through the scheme's controls and rules like a source's."""
    member = current_member()

    def produce() -> tuple[dict[str, Any], int]:
        try:
            claimed = claim(db.session, member, args["code"])
        except ClaimRefused as refused:
            db.session.rollback()
            abort(refused.status, message=refused.message, reason=refused.reason)
        db.session.flush()
        action = claimed.action
        if action.points > 0:  # a claim is a batch of one: told in its own transaction
            enqueue_points_earned(db.session, {str(member.id): [action.points, 1]})
        body = EventClaimOut().dump({
            "id": action.id, "type_code": action.type_code, "occurred_at": action.occurred_at,
            "status": action.status, "points": action.points, "flag_reason": action.flag_reason,
            "awards": list(action.awards), "event_id": claimed.event.id,
            "event_name": claimed.event.name, "created_at": action.created_at,
        })
        return body, 201

    return idempotent(f"member:{member.id}:claims", produce)


# -- self-reports -------------------------------------------------------------------

class SelfReportIn(Schema):
    type = fields.String(required=True, validate=storable_text,
                         metadata={"description": "An action type code."})
    occurred_at = fields.AwareDateTime(required=True, metadata={
        "description": "When it happened (RFC 3339 with a zone); not in the future nor "
                       "older than the scheme's window (30 days)."})
    description = fields.String(required=True, validate=[
        validate.Length(max=2000), storable_text,
        validate.Regexp(r"\s*\S", error="Say what you did: the description cannot be blank."),
    ])
    photo = FileUpload(metadata={"description": "Optional evidence: a JPEG or PNG, at most "
                                            "SELF_REPORT_PHOTO_MAX_BYTES (2 MB)."})


class SelfReportOut(Schema):
    id = fields.UUID()
    type = fields.String()
    occurred_at = fields.DateTime()
    description = fields.String()
    has_photo = fields.Boolean()
    photo_removed = fields.String(allow_none=True, metadata={
        "description": "\"photo removed after N days\" once the photo was deleted under "
                       "retention (SELF_REPORT_PHOTO_RETENTION_DAYS after the decision)."})
    status = fields.String(metadata={"enum": ["pending", "approved", "rejected"]})
    reason = fields.String(allow_none=True, metadata={
        "description": "The reviewer's words: why it was rejected (or a note on approval)."})
    points = fields.Integer(metadata={"description": "Awarded on approval."})
    action_id = fields.UUID()
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


def _reports() -> Select[Any]:
    return (select(SelfReport, Action, Review)
            .join(Action, Action.id == SelfReport.action_id)
            .outerjoin(Review, Review.action_id == SelfReport.action_id))


def _report_out(report: SelfReport, action: Action, review: Review | None) -> dict[str, Any]:
    return {
        "id": report.id, "type": action.type_code, "occurred_at": action.occurred_at,
        "description": report.description, "has_photo": report.photo_type is not None,
        "photo_removed": photo_removed_text(report),
        "status": self_report_status(action.status),
        "reason": review.reason if review is not None else None,
        "points": action.points, "action_id": action.id, "created_at": report.created_at,
        "decided_at": review.created_at if review is not None else None,
    }


@blp.route("/self-reports")
class SelfReports(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, SelfReportOut(many=True))
    @blp.paginate()
    @member_required
    def get(self, pagination_parameters):
        """The resident's self-reports, newest first, with the reviewer's decision."""
        stmt = _reports().where(SelfReport.member_id == current_member().id)
        total = db.session.scalar(select(func.count(SelfReport.id))
                                  .where(SelfReport.member_id == current_member().id))
        pagination_parameters.item_count = int(total or 0)
        page, size = pagination_parameters.page, pagination_parameters.page_size
        rows = db.session.execute(stmt.order_by(SelfReport.created_at.desc(), SelfReport.id)
                                  .limit(size).offset((page - 1) * size))
        return [_report_out(*row) for row in rows]

    @blp.doc(security=BEARER)
    @member_required
    @body_limit("SELF_REPORT_PHOTO_MAX_BYTES")
    @blp.arguments(SelfReportIn, location="form")
    @blp.response(202, SelfReportOut)
    @blp.alt_response(413, description="The photo (or the whole body) is too large")
    @blp.alt_response(422, description="Unknown type, a time outside the window, a blank "
                                       "description, or a photo that is not JPEG or PNG")
    @blp.alt_response(409, description="Too many of the member's self-reports are waiting for "
                                       "a reviewer (too_many_pending)")
    @blp.alt_response(429, description="Too many self-reports in the last 24 hours")
    def post(self, args: dict[str, Any]):
        """Report an action yourself, with a description and optionally a photo
        (multipart/form-data). 202: it waits for a reviewer and earns nothing until
        approved; GET /v1/me/self-reports shows the outcome and the reason. At most
        SELF_REPORTS_PER_DAY (5) in 24 hours, and SELF_REPORTS_PENDING_MAX (15) waiting
        for a reviewer at once."""
        member = current_member()
        config = current_app.config
        now = utcnow()
        action_type = db.session.scalar(select(ActionType).where(ActionType.code == args["type"]))
        if action_type is None:
            abort(422, message="Unknown action type.",
                  errors={"type": [f"unknown action type {args['type']!r}"]})
        occurred_at = args["occurred_at"]
        if occurred_at > now + timedelta(seconds=config["ACTION_MAX_FUTURE_SECONDS"]):
            abort(422, message="occurred_at is in the future.",
                  errors={"occurred_at": ["It cannot be in the future."]})
        if occurred_at < now - timedelta(days=config["ACTION_MAX_AGE_DAYS"]):
            abort(422, message="occurred_at is too long ago.", errors={"occurred_at": [
                f"Actions older than {config['ACTION_MAX_AGE_DAYS']} days cannot be reported."]})
        photo = None
        if args.get("photo") is not None:
            photo = read_upload(args["photo"], config["SELF_REPORT_PHOTO_MAX_BYTES"], "photo")
            if photo and photo_type(photo) is None:
                abort(422, message="The photo must be a JPEG or PNG image.",
                      errors={"photo": ["Only JPEG or PNG images are accepted (checked by "
                                        "the file's content, not its name)."]})
            if photo:
                try:
                    photo = without_metadata(photo)[0]
                except UnreadablePhoto as problem:
                    abort(422, message="The photo could not be read.",
                          errors={"photo": [f"{str(problem).capitalize()}."]})
            photo = photo or None
        limit = config["SELF_REPORTS_PER_DAY"]
        lock_member(db.session, member.id)  # concurrent reports take turns: the count is exact
        count, oldest = reports_today(db.session, member.id, now)
        if count >= limit:
            wait = max(1, math.ceil((oldest + timedelta(days=1) - now).total_seconds()))
            abort(429, message=f"At most {limit} self-reports in 24 hours; try again later.",
                  headers={"Retry-After": str(wait)})
        waiting = reports_waiting(db.session, member.id)
        if waiting >= config["SELF_REPORTS_PENDING_MAX"]:
            abort(409, reason=Reason.TOO_MANY_PENDING,
                  message=f"You have {waiting} self-reports waiting for a reviewer, the most "
                          f"allowed; report more once some are decided.")
        report = submit_self_report(db.session, member, action_type, occurred_at,
                                    args["description"].strip(), photo, now)
        action = db.session.get(Action, report.action_id)
        db.session.commit()
        return _report_out(report, action, None)

