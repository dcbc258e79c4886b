"""Closing an account (DELETE /v1/me): personal data goes, the books stay balanced.

Removed: email, name, ward, postcode district, birth year, PIN, linked cards, push
devices and notification choices, login codes sent to the address, consents, stored
idempotent answers (they hold vouchers and profile), every login session, the counters
kept for the address (login codes and confirmations asked for), the text and
photos of self-reports, and the attributes of every action (places, routes) with the
copies of them kept in awards' inputs. Rewards not yet redeemed are cancelled with
their postings (held points released, issued vouchers refunded), so no code of the
member's works any more. What stays, under the member's id, which no longer leads
to a person: ledger postings and balances, actions' type, time and points, awards'
rule and points, redemptions already settled with partners, and the audit log (less
the card digits and postcode district a desk enrolment recorded in it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .ledger import lock_member
from .members import otp_address
from .models import (
    Action,
    AuditEntry,
    Award,
    Device,
    IdempotencyRecord,
    Identifier,
    Member,
    NotificationPreference,
    OtpCode,
    Reward,
)
from .models.login import LoginThrottle
from .models.privacy import Consent
from .models.review import SelfReport, SelfReportPhoto
from .sessions import revoke_all
from .throttle import throttle_key
from .vouchers import cancel_unredeemed

ERASED_TEXT = "(erased at the member's request)"
# Counters in login_throttles kept per resident address (login codes asked for, address
# confirmations asked for): rewards/members.py and rewards/api/email_change.py.
ADDRESS_COUNTERS = ("otp", "email-change")
# What staff actions on the member recorded about them in the audit log (a desk
# enrolment: the card's last 4 digits and the postcode district). The entries stay, as
# the record of what staff did; these values go from them as from the member's row.
AUDIT_PERSONAL = ("card_last4", "postcode_district")


def erase_member(session: Session, member: Member, now: datetime) -> None:
    """Everything above, in the caller's transaction.

    Locks in the order spenders take them: the member's available account first (claims
    and donations lock it, then write rows that reference the member's row), then the
    member's row. The other way round, a claim or donation in flight and the erasure
    each waited for the other's lock (a deadlock, one of them failing). A spend that
    waited for the account's lock finds the account closed (erased_at, read after it).
    The row is read again under its lock: a change committed since the caller loaded it
    (a profile edit) is then overwritten too, not left because the entity's stale copy
    already held the erased value."""
    member_id = member.id
    lock_member(session, member_id)
    session.scalar(select(Member).where(Member.id == member_id).with_for_update()
                   .execution_options(populate_existing=True))
    if member.email:
        session.execute(delete(OtpCode).where(OtpCode.email_hash == otp_address(member.email)))
        # The address's counters name it too (a keyed digest); it belongs to nobody now.
        session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(
            [throttle_key(purpose, member.email) for purpose in ADDRESS_COUNTERS])))
    for reward_id in session.scalars(select(Reward.id).where(
            Reward.member_id == member_id, Reward.status.in_(("pending", "issued")))):
        cancel_unredeemed(session, reward_id, "the member closed their account")
    session.execute(delete(Identifier).where(Identifier.member_id == member_id))
    session.execute(delete(Device).where(Device.member_id == member_id))
    session.execute(delete(NotificationPreference).where(
        NotificationPreference.member_id == member_id))
    session.execute(delete(Consent).where(Consent.member_id == member_id))
    revoke_all(session, "erased", member_id=member_id)  # every login of theirs ends
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.scope.like(f"member:{member_id}:%")))
    reports = select(SelfReport.id).where(SelfReport.member_id == member_id)
    session.execute(delete(SelfReportPhoto).where(SelfReportPhoto.self_report_id.in_(reports)))
    session.execute(update(SelfReport).where(SelfReport.member_id == member_id).values(
        description=ERASED_TEXT, photo_type=None, photo_size=None))
    session.execute(update(Action).where(Action.member_id == member_id)
                    .values(attributes={}).execution_options(synchronize_session=False))
    session.execute(update(Award).where(Award.member_id == member_id)
                    .values(inputs={}).execution_options(synchronize_session=False))
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.target_type == "member", AuditEntry.target_id == str(member_id))):
        if any(key in (entry.details or {}) for key in AUDIT_PERSONAL):
            entry.details = {key: value for key, value in entry.details.items()
                             if key not in AUDIT_PERSONAL}
    member.email = None
    member.display_name = None
    member.ward = None
    member.birth_year = None
    member.postcode_district = None
    member.pin_hash = None
    member.travel_data_withheld = True
    member.erased_at = now
