"""Rewards: a member claims an offer (points held), a job issues the voucher (points
captured), a partner redeems it exactly once and may undo that within ten minutes;
vouchers nobody redeems expire, and the offer says whether their points come back."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import Select, bindparam, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from . import jobs
from .catalogue import eligibility_of, ineligible_because, period_start, window_state
from .ledger import (
    expire_then_balance,
    lock_member,
    member_account,
    post,
    scheme_account,
)
from .models import Member, Offer, Redemption, Reward, utcnow
from .reasons import Reason

# No 0/O, 1/I/L: codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 31**10 is about 8e14: unguessable at any rate a till can try

UNDO_WINDOW = timedelta(minutes=10)
REMINDER_BEFORE = timedelta(days=3)
PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}


class ClaimRefused(Exception):
    def __init__(self, status: int, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def new_voucher_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _locked(stmt: Select[Any]) -> Select[Any]:
    """FOR UPDATE, and overwrite what the session already holds of the row: a row read
    before the lock (the session keeps objects across commits) may be stale."""
    return stmt.with_for_update().execution_options(populate_existing=True)


def _scheme_timezone() -> str:
    if has_app_context():
        return str(current_app.config.get("SCHEME_TIMEZONE", "Europe/London"))
    return "Europe/London"


def limit_message(limit: int, period: str) -> str:
    if period == "ever":
        return "You have claimed this offer as many times as allowed."
    times = "once" if limit == 1 else f"{limit} times"
    return f"You have claimed this offer as many times as allowed {PERIOD_WORDS[period]} " \
           f"({times} a {period})."


# -- claiming ---------------------------------------------------------------------------

def claim(
    session: Session,
    member: Member,
    offer_id: uuid.UUID,
    now: datetime | None = None,
    *,
    enqueue_issue: bool = True,
) -> Reward:
    """Hold the points and reserve one of the offer's stock, in the caller's transaction.
    `now` (default the present) decides whether the offer is open, which claims count
    against the member's limit and which points have expired. The member lock
    serialises the member's own claims, so the balance and the limit are read and
    spent by one claim at a time; the stock is reserved by a conditional update.
    With `enqueue_issue` false the caller issues the voucher itself."""
    now = now or utcnow()
    account = lock_member(session, member.id)
    # With its partner: the claim's answer names it.
    offer = session.get(Offer, offer_id, options=[joinedload(Offer.partner)])
    if offer is None or offer.status != "live":
        raise ClaimRefused(404, "No such offer.", Reason.NOT_FOUND)
    window = window_state(offer.starts_at, offer.ends_at, now)
    if window == "not_yet":
        assert offer.starts_at is not None
        raise ClaimRefused(409, f"This offer opens on {offer.starts_at:%d %B %Y at %H:%M} UTC.",
                           Reason.NOT_OPEN)
    if window == "ended":
        raise ClaimRefused(410, "This offer has ended.", Reason.ENDED)
    why_not = ineligible_because(eligibility_of(offer), member.ward, member.joined_at)
    if why_not:
        raise ClaimRefused(409, why_not, Reason.NOT_ELIGIBLE)
    if offer.per_member_limit is not None:
        counted = select(func.count(Reward.id)).where(
            Reward.member_id == member.id,
            Reward.offer_id == offer.id,
            Reward.status.notin_(("failed", "cancelled")),
        )
        since = period_start(offer.limit_period, now, _scheme_timezone())
        if since is not None:
            counted = counted.where(Reward.created_at >= since)
        if (session.scalar(counted) or 0) >= offer.per_member_limit:
            raise ClaimRefused(409, limit_message(offer.per_member_limit, offer.limit_period),
                               Reason.LIMIT_REACHED)
    # Points past their expiry are not spendable, even before the daily job takes them.
    available = expire_then_balance(session, member.id, now, locked=account)
    if available < offer.cost_points:
        raise ClaimRefused(
            409, f"Not enough points: this costs {offer.cost_points}, you have {available}.",
            Reason.INSUFFICIENT_POINTS)
    reward = Reward(
        id=uuid.uuid4(),
        member_id=member.id,
        offer=offer,  # held by the reward: its answer names the offer and partner
        status="pending",
        cost_points=offer.cost_points,
        created_at=now,
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
    # Conditional increment: two claims for the last item cannot both succeed. Last of
    # the claim's writes, so the offer's row (which every claim of the offer takes) is
    # held from here to the commit only; a sold-out claim's writes are rolled back.
    reserved = session.execute(
        update(Offer)
        .where(Offer.id == offer.id, (Offer.stock.is_(None)) | (Offer.claimed < Offer.stock))
        .values(claimed=Offer.claimed + 1)
        .execution_options(synchronize_session=False)
    )
    if reserved.rowcount != 1:
        raise ClaimRefused(409, "Sold out.", Reason.SOLD_OUT)
    if enqueue_issue:
        jobs.enqueue("workers.rewards.issue_reward", queue="rewards", reward_id=str(reward.id))
    return reward


# -- issuing ----------------------------------------------------------------------------

def issue(
    session: Session,
    reward_id: uuid.UUID,
    *,
    now: datetime | None = None,
    expires_at: datetime | None = None,
    partner_code: str | None = None,
    partner_reference: str | None = None,
) -> Reward | None:
    """Turn a pending reward into a voucher: our own code, or (a partner-fulfilled
    offer) the code the partner's system gave. Safe to run twice: the row lock and
    the status check make the second run a no-op, and the posting key forbids a
    second capture."""
    reward = session.scalar(_locked(select(Reward).where(Reward.id == reward_id)))
    if reward is None or reward.status != "pending":
        return reward
    offer = session.get(Offer, reward.offer_id)
    assert offer is not None
    now = now or utcnow()
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
    if partner_code is None:
        for _ in range(5):
            code = new_voucher_code()
            if session.scalar(select(Reward.id).where(Reward.code == code)) is None:
                break
        reward.code = code
    else:
        reward.partner_code = partner_code
        reward.partner_reference = partner_reference
    reward.status = "issued"
    reward.issued_at = now
    reward.expires_at = expires_at or now + timedelta(days=offer.voucher_valid_days)
    return reward


def fail(session: Session, reward_id: uuid.UUID, reason: str) -> Reward | None:
    """Give up on a pending reward: release the held points and the stock."""
    reward = session.scalar(_locked(select(Reward).where(Reward.id == reward_id)))
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
    _release_stock(session, reward.offer_id)
    reward.status = "failed"
    reward.failure_reason = reason[:500]
    return reward


def cancel_unredeemed(session: Session, reward_id: uuid.UUID, reason: str) -> Reward | None:
    """Cancel a reward not yet redeemed (its member closed the account): a pending one's
    held points are released, an issued voucher's points refunded, and the stock freed;
    the code stops working. Redeemed, expired and settled rewards are left as they are."""
    reward = session.scalar(_locked(select(Reward).where(Reward.id == reward_id)))
    if reward is None or reward.status not in ("pending", "issued"):
        return reward
    if reward.status == "pending":
        fail(session, reward.id, reason)
    else:
        _refund_spent(session, reward, f"Voucher cancelled: {reason}", "cancel_refund")
        _release_stock(session, reward.offer_id)
    reward.status = "cancelled"
    reward.failure_reason = reason[:500]
    return reward


def _release_stock(session: Session, offer_id: uuid.UUID) -> None:
    session.execute(
        update(Offer).where(Offer.id == offer_id, Offer.claimed > 0)
        .values(claimed=Offer.claimed - 1)
        .execution_options(synchronize_session=False)
    )


def stuck_rewards(session: Session, cutoff: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Rewards still pending since before `cutoff`: every retry of their job is long over."""
    return list(session.scalars(
        select(Reward.id).where(Reward.status == "pending", Reward.created_at <= cutoff)
        .order_by(Reward.created_at).limit(limit)
    ))


