"""Proof that a resident holds the card they link in the app: a link code.

A card's issuer (the transport operator's ticket office or app, the library, a council
desk) shows the holder an 8-digit code it computes without calling the scheme:

    code = first 8 bytes of HMAC-SHA256(link secret, "<kind>:<number>:<YYYY-MM-DD>"),
           read as a big-endian unsigned integer, modulo 100000000, as 8 digits

where <number> is the card number with everything but letters and digits removed and
letters in capitals, and the date is today's in UTC. A code is accepted on the day it
was made and for LINK_CODE_VALID_DAYS - 1 days after. The link secret belongs to the
card kind (one issuer per kind), is shown once when a scheme manager rotates it, and
rotating it makes codes made with the old secret stop working."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .members import CardAlreadyLinked, card_hash, link_card
from .models import Identifier, Member, utcnow
from .models.privacy import CardLinkSecret
from .reasons import Reason
from .security import normalise_card_number
from .throttle import (
    Locked,
    check_not_locked,
    lock_row,
    record_failure,
    record_success,
    throttle_key,
)

CODE_DIGITS = 8


def link_code(secret: str, kind: str, number: str, day: date) -> str:
    """The code for this card on this (UTC) day: the documented formula above."""
    message = f"{kind}:{normalise_card_number(number)}:{day.isoformat()}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10 ** CODE_DIGITS:0{CODE_DIGITS}d}"


def code_matches(secret: str, kind: str, number: str, code: str, now: datetime,
                 valid_days: int) -> bool:
    given = "".join(ch for ch in code if ch in "0123456789")  # isdigit() takes "²" and "١"
    if len(given) != CODE_DIGITS:
        return False
    today = now.date()
    matched = False
    for back in range(max(1, valid_days)):  # compare every day: no early exit to time
        expected = link_code(secret, kind, number, today - timedelta(days=back))
        matched |= hmac.compare_digest(expected, given)
    return matched


def secret_for(session: Session, kind: str) -> str | None:
    row = session.get(CardLinkSecret, kind)
    return row.secret if row is not None else None


def rotate_secret(session: Session, kind: str, by: uuid.UUID | None = None) -> str:
    """A new link secret for the kind, in the caller's transaction; shown once."""
    secret = secrets.token_hex(32)
    row = session.get(CardLinkSecret, kind, with_for_update=True)
    if row is None:
        session.add(CardLinkSecret(kind=kind, secret=secret, rotated_at=utcnow(),
                                   rotated_by=by))
    else:
        row.secret, row.rotated_at, row.rotated_by = secret, utcnow(), by
    session.flush()
    return secret


def code_for_card(session: Session, kind: str, number: str, now: datetime | None = None
                  ) -> str:
    """Today's code for a card, made with the kind's secret (created if there is none):
    for staff desks (`rewards link-code`), the demo and tests."""
    secret = secret_for(session, kind) or rotate_secret(session, kind)
    return link_code(secret, kind, number, (now or utcnow()).date())


class LinkRefused(Exception):
    """The card was not linked; `message` (and `errors`, by field) say why, to the member."""

    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None,
                 reason: str = "conflict", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors
        self.reason = reason  # never says whose card it is (rewards/reasons.py)
        self.retry_after = retry_after  # seconds, when the card's linking is locked


# Said to a member whose proven card is someone else's, or already theirs: it never says
# "registered", and only someone who holds the card (a valid code) ever sees it.
NOT_LINKABLE = "This card cannot be linked to this account. Ask at a council desk."
WRONG_CODE = ("The link code is not right for this card, or has expired. Ask the card's "
              "operator for today's code.")
CARD_LOCKED = ("Too many wrong link codes for this card; try again later, or ask at a "
               "council desk.")


def link_proven_card(session: Session, member: Member, kind: str, number: str, code: str,
                     *, now: datetime, valid_days: int, most: int) -> Identifier:
    """Link a card a member proved they hold with a link code, in the caller's
    transaction. The member row's lock makes the cap hold under concurrent requests."""
    session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    linked = session.scalar(select(func.count(Identifier.id))
                            .where(Identifier.member_id == member.id)) or 0
    if linked >= most:
        raise LinkRefused(409, f"This account has {linked} cards linked, the most allowed; "
                               "unlink one first.", reason=Reason.TOO_MANY_CARDS)
    secret = secret_for(session, kind)
    if secret is None:
        raise LinkRefused(422, "Cards of this kind cannot be linked in the app yet; ask at a "
                               "council desk.", {"kind": ["No link codes for this kind yet."]},
                          reason="card_not_proven")
    # Wrong codes are counted per card, whichever accounts send them, and lock the card's
    # linking with the staff logins' back-off (rewards/throttle.py): accounts cost
    # nothing, so a limit per caller alone would let enough of them try every code of
    # someone else's card. The row holds the card's keyed hash, never its number.
    guesses = lock_row(session, throttle_key("link-code", card_hash(kind, number)))
    try:
        check_not_locked(guesses)
    except Locked as locked:
        session.commit()
        raise LinkRefused(429, CARD_LOCKED, reason="rate_limited",
                          retry_after=locked.retry_after) from None
    if not code_matches(secret, kind, number, code, now, valid_days):
        record_failure(guesses, after=current_app.config["LINK_CODE_LOCK_AFTER"])
        session.commit()  # kept, though the caller rolls the refused link back
        raise LinkRefused(422, WRONG_CODE, {"link_code": [WRONG_CODE]},
                          reason="card_not_proven")
    record_success(guesses)
    try:
        return link_card(session, member, kind, number)
    except CardAlreadyLinked:
        raise LinkRefused(409, NOT_LINKABLE) from None
