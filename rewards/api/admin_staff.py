"""Staff accounts, for admins: who has access, and taking an account out of use."""

from __future__ import annotations

import uuid

from flask import g
from flask_smorest import abort
from marshmallow import Schema, fields
from sqlalchemy import select

from ..extensions import Blueprint, db
from ..models import StaffUser
from ..staff_accounts import Actor, StaffRefused, deactivate
from .auth import BEARER, staff_required
from .common import found_or_404, paginate

blp = Blueprint("admin_staff", __name__, url_prefix="/v1/admin/staff",
                description="Staff accounts (admins only)")


class StaffOut(Schema):
    id = fields.UUID()
    email = fields.String()
    role = fields.String(metadata={"enum": ["admin", "scheme_manager", "reviewer", "analyst",
                                            "desk", "partner"]})
    partner_id = fields.UUID(allow_none=True)
    active = fields.Boolean()
    created_at = fields.DateTime()


class StaffListArgs(Schema):
    active = fields.Boolean(load_default=None, allow_none=True,
                            metadata={"description": "Only active (true) or inactive (false)."})


@blp.route("")
@blp.doc(security=BEARER)
@blp.arguments(StaffListArgs, location="query")
@blp.response(200, StaffOut(many=True))
@blp.paginate()
@staff_required()
def list_staff(args, pagination_parameters):
    """Staff and partner user accounts, by email."""
    query = select(StaffUser).order_by(StaffUser.email)
    if args.get("active") is not None:
        query = query.where(StaffUser.active.is_(args["active"]))
    return paginate(query, pagination_parameters)


@blp.route("/<uuid:staff_id>/deactivate", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, StaffOut)
@blp.alt_response(404, description="No such staff account")
@blp.alt_response(409, description="Your own account, or the last active admin")
@staff_required()
def deactivate_staff(staff_id: uuid.UUID):
    """Take an account out of use: it can no longer log in and the tokens it holds stop
    working. Deactivating an inactive account changes nothing. Audited."""
    user = found_or_404(StaffUser, staff_id, "No such staff account.", lock=True)
    try:
        deactivate(db.session, user, Actor(g.caller.id, g.caller.role))
    except StaffRefused as refused:
        db.session.rollback()
        abort(refused.status, message=refused.message)
    db.session.commit()
    return user
