"""Keeping the rollups up to date: recompute only the days something touched.

A day is touched when an action that happened on it is created, awarded or revoked,
or reviewed. The refresh finds those since the last refresh (less a margin, so a
transaction that committed late is not missed; redoing a day is harmless), rebuilds
their member-day rows from the actions, changes the month rows by what each day's
rows changed, then rebuilds the ledger days that had new postings and, for the same
days, the earned points by expiry day (rewards.dashboard.ledgerdays). `rebuild`
recomputes any range of days, and their months whole."""

from __future__ import annotations

import logging
import time as clock
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from ..models import (
    Account,
    Action,
    ActionType,
    Award,
    AwardQueue,
    Member,
    Posting,
    PostingLine,
    utcnow,
)
from ..models.dashboard import (
    DashboardRefresh,
    MemberDay,
    MemberHourMonth,
    MemberMonth,
    MemberTenure,
)
from ..models.review import Review
from . import build, cellkeep, cells, joins, ledgerdays
from .deltas import Deltas
from .filters import day_bounds, month_start, next_month, scheme_zone, today
from .sources import COUNTED, as_date
from .tenure import refresh_members

log = logging.getLogger("rewards.dashboard")

STATE = "rollups"
# The oldest batch still queued for deferred awarding at the last refresh: its actions
# are recorded `pending` (not counted) and become counted when a later award run
# updates them, which nothing else dates, so the next refresh looks back to it.
QUEUED = "rollups:award_queue"
QUEUE_LOOKBACK = timedelta(days=3)  # as the stray sweep: older ones are an incident
# Changes are looked for from this long before the last refresh: a transaction that
# began before it and committed after it is still seen.
MARGIN = timedelta(minutes=10)
CHUNK_DAYS = 7
LOCK_KEY = 0x6461736862  # "dashb"


@dataclass
class RefreshReport:
    days: int
    ledger_days: int
    months: int
    took_ms: int
    skipped: bool = False
    # Milliseconds each step took: where a build or a refresh spends its time.
    steps: dict[str, int] = field(default_factory=dict)


class _Steps:
    def __init__(self) -> None:
        self.times: dict[str, int] = {}
        self.last = clock.monotonic()

    def __call__(self, name: str) -> None:
        now = clock.monotonic()
        self.times[name] = self.times.get(name, 0) + int((now - self.last) * 1000)
        self.last = now


def last_refresh(session: Session) -> datetime | None:
    state = session.get(DashboardRefresh, STATE)
    return state.refreshed_at if state else None


def _local_day(moment: datetime) -> date:
    return moment.astimezone(scheme_zone()).date()


