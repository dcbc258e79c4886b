"""Council desk staff enrolling residents without a phone or email: a card, a postcode
district and a PIN. Such a member earns from the card's taps like anyone, and redeems at
partners with the card and the PIN."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, g
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..extensions import Blueprint, db
from ..mail import send_mail
from ..members import (
    UK_POSTCODE_DISTRICT,
    CardAlreadyLinked,
    enrol_member,
    normalise_postcode_district,
    pin_problem,
    set_pin,
    unlock_pin,
)
from ..models import Member
from ..notice_text import mail_language, text
from ..reasons import Reason
from .auth import BEARER, staff_required
from .common import audit
from .me import IDENTIFIER_KINDS

blp = Blueprint("desk", __name__, url_prefix="/v1/admin/members",
                description="Assisted enrolment at council desks")

DESK = ("desk",)


class DeskCardIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_KINDS))
    number = fields.String(required=True, load_only=True,
                           validate=validate.Regexp(r"^[0-9A-Za-z \-]{6,32}$",
                                                    error="6 to 32 letters and digits."))


class DeskPinIn(Schema):
    pin = fields.String(required=True, load_only=True, metadata={
        "description": "4 to 6 digits, not one digit repeated nor a run such as 1234."})

    @validates_schema
    def check_pin(self, data: dict[str, Any], **_: Any) -> None:
        problem = pin_problem(data.get("pin", ""))
        if problem:
            raise ValidationError({"pin": [problem]})


def _district_pattern() -> str:
    return str(current_app.config.get("POSTCODE_DISTRICT_PATTERN") or UK_POSTCODE_DISTRICT)


class DeskEnrolIn(DeskPinIn):
    card = fields.Nested(DeskCardIn, required=True)
    postcode_district = fields.String(required=True, metadata={
        "description": "The part of the postcode the scheme records "
                       "(POSTCODE_DISTRICT_PATTERN; in the UK the outward part, e.g. LS6)."})

    @validates_schema
    def check_district(self, data: dict[str, Any], **_: Any) -> None:
        if "postcode_district" in data and not normalise_postcode_district(
                data["postcode_district"], _district_pattern()):
            raise ValidationError({"postcode_district": [
                "Not a postcode district as this scheme records them "
                "(in the UK the part before the space, e.g. LS6 or LS10)."]})


class DeskCardOut(Schema):
    id = fields.UUID()
    kind = fields.String(metadata={"enum": list(IDENTIFIER_KINDS)})
    last4 = fields.String()


class DeskEnrolledOut(Schema):
    id = fields.UUID()
    postcode_district = fields.String()
    card = fields.Nested(DeskCardOut)
    joined_at = fields.DateTime()
    enrolled_by = fields.UUID()


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@staff_required(*DESK)
@blp.arguments(DeskEnrolIn)
@blp.response(201, DeskEnrolledOut)
@blp.alt_response(409, description="The card is linked to an account already")
def enrol(args: dict[str, Any]):
    """Enrol a resident at a desk: no email, a card and a PIN. Audited (never the PIN)."""
    district = normalise_postcode_district(args["postcode_district"], _district_pattern())
    card = args["card"]
    try:
        member, identifier = enrol_member(db.session, card["kind"], card["number"], district,
                                          args["pin"], g.caller.id)
    except CardAlreadyLinked:
        db.session.rollback()
        abort(409, reason=Reason.CARD_LINKED,
              message="This card is already linked to an account; look the member up "
                           "instead of enrolling them again.")
    audit("enrol", "member", member.id, card_kind=identifier.kind, card_last4=identifier.last4,
          postcode_district=district)
    db.session.commit()
    return {"id": member.id, "postcode_district": member.postcode_district,
            "card": identifier, "joined_at": member.joined_at, "enrolled_by": member.enrolled_by}


@blp.route("/<uuid:member_id>/pin", methods=["POST"])
@blp.doc(security=BEARER)
@staff_required(*DESK)
@blp.arguments(DeskPinIn)
@blp.response(204)
@blp.alt_response(404, description="No such member")
def reset_pin(args: dict[str, Any], member_id: uuid.UUID):
    """Set a new PIN for a member who has forgotten theirs (after the desk has checked who
    they are); it also lifts a lockout after wrong PINs. Audited (never the PIN), and a
    member with an email address is told: a PIN spends their points at a till."""
    member = db.session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        abort(404, message="No such member.")
    set_pin(member, args["pin"])
    audit("reset_pin", "member", member.id)
    db.session.commit()
    if member.email:
        scheme = current_app.config["SCHEME_NAME"]
        try:
            send_mail(member.email, *text("pin_set", mail_language(member.locale),
                                          scheme=scheme))
        except Exception:  # the PIN stands; the notice is a courtesy
            current_app.logger.exception("could not tell a member of a new PIN")


class PinStateOut(Schema):
    id = fields.UUID()
    pin_locked_until = fields.DateTime(allow_none=True)
    pin_blocked_at = fields.DateTime(allow_none=True)
    pin_locks = fields.Integer()


@blp.route("/<uuid:member_id>/pin-unlock", methods=["POST"])
@blp.doc(security=BEARER)
@staff_required("desk", "scheme_manager")
@blp.response(200, PinStateOut)
@blp.alt_response(404, description="No such member")
def unlock(member_id: uuid.UUID):
    """Unlock a card whose PIN is locked or blocked after wrong tries, keeping the PIN
    (after the desk has checked who the member is). Audited with what was lifted."""
    member = db.session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        abort(404, message="No such member.")
    audit("unlock_pin", "member", member.id, pin_locks=member.pin_locks,
          pin_locked_until=member.pin_locked_until, pin_blocked_at=member.pin_blocked_at)
    unlock_pin(member)
    db.session.commit()
    return member
