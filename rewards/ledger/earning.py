"""Earn postings: points awarded under the rules, posted from scheme issuance to the
member's account. Awarding decides the points (rewards/awarding); this writes them, many
postings a statement, for a whole batch at once.

One posting per action and hold (however many rules stacked on the action), two lines
each, and a key (award:<action>:<first rule>) that makes a retried award post nothing
twice. A held posting goes to the member's pending account; ledger.pending releases it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..bulk import insert_tuples, one_of
from ..models import Account, Posting, PostingLine
from .service import LedgerError, check_balanced, earn_terms, scheme_account


@dataclass
class Earn:
    """Points one action earned under the rules sharing one hold, posted together from
    scheme issuance to the member's account: one posting (one lot) per action and
    hold, however many rules stacked on it."""

    posting_id: uuid.UUID
    action_id: uuid.UUID
    member_id: uuid.UUID
    hold_days: int
    created_at: datetime
    key_rule_id: str  # the first of its rules: the posting's key names it
    points: int = 0
    reasons: list[str] = field(default_factory=list)


def earn_account_code(earn: Earn) -> str:
    """The account the points go to, by code, as ledger.member_account finds it."""
    return f"member:{earn.member_id}:{'pending' if earn.hold_days else 'available'}"


def post_earns(session: Session, earns: Sequence[Earn], now: datetime, postgres: bool,
               new_id: Callable[[], uuid.UUID] = uuid.uuid4) -> None:
    """Write the postings and lines of `earns` in the session's transaction (their
    actions already written). The points take the terms of `now`, when they were
    evaluated: held and expiring from then (one reckoning per hold, not per posting)."""
    if not earns:
        return
    issuance = scheme_account(session, "scheme:issuance").id
    codes = [earn_account_code(earn) for earn in earns]
    accounts: dict[str, uuid.UUID] = {}
    for condition in one_of(postgres, Account.code, set(codes)):
        for code, account_id in session.execute(
            select(Account.code, Account.id).where(condition)
        ):
            accounts[code] = account_id
    postings: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    terms: dict[int, tuple[datetime, datetime | None]] = {}
    for earn, code in zip(earns, codes, strict=True):
        target = accounts.get(code)
        if target is None:
            raise LedgerError(f"no account {code}")
        if earn.hold_days not in terms:
            terms[earn.hold_days] = earn_terms(now, earn.hold_days)
        earn_posting(postings, lines, earn, issuance, target, terms[earn.hold_days], new_id)
    insert_tuples(session, Posting.__table__, POSTING_COLUMNS, postings, postgres)
    insert_tuples(session, PostingLine.__table__, LINE_COLUMNS, lines, postgres)


# The columns of the rows earn_posting makes, in their order (plain tuples: a batch
# makes three rows an action, and a tuple is what COPY sends).
POSTING_COLUMNS = ("id", "created_at", "kind", "reason", "key", "member_id", "action_id",
                   "reward_id", "available_at", "expires_at", "origin_id")
LINE_COLUMNS = ("id", "posting_id", "account_id", "points", "created_at")


def earn_posting(
    postings: list[tuple[Any, ...]],
    lines: list[tuple[Any, ...]],
    earn: Earn,
    issuance: uuid.UUID,
    target: uuid.UUID,
    terms: tuple[datetime, datetime | None],
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> None:
    """The one place awarded points are posted: issuance to the member's account, as a
    balanced posting with a key that makes a retried award post nothing twice.
    `terms`: (available_at, expires_at), from ledger.earn_terms. Rows are tuples of
    POSTING_COLUMNS and LINE_COLUMNS."""
    points = earn.points
    check_balanced(((issuance, -points), (target, points)))
    available_at, expires_at = terms
    posting_id, created_at = earn.posting_id, earn.created_at
    postings.append((posting_id, created_at, "earn", " + ".join(earn.reasons),
                     f"award:{earn.action_id}:{earn.key_rule_id}", earn.member_id,
                     earn.action_id, None, available_at, expires_at, None))
    lines.append((new_id(), posting_id, issuance, -points, created_at))
    lines.append((new_id(), posting_id, target, points, created_at))
