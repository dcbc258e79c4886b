"""Event claim codes: staff create an event with a window (and optionally a limit);
residents scan its code and the claim becomes an action of the event's type, awarded
through the same rules path (and the same controls) as a source's batch.

A shared code is one for everyone at the event; single-use codes are one per attendee
(printed as a sheet of QR codes), each working once. A member claims an event once."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..awarding import MemberGone, award_stored, lock_for_awards
from ..models import Action, ActionType, Member, utcnow
from ..models.event import Event, EventClaim, EventCode
from ..reasons import Reason, Refused
from .screening import control_book

# No 0/O, 1/I/L: codes are read off paper and typed as well as scanned.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12  # 31^12, about 59 bits: unguessable however many codes are live
MAX_SINGLE_USE_CODES = 1000
_CODE = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """ABCD-EFGH-JKMN: easier to read out and type."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def normalise_code(text: str) -> str:
    return "".join(ch for ch in text if ch not in " -\t").upper()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def create_event(
    session: Session,
    *,
    name: str,
    action_type: ActionType,
    starts_at: datetime,
    ends_at: datetime,
    mode: str = "shared",
    codes: int = 1,
    max_claims: int | None = None,
    attributes: dict[str, Any] | None = None,
    created_by: uuid.UUID | None = None,
) -> tuple[Event, list[EventCode]]:
    """The event and its codes: one for a shared event, `codes` for single-use."""
    event = Event(id=uuid.uuid4(), name=name, action_type_id=action_type.id,
                  type_code=action_type.code, starts_at=starts_at, ends_at=ends_at,
                  mode=mode, max_claims=max_claims, claims=0, attributes=attributes or {},
                  created_by=created_by)
    session.add(event)
    wanted = 1 if mode == "shared" else codes
    values: set[str] = set()
    while len(values) < wanted:
        values.add(new_code())
    made = [EventCode(id=uuid.uuid4(), event_id=event.id, code=value) for value in values]
    session.add_all(made)
    session.flush()
    return event, made


class ClaimRefused(Refused):
    """An event's claim code does not earn its points (unknown, outside the window,
    claimed already, used up)."""


@dataclass(frozen=True)
class Claimed:
    event: Event
    action: Action
    points: int


def claim(session: Session, member: Member, text: str, now: datetime | None = None) -> Claimed:
    """Turn a code into an action for `member`, in the caller's transaction (the caller
    commits, or rolls back on ClaimRefused). Unknown code 404; before the window 409,
    after it 410; a second claim by the member, a used single-use code or a full event 409."""
    now = now or utcnow()
    code = normalise_code(text)
    found = (session.scalar(select(EventCode).where(EventCode.code == code))
             if _CODE.fullmatch(code) else None)
    if found is None:
        raise ClaimRefused(404, "No such claim code: check it and try again.")
    # The event's row lock serialises its claims: the limit and the checks below hold
    # under concurrent scans. Read afresh, under the lock.
    event = session.scalar(select(Event).where(Event.id == found.event_id).with_for_update()
                           .execution_options(populate_existing=True))
    assert event is not None
    if now < event.starts_at:
        raise ClaimRefused(409, f"Claims for {event.name!r} open at {_iso(event.starts_at)}.",
                           Reason.NOT_OPEN)
    if now >= event.ends_at:
        raise ClaimRefused(410, f"Claims for {event.name!r} closed at {_iso(event.ends_at)}.",
                           Reason.ENDED)
    if session.scalar(select(EventClaim.id).where(EventClaim.event_id == event.id,
                                                  EventClaim.member_id == member.id)):
        raise ClaimRefused(409, f"You have already claimed {event.name!r}: each member "
                                "claims an event once.", Reason.ALREADY_CLAIMED)
    if event.mode == "single_use":
        session.refresh(found, with_for_update=True)
        if found.claimed_at is not None:
            raise ClaimRefused(409, "This code has been used already: each code on the "
                                    "sheet works once.", Reason.CODE_USED)
    if event.max_claims is not None and event.claims >= event.max_claims:
        raise ClaimRefused(409, f"{event.name!r} has had all the claims it allows "
                                f"({event.max_claims}).", Reason.SOLD_OUT)
    action_type = session.get(ActionType, event.action_type_id)
    assert action_type is not None
    attributes = {**(event.attributes or {}), "event_id": str(event.id)}

    # The member's lock before reading their recent actions for the controls, as a batch does.
    lock_for_awards(session, {member.id})
    held = control_book(session, [(member.id, event.type_code, now, attributes)]).check(
        member.id, event.type_code, now, attributes)
    event.claims += 1
    if event.mode == "single_use":
        found.claimed_at = now
        found.member_id = member.id
    action = Action(id=uuid.uuid4(), source_id=None,
                    external_ref=f"event:{event.id}:{member.id}", member_id=member.id,
                    action_type_id=action_type.id, type_code=event.type_code,
                    occurred_at=now, attributes=attributes, status="accepted", points=0,
                    origin="claim", created_at=now)
    session.add(action)
    session.add(EventClaim(event_id=event.id, member_id=member.id, code_id=found.id,
                           action_id=action.id))
    try:
        session.flush()
    except IntegrityError:  # the same member's claim committed first
        raise ClaimRefused(409, f"You have already claimed {event.name!r}: each member "
                                "claims an event once.", Reason.ALREADY_CLAIMED) from None
    if held:
        action.status, action.flag_reason = "flagged", held
        return Claimed(event, action, 0)
    try:
        awarded = award_stored(session, action, now)
    except MemberGone:
        raise ClaimRefused(404, "The account no longer exists.", Reason.ACCOUNT_GONE) from None
    if awarded.rule_errors:
        action.status, action.flag_reason = "flagged", awarded.rule_errors
    return Claimed(event, action, awarded.points)


SHEET_TOKEN = "sheet"


def sheet_token(event_id: uuid.UUID, ttl: int, staff_id: uuid.UUID, role: str,
                session_id: str) -> str:
    """A signed, short-lived token that opens one event's printable code sheet (and
    nothing else: it is no access token). It names the staff login that asked for it
    and works only while that login does: logging out, a password change or
    deactivation ends the link too."""
    from ..security import issue_token

    return issue_token(str(event_id), SHEET_TOKEN, ttl, kind=SHEET_TOKEN,
                       staff=str(staff_id), staff_role=role, sid=session_id)


def sheet_token_opens(session: Session, token: str, event_id: uuid.UUID,
                      roles: tuple[str, ...]) -> bool:
    from ..security import read_token
    from ..sessions import staff_for_token

    payload = read_token(token, kind=SHEET_TOKEN)
    if payload is None or payload.get("sub") != str(event_id):
        return False
    if payload.get("staff_role") not in roles:
        return False
    try:
        login = {"sub": str(uuid.UUID(str(payload.get("staff")))),
                 "sid": payload.get("sid"), "role": payload.get("staff_role")}
    except ValueError:
        return False
    return staff_for_token(session, login) is not None
