"""Council admins supporting a member: the support view and manual point adjustments."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import current_app, g
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, pre_load, validate
from sqlalchemy import func, select

from ..extensions import Blueprint, db
from ..ledger import (
    MAX_ADJUSTMENT,
    NotEnoughPoints,
    account_balance,
    adjust,
    expiring,
    member_account,
    member_balances,
    member_lots,
)
from ..models import Account, Action, Identifier, Member, Posting, PostingLine, Reward, utcnow
from ..reasons import Reason
from .auth import BEARER, staff_required
from .common import audit, found_or_404, idempotent
from .contract import IDEMPOTENCY_KEY

blp = Blueprint("admin_members", __name__, url_prefix="/v1/admin/members",
                description="Member support: balances, counts and point adjustments")

class ExpiringOut(Schema):
    points = fields.Integer()
    expires_at = fields.DateTime()


class SupportBalances(Schema):
    available = fields.Integer()
    pending = fields.Integer()
    lifetime_earned = fields.Integer()
    expired = fields.Integer(metadata={"description": "Points that expired unspent, in all."})
    adjusted = fields.Integer(metadata={"description": "Net staff adjustments (+ given)."})
    written_off = fields.Integer(
        metadata={"description": "Points of revoked actions the member had spent already."})


class SupportCounts(Schema):
    actions = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "Actions by status."})
    rewards = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "Rewards by status."})
    cards = fields.Integer(metadata={"description": "Linked cards (numbers are never shown)."})
    adjustments = fields.Integer()


class MemberSupportView(Schema):
    id = fields.UUID()
    ward = fields.String(allow_none=True)
    joined_at = fields.DateTime()
    erased_at = fields.DateTime(allow_none=True)
    balances = fields.Nested(SupportBalances)
    expiring = fields.List(fields.Nested(ExpiringOut))
    counts = fields.Nested(SupportCounts)


class AdjustmentIn(Schema):
    points = fields.Integer(
        required=True, strict=True,
        validate=[validate.Range(min=-MAX_ADJUSTMENT, max=MAX_ADJUSTMENT),
                  validate.NoneOf([0], error="An adjustment cannot be zero points.")],
        metadata={"description": "Points to give (positive) or take (negative)."})
    reason = fields.String(
        required=True,
        validate=[validate.Length(max=500),
                  validate.Regexp(r"\s*\S", error="Say why: the reason cannot be blank.")],
        metadata={"description": "Why; shown on the member's statement and in the audit log."})

    @pre_load
    def points_are_numbers(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("points"), bool):
            raise ValidationError({"points": ["Not a valid integer."]})
        return data


class AdjustmentOut(Schema):
    id = fields.UUID(metadata={"description": "The ledger posting."})
    member_id = fields.UUID()
    points = fields.Integer()
    reason = fields.String()
    expires_at = fields.DateTime(allow_none=True,
                                 metadata={"description": "When given points expire."})
    available = fields.Integer(metadata={"description": "The member's balance after it."})
    created_at = fields.DateTime()


def _member(member_id: uuid.UUID) -> Member:
    return found_or_404(Member, member_id, "No such member.")


def _by_status(model: Any, member_id: uuid.UUID) -> dict[str, int]:
    rows = db.session.execute(
        select(model.status, func.count(model.id)).where(model.member_id == member_id)
        .group_by(model.status)
    )
    return {status: int(count) for status, count in rows}


def _scheme_side(member_id: uuid.UUID) -> dict[str, int]:
    """The scheme accounts' side of the member's postings, per account."""
    rows = db.session.execute(
        select(Account.code, func.sum(PostingLine.points))
        .join(PostingLine, PostingLine.account_id == Account.id)
        .join(Posting, Posting.id == PostingLine.posting_id)
        .where(Posting.member_id == member_id, Account.member_id.is_(None))
        .group_by(Account.code)
    )
    return {code: int(total or 0) for code, total in rows}


@blp.route("/<uuid:member_id>")
@blp.doc(security=BEARER)
@blp.response(200, MemberSupportView)
@blp.alt_response(404, description="No such member")
@staff_required()
def support_view(member_id: uuid.UUID):
    """A member as support sees them.

    Balances, what expires in the next 30 days, and counts of actions, rewards, cards
    and adjustments. No contact details or card numbers. Each look is audit-logged."""
    member = _member(member_id)
    balances = member_balances(db.session, member.id)
    scheme = _scheme_side(member.id)
    soon = timedelta(days=current_app.config["POINTS_EXPIRING_SOON_DAYS"])
    adjustments = db.session.scalar(
        select(func.count(Posting.id)).where(Posting.member_id == member.id,
                                             Posting.kind == "adjustment"))
    view = {
        "id": member.id,
        "ward": member.ward,
        "joined_at": member.joined_at,
        "erased_at": member.erased_at,
        "balances": {
            "available": balances.available,
            "pending": balances.pending,
            "lifetime_earned": balances.lifetime_earned,
            "expired": scheme.get("scheme:expired", 0),
            "adjusted": -scheme.get("scheme:adjustments", 0),
            "written_off": -scheme.get("scheme:written_off", 0),
        },
        "expiring": [{"points": lot.points, "expires_at": lot.expires_at}
                     for lot in expiring(member_lots(db.session, member.id), utcnow(), soon)],
        "counts": {
            "actions": _by_status(Action, member.id),
            "rewards": _by_status(Reward, member.id),
            "cards": int(db.session.scalar(select(func.count(Identifier.id))
                                           .where(Identifier.member_id == member.id)) or 0),
            "adjustments": int(adjustments or 0),
        },
    }
    audit("view", "member", member.id)
    db.session.commit()
    return view


@blp.route("/<uuid:member_id>/adjustments", methods=["POST"])
@blp.doc(security=BEARER, parameters=[IDEMPOTENCY_KEY])
@staff_required()
@blp.arguments(AdjustmentIn)
@blp.response(201, AdjustmentOut)
@blp.alt_response(404, description="No such member")
@blp.alt_response(409, description="Would take the member's available points below zero, "
                                   "or the account is erased")
def post_adjustment(args: dict[str, Any], member_id: uuid.UUID):
    """Give or take points by hand, with a reason.

    Given points expire like earned ones; taking never leaves the member's available
    points below zero (409). Send an Idempotency-Key so a retry adjusts once. The
    reason shows on the member's statement; the adjustment is audit-logged."""
    member = _member(member_id)
    if member.erased_at is not None:
        abort(409, message="This account has been erased; its points cannot change.",
              reason=Reason.ACCOUNT_ERASED)
    points, reason = args["points"], args["reason"].strip()

    def produce() -> tuple[dict[str, Any], int]:
        try:
            posting = adjust(db.session, member.id, points, reason)
        except NotEnoughPoints as refused:
            db.session.rollback()
            abort(409, reason=Reason.INSUFFICIENT_POINTS,
                  message=f"The member has {refused.available} points available; "
                               f"an adjustment cannot take {refused.wanted}.")
        db.session.flush()
        audit("adjust_points", "member", member.id, points=points, reason=reason,
              posting_id=posting.id)
        body = AdjustmentOut().dump({
            "id": posting.id,
            "member_id": member.id,
            "points": points,
            "reason": reason,
            "expires_at": posting.expires_at,
            "available": account_balance(db.session, member_account(db.session, member.id).id),
            "created_at": posting.created_at,
        })
        return body, 201

    return idempotent(f"staff:{g.caller.id}:member:{member.id}:adjustments", produce)
