"""What an app shows about the scheme itself, to anyone: the kinds of action that earn
points (names, not codes) and the wards residents choose theirs from."""

from __future__ import annotations

from marshmallow import Schema, fields
from sqlalchemy import select

from ..extensions import Blueprint, db
from ..models import ActionType
from ..models.scheme import CATEGORIES
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
