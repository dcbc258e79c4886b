from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

from flask import Response, g
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from werkzeug.security import check_password_hash

from ..extensions import Blueprint, db
from ..members import OtpRateLimited, request_otp, verify_otp
from ..models import StaffUser
from ..models.staff import ROLES
from ..reasons import Reason
from ..security import read_token
from ..sessions import (
    RefreshRefused,
    member_for_token,
    refresh_member_session,
    revoke,
    revoke_all,
    staff_for_token,
    staff_token,
    start_member_session,
)
from ..staff import (
    LoginRefused,
    authenticate,
    begin_enrolment,
    confirm_enrolment,
    login_throttle,
    set_password,
)
from ..throttle import record_failure
from .auth import BEARER, _bearer
from .checks import MemberEmail

blp = Blueprint("auth", __name__, url_prefix="/v1/auth", description="Logging in")


@blp.after_request
def _tokens_not_kept(response: Response) -> Response:
    # Logins and refreshes answer tokens to a request that carries none in a header (the
    # code, password or refresh token is in the body), so the rule for credentialed
    # answers does not mark them: no cache may keep a token (RFC 6749, 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


class OtpRequest(Schema):
    email = MemberEmail(required=True, validate=validate.Length(max=254))


class TokenRequest(Schema):
    email = MemberEmail(required=True, validate=validate.Length(max=254))
    code = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{6}$",
                                                                 error="The code is 6 digits."))


class RefreshRequest(Schema):
    refresh_token = fields.String(required=True)


class LoginRequest(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=200))
    totp_code = fields.String(load_default=None, validate=validate.Length(max=10), metadata={
        "description": "For admins and scheme managers with a second factor: the 6-digit "
                       "code their authenticator app shows now."})


class Tokens(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    role = fields.String(metadata={"enum": ["member", *ROLES]})


class StaffTokens(Schema):
    """A staff or partner user's login: one access token, no refresh token (log in
    again when it lapses, after STAFF_TOKEN_TTL)."""
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    role = fields.String(metadata={"enum": list(ROLES)})


class Accepted(Schema):
    message = fields.String()


class PasswordChange(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=200))
    new_password = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TotpSetup(Schema):
    secret = fields.String(metadata={"description": "Base32, for apps that take it typed."})
    provisioning_uri = fields.String(metadata={"description": "otpauth:// URI (as a QR code)."})


class TotpConfirm(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{6}$",
                                                                 error="The code is 6 digits."))


class TotpEnabled(Schema):
    enabled_at = fields.DateTime()


class Ended(Schema):
    sessions_ended = fields.Integer()


@blp.route("/otp", methods=["POST"])
@blp.arguments(OtpRequest)
@blp.response(202, Accepted)
@blp.alt_response(429, description="Too many codes asked for this address, or from this client")
def otp(args):
    """Mail a 6-digit login code. The answer is the same whether or not the address is known."""
    try:
        request_otp(db.session, args["email"])
    except OtpRateLimited as limited:
        db.session.rollback()
        abort(429, message="Too many codes asked for this address; try again later.",
              headers={"Retry-After": str(limited.retry_after)})
    return {"message": "If the address can receive mail, a code is on its way."}


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequest)
@blp.response(200, Tokens)
@blp.alt_response(429, description="Too many code checks from this client")
def token(args):
    """Exchange a mailed code for tokens. The first login creates the member."""
    result = verify_otp(db.session, args["email"], args["code"])
    if result.member is None:
        abort(401, message=result.problem, reason=Reason.INVALID_CODE)
    return start_member_session(db.session, result.member.id)


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshRequest)
@blp.response(200, Tokens)
def refresh(args):
    """New tokens for a refresh token, which then stops working: each refresh token is
    good once. Using one a second time ends the whole login (someone has a copy)."""
    payload = read_token(args["refresh_token"], kind="refresh")
    if payload is None or payload.get("role") != "member":
        abort(401, message="The refresh token is invalid or has expired.",
              reason=Reason.INVALID_TOKEN)
    try:
        return refresh_member_session(db.session, payload)
    except RefreshRefused:
        abort(401, message="The refresh token is no longer good (used already, logged out, "
                           "or expired); log in again.", reason=Reason.SESSION_ENDED)


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginRequest)
@blp.response(200, StaffTokens)
@blp.alt_response(429, description="Too many failed logins for the account, or requests "
                                   "from this client")
def login(args):
    """Staff and partner users: email and password (and, once enrolled, the TOTP code)
    give a token with the role in it. Wrong tries lock the address for a while, with a
    back-off that doubles; known and unknown addresses are answered alike."""
    try:
        user = authenticate(db.session, args["email"], args["password"], args["totp_code"])
    except LoginRefused as refused:
        _refuse(refused)
    return staff_token(db.session, user)


