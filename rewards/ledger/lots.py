"""Expiring lots, derived from the ledger rather than stored.

Every credit of points to a member's available account that was earned (an award, a
pending award released, a staff adjustment) is a lot with the expiry its posting
carries. Everything else that moved the balance is taken out in one total, and the
total consumes the lots that expire soonest first. Pure functions: no database."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Postings whose credit to the available account is a new lot. Any other credit
# (a failed reward's points coming back) undoes an earlier debit instead.
LOT_KINDS = frozenset({"earn", "pending_release", "adjustment"})

DEFAULT_EXPIRY_MONTHS = 24


@dataclass(frozen=True)
class Lot:
    points: int
    expires_at: datetime | None  # None: never expires (credits made before expiry existed)


@dataclass(frozen=True)
class Movement:
    """One line of a member's available account, with the terms of its posting."""

    points: int
    kind: str
    expires_at: datetime | None = None


def _expiry_order(lot: Lot) -> tuple[bool, datetime | None]:
    return (lot.expires_at is None, lot.expires_at)


def fifo_lots(credits: Sequence[Lot], taken: int) -> list[Lot]:
    """What is left of `credits` (in the order they were made) after `taken` points
    were taken out, the soonest-expiring consumed first; never-expiring ones last.
    Ties keep the order the credits were made in. The result is in expiry order.
    Taking out more than there is leaves nothing; a negative `taken` takes nothing."""
    remaining: list[Lot] = []
    left = max(taken, 0)
    for lot in sorted(credits, key=_expiry_order):  # sorted() is stable
        if lot.points <= 0:
            continue
        if left >= lot.points:
            left -= lot.points
            continue
        remaining.append(Lot(lot.points - left, lot.expires_at))
        left = 0
    return remaining


def credits_and_taken(movements: Iterable[Movement]) -> tuple[list[Lot], int]:
    """Split an available account's lines into its lots and the total taken out since.
    A failed reward's release undoes its hold, so it lowers `taken`, adding no lot."""
    credits: list[Lot] = []
    balance = 0
    for movement in movements:
        balance += movement.points
        if movement.points > 0 and movement.kind in LOT_KINDS:
            credits.append(Lot(movement.points, movement.expires_at))
    return credits, sum(lot.points for lot in credits) - balance


def left_from_newest(newest_first: Iterable[tuple[int, datetime | None]],
                     balance: int) -> tuple[list[Lot], bool]:
    """What is left of the lots, from the credits read newest end first (never-expiring
    ones, then latest expiry first, ties latest made first) and the balance: the same
    as fifo_lots over the whole history. Taking soonest-expiring first leaves the
    latest-expiring credits that add up to the balance, the earliest of them in part.
    Returns the lots in expiry order and whether the balance was reached (if not, the
    lots are complete only when `newest_first` held every credit)."""
    left: list[Lot] = []
    need = balance
    for points, expires_at in newest_first:
        if need <= 0:
            break
        if points <= 0:
            continue
        left.append(Lot(min(points, need), expires_at))
        need -= points
    left.reverse()
    return left, need <= 0


def lots_of(movements: Iterable[Movement]) -> list[Lot]:
    """The lots left in an available account, soonest-expiring first."""
    return fifo_lots(*credits_and_taken(movements))


def expired_points(lots: Iterable[Lot], now: datetime) -> int:
    """Points in lots whose expiry has come."""
    return sum(lot.points for lot in lots if lot.expires_at is not None and lot.expires_at <= now)


def expiring(lots: Iterable[Lot], now: datetime, within: timedelta) -> list[Lot]:
    """Lots that expire before now + within (including any the expiry job has yet to
    take), one per expiry time, soonest first."""
    horizon = now + within
    by_time: dict[datetime, int] = {}
    for lot in lots:
        if lot.expires_at is not None and lot.expires_at <= horizon:
            by_time[lot.expires_at] = by_time.get(lot.expires_at, 0) + lot.points
    return [Lot(points, when) for when, points in sorted(by_time.items())]


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later; the month's last day if it is shorter
    (31 January + 1 month is 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def lot_terms(
    now: datetime, hold_days: int = 0, expiry_months: int = DEFAULT_EXPIRY_MONTHS
) -> tuple[datetime, datetime | None]:
    """(available_at, expires_at) of points awarded at `now`: spendable after the hold,
    expiring `expiry_months` after they were earned (never, if 0). The expiry runs from
    the award, not from the end of the hold."""
    if hold_days < 0:
        raise ValueError("hold_days cannot be negative")
    available_at = now + timedelta(days=hold_days)
    expires_at = add_months(now, expiry_months) if expiry_months > 0 else None
    return available_at, expires_at
