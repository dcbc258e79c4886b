"""Reversing an action's awards when a source revokes it or a reviewer rejects it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..models import Account, Action, Award, Member, Posting, PostingLine, utcnow
from .expiry import expire_member
from .pending import pending_credits
from .service import (
    account_balance,
    add_points_awarded,
    lock_member,
    member_account,
    post,
    scheme_account,
)


@dataclass(frozen=True)
class Reversal:
    """What reversing an action did. `points_reversed` were taken back from the
    member (pending first, then available); `points_written_off` had been spent
    already and could not be, so the scheme bears them. Together: the action's award."""

    action_id: uuid.UUID
    points_reversed: int
    points_written_off: int
    already: bool = False  # revoked before: the figures are the first reversal's


@dataclass(frozen=True)
class ReversalPlan:
    from_pending: int
    from_available: int
    written_off: int


def plan_reversal(still_pending: int, spendable_award: int, available: int) -> ReversalPlan:
    """Decide: take what is still pending from pending; take the rest of the award
    from available as far as the balance goes (never below zero); write off the rest."""
    take = min(spendable_award, max(available, 0))
    return ReversalPlan(still_pending, take, spendable_award - take)


def reversal_key(action_id: uuid.UUID) -> str:
    return f"action:{action_id}:reversal"


def reverse_action(
    session: Session, action: Action, reason: str, now: datetime | None = None,
    rule_totals: dict[uuid.UUID, int] | None = None,
) -> Reversal:
    """Reverse the action's awards with one posting (keyed by the action, so at most
    once) and mark it `revoked` with `reason` (shown to the member and on their
    statement), in the caller's transaction. Under the member lock, so a concurrent
    claim cannot spend the points between the balance read and the post. `now`
    (default the present) decides which points have expired by then. `rule_totals`:
    see revoke_awards (several reversals in one transaction pass one dict)."""
    account = lock_member(session, action.member_id)
    if action.status == "pending":
        # Recorded, not yet awarded (deferred awarding): the worker awards under the
        # member's row lock, so take it and read the action again. If the worker got
        # there first, its awards are reversed below; if not, it finds the action
        # revoked and awards nothing.
        session.execute(select(Member.id).where(Member.id == action.member_id)
                        .with_for_update(key_share=True))
        session.refresh(action)
    key = reversal_key(action.id)
    earlier = session.scalar(select(Posting).where(Posting.key == key))
    if earlier is not None:
        return _from_posting(session, action.id, earlier)
    if action.status == "revoked":  # revoked when it had earned nothing
        return Reversal(action.id, 0, 0, already=True)
    # Points past their expiry go first: a reversal takes back only what is still there.
    expire_member(session, action.member_id, now or utcnow())

    still_pending = sum(c.points for c in pending_credits(session, action_id=action.id))
    awarded = int(session.scalar(
        select(func.coalesce(func.sum(PostingLine.points), 0))
        .join(Posting, Posting.id == PostingLine.posting_id)
        .join(Account, Account.id == PostingLine.account_id)
        .where(Posting.action_id == action.id, Posting.kind == "earn",
               Account.member_id == action.member_id, PostingLine.points > 0)
    ) or 0)
    plan = plan_reversal(still_pending, awarded - still_pending,
                         account_balance(session, account.id))
    total = plan.from_pending + plan.from_available + plan.written_off
    if total > 0:
        post(
            session,
            "reversal",
            reason,
            [
                (member_account(session, action.member_id, "pending"), -plan.from_pending),
                (account, -plan.from_available),
                (scheme_account(session, "scheme:written_off"), -plan.written_off),
                (scheme_account(session, "scheme:issuance"), total),
            ],
            key=key,
            member_id=action.member_id,
            action_id=action.id,
        )
    revoke_awards(session, action.id, now or utcnow(), plan.written_off, rule_totals)
    action.status = "revoked"
    action.flag_reason = reason
    action.revoked_at = now or utcnow()
    return Reversal(action.id, plan.from_pending + plan.from_available, plan.written_off)


def revoke_awards(session: Session, action_id: uuid.UUID, now: datetime, written_off: int = 0,
                  rule_totals: dict[uuid.UUID, int] | None = None) -> None:
    """Stop the action's awards counting against caps, and take what was taken back off
    their rules' running totals. `written_off` points had been spent already: the
    scheme paid them, so they stay spent from the rules' budgets, set against the
    awards in rule id order (each award records its part). With `rule_totals`, the
    changes (negative) are added there by rule id, for the caller to apply once for
    many reversals (add_points_awarded); else they are applied now."""
    totals = {} if rule_totals is None else rule_totals
    left = written_off
    for award_id, rule_id, points in session.execute(
        select(Award.id, Award.rule_id, Award.points)
        .where(Award.action_id == action_id, Award.revoked_at.is_(None), Award.points > 0)
        .order_by(Award.rule_id)
    ):
        kept = min(points, left)
        left -= kept
        if kept:
            session.execute(update(Award).where(Award.id == award_id)
                            .values(points_written_off=kept))
        if points > kept:
            totals[rule_id] = totals.get(rule_id, 0) - (points - kept)
    session.execute(update(Award).where(Award.action_id == action_id,
                                        Award.revoked_at.is_(None)).values(revoked_at=now))
    if rule_totals is None:
        add_points_awarded(session, totals)


def _from_posting(session: Session, action_id: uuid.UUID, posting: Posting) -> Reversal:
    rows = session.execute(
        select(Account.code, Account.member_id, PostingLine.points)
        .join(Account, Account.id == PostingLine.account_id)
        .where(PostingLine.posting_id == posting.id)
    )
    reversed_, written_off = 0, 0
    for code, member_id, points in rows:
        if member_id is not None:
            reversed_ -= points
        elif code == "scheme:written_off":
            written_off -= points
    return Reversal(action_id, reversed_, written_off, already=True)