def _refuse(refused: LoginRefused) -> NoReturn:
    if refused.retry_after:
        abort(429, message=refused.message, reason=Reason.ACCOUNT_LOCKED,
              headers={"Retry-After": str(refused.retry_after)})
    abort(401, message=refused.message, reason=Reason.INVALID_CREDENTIALS)


# -- the caller's own login -------------------------------------------------------------

def _logged_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """Any live resident or staff token; g.login_id is its session, g.user the staff user."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        payload = _bearer()
        found = (member_for_token(db.session, payload) if payload.get("role") == "member"
                 else staff_for_token(db.session, payload))
        if found is None:
            abort(401, message="The session has ended; log in again.",
                  reason=Reason.SESSION_ENDED)
        g.login_id = uuid.UUID(payload["sid"])
        g.user = found if isinstance(found, StaffUser) else None
        g.member_id = None if isinstance(found, StaffUser) else found.id
        return view(*args, **kwargs)

    return wrapper


def _staff_user() -> StaffUser:
    if g.user is None:
        abort(403, message="This is for staff and partner users.")
    return g.user


@blp.route("/logout", methods=["POST"])
@blp.doc(security=BEARER)
@_logged_in
@blp.response(204)
def logout():
    """End this login: its access token (and, for a resident, its refresh token) stop
    working at once."""
    revoke(db.session, g.login_id, "logout")
    db.session.commit()


@blp.route("/logout-everywhere", methods=["POST"])
@blp.doc(security=BEARER)
@_logged_in
@blp.response(200, Ended)
def logout_everywhere():
    """Sign out everywhere: end every login of this account, this one included (partner
    page sessions of a partner user too)."""
    if g.user is not None:
        ended = revoke_all(db.session, "logout_everywhere", staff_user_id=g.user.id)
    else:
        ended = revoke_all(db.session, "logout_everywhere", member_id=g.member_id)
    db.session.commit()
    return {"sessions_ended": ended}


@blp.route("/password", methods=["POST"])
@blp.doc(security=BEARER)
@_logged_in
@blp.arguments(PasswordChange)
@blp.response(204)
@blp.alt_response(422, description="The new password is too short or too common")
@blp.alt_response(429, description="Too many failed logins or password checks for the "
                                   "account, or requests from this client")
def change_password(args):
    """Staff and partner users: change your password. Every login of the account ends,
    this one included; log in again with the new password."""
    user = _staff_user()
    # A stolen token must not become a way to guess the password around the lockout: a
    # wrong current password counts as a failed login, and an account locked by them
    # (here or at login) is refused even with the right one, as login refuses it.
    try:
        throttle = login_throttle(db.session, user.email)
    except LoginRefused as refused:
        _refuse(refused)
    if not check_password_hash(user.password_hash, args["current_password"]):
        record_failure(throttle)
        db.session.commit()
        abort(401, message="The current password is not right.")
    try:
        set_password(db.session, user, args["new_password"])
    except ValueError as problem:
        db.session.rollback()
        abort(422, message=str(problem), errors={"new_password": [str(problem)]})
    db.session.commit()


@blp.route("/totp", methods=["POST"])
@blp.doc(security=BEARER)
@_logged_in
@blp.response(201, TotpSetup)
@blp.alt_response(409, description="A second factor is set up already")
def totp_begin():
    """Start setting up the second factor: a new secret and its otpauth:// URI for an
    authenticator app. It counts only once confirmed with a code."""
    user = _staff_user()
    if user.totp_enabled_at is not None:
        abort(409, message="A second factor is set up already; to replace it, an admin "
                           "resets the account with `rewards create-staff`.")
    seed, uri = begin_enrolment(user)
    db.session.commit()
    return {"secret": seed, "provisioning_uri": uri}


@blp.route("/totp/confirm", methods=["POST"])
@blp.doc(security=BEARER)
@_logged_in
@blp.arguments(TotpConfirm)
@blp.response(200, TotpEnabled)
def totp_confirm(args):
    """Finish setting up the second factor with the code the app shows; from then on
    logging in needs the code (totp_code) too."""
    user = _staff_user()
    if user.totp_enabled_at is not None:
        abort(409, message="A second factor is set up already.")
    if user.totp_secret is None:
        abort(409, message="Start with POST /v1/auth/totp.")
    if not confirm_enrolment(user, args["code"]):
        db.session.commit()
        abort(422, message="The code is not right; check the app's clock and try the "
                           "current code.", errors={"code": ["not the current code"]})
    db.session.commit()
    return {"enabled_at": user.totp_enabled_at}
