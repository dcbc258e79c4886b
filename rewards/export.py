"""GET /v1/me/export: everything the scheme holds about a member, as one JSON document
(UK GDPR right of access and data portability). Card numbers are not held, so only
their kind and last 4 digits can be given.

Every table holding rows about a member is either in EXPORTED (with the part of the
export that gives its rows) or in NOT_EXPORTED (with the reason it is left out);
tests/security/test_privacy_whole_schema.py reflects the database and fails for a table
that names a member and is in neither, so a new one cannot be forgotten."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import consents
from .ledger import member_balances
from .models import (
    Account,
    Action,
    Device,
    Identifier,
    Member,
    NotificationPreference,
    Posting,
    PostingLine,
    Reward,
)
from .models.donation import Donation
from .models.event import Event, EventClaim, EventCode
from .models.login import LoginSession
from .models.review import Review, SelfReport
from .retention import photo_removed_text
from .vouchers import voucher_state

FORMAT = "citizen-rewards-export/1"

# Table: the part of the export that gives the member's rows of it.
EXPORTED = {
    "members": "member",
    "identifiers": "cards",
    "devices": "devices",
    "notification_preferences": "notification_choices",
    "consents": "consents",
    "accounts": "ledger",
    "postings": "ledger",
    "posting_lines": "ledger",
    "member_totals": "balance",
    "actions": "actions",
    "awards": "actions",
    "self_reports": "self_reports",
    "self_report_photos": "self_reports",
    "reviews": "reviews",
    "rewards": "rewards",
    "redemptions": "rewards",
    "donations": "donations",
    "event_claims": "events",
    "event_codes": "events",
    "login_sessions": "logins",
}
# Table: why rows of it that name a member are not in the export.
NOT_EXPORTED = {
    "dashboard_member_days": "derived: counts of the actions given under `actions`, "
                             "for aggregate figures only",
    "dashboard_member_months": "derived from the actions, like dashboard_member_days",
    "dashboard_member_hours": "derived from the actions, like dashboard_member_days",
    "dashboard_member_tenure": "derived from the actions, like dashboard_member_days",
    "idempotency_keys": "copies of answers already given (a claim, a donation), kept to "
                        "answer a retry alike; what they hold is under rewards and donations",
    "outbox": "jobs in flight (a notice to send, a voucher to issue), deleted a week "
              "after they ran; what they did is under ledger and rewards",
    "audit_log": "staff's record of what staff did (viewed, adjusted, reset a PIN): the "
                 "council's accountability log; the adjustments themselves are under ledger",
}


def _time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with +00:00, as every other answer of the API writes a time."""
    return moment.astimezone(UTC).isoformat() if moment else None


def member_export(session: Session, member: Member, now: datetime) -> dict[str, Any]:
    member_id = member.id
    balances = member_balances(session, member_id)
    accounts = dict(session.execute(select(Account.id, Account.kind)
                                    .where(Account.member_id == member_id)).all())
    lines = session.execute(
        select(PostingLine.account_id, PostingLine.points, PostingLine.created_at,
               Posting.kind, Posting.reason)
        .join(Posting, Posting.id == PostingLine.posting_id)
        .where(PostingLine.account_id.in_(list(accounts)))
        .order_by(PostingLine.created_at, PostingLine.id)).all() if accounts else []

    def held(model: Any, *order: Any) -> Any:
        """The member's rows of `model`, in `order` (default: as they were made)."""
        return session.scalars(select(model).where(model.member_id == member_id)
                               .order_by(*(order or (model.created_at,)))).all()

    actions = held(Action, Action.occurred_at, Action.id)
    reports, reviews, rewards = held(SelfReport), held(Review), held(Reward)
    donations, cards, devices = held(Donation), held(Identifier), held(Device)
    choices = session.scalars(select(NotificationPreference).where(
        NotificationPreference.member_id == member_id)).all()
    events = session.execute(
        select(Event.name, EventCode.code, EventClaim.created_at, EventClaim.action_id)
        .join(Event, Event.id == EventClaim.event_id)
        .join(EventCode, EventCode.id == EventClaim.code_id)
        .where(EventClaim.member_id == member_id)
        .order_by(EventClaim.created_at, EventClaim.id)).all()
    logins = session.scalars(select(LoginSession).where(LoginSession.member_id == member_id)
                             .order_by(LoginSession.created_at, LoginSession.id)).all()
    return {
        "format": FORMAT,
        "exported_at": _time(now),
        "member": {
            "id": str(member_id), "email": member.email, "display_name": member.display_name,
            "ward": member.ward, "locale": member.locale,
            "postcode_district": member.postcode_district,
            "joined_at": _time(member.joined_at), "has_pin": member.pin_hash is not None,
            "birth_year": member.birth_year,
        },
        "cards": [{"kind": c.kind, "last4": c.last4, "linked_at": _time(c.created_at)}
                  for c in cards],
        "devices": [{"platform": d.platform, "token": d.token,
                     "registered_at": _time(d.created_at), "last_seen_at": _time(d.last_seen_at)}
                    for d in devices],
        "notification_choices": [{"kind": c.kind, "channel": c.channel, "enabled": c.enabled}
                                 for c in choices],
        "consents": {
            "current": [{"purpose": s.purpose, "granted": s.granted, "version": s.version,
                         "given_at": _time(s.given_at), "withdrawn_at": _time(s.withdrawn_at)}
                        for s in consents.current(session, member_id)],
            "history": [{"purpose": c.purpose, "granted": c.granted, "version": c.version,
                         "at": _time(c.created_at)}
                        for c in consents.history(session, member_id)],
        },
        "balance": {"available": balances.available, "pending": balances.pending,
                    "lifetime_earned": balances.lifetime_earned},
        "ledger": [{"account": accounts[line.account_id], "points": line.points,
                    "kind": line.kind, "reason": line.reason, "at": _time(line.created_at)}
                   for line in lines],
        "actions": [{
            "id": str(a.id), "type": a.type_code, "origin": a.origin,
            "occurred_at": _time(a.occurred_at), "recorded_at": _time(a.created_at),
            "status": a.status, "points": a.points, "reason": a.flag_reason,
            "attributes": a.attributes,
            "awards": [{"rule": w.rule_name, "rule_version": w.rule_version,
                        "points": w.points, "capped_by": w.capped_by} for w in a.awards],
        } for a in actions],
        "self_reports": [{"action_id": str(r.action_id), "description": r.description,
                          "photo": r.photo_type, "photo_removed": photo_removed_text(r),
                          "sent_at": _time(r.created_at)}
                         for r in reports],
        "reviews": [{"action_id": str(r.action_id), "decision": r.decision,
                     "reason": r.reason, "at": _time(r.created_at)} for r in reviews],
        "rewards": [{"id": str(r.id), "offer": r.offer.title, "partner": r.offer.partner.name,
                     "status": voucher_state(r), "cost_points": r.cost_points,
                     "code": r.code or r.partner_code, "claimed_at": _time(r.created_at),
                     "issued_at": _time(r.issued_at), "expires_at": _time(r.expires_at),
                     "redeemed_at": _time(r.redeemed_at)} for r in rewards],
        "donations": [{"charity": d.charity.name, "points": d.points,
                       "at": _time(d.created_at)} for d in donations],
        "events": [{"event": e.name, "code": e.code, "action_id": str(e.action_id),
                    "claimed_at": _time(e.created_at)} for e in events],
        "logins": [{"started_at": _time(s.created_at), "expires_at": _time(s.expires_at),
                    "ended_at": _time(s.revoked_at), "ended_because": s.revoked_reason}
                   for s in logins],
    }
