"""Consent per purpose: given and withdrawn, with times, as a history never edited.

terms and privacy_notice are accepted (with the version read) at first login and again
when a new version is accepted; they cannot be withdrawn except by closing the account.
travel_data is on from joining (linking a travel card is asking for journeys to count)
until withdrawn; withdrawing it makes sources' travel items for the member `rejected`
(no_consent). partner_marketing and research are off until given."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Member, utcnow
from .models.privacy import CONSENT_PURPOSES, Consent

ON_BY_DEFAULT = frozenset({"travel_data"})
CANNOT_WITHDRAW = frozenset({"terms", "privacy_notice"})


class ConsentRefused(ValueError):
    def __init__(self, purpose: str, message: str) -> None:
        super().__init__(message)
        self.purpose, self.message = purpose, message


@dataclass(frozen=True)
class ConsentState:
    purpose: str
    granted: bool
    version: str | None
    given_at: datetime | None
    withdrawn_at: datetime | None


def history(session: Session, member_id: uuid.UUID) -> list[Consent]:
    """Oldest first; choices made at the same moment in the order purposes are listed."""
    rows = session.scalars(select(Consent).where(Consent.member_id == member_id))
    return sorted(rows, key=lambda row: (row.created_at, CONSENT_PURPOSES.index(row.purpose)))


def current(session: Session, member_id: uuid.UUID) -> list[ConsentState]:
    """Each purpose's standing choice, from the history (defaults where there is none)."""
    rows = history(session, member_id)
    states = []
    for purpose in CONSENT_PURPOSES:
        mine = [row for row in rows if row.purpose == purpose]
        if not mine:
            states.append(ConsentState(purpose, purpose in ON_BY_DEFAULT, None, None, None))
            continue
        last = mine[-1]
        given = [row for row in mine if row.granted]
        states.append(ConsentState(
            purpose, last.granted, (given[-1].version if given else None),
            given[-1].created_at if given else None,
            None if last.granted else last.created_at))
    return states


def record(session: Session, member: Member, purpose: str, granted: bool,
           version: str | None = None, now: datetime | None = None) -> Consent | None:
    """Record a choice (in the caller's transaction); nothing if it changes nothing."""
    if purpose not in CONSENT_PURPOSES:
        raise ConsentRefused(purpose, f"Unknown purpose {purpose!r}.")
    if not granted and purpose in CANNOT_WITHDRAW:
        raise ConsentRefused(purpose, "The membership terms and privacy notice cannot be "
                                      "withdrawn on their own: close the account instead "
                                      "(DELETE /v1/me).")
    if granted and purpose in CANNOT_WITHDRAW and not version:
        version = _current_version(purpose)
    standing = {state.purpose: state for state in current(session, member.id)}[purpose]
    if standing.granted == granted and (not granted or standing.version == version):
        return None
    row = Consent(member_id=member.id, purpose=purpose, granted=granted, version=version,
                  created_at=now or utcnow())
    session.add(row)
    if purpose == "travel_data":
        member.travel_data_withheld = not granted
    return row


def accept_at_first_login(session: Session, member: Member) -> None:
    """The terms and privacy notice the app showed before the first login."""
    now = utcnow()
    for purpose in ("terms", "privacy_notice"):
        session.add(Consent(member_id=member.id, purpose=purpose, granted=True,
                            version=_current_version(purpose), created_at=now))


def _current_version(purpose: str) -> str:
    setting = "TERMS_VERSION" if purpose == "terms" else "PRIVACY_NOTICE_VERSION"
    return str(current_app.config.get(setting) or "1")