def _locked(session: Session) -> bool:
    """One refresh at a time; a second one finds the lock taken and leaves it."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY))))


def _scheme_account_ids(session: Session, *codes: str) -> list[uuid.UUID]:
    stmt = select(Account.id).where(Account.member_id.is_(None))
    if codes:
        stmt = stmt.where(Account.code.in_(codes))
    return list(session.scalars(stmt))


def touched_days(session: Session, since: datetime) -> set[date]:
    """Days (scheme zone) whose counted actions may have changed since `since`."""
    moments: set[datetime] = set()
    moments.update(session.scalars(
        select(Action.occurred_at).where(Action.created_at >= since).distinct()))
    issuance = _scheme_account_ids(session, "scheme:issuance")
    if issuance:  # awards, approvals and revocations move points from or to issuance
        moments.update(session.scalars(
            select(Action.occurred_at)
            .join(Posting, Posting.action_id == Action.id)
            .join(PostingLine, PostingLine.posting_id == Posting.id)
            .where(PostingLine.account_id.in_(issuance), PostingLine.created_at >= since)
            .distinct()))
    moments.update(session.scalars(
        select(Award.occurred_at).where(Award.revoked_at >= since).distinct()))
    moments.update(session.scalars(  # revoked having earned nothing: no award, no posting
        select(Action.occurred_at).where(Action.revoked_at >= since).distinct()))
    moments.update(session.scalars(
        select(Action.occurred_at).join(Review, Review.action_id == Action.id)
        .where(Review.created_at >= since).distinct()))
    return {_local_day(moment) for moment in moments}


def moved_members(session: Session, since: datetime) -> set[uuid.UUID]:
    """Members whose ward changed, or who were erased (their ward went), since `since`:
    their rows in the rollups carry the ward they had, for every day of their history."""
    return set(session.scalars(select(Member.id).where(
        or_(Member.ward_changed_at >= since, Member.erased_at >= since))))


def move_members(session: Session, members: set[uuid.UUID]) -> int:
    """Give `members`' rollup rows (days, months, month-hours, tenure) the ward their
    profile has now, changing the cells by what each made up before and after, over
    their whole history: the figures by ward count a member in the ward on their
    profile, and an erased member's ward goes from the rollups too. Returns the
    members whose rows changed."""
    moved = 0
    days_table = MemberDay.__table__
    for group in _in_chunks(sorted(members)):
        wards = {member_id: ward for member_id, ward in session.execute(
            select(Member.id, func.coalesce(Member.ward, "")).where(Member.id.in_(group)))}
        stale = {member_id for model in (MemberDay, MemberMonth, MemberHourMonth, MemberTenure)
                 for member_id, ward in session.execute(
                     select(model.member_id, model.ward)
                     .where(model.member_id.in_(group)).distinct())
                 if ward != wards.get(member_id, ward)}
        if not stale:
            continue
        days = sorted({as_date(day) for day in session.scalars(
            select(days_table.c.day).where(days_table.c.member_id.in_(stale)).distinct())})

        def rewrite(stale: set[uuid.UUID] = stale, wards: dict = wards) -> None:
            for member_id in sorted(stale):
                for model in (MemberDay, MemberMonth, MemberHourMonth):
                    t = model.__table__
                    session.execute(update(t).where(t.c.member_id == member_id)
                                    .values(ward=wards[member_id]))

        cellkeep.change_members(session, stale, days, rewrite)
        refresh_members(session, stale)  # the tenure rows and their cells
        moved += len(stale)
    return moved


def touched_ledger_days(session: Session, since: datetime) -> set[date]:
    accounts = _scheme_account_ids(session)
    if not accounts:
        return set()
    first = session.scalar(select(func.min(PostingLine.created_at)).where(
        PostingLine.account_id.in_(accounts), PostingLine.created_at >= since))
    if first is None:
        return set()
    start, end = _local_day(first), today()
    return {start + timedelta(days=n) for n in range((end - start).days + 1)}


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) < 1e9 else 0.0  # no NaN or absurd


def _rebuild_days(session: Session, days: list[date], deltas: Deltas | None = None,
                  writes: list[tuple[list[date], list[dict]]] | None = None,
                  ) -> dict[date, set[uuid.UUID]]:
    """Member-day rows for `days` (consecutive runs read together); returns the
    members whose rows changed, by month. With `deltas`, the old rows are taken off
    and the new ones added to it, for the month rows. With `writes`, the new rows are
    put there for _write_days instead of written."""
    touched: dict[date, set[uuid.UUID]] = defaultdict(set)
    zone = scheme_zone()
    table = MemberDay.__table__
    for run in _runs(days):
        start, end = day_bounds(run[0], run[-1])
        for row in session.execute(
                select(table).where(table.c.day >= run[0], table.c.day <= run[-1])).mappings():
            touched[month_start(row["day"])].add(row["member_id"])
            if deltas is not None:
                deltas.add(row, -1)
        if writes is None:
            session.execute(delete(table).where(table.c.day >= run[0], table.c.day <= run[-1]))
        cells: dict[tuple[date, uuid.UUID, str], dict[str, Any]] = {}
        rows = session.execute(
            select(Action.member_id, Action.type_code, ActionType.category,
                   func.coalesce(Member.ward, ""), Action.occurred_at, Action.points,
                   Action.attributes["distance_km"].as_string(),
                   Action.attributes["hours"].as_string())
            .join(ActionType, ActionType.id == Action.action_type_id)
            .join(Member, Member.id == Action.member_id)
            .where(Action.status == COUNTED, Action.occurred_at >= start,
                   Action.occurred_at < end)
            .execution_options(yield_per=20000))
        for member_id, type_code, category, ward, occurred_at, points, km, hours in rows:
            local = occurred_at.astimezone(zone)
            key = (local.date(), member_id, type_code)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = {
                    "day": key[0], "member_id": member_id, "type_code": type_code,
                    "category": category, "ward": ward, "actions": 0, "points": 0,
                    "km": 0.0, "duration_h": 0.0, "by_hour": {}}
            cell["actions"] += 1
            cell["points"] += points or 0
            cell["km"] += _number(km) if km is not None else 0.0
            cell["duration_h"] += _number(hours) if hours is not None else 0.0
            hour = str(local.hour)
            cell["by_hour"][hour] = cell["by_hour"].get(hour, 0) + 1
            touched[month_start(key[0])].add(member_id)
        values = list(cells.values())
        if writes is None:
            _write_days(session, [(run, values)], replace=False)
        else:
            writes.append((run, values))
        if deltas is not None:
            for value in values:
                deltas.add(value, 1)
    return touched


def _write_days(session: Session, writes: list[tuple[list[date], list[dict]]],
                replace: bool = True) -> None:
    table = MemberDay.__table__
    for run, values in writes:
        if replace:
            session.execute(delete(table).where(table.c.day >= run[0], table.c.day <= run[-1]))
        for start_at in range(0, len(values), 5000):
            session.execute(insert(table), values[start_at:start_at + 5000])


def _runs(days: list[date]) -> Iterable[list[date]]:
    run: list[date] = []
    for day in sorted(days):
        if run and ((day - run[-1]).days != 1 or len(run) >= CHUNK_DAYS):
            yield run
            run = []
        run.append(day)
    if run:
        yield run


def _in_chunks(ids: list[uuid.UUID], size: int = 500) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _rebuild_month(session: Session, month: date, members: set[uuid.UUID] | None) -> None:
    """Month and month-hour rows of `members` (every member if None) from their days."""
    days = MemberDay.__table__
    end = next_month(month)
    groups: list[list[uuid.UUID] | None] = (
        [None] if members is None else list(_in_chunks(sorted(members))))
    for group in groups:
        for table in (MemberMonth.__table__, MemberHourMonth.__table__):
            stmt = delete(table).where(table.c.month == month)
            if group is not None:
                stmt = stmt.where(table.c.member_id.in_(group))
            session.execute(stmt)
        source = select(
            literal(month).label("month"), days.c.member_id, days.c.type_code,
            func.min(days.c.category), func.min(days.c.ward), func.sum(days.c.actions),
            func.sum(days.c.points), func.sum(days.c.km), func.sum(days.c.duration_h),
            func.count()).where(days.c.day >= month, days.c.day < end)
        if group is not None:
            source = source.where(days.c.member_id.in_(group))
        source = source.group_by(days.c.member_id, days.c.type_code)
        months = MemberMonth.__table__
        session.execute(insert(months).from_select(
            ["month", "member_id", "type_code", "category", "ward", "actions", "points",
             "km", "duration_h", "days"], source))
        if group is None and _postgresql(session):
            build.hours(session, month)
            continue
        hours: dict[tuple[uuid.UUID, str, int, int], dict[str, Any]] = {}
        read = select(days.c.member_id, days.c.type_code, days.c.category, days.c.ward,
                      days.c.day, days.c.by_hour).where(days.c.day >= month, days.c.day < end)
        if group is not None:
            read = read.where(days.c.member_id.in_(group))
        for member_id, type_code, category, ward, day, by_hour in session.execute(
                read.execution_options(yield_per=20000)):
            weekday = day.isoweekday()
            for hour, count in (by_hour or {}).items():
                key = (member_id, type_code, weekday, int(hour))
                cell = hours.get(key)
                if cell is None:
                    cell = hours[key] = {"month": month, "member_id": member_id,
                                         "type_code": type_code, "weekday": weekday,
                                         "hour": int(hour), "category": category,
                                         "ward": ward, "actions": 0}
                cell["actions"] += int(count)
        values = list(hours.values())
        for start_at in range(0, len(values), 5000):
            session.execute(insert(MemberHourMonth.__table__), values[start_at:start_at + 5000])


def rebuild(session: Session, first: date, last: date) -> RefreshReport:
    """Recompute every rollup for the days `first`..`last` (scheme zone)."""
    started = clock.monotonic()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    report = _apply(session, days, days, whole_months=True)
    report.took_ms = int((clock.monotonic() - started) * 1000)
    return report


def refresh(session: Session, now: datetime | None = None,
            margin: timedelta = MARGIN) -> RefreshReport:
    """Bring the rollups up to date with what changed since the last refresh (less
    `margin`); the first refresh builds them from the start of the scheme's history.
    Commits."""
    started = clock.monotonic()
    now = now or utcnow()
    if not _locked(session):
        session.rollback()
        return RefreshReport(0, 0, 0, 0, skipped=True)
    since = last_refresh(session)
    if since is None:
        first = session.scalar(select(func.min(Action.occurred_at)))
        first_line = session.scalar(select(func.min(PostingLine.created_at)))
        edges = [_local_day(moment) for moment in (first, first_line) if moment is not None]
        start = min(edges) if edges else today()
        days = [start + timedelta(days=n) for n in range((today() - start).days + 1)]
        report = _apply(session, days, days, whole_months=True)
    else:
        ledgerdays.catch_up(session)  # rollups built before the expiry days: all of them
        held = session.get(DashboardRefresh, QUEUED)
        look_from = since if held is None else min(since, held.refreshed_at)
        report = _apply(session, sorted(touched_days(session, look_from - margin)),
                        sorted(touched_ledger_days(session, since - margin)),
                        whole_months=False)
        move_members(session, moved_members(session, since - margin))
        joins.refresh_days(session, joins.touched(session, since - margin))
    report.took_ms = int((clock.monotonic() - started) * 1000)
    state = session.get(DashboardRefresh, STATE)
    if state is None:
        state = DashboardRefresh(name=STATE, refreshed_at=now)
        session.add(state)
    state.refreshed_at = now
    state.took_ms = report.took_ms
    state.days = report.days
    _hold_for_queue(session, now)
    ledgerdays.mark_filled(session, now)
    session.commit()
    log.info("dashboard rollups refreshed: %s days, %s ledger days, %s months in %s ms",
             report.days, report.ledger_days, report.months, report.took_ms)
    return report


def _hold_for_queue(session: Session, now: datetime) -> None:
    """Remember the oldest batch queued for awarding (or that none is)."""
    oldest = session.scalar(select(func.min(AwardQueue.created_at)))
    held = session.get(DashboardRefresh, QUEUED)
    if oldest is None:
        if held is not None:
            session.delete(held)
        return
    oldest = max(oldest, now - QUEUE_LOOKBACK)
    if held is None:
        session.add(DashboardRefresh(name=QUEUED, refreshed_at=oldest))
    else:
        held.refreshed_at = oldest


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _apply(session: Session, days: list[date], ledger_days: list[date],
           whole_months: bool) -> RefreshReport:
    step = _Steps()
    if whole_months:
        # Every month the days cover, including those with no member left.
        months = {month_start(day) for day in days}
        if _postgresql(session):  # set-based, in the database
            build.prepare(session)
            for run in _runs(days):
                build.days(session, run[0], run[-1])
        else:
            touched = _rebuild_days(session, days)
            months |= set(touched)
        step("member_days")
        for month in sorted(months):
            _rebuild_month(session, month, None)
        step("member_months")
        if _postgresql(session):
            build.tenure(session)
        else:
            refresh_members(session, set().union(*touched.values()))  # the tenure cells
        step("tenure")
        cells.build(session, step)
        joins.build(session)
        step("join_days")
        changed = len(months)
    else:  # only what the touched days change: their old rows off, their new rows on
        deltas = Deltas()
        writes: list[tuple[list[date], list[dict]]] = []
        touched = _rebuild_days(session, days, deltas, writes)
        # Days are rebuilt whole (a day touched by one new action is every member's
        # that day); only the members whose day rows changed can change a cell.
        members = deltas.changed_members()
        step("member_days")

        def write() -> None:
            _write_days(session, writes)
            deltas.apply(session)

        cellkeep.change_members(session, members, days, write)
        step("member_rows_and_cells")
        refresh_members(session, members)  # the tenure cells
        step("tenure")
        changed = len(touched)
    ledger = ledgerdays.rebuild(session, ledger_days)
    session.flush()
    step("ledger")
    return RefreshReport(len(days), ledger, changed, 0, steps=step.times)


def refresh_if_stale(session: Session, max_age_seconds: int) -> RefreshReport | None:
    """For the embedded default (no cron): refresh when the rollups are older than
    `max_age_seconds`, so a dashboard request sees changes within about a minute;
    0 or less: never (something else, a cron or a script, keeps them)."""
    if max_age_seconds <= 0:
        return None
    since = last_refresh(session)
    if since is not None and (utcnow() - since).total_seconds() < max_age_seconds:
        return None
    return refresh(session)


