"""The facts a rule's condition and points formula can use, and how they are built.

Every expression sees three names:

| field | type | meaning |
|---|---|---|
| `action.type` | string | the action type code, e.g. `"bus_journey"` |
| `action.occurred_at` | string | when it happened, RFC 3339 in UTC, e.g. `"2026-01-05T08:30:00Z"` |
| `action.hour` | number 0-23 | the hour it happened, in the scheme's time zone |
| `action.weekday` | number 1-7 | local day of the week, 1 = Monday, 7 = Sunday |
| `action.attributes.*` | any | what the source sent, e.g. `distance_km`, `hours`, `mode`, `route` |
| `member.ward` | string or null | the member's ward |
| `member.joined_at` | string | when the member joined, RFC 3339 in UTC |
| `member.days_since_joined` | number | whole days from joining to now (0 on the first day) |
| `member.actions_total` | number | accepted actions before this one, over the member's lifetime |
| `now` | string | when the action is being evaluated, RFC 3339 in UTC |

An attribute the source did not send is `null`. Keep SAMPLE_CONTEXT below in step
with this table: rules are checked against it when they are saved."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

CONTEXT_FIELDS: dict[str, str] = {
    "action.type": "the action type code",
    "action.occurred_at": "when it happened, RFC 3339 in UTC",
    "action.hour": "local hour 0-23 in the scheme's time zone",
    "action.weekday": "local day of the week, 1 = Monday to 7 = Sunday",
    "action.attributes.*": "what the source sent (distance_km, hours, mode, route, ...)",
    "member.ward": "the member's ward, or null",
    "member.joined_at": "when the member joined, RFC 3339 in UTC",
    "member.days_since_joined": "whole days from joining to now",
    "member.actions_total": "accepted actions before this one, over the member's lifetime",
    "now": "when the action is evaluated, RFC 3339 in UTC",
}

# A context shaped like a real one, used to catch type errors when a rule is saved.
SAMPLE_CONTEXT: dict[str, Any] = {
    "action": {
        "type": "bus_journey",
        "occurred_at": "2026-01-05T08:30:00Z",
        "hour": 8,
        "weekday": 1,
        "attributes": {"distance_km": 5.0, "hours": 2, "mode": "bus", "route": "1"},
    },
    "member": {
        "ward": "Headingley & Hyde Park",
        "joined_at": "2025-06-01T00:00:00Z",
        "days_since_joined": 218,
        "actions_total": 12,
    },
    "now": "2026-01-05T08:31:00Z",
}


@lru_cache(maxsize=32)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def iso_z(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as every time in a context is written."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


# `now` is the same for a whole batch: remember the last one written.
_last_now: tuple[datetime, str] | None = None


def _now_text(now: datetime) -> str:
    global _last_now
    last = _last_now
    if last is not None and last[0] == now:  # the same instant gives the same text
        return last[1]
    text = iso_z(now)
    _last_now = (now, text)
    return text


def member_facts(
    ward: str | None,
    joined_at: datetime,
    now: datetime,
    actions_total: int = 0,
) -> dict[str, Any]:
    """The `member` part of a context. `actions_total` is the member's accepted
    actions before the one being evaluated (the caller counts them)."""
    return {
        "ward": ward,
        "joined_at": iso_z(joined_at),
        "days_since_joined": max((now - joined_at).days, 0),
        "actions_total": int(actions_total),
    }


def build_context(
    action_type: str,
    occurred_at: datetime,
    attributes: Mapping[str, Any],
    member: Mapping[str, Any],
    now: datetime,
    tz: str,
) -> dict[str, Any]:
    """The context rules are evaluated on: `action`, `member` (see member_facts) and `now`."""
    local = occurred_at.astimezone(_zone(tz))
    return {
        "action": {
            "type": action_type,
            "occurred_at": iso_z(occurred_at),
            "hour": local.hour,
            "weekday": local.isoweekday(),
            "attributes": dict(attributes),
        },
        "member": dict(member),
        "now": _now_text(now),
    }
