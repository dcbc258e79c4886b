"""Logins that can end. Every token and partner page cookie names a row of
login_sessions; logout, "sign out everywhere", a password change and deactivation
revoke rows, and a revoked row's tokens stop working at once. A resident's refresh
token is good once: using it moves the session to the next generation, and an older
generation coming back (a copied token) revokes the whole session."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from . import reads
from .models import Member, StaffUser, utcnow
from .models.login import LoginSession
from .security import issue_token


def start_session(session: Session, kind: str, ttl: int, *, member_id: uuid.UUID | None = None,
                  staff_user_id: uuid.UUID | None = None) -> LoginSession:
    """A new login in the caller's transaction (flushed, so its id is known)."""
    login = LoginSession(id=uuid.uuid4(), kind=kind, member_id=member_id,
                         staff_user_id=staff_user_id, generation=0,
                         expires_at=utcnow() + timedelta(seconds=ttl))
    session.add(login)
    session.flush()
    return login


def live(login: LoginSession | None, now: datetime | None = None) -> bool:
    return (login is not None and login.revoked_at is None
            and login.expires_at > (now or utcnow()))


def member_tokens(login: LoginSession) -> dict[str, Any]:
    """An access token and the session's current refresh token."""
    config = current_app.config
    subject, sid = str(login.member_id), str(login.id)
    return {
        "access_token": issue_token(subject, "member", config["ACCESS_TOKEN_TTL"], sid=sid),
        "refresh_token": issue_token(subject, "member", config["REFRESH_TOKEN_TTL"],
                                     kind="refresh", sid=sid, gen=login.generation),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_TTL"],
        "role": "member",
    }


def start_member_session(session: Session, member_id: uuid.UUID) -> dict[str, Any]:
    login = start_session(session, "member", current_app.config["REFRESH_TOKEN_TTL"],
                          member_id=member_id)
    session.commit()
    return member_tokens(login)


def staff_token(session: Session, user: StaffUser) -> dict[str, Any]:
    ttl = current_app.config["STAFF_TOKEN_TTL"]
    login = start_session(session, "staff", ttl, staff_user_id=user.id)
    session.commit()
    claims: dict[str, Any] = {"sid": str(login.id)}
    if user.partner_id:
        claims["partner_id"] = str(user.partner_id)
    return {"access_token": issue_token(str(user.id), user.role, ttl, **claims),
            "token_type": "Bearer", "expires_in": ttl, "role": user.role}


class RefreshRefused(Exception):
    pass


