"""Who is calling: resident and staff bearer tokens, partner and source API keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app, g, request
from flask_smorest import abort

from .. import reads
from ..actions.sources import KeyRefused, source_for_key
from ..extensions import db, reading_only
from ..models import Member, Partner
from ..partner_keys import TillKeyRefused, partner_for_key
from ..reasons import Reason
from ..security import bearer_claims, check_signature
from ..sessions import (
    live_member_row,
    member_for_token,
    member_row_check,
    member_row_for_token,
    staff_for_token,
)
from ..staff import needs_enrolment

STAFF_ROLES = ("admin", "scheme_manager", "reviewer", "analyst", "desk")
ENDED = ("The session has ended (logged out, password changed), or the account is disabled "
         "or its role has changed; log in again.")


@dataclass
class Caller:
    kind: str  # member | staff | partner | source
    role: str
    id: uuid.UUID
    partner_id: uuid.UUID | None = None
    session_id: str | None = None  # the login a bearer token names (its `sid`)


def _bearer() -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        abort(401, message="Authorization: Bearer <token> is required.")
    payload = bearer_claims()
    if payload is None:
        # Refresh (POST /v1/auth/refresh) and try again; if that fails too, log in.
        abort(401, message="The token is invalid or has expired.", reason=Reason.INVALID_TOKEN)
    return payload


MEMBER_ENDED = ("The session has ended (logged out, or the account no longer exists); "
                "log in again.")


def current_member() -> Member:
    """The calling resident's entity (loaded on first use after `resident_read`)."""
    member = g.get("member")
    if member is None:
        member = db.session.get(Member, g.caller.id)
        if member is None:  # erased or deleted since the token was checked
            abort(401, message=MEMBER_ENDED, reason=Reason.SESSION_ENDED)
        g.member = member
    return member


def current_resident() -> Any:
    """The calling resident as a row: id, ward, locale, joined_at (`resident_read`)."""
    member = g.get("member_row")
    if member is None:  # its check still waits for the view's first statement
        reads.settle_carried()
        member = g.member_row
    return member


def _resident(find: Callable[[Any, dict[str, Any]], Any], slot: str) -> Callable[..., Any]:
    """A decorator checking a resident's live bearer token: `find` reads the member the
    token's session speaks for, kept in `g.<slot>`."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            payload = _bearer()
            if payload.get("role") != "member":
                abort(403, message="This is for residents' own accounts.")
            member = find(db.session, payload)
            if member is None or member.erased_at is not None:
                abort(401, message=MEMBER_ENDED, reason=Reason.SESSION_ENDED)
            setattr(g, slot, member)
            g.caller = Caller("member", "member", member.id)
            return view(*args, **kwargs)

        return wrapper

    return decorator


# A resident's live bearer token; the member's entity is `current_member()`.
member_required = _resident(member_for_token, "member")
_resident_row = _resident(member_row_for_token, "member_row")


class _Refused(Exception):
    """The token's login has ended, found by the statement that carried the check."""


