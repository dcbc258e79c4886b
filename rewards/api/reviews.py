"""Reviewers: the queue of flagged actions and self-reports, approve or reject."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, g
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from ..actions.reviews import ReviewRefused, approve, reject, self_report_status
from ..extensions import Blueprint, db
from ..models import Action
from ..models.review import Review, SelfReport, SelfReportPhoto
from ..notify import enqueue_points_earned
from ..retention import photo_removed_text
from .auth import BEARER, staff_required
from .checks import storable_text
from .common import audit, idempotent
from .contract import IDEMPOTENCY_KEY

blp = Blueprint("reviews", __name__, url_prefix="/v1/admin/reviews",
                description="The review queue: flagged actions and self-reports")

REVIEW = ("reviewer",)
KINDS = ("all", "flagged", "self_report")


class ReviewQueueArgs(Schema):
    kind = fields.String(load_default="all", validate=validate.OneOf(KINDS), metadata={
        "description": "flagged: held by a control or a failing rule; self_report: "
                       "members' own reports."})


class SelfReportBrief(Schema):
    id = fields.UUID()
    description = fields.String()
    photo_type = fields.String(allow_none=True)
    photo_size = fields.Integer(allow_none=True)
    photo_url = fields.String(allow_none=True)
    photo_removed = fields.String(allow_none=True, metadata={
        "description": "Set when the photo was deleted under retention "
                       "(SELF_REPORT_PHOTO_RETENTION_DAYS after the decision): "
                       "\"photo removed after N days\"; photo_url is then null."})


class ReviewDecisionOut(Schema):
    decision = fields.String(metadata={"enum": ["approved", "rejected"]})
    reason = fields.String(allow_none=True)
    points = fields.Integer(metadata={"description": "Awarded on approval; reversed on "
                                                     "rejection."})
    reviewer_id = fields.UUID(allow_none=True)
    decided_at = fields.DateTime()


class ReviewItem(Schema):
    id = fields.UUID(metadata={"description": "The action's id; approve and reject use it."})
    kind = fields.String(metadata={"enum": ["flagged", "self_report"]})
    status = fields.String(metadata={"enum": ["pending", "approved", "rejected"]})
    member_id = fields.UUID()
    type = fields.String()
    occurred_at = fields.DateTime()
    received_at = fields.DateTime()
    origin = fields.String(metadata={"enum": ["source", "csv", "claim", "self_report"]})
    source_id = fields.UUID(allow_none=True)
    external_ref = fields.String()
    attributes = fields.Dict()
    reason = fields.String(allow_none=True, metadata={"description": "Why it was held."})
    points = fields.Integer(metadata={"description": "Awarded so far (rules that did not "
                                                     "fail on it)."})
    self_report = fields.Nested(SelfReportBrief, allow_none=True)
    decision = fields.Nested(ReviewDecisionOut, allow_none=True)


class ReviewApproveIn(Schema):
    note = fields.String(
        allow_none=True, validate=[validate.Length(max=500), storable_text],
        metadata={"description": "Optional; shown to the member with a self-report's outcome."})


class ReviewRejectIn(Schema):
    reason = fields.String(required=True, validate=[
        validate.Length(max=500), storable_text,
        validate.Regexp(r"\s*\S", error="Say why: the member sees this reason."),
    ])


def _item(action: Action, report: SelfReport | None, review: Review | None) -> dict[str, Any]:
    status = "pending" if action.status == "flagged" else (
        review.decision if review is not None else self_report_status(action.status))
    return {
        "id": action.id,
        "kind": "self_report" if report is not None else "flagged",
        "status": status,
        "member_id": action.member_id,
        "type": action.type_code,
        "occurred_at": action.occurred_at,
        "received_at": action.created_at,
        "origin": action.origin,
        "source_id": action.source_id,
        "external_ref": action.external_ref,
        "attributes": action.attributes,
        "reason": action.flag_reason if review is None else review.held_reason,
        "points": action.points,
        "self_report": None if report is None else {
            "id": report.id, "description": report.description,
            "photo_type": report.photo_type, "photo_size": report.photo_size,
            "photo_url": (f"/v1/admin/reviews/{action.id}/photo"
                          if report.photo_type and report.photo_removed_at is None else None),
            "photo_removed": photo_removed_text(report),
        },
        "decision": None if review is None else {
            "decision": review.decision, "reason": review.reason, "points": review.points,
            "reviewer_id": review.reviewer_id, "decided_at": review.created_at,
        },
    }


def _load(action_id: uuid.UUID) -> dict[str, Any]:
    row = db.session.execute(
        select(Action, SelfReport, Review)
        .outerjoin(SelfReport, SelfReport.action_id == Action.id)
        .outerjoin(Review, Review.action_id == Action.id)
        .where(Action.id == action_id)
    ).first()
    if row is None or (row[0].status != "flagged" and row[2] is None):
        abort(404, message="No such action under review.")
    return _item(*row)


@blp.route("")
@blp.doc(security=BEARER)
@blp.arguments(ReviewQueueArgs, location="query")
@blp.response(200, ReviewItem(many=True))
@blp.paginate()
@staff_required(*REVIEW)
def queue(args: dict[str, Any], pagination_parameters):
    """Actions waiting for a decision, oldest first: held by a control, flagged because a
    rule failed on them, or self-reported. Each says why it is here."""
    stmt = (select(Action, SelfReport)
            .outerjoin(SelfReport, SelfReport.action_id == Action.id)
            .where(Action.status == "flagged"))
    if args["kind"] == "self_report":
        stmt = stmt.where(SelfReport.id.is_not(None))
    elif args["kind"] == "flagged":
        stmt = stmt.where(SelfReport.id.is_(None))
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
    pagination_parameters.item_count = int(total or 0)
    page, size = pagination_parameters.page, pagination_parameters.page_size
    rows = db.session.execute(stmt.order_by(Action.created_at, Action.id)
                              .limit(size).offset((page - 1) * size))
    return [_item(action, report, None) for action, report in rows]


@blp.route("/<uuid:action_id>")
@blp.doc(security=BEARER)
@blp.response(200, ReviewItem)
@blp.alt_response(404, description="No such action waiting for or given a decision")
@staff_required(*REVIEW)
def one(action_id: uuid.UUID):
    """One item: pending, or decided (with the decision)."""
    return _load(action_id)


@blp.route("/<uuid:action_id>/photo")
@blp.doc(security=BEARER)
@blp.response(200, content_type="image/jpeg", description="The photo (JPEG or PNG)")
@blp.alt_response(404, description="No such self-report, or it has no photo")
@blp.alt_response(410, description="The photo was deleted under retention")
@staff_required(*REVIEW)
def photo(action_id: uuid.UUID):
    """The photo sent with a self-report (410 once deleted under retention,
    SELF_REPORT_PHOTO_RETENTION_DAYS after the decision)."""
    report = db.session.scalar(select(SelfReport).where(SelfReport.action_id == action_id))
    if report is not None and report.photo_removed_at is not None:
        abort(410, message=f"The {photo_removed_text(report)} (retention).")
    row = db.session.execute(
        select(SelfReport.photo_type, SelfReportPhoto.content)
        .join(SelfReportPhoto, SelfReportPhoto.self_report_id == SelfReport.id)
        .where(SelfReport.action_id == action_id)
    ).first()
    if row is None:
        abort(404, message="No photo for this action.")
    return Response(row[1], mimetype=row[0], headers={
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
        "Content-Disposition": "inline"})


def _decide(action_id: uuid.UUID, verb: str, run: Any, **details: Any) -> Response:
    def produce() -> tuple[dict[str, Any], int]:
        try:
            decided = run()
        except ReviewRefused as refused:
            db.session.rollback()
            abort(refused.status, message=refused.message, reason=refused.reason)
        audit(verb, "action", action_id, member_id=decided.action.member_id,
              points=decided.review.points, held_reason=decided.review.held_reason,
              rule_errors=decided.rule_errors, **details)
        if verb == "approve" and (decided.review.points or 0) > 0:
            # Told in the approval's own transaction: an approval is a batch of one.
            enqueue_points_earned(db.session, {str(decided.action.member_id):
                                               [decided.review.points, 1]})
        db.session.flush()
        return ReviewItem().dump(_load(action_id)), 200

    return idempotent(f"staff:{g.caller.id}:review:{action_id}", produce)


@blp.route("/<uuid:action_id>/approve", methods=["POST"])
@blp.doc(security=BEARER, parameters=[IDEMPOTENCY_KEY])
@staff_required(*REVIEW)
@blp.arguments(ReviewApproveIn, required=False)
@blp.response(200, ReviewItem)
@blp.alt_response(404, description="No such action")
@blp.alt_response(409, description="Not waiting for review (decided already, or revoked)")
def approve_one(args: dict[str, Any], action_id: uuid.UUID):
    """Approve: the action is awarded now through the rules (caps counted in the windows
    it happened in) and becomes accepted. Audited."""
    note = (args.get("note") or "").strip() or None
    return _decide(action_id, "approve",
                   lambda: approve(db.session, action_id, g.caller.id, note), note=note)


@blp.route("/<uuid:action_id>/reject", methods=["POST"])
@blp.doc(security=BEARER, parameters=[IDEMPOTENCY_KEY])
@staff_required(*REVIEW)
@blp.arguments(ReviewRejectIn)
@blp.response(200, ReviewItem)
@blp.alt_response(404, description="No such action")
@blp.alt_response(409, description="Not waiting for review (decided already, or revoked)")
def reject_one(args: dict[str, Any], action_id: uuid.UUID):
    """Reject with a reason the member sees: the action is revoked and anything it had
    earned is reversed. Audited."""
    reason = args["reason"].strip()
    return _decide(action_id, "reject",
                   lambda: reject(db.session, action_id, g.caller.id, reason), reason=reason)
