"""What an app shows about the scheme itself, to anyone: the kinds of action that earn
points (names, not codes) and the wards residents choose theirs from."""

from __future__ import annotations

from marshmallow import Schema, fields
from sqlalchemy import select

from ..extensions import Blueprint, db
from ..models import ActionType
from ..models.scheme import CATEGORIES
from ..wards import all_wards
from .caching import cached

blp = Blueprint("scheme", __name__, url_prefix="/v1", description="The scheme, for apps")


class PublicActionType(Schema):
    code = fields.String(metadata={"description": "What sources and self-reports send."})
    name = fields.String(metadata={"description": "What to show a resident."})
    description = fields.String(allow_none=True)
    category = fields.String(metadata={"enum": list(CATEGORIES)})


@blp.route("/action-types")
@cached(300, private=False)
@blp.response(200, PublicActionType(many=True))
def action_types():
    """The kinds of action that earn points, with names and descriptions to show."""
    return db.session.scalars(select(ActionType).order_by(ActionType.name, ActionType.code))


class WardOut(Schema):
    code = fields.String(metadata={"description": "The council's code for the ward."})
    name = fields.String()


@blp.route("/wards")
@cached(300, private=False)
@blp.response(200, WardOut(many=True))
def wards():
    """The scheme's wards, by name: a member's ward (PATCH /v1/me) is one of these, or
    comes from their postcode."""
    return all_wards(db.session)
