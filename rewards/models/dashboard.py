"""Dashboard rollups and the staff settings behind its figures.

The rollups are derived data: `rewards dashboard rebuild` can always make them again
from the actions, members and ledger. Days and months are in the scheme's time zone."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class MemberDay(Base):
    """One member's counted (accepted) actions of one type on one day."""

    __tablename__ = "dashboard_member_days"
    __table_args__ = (Index("ix_dashboard_member_days_member_day", "member_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    ward: Mapped[str] = mapped_column(String(100))
    actions: Mapped[int] = mapped_column()
    points: Mapped[int] = mapped_column(BigInteger)
    # Sums of the actions' attributes.distance_km and attributes.hours, where given.
    km: Mapped[float] = mapped_column(Float, default=0)
    duration_h: Mapped[float] = mapped_column(Float, default=0)
    # {"<hour>": actions} in the scheme's time zone: what the month's hour rows come from.
    by_hour: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MemberMonth(Base):
    """One member's counted actions of one type in one month (`month` is its 1st)."""

    __tablename__ = "dashboard_member_months"
    __table_args__ = (Index("ix_dashboard_member_months_member", "member_id", "month"),)

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    ward: Mapped[str] = mapped_column(String(100))
    actions: Mapped[int] = mapped_column()
    points: Mapped[int] = mapped_column(BigInteger)
    km: Mapped[float] = mapped_column(Float, default=0)
    duration_h: Mapped[float] = mapped_column(Float, default=0)
    days: Mapped[int] = mapped_column()


class MemberHourMonth(Base):
    """One member's counted actions of one type in one month at one weekday and hour."""

    __tablename__ = "dashboard_member_hours"
    __table_args__ = (Index("ix_dashboard_member_hours_member", "member_id", "month"),)

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    weekday: Mapped[int] = mapped_column(primary_key=True)  # 1 Monday .. 7 Sunday
    hour: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    ward: Mapped[str] = mapped_column(String(100))
    actions: Mapped[int] = mapped_column()


class LedgerDay(Base):
    """Points moved on one scheme account by one kind of posting on one day."""

    __tablename__ = "dashboard_ledger_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    account: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)
    postings: Mapped[int] = mapped_column()


class ExpiryDay(Base):
    """Points earned on one day (`day`, when posted: the day of the earn posting's line
    on a scheme account, as LedgerDay) that expire on another (`expires`), both in the
    scheme's zone: the earn postings' credits, summed. The forecast reads these by
    `expires` instead of the ledger; a refresh redoes a posting day whole."""

    __tablename__ = "dashboard_expiry_days"
    __table_args__ = (Index("ix_dashboard_expiry_days_expires", "expires"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    expires: Mapped[date] = mapped_column(Date, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)


class DashboardRefresh(Base):
    """When the rollups were last brought up to date: changes after `refreshed_at`
    are what the next refresh looks for."""

    __tablename__ = "dashboard_refreshes"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column()
    took_ms: Mapped[int] = mapped_column(default=0)
    days: Mapped[int] = mapped_column(default=0)


class DashboardSetting(Base):
    """A staff setting for the figures: value per point, impact factors per action
    type, a ward's adult population and deprivation decile. Changes are audited."""

    __tablename__ = "dashboard_settings"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[uuid.UUID | None] = mapped_column()


class MemberTenure(Base):
    """One member's counted actions of one type in one window of their membership
    (weeks 1-4, months 2-3, 4-6, later), with the month they joined and their ward:
    what the tenure cells are changed by when the member's days change."""

    __tablename__ = "dashboard_member_tenure"

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    cohort: Mapped[date] = mapped_column(Date)
    category: Mapped[str] = mapped_column(String(32))
    ward: Mapped[str] = mapped_column(String(100))
    actions: Mapped[int] = mapped_column()


class TenureCell(Base):
    """Members who joined in one month (`cohort`, its 1st) living in one ward: how many
    had counted actions of one type in one window of their membership, and how many
    actions. Members are counted once per cell, so cells add up exactly."""

    __tablename__ = "dashboard_tenure_cells"

    cohort: Mapped[date] = mapped_column(Date, primary_key=True)
    ward: Mapped[str] = mapped_column(String(100), primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    members: Mapped[int] = mapped_column()
    actions: Mapped[int] = mapped_column()


class SpanCell(Base):
    """Members counted once per cell, so cells add up to exact distinct counts.

    `dim` says what `ward` and `value` hold and what the periods are:
    - ward, age, hour: months. Each member's active months (of one action type, one
      category or any, `*`) in order, one entry per active month: `first_period` is the
      month, `next_period` the member's next active month (9999-12-01: none). A member
      active in months a..b is the entry with a <= first_period <= b < next_period, and
      only that one, so the members over any range of months are one sum.
      ward: `ward` the member's ward; age: `value` the birth year; hour: `value`
      weekday * 100 + hour (`ward` is `*` for these two).
    - day: the same by day, `next_period` at most 30 days on (the widest window asked).
    - cohort: members of the cohort `value` (the month they joined) active in the month
      `first_period`; week: members active in the week starting `first_period`."""

    __tablename__ = "dashboard_span_cells"

    dim: Mapped[str] = mapped_column(String(8), primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    ward: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_period: Mapped[date] = mapped_column(Date, primary_key=True)
    next_period: Mapped[date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column()


class SumCell(Base):
    """Counted actions and their sums per period, action type and `dim` (as in
    SpanCell: ward, age and hour by month, week by week): they add up over anything."""

    __tablename__ = "dashboard_sum_cells"

    dim: Mapped[str] = mapped_column(String(8), primary_key=True)
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    type_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    ward: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(32), primary_key=True)
    actions: Mapped[int] = mapped_column()
    points: Mapped[int] = mapped_column(BigInteger)
    km: Mapped[float] = mapped_column(Float, default=0)
    duration_h: Mapped[float] = mapped_column(Float, default=0)


class JoinDay(Base):
    """Members who joined on one day (scheme zone), by ward and channel (`desk`: enrolled
    card-only at a council desk): reach, retention and baseline read these instead of
    every member."""

    __tablename__ = "dashboard_join_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    ward: Mapped[str] = mapped_column(String(100), primary_key=True)
    desk: Mapped[bool] = mapped_column(primary_key=True)
    members: Mapped[int] = mapped_column()