# -- redeeming --------------------------------------------------------------------------

def find_voucher(session: Session, partner_id: uuid.UUID, code: str) -> Reward | None:
    """A voucher this partner honours; another partner's is as good as unknown."""
    code = normalise_code(code)
    if not code:
        return None
    return session.scalar(
        select(Reward).join(Reward.offer)
        .options(contains_eager(Reward.offer))
        .where(Reward.code == code, Offer.partner_id == partner_id)
    )


@dataclass(frozen=True)
class Receipt:
    """What a till is told about a redemption (and what it is owed for)."""

    id: uuid.UUID
    code: str | None
    offer_id: uuid.UUID
    offer_title: str
    channel: str
    redeemed_at: datetime
    value_pence: int
    undone_at: datetime | None = None
    reference: str | None = None  # the till's own

    @classmethod
    def of(cls, redemption: Redemption, reward: Reward) -> Receipt:
        return cls(redemption.id, reward.code, reward.offer.id, reward.offer.title,
                   redemption.channel, redemption.created_at, redemption.value_pence,
                   redemption.undone_at, redemption.till_reference)


@dataclass
class RedeemOutcome:
    status: int
    message: str
    reward: Reward | None = None
    receipt: Receipt | None = None
    reason: Reason | None = None


def voucher_state(reward: Reward) -> str:
    if reward.status == "issued" and reward.expires_at and reward.expires_at <= utcnow():
        return "expired"
    return reward.status