def refresh_member_session(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """Rotate: the refresh token in `payload` for the next generation's pair.
    Commits; RefreshRefused when the session is over or the token was used before."""
    try:
        sid = uuid.UUID(str(payload.get("sid")))
        generation = int(payload.get("gen"))
    except (TypeError, ValueError):
        raise RefreshRefused() from None
    login = session.scalar(select(LoginSession).where(LoginSession.id == sid)
                           .with_for_update())
    if (not live(login) or login.member_id is None
            or str(login.member_id) != payload.get("sub")):
        session.rollback()
        raise RefreshRefused()
    if generation != login.generation:
        # An earlier token of this family came back: someone holds a copy. End it all.
        login.revoked_at, login.revoked_reason = utcnow(), "refresh_reuse"
        session.commit()
        raise RefreshRefused()
    member = session.get(Member, login.member_id)
    if member is None or member.erased_at is not None:
        session.rollback()
        raise RefreshRefused()
    login.generation += 1
    session.commit()
    return member_tokens(login)


def revoke(session: Session, login_id: uuid.UUID, reason: str) -> None:
    session.execute(update(LoginSession)
                    .where(LoginSession.id == login_id, LoginSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow(), revoked_reason=reason))


def revoke_all(session: Session, reason: str, *, member_id: uuid.UUID | None = None,
               staff_user_id: uuid.UUID | None = None, keep: uuid.UUID | None = None) -> int:
    """End every live session of one member or one staff user (in the caller's
    transaction), but `keep` if given; how many were ended."""
    if member_id is None and staff_user_id is None:
        raise ValueError("whose sessions?")
    owner = (LoginSession.member_id == member_id if member_id is not None
             else LoginSession.staff_user_id == staff_user_id)
    if keep is not None:
        owner = owner & (LoginSession.id != keep)
    result = session.execute(update(LoginSession)
                             .where(owner, LoginSession.revoked_at.is_(None))
                             .values(revoked_at=utcnow(), revoked_reason=reason))
    return int(result.rowcount or 0)


def _sid(payload: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(payload.get("sid")))
    except ValueError:
        return None


# Built once: every resident's request runs it, and building a statement costs more
# Python than running a cached one.
_MEMBER_BY_SESSION = (
    select(Member, LoginSession.revoked_at, LoginSession.expires_at)
    .join(LoginSession, LoginSession.member_id == Member.id)
    .where(Member.id == bindparam("member"), LoginSession.id == bindparam("sid"))
)


# The same check as plain columns: the hot reads need the member's id and a few of its
# fields, not an entity (an ORM entity costs about as much Python as the read itself).
_MEMBERS, _LOGINS = Member.__table__, LoginSession.__table__
_MEMBER_ROW_BY_SESSION = (
    select(_MEMBERS.c.id, _MEMBERS.c.ward, _MEMBERS.c.locale, _MEMBERS.c.joined_at,
           _MEMBERS.c.erased_at, _LOGINS.c.revoked_at, _LOGINS.c.expires_at)
    .select_from(_MEMBERS.join(_LOGINS, _LOGINS.c.member_id == _MEMBERS.c.id))
    .where(_MEMBERS.c.id == bindparam("caller_member"), _LOGINS.c.id == bindparam("caller_sid"))
)


def member_row_check(payload: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The statement reading the member and login an access token names, with its
    parameters (None for a token naming no session). `live_member_row` judges its row;
    a read-only view's first statement may carry it (rewards/reads.py, `carry`)."""
    sid = _sid(payload)
    if sid is None:
        return None
    return _MEMBER_ROW_BY_SESSION, {"caller_member": uuid.UUID(payload["sub"]),
                                    "caller_sid": sid}


def live_member_row(row: Any | None) -> Any | None:
    """`row` when its login is live and its member not erased, else None."""
    if (row is None or row.revoked_at is not None or row.expires_at <= utcnow()
            or row.erased_at is not None):
        return None
    return row


def member_row_for_token(session: Session, payload: dict[str, Any]) -> Any | None:
    """The member a live access token speaks for, as a row (id, ward, locale,
    joined_at, erased_at): one indexed read through the session's connection, no
    entity. None when the session has ended or the member is gone."""
    check = member_row_check(payload)
    if check is None:
        return None
    return live_member_row(reads.first(*check, session))


def member_for_token(session: Session, payload: dict[str, Any]) -> Member | None:
    """The member a live access token speaks for: one indexed read (member and session)."""
    sid = _sid(payload)
    if sid is None:
        return None
    row = session.execute(_MEMBER_BY_SESSION, {"member": uuid.UUID(payload["sub"]),
                                               "sid": sid}).first()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row[0]


def staff_for_token(session: Session, payload: dict[str, Any]) -> StaffUser | None:
    """The active staff user a live token speaks for, with the role it names."""
    sid = _sid(payload)
    if sid is None:
        return None
    row = session.execute(
        select(StaffUser, LoginSession.revoked_at, LoginSession.expires_at)
        .join(LoginSession, LoginSession.staff_user_id == StaffUser.id)
        .where(StaffUser.id == uuid.UUID(payload["sub"]), LoginSession.id == sid)
    ).first()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = row[0]
    if not user.active or user.role != payload.get("role"):
        return None
    return user


def purge_sessions(session: Session, before: datetime) -> int:
    """Delete logins that ended (expired or revoked) before `before`: their tokens are
    refused already, and a row no longer there refuses them the same way. Commits."""
    result = session.execute(delete(LoginSession).where(
        or_(LoginSession.expires_at < before, LoginSession.revoked_at < before)))
    session.commit()
    return int(result.rowcount or 0)
