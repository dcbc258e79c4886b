"""Rewards: a member claims an offer (points held), a job issues the voucher (points
captured), a partner redeems it exactly once and may undo that within ten minutes;
vouchers nobody redeems expire, and the offer says whether their points come back."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import Select, bindparam, func, insert, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from . import jobs, reads
from .catalogue import (
    RELEASED,
    eligibility_of,
    ineligible_because,
    period_start,
    window_state,
)
from .ids import new_ids
from .ledger import (
    LedgerError,
    expire_then_spendable,
    lock_member,
    member_account,
    post,
    scheme_account,
    spendable_by,
)
from .models import (
    Account,
    Member,
    Offer,
    OutboxMessage,
    Partner,
    Posting,
    PostingLine,
    Redemption,
    Reward,
    utcnow,
)
from .reasons import Reason, Refused

# No 0/O, 1/I/L: codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 31**10 is about 8e14: unguessable at any rate a till can try

UNDO_WINDOW = timedelta(minutes=10)
REMINDER_BEFORE = timedelta(days=3)
PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}


class ClaimRefused(Refused):
    """A claim the scheme will not make (no such offer, closed, not eligible, limit
    reached, not enough points, sold out)."""


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

@dataclass(frozen=True)
class Claimed:
    """A claim made: the reward's row as written (pending, no code yet) and the offer's
    row as the claim read it (its terms, and the partner's `partner_name`)."""

    id: uuid.UUID
    member_id: uuid.UUID
    cost_points: int
    created_at: datetime
    offer: Any


def claim(
    session: Session,
    member: Member,
    offer_id: uuid.UUID,
    now: datetime | None = None,
    *,
    enqueue_issue: bool = True,
) -> Reward:
    """claim_offer, answered with the reward as an entity of the session (pending; its
    offer loads when asked for)."""
    claimed = claim_offer(session, member, offer_id, now, enqueue_issue=enqueue_issue)
    reward = Reward(id=claimed.id, member_id=claimed.member_id, offer_id=claimed.offer.id,
                    status="pending", cost_points=claimed.cost_points,
                    created_at=claimed.created_at, code=None, partner_code=None,
                    partner_reference=None, issued_at=None, expires_at=None,
                    redeemed_at=None, expiry_reminded_at=None, failure_reason=None)
    # Written by the claim's own statement: the session takes it as loaded, every
    # column known, nothing to insert.
    make_transient_to_detached(reward)
    session.add(reward)
    return reward


def claim_offer(
    session: Session,
    member: Any,  # the entity, or a resident_read row: id, ward, joined_at
    offer_id: uuid.UUID,
    now: datetime | None = None,
    *,
    enqueue_issue: bool = True,
) -> Claimed:
    """Hold the points and reserve one of the offer's stock, in the caller's transaction.
    `now` (default the present) decides whether the offer is open, which claims count
    against the member's limit and which points have expired. The member lock
    serialises the member's own claims, so the balance and the limit are read and
    spent by one claim at a time; the stock is reserved by a conditional update.
    With `enqueue_issue` false the caller issues the voucher itself.

    Plain statements built once, on the session's connection (no entities, no unit of
    work): the lock with the offer's terms; the limit's count for an offer with a
    limit; the member's points (expiry and balance), after the lock so they include
    every claim that held it before; then the writes. On PostgreSQL the points and the
    writes are one statement: the stock's conditional update, made only when the
    member has the points and none has expired, and from its row (none when sold out
    or short) the reward, the hold posting, its two lines and the voucher's job; it
    answers the points it found. Only when some points have expired does the claim
    write the expiry first and try the writes again."""
    now = now or utcnow()
    session.flush()  # the statements below skip the session: it writes what it holds first
    connection = session.connection()
    statements = _claim_statements(connection.dialect.name)
    offer = reads.first(statements.lock, {
        "code": f"member:{member.id}:available", "offer": offer_id}, session)
    if offer is None:
        raise LedgerError(f"member {member.id} has no available account")
    if offer.id is None or offer.status != "live":
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
        since = period_start(offer.limit_period, now, _scheme_timezone())
        counted = connection.execute(statements.counted, {
            "member": member.id, "offer": offer.id,
            "since": since or datetime(1970, 1, 1, tzinfo=UTC)}).scalar_one()
        if counted >= offer.per_member_limit:
            raise ClaimRefused(409, limit_message(offer.per_member_limit, offer.limit_period),
                               Reason.LIMIT_REACHED)
    # Version 7 ids (rewards/ids.py): the rows go in at the right edge of each index
    # instead of at a random page of it, which tells at a scheme's size.
    reward_id, posting_id, debit_line, credit_line = new_ids(4)
    held = offer.held_id or scheme_account(session, "scheme:rewards_held").id
    written_at = utcnow()
    values = {
        "offer": offer.id, "reward": reward_id, "member": member.id,
        "cost": offer.cost_points, "debit": -offer.cost_points, "now": now, "by": now,
        "posting": posting_id, "reason": f"Claimed: {offer.title}",
        "key": f"reward:{reward_id}:hold", "account": offer.account_id, "held": held,
        "debit_line": debit_line, "credit_line": credit_line, "written_at": written_at,
    }
    job = None
    if enqueue_issue:
        job = jobs.outbox_values("workers.rewards.issue_reward", queue="rewards",
                                 reward_id=str(reward_id))
        values.update({f"job_{name}": value for name, value in job.items()})
    written = False
    if isinstance(statements.writes, dict):
        # PostgreSQL: the writes test the member's points themselves (read after the
        # lock, so counting every claim that held it before) and write nothing when
        # they fall short or some have expired; the expiry is then written the long way.
        lines, available, expiring, still_open = reads.first(
            statements.writes[job is not None], values, session)[:4]
        written = lines == 2
        if not still_open:
            raise ClaimRefused(401, ACCOUNT_CLOSED, Reason.SESSION_ENDED)
        if not written and not expiring:
            if available < offer.cost_points:
                raise _short_of_points(offer.cost_points, available)
            # Conditional increment: two claims for the last item cannot both succeed.
            raise ClaimRefused(409, "Sold out.", Reason.SOLD_OUT)
    if not written:
        # Points past their expiry are not spendable, even before the daily job takes them.
        available = expire_then_spendable(session, member.id, offer.account_id, now)
        if available < offer.cost_points:
            raise _short_of_points(offer.cost_points, available)
        if not _write_claim(session, statements, values, with_job=job is not None):
            # Conditional increment: two claims for the last item cannot both succeed.
            raise ClaimRefused(409, "Sold out.", Reason.SOLD_OUT)
    if job is not None:
        jobs.written(job)
    return Claimed(reward_id, member.id, offer.cost_points, now, offer)


# A spend that waited for the member's lock while their account was being closed.
ACCOUNT_CLOSED = ("The session has ended (logged out, or the account no longer exists); "
                  "log in again.")


def _short_of_points(cost: int, available: int) -> ClaimRefused:
    return ClaimRefused(409, f"Not enough points: this costs {cost}, you have {available}.",
                        Reason.INSUFFICIENT_POINTS)


_ACCOUNTS, _POSTINGS, _LINES = Account.__table__, Posting.__table__, PostingLine.__table__
_OUTBOX, _PARTNERS = OutboxMessage.__table__, Partner.__table__
_REWARDS, _OFFERS, _REDEMPTIONS = Reward.__table__, Offer.__table__, Redemption.__table__
_MEMBERS = Member.__table__
_OUTBOX_COLUMNS = ("id", "job", "queue", "kwargs", "due_at", "attempts", "created_at",
                   "dispatched_at", "request_id")


def _param(name: str, column: Any) -> Any:
    return bindparam(name, type_=column.type)


@dataclass(frozen=True)
class _ClaimStatements:
    lock: Any
    counted: Any
    # PostgreSQL: {with_job: the one write}; elsewhere: (stock, unlimited, reward, posting,
    # lines, job)
    writes: Any


def _write_claim(session: Session, statements: _ClaimStatements, values: dict[str, Any],
                 *, with_job: bool) -> bool:
    """The claim's writes; False (nothing written) if the offer is sold out."""
    if isinstance(statements.writes, dict):  # PostgreSQL: one statement, on psycopg
        return reads.first(statements.writes[with_job], values, session)[0] == 2
    connection = session.connection()
    stock, unlimited, reward, posting, lines, job = statements.writes
    # The stock first: SQLite serialises writers already, so the order costs nothing
    # here; a sold-out offer is then refused before anything else is written.
    if (connection.execute(stock, values).rowcount != 1
            and connection.execute(unlimited, values).first() is None):
        return False
    connection.execute(reward, values)
    connection.execute(posting, values)
    connection.execute(lines, [
        {"id": values["debit_line"], "posting_id": values["posting"],
         "account_id": values["account"], "points": values["debit"],
         "created_at": values["written_at"]},
        {"id": values["credit_line"], "posting_id": values["posting"],
         "account_id": values["held"], "points": values["cost"],
         "created_at": values["written_at"]}])
    if with_job:
        connection.execute(job, {name: values[f"job_{name}"] for name in _OUTBOX_COLUMNS})
    return True


@cache
def _claim_statements(dialect: str) -> _ClaimStatements:
    """Built once: a claim is the hottest write a resident makes."""
    held = _ACCOUNTS.alias("held")
    lock = (
        select(_ACCOUNTS.c.id.label("account_id"),
               select(held.c.id).where(held.c.code == "scheme:rewards_held")
               .scalar_subquery().label("held_id"),
               *_OFFERS.columns, _PARTNERS.c.name.label("partner_name"))
        .select_from(
            _ACCOUNTS.outerjoin(_OFFERS, _OFFERS.c.id == _param("offer", _OFFERS.c.id))
            .outerjoin(_PARTNERS, _PARTNERS.c.id == _OFFERS.c.partner_id))
        .where(_ACCOUNTS.c.code == bindparam("code", type_=_ACCOUNTS.c.code.type))
        # The member lock (see lock_member): NO KEY UPDATE serialises spenders without
        # blocking inserts of lines that reference the account.
        .with_for_update(key_share=True, of=_ACCOUNTS)
    )
    counted = select(func.count()).select_from(_REWARDS).where(
        _REWARDS.c.member_id == _param("member", _REWARDS.c.member_id),
        _REWARDS.c.offer_id == _param("offer", _REWARDS.c.offer_id),
        _REWARDS.c.status.notin_(RELEASED),
        _REWARDS.c.created_at >= _param("since", _REWARDS.c.created_at))
    # Only an offer with a stock counts its claims on its row (catalogue.claims_of): an
    # unlimited offer's row is read, never written, so its claims do not queue for it.
    stock = (
        update(_OFFERS)
        .where(_OFFERS.c.id == _param("offer", _OFFERS.c.id),
               _OFFERS.c.stock.is_not(None), _OFFERS.c.claimed < _OFFERS.c.stock)
        .values(claimed=_OFFERS.c.claimed + 1)
    )
    unlimited = select(_OFFERS.c.id).where(_OFFERS.c.id == _param("offer", _OFFERS.c.id),
                                           _OFFERS.c.stock.is_(None))
    reward_values = {
        "id": _param("reward", _REWARDS.c.id), "member_id": _param("member", _REWARDS.c.member_id),
        "status": literal("pending", _REWARDS.c.status.type),
        "cost_points": _param("cost", _REWARDS.c.cost_points),
        "created_at": _param("now", _REWARDS.c.created_at)}
    posting_values = {
        "id": _param("posting", _POSTINGS.c.id), "kind": literal("hold", _POSTINGS.c.kind.type),
        "reason": _param("reason", _POSTINGS.c.reason), "key": _param("key", _POSTINGS.c.key),
        "member_id": _param("member", _POSTINGS.c.member_id),
        "created_at": _param("written_at", _POSTINGS.c.created_at)}
    job_values = {name: _param(f"job_{name}", _OUTBOX.c[name]) for name in _OUTBOX_COLUMNS}
    if dialect != "postgresql":
        return _ClaimStatements(lock, counted, (
            stock, unlimited,
            insert(_REWARDS).values(offer_id=_param("offer", _REWARDS.c.offer_id),
                                    **reward_values),
            insert(_POSTINGS).values(reward_id=_param("reward", _POSTINGS.c.reward_id),
                                     **posting_values),
            insert(_LINES),
            insert(_OUTBOX),
        ))
    # The member's points, tested by the write itself: enough, and none expired; and the
    # account still open. The token's check rides on the lock's statement, read from
    # before any wait for the lock: an erasure that held it and committed meanwhile is
    # seen only by a later statement, this one.
    funds = spendable_by()
    open_account = select(_MEMBERS.c.id).where(
        _MEMBERS.c.id == _param("member", _MEMBERS.c.id), _MEMBERS.c.erased_at.is_(None)
    ).exists()
    funded = (select(funds.c.available).scalar_subquery() >= _param("cost", _OFFERS.c.cost_points),
              select(funds.c.expiring).scalar_subquery() == 0, open_account)
    taken = stock.where(*funded).returning(_OFFERS.c.id).cte("taken")
    reserved = union_all(select(taken.c.id), unlimited.where(*funded)).cte("reserved")
    reward = (
        insert(_REWARDS)
        .from_select([*reward_values, "offer_id"],
                     select(*reward_values.values(), reserved.c.id))
        .returning(_REWARDS.c.id).cte("reward"))
    posting = (
        insert(_POSTINGS)
        .from_select([*posting_values, "reward_id"],
                     select(*posting_values.values(), reward.c.id))
        .returning(_POSTINGS.c.id).cte("posting"))
    line_columns = ["id", "posting_id", "account_id", "points", "created_at"]
    written_at = _param("written_at", _LINES.c.created_at)
    lines = (
        insert(_LINES)
        .from_select(line_columns, union_all(
            select(_param("debit_line", _LINES.c.id), posting.c.id,
                   _param("account", _LINES.c.account_id), _param("debit", _LINES.c.points),
                   written_at),
            select(_param("credit_line", _LINES.c.id), posting.c.id,
                   _param("held", _LINES.c.account_id), _param("cost", _LINES.c.points),
                   written_at)))
        .returning(_LINES.c.id).cte("lines"))
    job = (
        insert(_OUTBOX)
        .from_select(list(job_values), select(*job_values.values()).select_from(reward))
        .returning(_OUTBOX.c.id).cte("job"))
    # The answer reads every part, so that each is written into the statement. Every
    # part after the stock's update selects from the one before: sold out or short of
    # points, none of them writes a row, and the answer's first figure (lines written)
    # is 0, not 2; then the member's points as the statement found them.
    written = select(func.count()).select_from(lines).scalar_subquery().label("lines")
    jobs_written = select(func.count()).select_from(job).scalar_subquery().label("jobs")
    answer = select(written, funds.c.available, funds.c.expiring,
                    open_account.label("open")).select_from(funds)
    return _ClaimStatements(lock, counted, {
        False: answer, True: answer.add_columns(jobs_written)})


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
    session.execute(  # an unlimited offer does not count its claims on its row
        update(Offer).where(Offer.id == offer_id, Offer.stock.is_not(None), Offer.claimed > 0)
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
    redemption_id = new_ids(1)[0]
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
