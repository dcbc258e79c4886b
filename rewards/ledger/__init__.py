"""The points ledger: append-only double entry.

Every posting's lines sum to zero; a balance is the sum of an account's lines;
nothing is updated or deleted, corrections are new postings. Earned points are
lots with an expiry, derived from the lines (see lots.py), never stored. Members'
running totals are kept by the database beside the lines (see totals.py)."""

from .adjustments import MAX_ADJUSTMENT, NotEnoughPoints, adjust
from .earning import Earn, post_earns
from .expiry import (
    AccountRef,
    expire_member,
    expire_then_spendable,
    members_with_expired_lots,
)
from .lots import Lot, expiring
from .pending import members_with_due_pending, pending_credits, release_member
from .reversal import Reversal, reverse_action
from .service import (
    LedgerError,
    account_balance,
    add_points_awarded,
    check_balanced,
    earn_terms,
    ensure_member_accounts,
    lock_member,
    member_account,
    post,
    scheme_account,
    setting,
    verify,
    verify_snapshot,
)
from .totals import (
    MemberBalances,
    balance_expiring,
    member_available,
    member_balances,
    member_lots,
    spendable_by,
)

__all__ = [
    "add_points_awarded",
    "MAX_ADJUSTMENT",
    "expire_then_spendable",
    "AccountRef",
    "LedgerError",
    "Lot",
    "MemberBalances",
    "NotEnoughPoints",
    "Reversal",
    "account_balance",
    "balance_expiring",
    "spendable_by",
    "adjust",
    "Earn",
    "post_earns",
    "check_balanced",
    "earn_terms",
    "ensure_member_accounts",
    "expire_member",
    "expiring",
    "lock_member",
    "member_account",
    "member_available",
    "member_balances",
    "member_lots",
    "members_with_due_pending",
    "members_with_expired_lots",
    "pending_credits",
    "post",
    "release_member",
    "reverse_action",
    "scheme_account",
    "setting",
    "verify",
    "verify_snapshot",
]
