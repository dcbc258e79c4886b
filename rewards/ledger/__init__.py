"""The points ledger: append-only double entry.

Every posting's lines sum to zero; a balance is the sum of an account's lines;
nothing is updated or deleted, corrections are new postings."""

from .service import (
    LedgerError,
    account_balance,
    check_balanced,
    ensure_member_accounts,
    lock_member,
    member_account,
    member_balances,
    post,
    scheme_account,
    verify,
)

__all__ = [
    "LedgerError",
    "account_balance",
    "check_balanced",
    "ensure_member_accounts",
    "lock_member",
    "member_account",
    "member_balances",
    "post",
    "scheme_account",
    "verify",
]