def _carrying(writes: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`resident_read` (writes False) and `resident_claim` (writes True)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        checked = _resident_row(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if db.dialect != "postgresql" or not (writes or reading_only.get()):
                return checked(*args, **kwargs)
            payload = _bearer()
            if payload.get("role") != "member":
                abort(403, message="This is for residents' own accounts.")
            check = member_row_check(payload)
            if check is None:
                abort(401, message=MEMBER_ENDED, reason=Reason.SESSION_ENDED)

            def settle(row: Any) -> None:
                member = live_member_row(row)
                if member is None:
                    raise _Refused()
                g.member_row = member

            g.caller = Caller("member", "member", check[1]["caller_member"])
            token = reads.carry(*check, settle)
            try:
                try:
                    answer = view(*args, **kwargs)
                except _Refused:
                    raise
                except BaseException:
                    # Refused before its first statement (a bad argument): the token's
                    # check still answers first.
                    reads.settle_carried()
                    raise
                reads.settle_carried()
            except _Refused:
                if writes:  # whatever the view wrote before the check was read
                    db.session.rollback()
                abort(401, message=MEMBER_ENDED, reason=Reason.SESSION_ENDED)
            finally:
                reads.uncarry(token)
            return answer

        return wrapper

    return decorator


# The same checks for the hot reads (balance, statement, actions, catalogue), with the
# member read as a plain row (`current_resident()`), not an entity; `current_member()`
# still loads the entity if a view needs it. In a read-only view on PostgreSQL the check
# rides on the view's first statement (one round trip, not two: `reads.carry`), which
# answers nothing until the check has passed; a view that runs none has the check run
# on its own before it answers. Such a view writes nothing, so running it for a token
# that turns out refused changes nothing.
resident_read = _carrying(writes=False)
# The same for a claim: its check rides on the claim's first statement (the member's
# lock), in its transaction; a refused token has the transaction rolled back before
# anything commits (the view commits only after that statement). The view reads the
# caller through `caller_later()`.
resident_claim = _carrying(writes=True)


class _CallerLater:
    """The calling resident for a view whose token check rides on its first statement:
    the id at once (the token's), the rest of the row (ward, locale, joined_at) once
    the check has been read."""

    __slots__ = ()

    @property
    def id(self) -> uuid.UUID:
        return g.caller.id

    def __getattr__(self, name: str) -> Any:
        return getattr(current_resident(), name)


def caller_later() -> Any:
    return _CallerLater()


def staff_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Staff with one of `roles` (admin is always allowed)."""
    allowed = set(roles) | {"admin"}

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            payload = _bearer()
            role = payload.get("role")
            if role not in STAFF_ROLES and role != "partner":
                abort(403, message="This needs a staff account.")
            user = staff_for_token(db.session, payload)
            if user is None:
                abort(401, message=ENDED, reason=Reason.SESSION_ENDED)
            if needs_enrolment(user) and not getattr(view, "enrolment_allowed", False):
                abort(403, message="Set up your second factor first: POST /v1/auth/totp, "
                                   "then POST /v1/auth/totp/confirm with a code from the app.")
            if role not in allowed:
                abort(403, message=f"This needs one of the roles: {', '.join(sorted(allowed))}.")
            g.caller = Caller("staff", role, user.id, user.partner_id, payload.get("sid"))
            return view(*args, **kwargs)

        return wrapper

    return decorator


def partner_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A partner's till (X-Api-Key) or a partner user's bearer token."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("X-Api-Key")
        if key:
            # One query, not the partner entity: a till calls this on every redemption.
            found = partner_for_key(db.session, key)
            if isinstance(found, TillKeyRefused):
                abort(401, message=found.message)
            g.caller = Caller("partner", "partner", found, found)
            return view(*args, **kwargs)
        payload = _bearer()
        if payload.get("role") != "partner" or not payload.get("partner_id"):
            abort(403, message="This is for partners.")
        user = staff_for_token(db.session, payload)
        if user is None or user.partner_id is None:
            abort(401, message=ENDED, reason=Reason.SESSION_ENDED)
        partner = db.session.get(Partner, user.partner_id)
        if partner is None or not partner.active:
            abort(401, message="The partner is no longer part of the scheme.")
        g.caller = Caller("partner", "partner", user.id, user.partner_id)
        return view(*args, **kwargs)

    return wrapper


def source_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A source's API key (any of its keys still working, see actions.sources) and a
    fresh HMAC signature of the raw body with the secret of one of its working keys."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("X-Api-Key")
        if not key:
            abort(401, message="X-Api-Key is required.")
        found = source_for_key(db.session, key)
        if isinstance(found, KeyRefused):
            abort(401, message=found.message)
        source, signing_secrets = found
        body = request.get_data(cache=True)
        problem = check_signature(
            signing_secrets,
            request.headers.get("X-Signature"),
            body,
            current_app.config["SIGNATURE_TOLERANCE"],
        )
        if problem:
            abort(401, message=problem)
        g.source = source
        g.caller = Caller("source", "source", source.id)
        return view(*args, **kwargs)

    return wrapper


BEARER = [{"bearerAuth": []}]
API_KEY = [{"apiKey": []}]
