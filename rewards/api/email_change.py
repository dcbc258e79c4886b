"""Changing a resident's email address: the new address is confirmed before it is used.

The confirmation is a signed token mailed to the new address (valid 24 hours, bound to
the address the account has now, so it stops working once that changes); the app sends
it back, signed in, and only then does the address change. The old address is told."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import timedelta

from flask import current_app
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import delete, select

from ..extensions import Blueprint, db
from ..mail import send_mail
from ..members import normalise_email, otp_address
from ..models import Member, OtpCode, utcnow
from ..notice_text import mail_language, text
from ..reasons import Reason
from ..security import bearer_claims, issue_token, read_token
from ..sessions import revoke_all
from ..throttle import lock_row, throttle_key
from .auth import BEARER, current_member, member_required
from .auth_views import Accepted
from .checks import MemberEmail
from .me import MemberSchema

blp = Blueprint("email_change", __name__, url_prefix="/v1/me/email",
                description="Changing a resident's email address")

CONFIRM_TTL = 24 * 3600
KIND = "email_change"


class EmailChangeIn(Schema):
    email = MemberEmail(required=True, validate=validate.Length(max=254))


class EmailConfirmIn(Schema):
    token = fields.String(required=True, validate=validate.Length(min=10, max=2000))


def _bound_to(email: str | None) -> str:
    return hashlib.sha256(f"email-change:{email or ''}".encode()).hexdigest()[:32]


def _count_mail_to(address: str) -> int | None:
    """Count a confirmation asked for `address`, across all accounts: None if it may go,
    else the seconds until it may. Accounts cost nothing, so a limit per caller alone
    would let a few of them fill anyone's mailbox; an address takes as many
    confirmations an hour as it takes login codes (OTP_PER_HOUR). Requests for one
    address take turns on its counter row (rewards/throttle.py), which holds a digest,
    never the address; the count is the row's `failures` within the hour from
    `updated_at`. Commits."""
    row = lock_row(db.session, throttle_key("email-change", address))
    now, window = utcnow(), timedelta(hours=1)
    if row.updated_at is None or row.updated_at <= now - window:
        row.failures, row.updated_at = 0, now
    if row.failures >= current_app.config["OTP_PER_HOUR"]:
        db.session.commit()
        return max(1, math.ceil((row.updated_at + window - now).total_seconds()))
    row.failures += 1
    db.session.commit()
    return None


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@member_required
@blp.arguments(EmailChangeIn)
@blp.response(202, Accepted)
def request_change(args):
    """Ask to change the account's address: a confirmation goes to the new address;
    nothing changes until it is confirmed (POST /v1/me/email/confirm). The answer is
    the same whether or not another account has the address (that account's holder is
    told someone tried instead), so it does not tell who is a member. An address takes
    at most OTP_PER_HOUR confirmations an hour, whichever accounts ask."""
    member = current_member()
    new = normalise_email(args["email"])
    wait = _count_mail_to(new)
    if wait is not None:
        abort(429, message="Too many confirmations were asked for this address; try again "
                           "later.", headers={"Retry-After": str(wait)})
    scheme = current_app.config["SCHEME_NAME"]
    holder = db.session.scalar(select(Member).where(Member.email == new,
                                                    Member.id != member.id))
    if holder is None:
        token = issue_token(str(member.id), "member", CONFIRM_TTL, kind=KIND, email=new,
                            bound=_bound_to(member.email))
        send_mail(new, *text("email_confirm", mail_language(member.locale), scheme=scheme,
                             token=token))
    else:
        # One message either way, so the time the answer takes does not tell the asker
        # whether the address has an account; its holder learns someone tried.
        send_mail(new, *text("email_in_use", mail_language(holder.locale), scheme=scheme))
    return {"message": "A message is on its way to the new address: a confirmation, "
                       "unless another account uses it."}


@blp.route("/confirm", methods=["POST"])
@blp.doc(security=BEARER)
@member_required
@blp.arguments(EmailConfirmIn)
@blp.response(200, MemberSchema)
@blp.alt_response(409, description="Another account took the address meanwhile")
def confirm_change(args):
    """Confirm the new address with the code mailed to it: the account's address
    changes, the old address is told, and every other login of the account ends (this
    one stays)."""
    member = current_member()
    payload = read_token(args["token"].strip(), kind=KIND)
    if (payload is None or payload.get("sub") != str(member.id)
            or payload.get("bound") != _bound_to(member.email)):
        abort(422, message="The confirmation is not valid, has expired, or was for "
                           "another address.", errors={"token": ["Not valid."]},
              reason=Reason.INVALID_TOKEN)
    new = payload["email"]
    if db.session.scalar(select(Member.id).where(Member.email == new, Member.id != member.id)):
        abort(409, message="Another account uses this address.", reason=Reason.ALREADY_EXISTS)
    old, member.email = member.email, new
    if old:  # codes asked for the old address are no longer this account's
        db.session.execute(delete(OtpCode).where(OtpCode.email_hash == otp_address(old)))
    # Every other login ends: whoever changed the address (perhaps with a stolen token)
    # keeps only this one, and the owner, told at the old address, can log in again.
    claims = bearer_claims() or {}
    try:
        current = uuid.UUID(str(claims.get("sid")))
    except ValueError:
        current = None
    revoke_all(db.session, "email_changed", member_id=member.id, keep=current)
    db.session.commit()
    if old and old != new:
        scheme = current_app.config["SCHEME_NAME"]
        try:
            send_mail(old, *text("email_changed", mail_language(member.locale),
                                 scheme=scheme, new=new))
        except Exception:  # the change stands; the notice is a courtesy
            current_app.logger.exception("could not tell the old address of a change")
    return member
