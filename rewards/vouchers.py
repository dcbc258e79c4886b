"""Rewards: a member claims an offer (points held), a job issues the voucher
(points captured), a partner redeems it exactly once."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import jobs
from .ledger import (
    account_balance,
    expire_member,
    lock_member,
    member_account,
    post,
    scheme_account,
)
from .models import Member, Offer, Redemption, Reward, utcnow

# No 0/O, 1/I/L: codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 31**10 is about 8e14: unguessable at any rate a till can try


class ClaimRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_voucher_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def claim(
    session: Session, member: Member, offer_id: uuid.UUID, now: datetime | None = None
) -> Reward:
    """Hold the points and reserve one of the offer's stock, in the caller's transaction.
    `now` (default the present) decides whether the offer is open and which points
    have expired."""
    now = now or utcnow()
    account = lock_member(session, member.id)
    offer = session.get(Offer, offer_id)
    if offer is None or offer.status != "live":
        raise ClaimRefused(404, "No such offer.")
    if (offer.starts_at and offer.starts_at > now) or (offer.ends_at and offer.ends_at <= now):
        raise ClaimRefused(409, "This offer is not open for claims now.")
    if offer.per_member_limit is not None:
        taken = session.scalar(
            select(func.count(Reward.id)).where(
                Reward.member_id == member.id,
                Reward.offer_id == offer.id,
                Reward.status.notin_(("failed", "cancelled")),
            )
        )
        if (taken or 0) >= offer.per_member_limit:
            raise ClaimRefused(409, "You have claimed this offer as many times as allowed.")
    # Points past their expiry are not spendable, even before the daily job takes them.
    expire_member(session, member.id, now)
    available = account_balance(session, account.id)
    if available < offer.cost_points:
        raise ClaimRefused(
            409, f"Not enough points: this costs {offer.cost_points}, you have {available}."
        )
    # Conditional increment: two claims for the last item cannot both succeed.
    reserved = session.execute(
        update(Offer)
        .where(Offer.id == offer.id, (Offer.stock.is_(None)) | (Offer.claimed < Offer.stock))
        .values(claimed=Offer.claimed + 1)
        .execution_options(synchronize_session=False)
    )
    if reserved.rowcount != 1:
        raise ClaimRefused(409, "Sold out.")
    reward = Reward(
        id=uuid.uuid4(),
        member_id=member.id,
        offer_id=offer.id,
        status="pending",
        cost_points=offer.cost_points,
    )
    session.add(reward)
    session.flush()
    post(
        session,
        "hold",
        f"Claimed: {offer.title}",
        [(account, -offer.cost_points),
         (scheme_account(session, "scheme:rewards_held"), offer.cost_points)],
        key=f"reward:{reward.id}:hold",
        member_id=member.id,
        reward_id=reward.id,
    )
    jobs.enqueue("workers.rewards.issue_reward", queue="rewards", reward_id=str(reward.id))
    return reward


def issue(session: Session, reward_id: uuid.UUID) -> Reward | None:
    """Turn a pending reward into a voucher. Safe to run twice: the row lock and the
    status check make the second run a no-op, and the posting key forbids a second
    capture."""
    reward = session.scalar(select(Reward).where(Reward.id == reward_id).with_for_update())
    if reward is None or reward.status != "pending":
        return reward
    offer = session.get(Offer, reward.offer_id)
    assert offer is not None
    now = utcnow()
    post(
        session,
        "capture",
        f"Voucher issued: {offer.title}",
        [(scheme_account(session, "scheme:rewards_held"), -reward.cost_points),
         (scheme_account(session, "scheme:rewards_spent"), reward.cost_points)],
        key=f"reward:{reward.id}:capture",
        member_id=reward.member_id,
        reward_id=reward.id,
    )
    for _ in range(5):
        code = new_voucher_code()
        if session.scalar(select(Reward.id).where(Reward.code == code)) is None:
            break
    reward.code = code
    reward.status = "issued"
    reward.issued_at = now
    reward.expires_at = now + timedelta(days=offer.voucher_valid_days)
    return reward


def fail(session: Session, reward_id: uuid.UUID, reason: str) -> Reward | None:
    """Give up on a pending reward: release the held points and the stock."""
    reward = session.scalar(select(Reward).where(Reward.id == reward_id).with_for_update())
    if reward is None or reward.status != "pending":
        return reward
    post(
        session,
        "release",
        "Reward could not be issued; points returned",
        [(scheme_account(session, "scheme:rewards_held"), -reward.cost_points),
         (member_account(session, reward.member_id), reward.cost_points)],
        key=f"reward:{reward.id}:release",
        member_id=reward.member_id,
        reward_id=reward.id,
    )
    session.execute(
        update(Offer).where(Offer.id == reward.offer_id).values(claimed=Offer.claimed - 1)
    )
    reward.status = "failed"
    reward.failure_reason = reason[:500]
    return reward


def find_voucher(session: Session, partner_id: uuid.UUID, code: str) -> Reward | None:
    """A voucher this partner honours; another partner's is as good as unknown."""
    code = normalise_code(code)
    if not code:
        return None
    reward = session.scalar(
        select(Reward).join(Offer, Offer.id == Reward.offer_id).where(
            Reward.code == code, Offer.partner_id == partner_id
        )
    )
    return reward


@dataclass
class RedeemOutcome:
    status: int
    message: str
    reward: Reward | None = None
    redemption: Redemption | None = None


def voucher_state(reward: Reward) -> str:
    if reward.status == "issued" and reward.expires_at and reward.expires_at <= utcnow():
        return "expired"
    return reward.status


def redeem(session: Session, partner_id: uuid.UUID, code: str) -> RedeemOutcome:
    """Redeem at most once: a conditional update from `issued` decides the one winner,
    and the unique redemption row backs it up."""
    reward = find_voucher(session, partner_id, code)
    if reward is None:
        return RedeemOutcome(404, "No such voucher here.")
    now = utcnow()
    changed = session.execute(
        update(Reward)
        .where(Reward.id == reward.id, Reward.status == "issued", Reward.expires_at > now)
        .values(status="redeemed", redeemed_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        session.rollback()
        session.refresh(reward)
        state = voucher_state(reward)
        if state == "redeemed":
            return RedeemOutcome(409, "This voucher has already been used.", reward)
        if state == "expired":
            return RedeemOutcome(410, "This voucher has expired.", reward)
        return RedeemOutcome(409, f"This voucher cannot be used: it is {state}.", reward)
    redemption = Redemption(reward_id=reward.id, partner_id=partner_id)
    session.add(redemption)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return RedeemOutcome(409, "This voucher has already been used.", reward)
    session.refresh(reward)
    return RedeemOutcome(201, "Redeemed.", reward, redemption)
