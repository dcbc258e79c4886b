"""A small scheme for the dashboard tests, made through the scheme's own services:
members in a few wards, actions earned, revoked, claimed, redeemed, expired, donated."""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from rewards import jobs, vouchers
from rewards.donations import DonationRefused, donate
from rewards.ledger import ensure_member_accounts, member_account, post, scheme_account
from rewards.ledger.expiry import expire_member
from rewards.ledger.reversal import reverse_action
from rewards.models import Action, ActionType, Member, Offer, Partner, Source

WARDS = ("Armley", "Headingley & Hyde Park", "Gipton & Harehills", "Roundhay")
TYPES = (("bus_journey", "travel"), ("leisure_visit", "health"),
         ("volunteering_hour", "volunteering"))
_refs = itertools.count(1)


@dataclass
class World:
    source_id: uuid.UUID
    types: dict[str, uuid.UUID]
    partner_id: uuid.UUID
    charity_id: uuid.UUID
    offers: list[uuid.UUID]
    members: list[uuid.UUID] = field(default_factory=list)
    actions: list[uuid.UUID] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


def make_world(session: Session) -> World:
    types = {}
    for code, category in TYPES:
        action_type = ActionType(code=code, name=code.replace("_", " "), category=category)
        session.add(action_type)
        session.flush()
        types[code] = action_type.id
    source = Source(name="Sources", api_key_hash=secrets.token_hex(32),
                    signing_secret=secrets.token_hex(16), action_types=list(types))
    partner = Partner(name="Laynes Espresso", kind="business",
                      api_key_hash=secrets.token_hex(32))
    charity = Partner(name="St George's Crypt", kind="charity",
                      api_key_hash=secrets.token_hex(32))
    session.add_all([source, partner, charity])
    session.flush()
    offers = []
    for title, cost in (("Coffee", 20), ("Swim", 40)):
        offer = Offer(partner_id=partner.id, title=title, cost_points=cost, value_pence=150,
                      voucher_valid_days=10)
        session.add(offer)
        session.flush()
        offers.append(offer.id)
    return World(source.id, types, partner.id, charity.id, offers)


def add_member(session: Session, world: World, rng: random.Random, now: datetime) -> uuid.UUID:
    member = Member(id=uuid.uuid4(), email=f"m{secrets.token_hex(6)}@example.org",
                    ward=rng.choice(WARDS), joined_at=now - timedelta(days=rng.randint(0, 150),
                                                                      hours=rng.randint(0, 23)),
                    birth_year=rng.choice((None, 1950, 1972, 1990, 2001)),
                    enrolled_by=uuid.uuid4() if rng.random() < 0.2 else None)
    session.add(member)
    ensure_member_accounts(session, member.id)
    session.flush()
    world.members.append(member.id)
    return member.id


def earn(session: Session, world: World, rng: random.Random, member_id: uuid.UUID,
         now: datetime) -> Action:
    code = rng.choice(list(world.types))
    at = now - timedelta(days=rng.randint(0, 120), minutes=rng.randint(0, 1439))
    points = rng.choice((0, 5, 10, 20))
    attributes = {"distance_km": rng.choice((2, 5.5))} if code == "bus_journey" else (
        {"hours": rng.choice((1, 2.5))} if code == "volunteering_hour" else {})
    status = "flagged" if rng.random() < 0.05 else "accepted"
    action = Action(id=uuid.uuid4(), source_id=world.source_id,
                    external_ref=f"ref-{next(_refs)}", member_id=member_id,
                    action_type_id=world.types[code], type_code=code, occurred_at=at,
                    attributes=attributes, points=points if status == "accepted" else 0,
                    status=status)
    session.add(action)
    session.flush()
    if points and status == "accepted":
        # Expiring soon after it is earned, so some lots expire during the test.
        post(session, "earn", code,
             [(scheme_account(session, "scheme:issuance"), -points),
              (member_account(session, member_id), points)],
             key=f"award:{action.id}", member_id=member_id, action_id=action.id,
             available_at=at, expires_at=at + timedelta(days=rng.choice((30, 400))))
    world.actions.append(action.id)
    return action


def random_round(session: Session, world: World, rng: random.Random, now: datetime,
                 actions: int = 80, members: int | None = None) -> None:
    """One round of a random mix, committed."""
    for _ in range(members if members is not None else rng.randint(2, 6)):
        add_member(session, world, rng, now)
    for _ in range(actions):
        earn(session, world, rng, rng.choice(world.members), now)
    session.commit()
    for action_id in rng.sample(world.actions, min(4, len(world.actions))):
        action = session.get(Action, action_id)
        if action is not None and action.status == "accepted":
            reverse_action(session, action, "Duplicate tap found by the operator", now)
            session.commit()
    for member_id in rng.sample(world.members, min(8, len(world.members))):
        member = session.get(Member, member_id)
        try:
            reward = vouchers.claim(session, member, rng.choice(world.offers), now,
                                    enqueue_issue=False)
        except vouchers.ClaimRefused:
            session.rollback()
            continue
        vouchers.issue(session, reward.id, now=now)
        session.commit()
        world.codes.append(reward.code)
    jobs.discard_pending()
    for code in rng.sample(world.codes, min(3, len(world.codes))):
        vouchers.redeem(session, world.partner_id, code)
    for reward_id in vouchers.vouchers_past_expiry(session, now + timedelta(days=11)):
        if rng.random() < 0.3:
            vouchers.expire_voucher(session, reward_id, now + timedelta(days=11))
    session.commit()
    for member_id in rng.sample(world.members, min(3, len(world.members))):
        try:
            donate(session, member_id, world.charity_id, rng.randint(1, 10), now)
            session.commit()
        except DonationRefused:
            session.rollback()
    for member_id in rng.sample(world.members, min(5, len(world.members))):
        expire_member(session, member_id, now)
        session.commit()


def now_utc() -> datetime:
    return datetime.now(UTC)