def _take(
    session: Session,
    reward: Reward,
    partner_id: uuid.UUID,
    now: datetime,
    *,
    channel: str,
    redeemed_by: uuid.UUID | None,
    reference: str | None = None,
) -> Redemption | None:
    """Redeem `reward` in the caller's transaction: the conditional update from
    `issued` decides the one winner; None if this call did not win."""
    changed = session.execute(
        update(Reward)
        .where(Reward.id == reward.id, Reward.status == "issued", Reward.expires_at > now)
        .values(status="redeemed", redeemed_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        return None
    # What the update wrote, without another round trip or a second UPDATE at flush.
    set_committed_value(reward, "status", "redeemed")
    set_committed_value(reward, "redeemed_at", now)
    redemption = Redemption(id=uuid.uuid4(), reward_id=reward.id, partner_id=partner_id,
                            channel=channel, value_pence=reward.offer.value_pence,
                            redeemed_by=redeemed_by, created_at=now,
                            till_reference=reference)
    session.add(redemption)
    return redemption


def _why_not(reward: Reward) -> RedeemOutcome:
    state = voucher_state(reward)
    if state == "redeemed":
        return RedeemOutcome(409, "This voucher has already been used.", reward,
                             reason=Reason.VOUCHER_USED)
    if state == "expired":
        return RedeemOutcome(410, "This voucher has expired.", reward,
                             reason=Reason.VOUCHER_EXPIRED)
    return RedeemOutcome(409, f"This voucher cannot be used: it is {state}.", reward,
                         reason=Reason.VOUCHER_CANCELLED if state in ("cancelled", "failed")
                         else Reason.VOUCHER_NOT_ISSUED)


_REWARDS, _OFFERS, _REDEMPTIONS = Reward.__table__, Offer.__table__, Redemption.__table__


def _param(name: str, column: Any) -> Any:
    return bindparam(name, type_=column.type)


def _winning_update() -> Any:
    """UPDATE the voucher with this code, of an offer of this partner, from issued (and
    unexpired) to redeemed: at most one caller ever gets its row back."""
    moment = _param("moment", _REWARDS.c.redeemed_at)
    return (
        update(_REWARDS)
        .where(_REWARDS.c.code == bindparam("voucher_code"), _REWARDS.c.status == "issued",
               _REWARDS.c.expires_at > moment,
               _REWARDS.c.offer_id.in_(
                   select(_OFFERS.c.id)
                   .where(_OFFERS.c.partner_id == _param("partner", _OFFERS.c.partner_id))))
        .values(status="redeemed", redeemed_at=moment)
        .returning(_REWARDS.c.id, _REWARDS.c.offer_id)
    )


@cache
def _redeem_statements(dialect: str) -> tuple[Any, ...]:
    """Built once: a till's redemption is the hottest path in the scheme."""
    if dialect != "postgresql":
        return (
            _winning_update(),
            select(_OFFERS.c.title, _OFFERS.c.value_pence)
            .where(_OFFERS.c.id == _param("offer", _OFFERS.c.id)),
            insert(_REDEMPTIONS),
        )
    won = _winning_update().cte("won")
    made = (
        insert(_REDEMPTIONS)
        .from_select(
            ["id", "reward_id", "partner_id", "channel", "value_pence", "redeemed_by",
             "created_at", "idempotency_key", "till_reference"],
            select(_param("new_id", _REDEMPTIONS.c.id), won.c.id,
                   _param("partner", _REDEMPTIONS.c.partner_id), literal("code"),
                   _OFFERS.c.value_pence, _param("user", _REDEMPTIONS.c.redeemed_by),
                   _param("moment", _REDEMPTIONS.c.created_at),
                   _param("key", _REDEMPTIONS.c.idempotency_key),
                   _param("reference", _REDEMPTIONS.c.till_reference))
            .select_from(won.join(_OFFERS, _OFFERS.c.id == won.c.offer_id)))
        .returning(_REDEMPTIONS.c.reward_id, _REDEMPTIONS.c.value_pence)
        .cte("made")
    )
    return (
        select(made.c.value_pence, _OFFERS.c.id, _OFFERS.c.title)
        .select_from(made.join(won, won.c.id == made.c.reward_id)
                     .join(_OFFERS, _OFFERS.c.id == won.c.offer_id)),
    )


def _redeem_code(session: Session, partner_id: uuid.UUID, code: str, now: datetime,
                 redeemed_by: uuid.UUID | None, key: str | None = None,
                 reference: str | None = None) -> Receipt | None:
    """Redeem by code in the open transaction; None if nothing was redeemed. On
    PostgreSQL one statement does it all (update, record what is owed, read the offer):
    a till's redemption is one round trip and a commit. Elsewhere, three statements."""
    connection = session.connection()
    statements = _redeem_statements(connection.dialect.name)
    params = {"voucher_code": code, "partner": partner_id, "moment": now}
    redemption_id = uuid.uuid4()
    if len(statements) == 1:
        row = connection.execute(statements[0], {
            **params, "new_id": redemption_id, "user": redeemed_by, "key": key,
            "reference": reference}).first()
        if row is None:
            return None
        value_pence, offer_id, title = row
    else:
        winning, offer_terms, record = statements
        won_row = connection.execute(winning, params).first()
        if won_row is None:
            return None
        reward_id, offer_id = won_row
        title, value_pence = connection.execute(offer_terms, {"offer": offer_id}).one()
        connection.execute(record, {
            "id": redemption_id, "reward_id": reward_id, "partner_id": partner_id,
            "channel": "code", "value_pence": value_pence, "redeemed_by": redeemed_by,
            "created_at": now, "idempotency_key": key, "till_reference": reference})
    return Receipt(redemption_id, code, offer_id, title, "code", now, value_pence,
                   reference=reference)


def redeem(
    session: Session,
    partner_id: uuid.UUID,
    code: str,
    *,
    redeemed_by: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    reference: str | None = None,
) -> RedeemOutcome:
    """Redeem at most once, and commit: the conditional update decides the one winner,
    and the unique index on standing redemptions backs it up. A refusal says why. The
    till's Idempotency-Key and reference are kept with the redemption."""
    code = normalise_code(code)
    receipt = None
    if code:
        try:
            receipt = _redeem_code(session, partner_id, code, utcnow(), redeemed_by,
                                   idempotency_key, reference)
            if receipt is not None:
                session.commit()
        except IntegrityError:
            session.rollback()
            return RedeemOutcome(409, "This voucher has already been used.",
                                 reason=Reason.VOUCHER_USED)
    if receipt is not None:
        return RedeemOutcome(201, "Redeemed.", receipt=receipt)
    session.rollback()
    reward = find_voucher(session, partner_id, code)
    if reward is None:
        return RedeemOutcome(404, "No such voucher here.", reason=Reason.VOUCHER_NOT_FOUND)
    return _why_not(reward)


def redeem_by_card(
    session: Session,
    partner_id: uuid.UUID,
    member: Member,
    offer_id: uuid.UUID,
    *,
    redeemed_by: uuid.UUID | None = None,
    now: datetime | None = None,
    reference: str | None = None,
) -> RedeemOutcome:
    """A member without a phone, at the till with card and PIN (checked by the caller):
    claim, issue and redeem in the caller's transaction, so either all happen or none.
    Raises ClaimRefused for what a claim would refuse."""
    now = now or utcnow()
    offer = session.get(Offer, offer_id)
    if offer is None or offer.partner_id != partner_id or offer.status != "live":
        raise ClaimRefused(404, "No such offer here.", Reason.NOT_FOUND)
    if offer.fulfilment != "internal":
        raise ClaimRefused(409, "This offer is issued by your own booking system; it cannot "
                                "be redeemed with a card and PIN.",
                           Reason.PARTNER_FULFILS)
    reward = claim(session, member, offer.id, now, enqueue_issue=False)
    issued = issue(session, reward.id, now=now)
    assert issued is not None and issued.status == "issued"
    redemption = _take(session, issued, partner_id, now, channel="card", redeemed_by=redeemed_by,
                       reference=reference)
    assert redemption is not None  # issued a moment ago in this transaction
    return RedeemOutcome(201, "Redeemed.", issued, Receipt.of(redemption, issued))


def undo_redemption(
    session: Session,
    partner_id: uuid.UUID,
    redemption_id: uuid.UUID,
    *,
    undone_by: uuid.UUID | None = None,
    now: datetime | None = None,
) -> RedeemOutcome:
    """Undo a mistaken redemption, in the caller's transaction: only the partner that
    made it, within UNDO_WINDOW, and once per voucher. A voucher redeemed by code is
    valid again; one redeemed by card and PIN (the member has no code to show) is
    cancelled and its points and stock come back."""
    now = now or utcnow()
    found = session.scalar(select(Redemption.reward_id).where(
        Redemption.id == redemption_id, Redemption.partner_id == partner_id))
    if found is None:
        return RedeemOutcome(404, "No such redemption here.", reason=Reason.NOT_FOUND)
    # Lock the voucher first, as redeeming does, then the redemption.
    reward = session.scalar(_locked(select(Reward).where(Reward.id == found)))
    redemption = session.scalar(
        _locked(select(Redemption).where(Redemption.id == redemption_id)))
    assert reward is not None and redemption is not None
    if redemption.undone_at is not None:
        return RedeemOutcome(409, "This redemption has already been undone.", reward,
                             reason=Reason.ALREADY_UNDONE)
    if now - redemption.created_at > UNDO_WINDOW:
        minutes = int(UNDO_WINDOW.total_seconds() // 60)
        return RedeemOutcome(409, f"Too late to undo: a redemption can be undone within "
                                  f"{minutes} minutes.", reward,
                             reason=Reason.UNDO_WINDOW_PASSED)
    undone_before = session.scalar(select(func.count(Redemption.id)).where(
        Redemption.reward_id == reward.id, Redemption.undone_at.is_not(None)))
    if undone_before:
        return RedeemOutcome(409, "This voucher's redemption was undone once already; it "
                                  "cannot be undone again.", reward,
                             reason=Reason.ALREADY_UNDONE)
    redemption.undone_at = now
    redemption.undone_by = undone_by
    if redemption.channel == "card":
        _refund_spent(session, reward,
                      f"Redemption undone at the till: {reward.offer.title}; points returned",
                      "refund")
        _release_stock(session, reward.offer_id)
        reward.status = "cancelled"
    else:
        reward.status = "issued"
        reward.redeemed_at = None
    return RedeemOutcome(200, "Undone.", reward, Receipt.of(redemption, reward))


def _refund_spent(session: Session, reward: Reward, reason: str, key_suffix: str) -> None:
    """Give a captured reward's points back to the member, once per `key_suffix`."""
    account = lock_member(session, reward.member_id)
    post(
        session,
        "refund",
        reason,
        [(scheme_account(session, "scheme:rewards_spent"), -reward.cost_points),
         (account, reward.cost_points)],
        key=f"reward:{reward.id}:{key_suffix}",
        member_id=reward.member_id,
        reward_id=reward.id,
    )


# -- expiry and reminders -----------------------------------------------------------------

def vouchers_past_expiry(session: Session, now: datetime, limit: int = 1000) -> list[uuid.UUID]:
    return list(session.scalars(
        select(Reward.id).where(Reward.status == "issued", Reward.expires_at <= now)
        .order_by(Reward.expires_at).limit(limit)
    ))


def expire_voucher(session: Session, reward_id: uuid.UUID, now: datetime) -> int | None:
    """Expire one unredeemed voucher past its expiry, in the caller's transaction; its
    stock slot is freed, and if the offer says so its points go back to the member
    (a posting keyed by the reward, so at most once). Returns the points returned, or
    None if the voucher was not due (redeemed meanwhile, or expired already)."""
    reward = session.scalar(_locked(select(Reward).where(Reward.id == reward_id)))
    if (reward is None or reward.status != "issued" or reward.expires_at is None
            or reward.expires_at > now):
        return None
    offer = session.get(Offer, reward.offer_id)
    assert offer is not None
    reward.status = "expired"
    _release_stock(session, offer.id)
    if not offer.points_back_on_expiry:
        return 0
    _refund_spent(session, reward, f"Voucher expired unused: {offer.title}; points returned",
                  "expiry_refund")
    return reward.cost_points


def vouchers_to_remind(session: Session, now: datetime, limit: int = 1000) -> list[uuid.UUID]:
    """Valid vouchers expiring within REMINDER_BEFORE whose member has not been
    reminded. Vouchers that were valid for less than that from the start are left
    out: the mail saying they were ready gave the date."""
    rows = session.execute(
        select(Reward.id, Reward.issued_at, Reward.expires_at).where(
            Reward.status == "issued",
            Reward.expiry_reminded_at.is_(None),
            Reward.expires_at > now,
            Reward.expires_at <= now + REMINDER_BEFORE,
        ).order_by(Reward.expires_at).limit(limit)
    )
    # Compared here: date arithmetic between columns is not portable to SQLite.
    return [reward_id for reward_id, issued_at, expires_at in rows
            if issued_at is not None and issued_at <= expires_at - REMINDER_BEFORE]


def mark_reminded(session: Session, reward_id: uuid.UUID, when: datetime | None) -> bool:
    """Record (or with None, forget) that the expiry reminder went; True if this call
    changed it, so two overlapping runs cannot both send it."""
    condition = (Reward.expiry_reminded_at.is_(None) if when is not None
                 else Reward.expiry_reminded_at.is_not(None))
    changed = session.execute(
        update(Reward).where(Reward.id == reward_id, condition)
        .values(expiry_reminded_at=when).execution_options(synchronize_session=False)
    )
    return changed.rowcount == 1
