"""What an app shows about the scheme itself, to anyone: the kinds of action that earn
points (names, not codes) and the wards residents choose theirs from."""

from __future__ import annotations

from flask import request
from marshmallow import Schema, fields
from sqlalchemy import select

from ..extensions import Blueprint, db
from ..i18n import choose, preferences
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
    language = fields.String(metadata={"description": "The language name and description "
                                                      "are in (English when not translated)."})


@blp.route("/action-types")
@cached(300, private=False)
@blp.response(200, PublicActionType(many=True))
def action_types():
    """The kinds of action that earn points, with names and descriptions to show, in the
    language asked for (Accept-Language) where there is a translation."""
    wanted = preferences(request.headers.get("Accept-Language"), None)
    rows = []
    for kind in db.session.scalars(select(ActionType).order_by(ActionType.name, ActionType.code)):
        language = choose(wanted, kind.translations or {})
        text = (kind.translations or {}).get(language) or {}
        rows.append({"code": kind.code, "category": kind.category, "language": language,
                     "name": text.get("name") or kind.name,
                     "description": text.get("description") or kind.description})
    return rows


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
