"""What a dashboard request asks for: a date range and optional ward, category, type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

from ..models.scheme import CATEGORIES

DEFAULT_DAYS = 90
# The widest range one request may ask for: ten years of months is still small.
MAX_DAYS = 3660


def scheme_zone() -> ZoneInfo:
    name = current_app.config["SCHEME_TIMEZONE"] if has_app_context() else "Europe/London"
    return ZoneInfo(name)


def today() -> date:
    return datetime.now(UTC).astimezone(scheme_zone()).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def months_between(first: date, last: date) -> list[date]:
    """The 1sts of every month from `first`'s to `last`'s."""
    months, month = [], month_start(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """UTC instants from the start of `first` to the start of the day after `last`,
    in the scheme's zone."""
    zone = scheme_zone()
    start = datetime.combine(first, time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


# Dates a figure can be about: wide enough for any scheme's history and plans, and far
# from the calendar's ends, where a month or a day past them cannot be made.
EARLIEST, LATEST = date(1970, 1, 1), date(9998, 12, 31)


class FilterError(ValueError):
    """A filter the dashboard cannot answer for: `field` names the query argument at
    fault (the API's 422 lists the message under it), str() says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _date(value: str, name: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise FilterError(name, f"{name} must be a date as YYYY-MM-DD, not {value!r}.") from None
    if not EARLIEST <= day <= LATEST:
        raise FilterError(name, f"{name} must be a date from {EARLIEST} to {LATEST}.")
    return day


def _text(args: Mapping[str, Any], name: str, longest: int = 100) -> str | None:
    value = args.get(name)
    if value is None or str(value).strip() == "":
        return None
    value = str(value).strip()
    if len(value) > longest:
        raise FilterError(name, f"{name} is longer than {longest} characters.")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise FilterError(name, f"{name} must not contain control characters.")
    return value


@dataclass(frozen=True)
class Filters:
    date_from: date
    date_to: date
    ward: str | None = None
    category: str | None = None
    action_type: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Filters:
        """From query arguments `from`, `to` (YYYY-MM-DD), `ward`, `category`,
        `action_type`; by default the last 90 days ending today in the scheme's zone.
        Bad values raise FilterError (a ValueError) naming the argument, with a message
        for the caller; a range that cannot be (`from` after `to`, or too long) is put
        on `from`, the end a caller moves to mend it."""
        end = _date(args["to"], "to") if args.get("to") else today()
        start = (_date(args["from"], "from") if args.get("from")
                 else max(end - timedelta(days=DEFAULT_DAYS - 1), EARLIEST))
        if start > end:
            raise FilterError("from", "from must not be after to.")
        if (end - start).days >= MAX_DAYS:
            raise FilterError("from", f"The range may cover at most {MAX_DAYS} days.")
        category = _text(args, "category", 32)
        if category is not None and category not in CATEGORIES:
            raise FilterError("category", f"category must be one of: {', '.join(CATEGORIES)}.")
        return cls(start, end, _text(args, "ward"), category, _text(args, "action_type", 64))

    @property
    def months(self) -> list[date]:
        """Figures by month cover whole months: from the 1st of `date_from`'s month
        to the end of `date_to`'s."""
        return months_between(self.date_from, self.date_to)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"from": self.date_from.isoformat(), "to": self.date_to.isoformat(),
                "ward": data["ward"], "category": data["category"],
                "action_type": data["action_type"]}
