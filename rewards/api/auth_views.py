from __future__ import annotations

import functools
import secrets
import uuid

from flask import current_app
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import Blueprint, db
from ..members import OtpRateLimited, request_otp, verify_otp
from ..models import Member, StaffUser
from ..models.staff import ROLES
from ..reasons import Reason
from ..security import issue_token, read_token

blp = Blueprint("auth", __name__, url_prefix="/v1/auth", description="Logging in")


class OtpRequest(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class TokenRequest(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    code = fields.String(required=True, validate=validate.Regexp(r"^\d{6}$",
                                                                 error="The code is 6 digits."))


class RefreshRequest(Schema):
    refresh_token = fields.String(required=True)


class LoginRequest(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=200))


class Tokens(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    role = fields.String(metadata={"enum": ["member", *ROLES]})


class Accepted(Schema):
    message = fields.String()


@functools.cache
def _dummy_password_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def member_tokens(member_id: uuid.UUID) -> dict:
    config = current_app.config
    return {
        "access_token": issue_token(str(member_id), "member", config["ACCESS_TOKEN_TTL"]),
        "refresh_token": issue_token(str(member_id), "member", config["REFRESH_TOKEN_TTL"],
                                     kind="refresh"),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_TTL"],
        "role": "member",
    }


@blp.route("/otp", methods=["POST"])
@blp.arguments(OtpRequest)
@blp.response(202, Accepted)
@blp.alt_response(429, description="Too many codes asked for this address")
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
def token(args):
    """Exchange a mailed code for tokens. The first login creates the member."""
    result = verify_otp(db.session, args["email"], args["code"])
    if result.member is None:
        abort(401, message=result.problem, reason=Reason.INVALID_CODE)
    return member_tokens(result.member.id)


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshRequest)
@blp.response(200, Tokens)
def refresh(args):
    """A new access token from a refresh token."""
    payload = read_token(args["refresh_token"], kind="refresh")
    if payload is None or payload.get("role") != "member":
        abort(401, message="The refresh token is invalid or has expired.",
              reason=Reason.INVALID_TOKEN)
    member = db.session.get(Member, uuid.UUID(payload["sub"]))
    if member is None or member.erased_at is not None:
        abort(401, message="The account no longer exists.")
    return member_tokens(member.id)


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginRequest)
@blp.response(200, Tokens)
def login(args):
    """Staff and partner users: email and password give a token with the role in it."""
    user = db.session.scalar(
        select(StaffUser).where(StaffUser.email == args["email"].strip().lower())
    )
    # Hash the password even for an unknown address, so timing does not tell them apart.
    password_ok = check_password_hash(
        user.password_hash if user is not None else _dummy_password_hash(), args["password"]
    )
    if user is None or not user.active or not password_ok:
        abort(401, message="Email or password is not right.",
              reason=Reason.INVALID_CREDENTIALS)
    ttl = current_app.config["STAFF_TOKEN_TTL"]
    claims = {"partner_id": str(user.partner_id)} if user.partner_id else {}
    return {
        "access_token": issue_token(str(user.id), user.role, ttl, **claims),
        "token_type": "Bearer",
        "expires_in": ttl,
        "role": user.role,
    }
