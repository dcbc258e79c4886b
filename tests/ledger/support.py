"""A small scheme built straight in the database, and ledger moves made through the
ledger's and the vouchers' own functions at chosen times."""

from __future__ import annotations

import itertools
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rewards import jobs, vouchers
from rewards.ledger import (
    account_balance,
    earn_terms,
    ensure_member_accounts,
    member_account,
    post,
    scheme_account,
)
from rewards.models import (
    Action,
    ActionType,
    Member,
    Offer,
    Partner,
    Posting,
    PostingLine,
    Reward,
    Source,
)

_refs = itertools.count(1)


@dataclass
class Place:
    source_id: uuid.UUID
    action_type_id: uuid.UUID
    partner_id: uuid.UUID


def make_place(session: Session) -> Place:
    action_type = ActionType(code=f"bus_{secrets.token_hex(3)}", name="Bus", category="travel")
    source = Source(name="First Bus", api_key_hash=secrets.token_hex(32),
                    signing_secret=secrets.token_hex(16), action_types=[action_type.code])
    partner = Partner(name="Laynes Espresso", kind="business",
                      api_key_hash=secrets.token_hex(32))
    session.add_all([action_type, source, partner])
    session.flush()
    return Place(source.id, action_type.id, partner.id)


def make_member(session: Session) -> uuid.UUID:
    member = Member(id=uuid.uuid4(), email=f"m{secrets.token_hex(6)}@example.org")
    session.add(member)
    ensure_member_accounts(session, member.id)
    session.flush()
    return member.id


def earn(
    session: Session,
    place: Place,
    member_id: uuid.UUID,
    points: int,
    at: datetime,
    hold_days: int = 0,
) -> Action:
    """An action earned at `at`, posted the way ingest posts an award."""
    action = Action(id=uuid.uuid4(), source_id=place.source_id,
                    external_ref=f"ref-{next(_refs)}", member_id=member_id,
                    action_type_id=place.action_type_id, type_code="bus_journey",
                    occurred_at=at, attributes={}, points=points)
    session.add(action)
    available_at, expires_at = earn_terms(at, hold_days)
    target = member_account(session, member_id, "pending" if hold_days else "available")
    post(session, "earn", "Bus journey v1",
         [(scheme_account(session, "scheme:issuance"), -points), (target, points)],
         key=f"award:{action.id}:test", member_id=member_id, action_id=action.id,
         available_at=available_at, expires_at=expires_at)
    session.flush()
    return action


def hold(session: Session, place: Place, member_id: uuid.UUID, points: int,
         now: datetime | None = None) -> Reward | None:
    """Claim an offer costing `points` through vouchers.claim at `now`: None if refused."""
    offer = Offer(partner_id=place.partner_id, title=f"Treat {points}", cost_points=points)
    session.add(offer)
    session.flush()
    member = session.get(Member, member_id)
    assert member is not None
    try:
        reward = vouchers.claim(session, member, offer.id, now)
    except vouchers.ClaimRefused:
        session.rollback()  # as the API does: a refused claim changes nothing
        return None
    finally:
        jobs.discard_pending()  # the test decides when to issue or fail
    return reward


def spend(session: Session, place: Place, member_id: uuid.UUID, points: int,
          now: datetime | None = None) -> bool:
    """Hold and capture (a voucher issued); False if there were not enough points."""
    reward = hold(session, place, member_id, points, now)
    if reward is None:
        return False
    vouchers.issue(session, reward.id)
    return True


def available(session: Session, member_id: uuid.UUID) -> int:
    return account_balance(session, member_account(session, member_id).id)


def pending(session: Session, member_id: uuid.UUID) -> int:
    return account_balance(session, member_account(session, member_id, "pending").id)


def scheme_balance(session: Session, code: str) -> int:
    return account_balance(session, scheme_account(session, code).id)


def postings(session: Session, kind: str) -> int:
    return int(session.scalar(select(func.count(Posting.id)).where(Posting.kind == kind)) or 0)


def unbalanced_postings(session: Session) -> list[uuid.UUID]:
    return list(session.scalars(
        select(PostingLine.posting_id).group_by(PostingLine.posting_id)
        .having(func.sum(PostingLine.points) != 0)
    ))
