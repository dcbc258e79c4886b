"""Staff side of privacy: card kinds' link secrets (shown once, on rotation)."""

from __future__ import annotations

from flask import g
from flask_smorest import abort
from marshmallow import Schema, fields

from ..extensions import Blueprint, db
from ..linking import CODE_DIGITS, rotate_secret
from .auth import BEARER, staff_required
from .common import audit
from .me import IDENTIFIER_KINDS

blp = Blueprint("admin_privacy", __name__, url_prefix="/v1/admin",
                description="Card kinds' link secrets")


class LinkSecretOut(Schema):
    kind = fields.String(metadata={"enum": ["travel_card", "leisure_card", "library_card",
                                            "resident_card"]})
    link_secret = fields.String(metadata={"description": "Shown only here: give it to the "
                                                         "card kind's issuer."})
    code_digits = fields.Integer()
    formula = fields.String()


FORMULA = ('first 8 bytes of HMAC-SHA256(link_secret, "<kind>:<NUMBER>:<YYYY-MM-DD UTC>") '
           "as a big-endian integer, mod 100000000, zero-padded to 8 digits; NUMBER is the "
           "card number's letters and digits, letters in capitals")


@blp.route("/card-kinds/<kind>/link-secret", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, LinkSecretOut)
@staff_required("scheme_manager")
def rotate_link_secret(kind: str):
    """A new link secret for a card kind (its issuer makes residents' link codes with it);
    codes made with the previous secret stop working. The secret is shown only here."""
    if kind not in IDENTIFIER_KINDS:
        abort(404, message=f"No card kind {kind!r}; kinds are {', '.join(IDENTIFIER_KINDS)}.")
    secret = rotate_secret(db.session, kind, g.caller.id)
    audit("rotate_link_secret", "card_kind", kind)
    db.session.commit()
    return {"kind": kind, "link_secret": secret, "code_digits": CODE_DIGITS,
            "formula": FORMULA}
