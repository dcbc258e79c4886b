"""Checking one item of a source's batch: its reference, type, time, attributes and
member, with a reason a source's developer can act on when it is not usable."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..awarding import Item


@dataclass
class Limits:
    max_future: timedelta
    max_age: timedelta
    # Characters an item's attributes may hold (keys and strings; a number counts 8).
    max_attributes: int = 8192


# RFC 3339 date-time: full date, T (or a space), full time, then Z or an offset. Python's
# fromisoformat alone also takes ISO 8601 forms sources should not send (20261120T0815Z).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>[Zz]|[+-]\d{2}:\d{2})?"
)
_EXAMPLE_TIME = "2026-11-20T08:15:00Z"
# The rules engine takes numbers up to 64-bit integers; larger ones fail inside it.
MAX_ATTRIBUTE_NUMBER = 2**63
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# JSON may escape half of a surrogate pair (\ud800) on its own: Python keeps it, but it
# is not a character, cannot be written as UTF-8, and PostgreSQL refuses it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_UNICODE = "must be valid Unicode text (it holds half of a UTF-16 surrogate pair)"


def check_time(value: Any) -> datetime | str:
    """An RFC 3339 time with a zone, in UTC; or why not."""
    if not isinstance(value, str):
        return f"occurred_at must be an RFC 3339 time string, e.g. {_EXAMPLE_TIME}"
    match = _RFC3339.fullmatch(value)
    if match is None:
        return f"occurred_at must be an RFC 3339 time, e.g. {_EXAMPLE_TIME}; got {value[:40]!r}"
    if match.group("zone") is None:
        return (f"occurred_at has no time zone: end it with Z (UTC) or an offset such as "
                f"+01:00; got {value!r}")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        return f"occurred_at is not a real time ({error}); got {value!r}"


def parse_time(value: Any) -> datetime | None:
    checked = check_time(value)
    return checked if isinstance(checked, datetime) else None


def _attributes_problem(attributes: Mapping[str, Any], most: int = 8192) -> str | None:
    """Values the database or the rules engine cannot hold: NUL characters, lone
    surrogates, numbers that are not finite or are too large; and more than `most`
    characters in all (each item is stored, shown to its member and to reviewers: one
    of 2 MB made every page of that member's actions as large)."""
    stack: list[tuple[str, Any]] = [("attributes", attributes)]
    size = 0
    while stack:
        path, value = stack.pop()
        size += len(value) if isinstance(value, str) else 8
        if size > most:
            return (f"attributes are too large: at most {most} characters in all "
                    f"(keys and text; a number counts as 8)")
        if isinstance(value, Mapping):
            for key, inner in value.items():
                size += len(key)
                if "\x00" in key:
                    return f"{path}: keys must not contain NUL characters"
                if _SURROGATE.search(key):
                    return f"{path}: keys {_NOT_UNICODE}"
                stack.append((f"{path}.{key}", inner))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", inner) for n, inner in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                return f"{path} must not contain NUL characters"
            if _SURROGATE.search(value):
                return f"{path} {_NOT_UNICODE}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path} must be a finite number, not {value}"
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and abs(value) >= MAX_ATTRIBUTE_NUMBER):
            return f"{path} is too large: numbers must be smaller than 2^63 in size"
    return None


def validate_item(
    index: int,
    raw: Any,
    allowed_types: set[str],
    now: datetime,
    limits: Limits,
    known_types: set[str] | None = None,
) -> Item | str:
    """Decide whether one batch item is usable; if not, say why in words a source's
    developer can act on. `allowed_types` are the types this source may send,
    `known_types` all the scheme's types (to tell a typo from a missing permission)."""
    if not isinstance(raw, Mapping):
        return "each item must be a JSON object"
    ref = raw.get("external_ref")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
        return "external_ref must be a non-empty string of at most 200 characters"
    if _CONTROL.search(ref):
        return "external_ref must not contain control characters"
    if _SURROGATE.search(ref):
        return f"external_ref {_NOT_UNICODE}"
    type_code = raw.get("type")
    if not isinstance(type_code, str) or not type_code:
        return "type is required: an action type code such as bus_journey"
    if type_code not in allowed_types:
        if known_types is not None and type_code in known_types:
            may_send = ", ".join(sorted(allowed_types)) or "none"
            return (f"this source may not send {type_code!r} actions; "
                    f"the types it may send: {may_send}")
        if known_types is not None:
            return f"unknown type {type_code!r}: the scheme has no action type with this code"
        return f"unknown type {type_code!r} for this source"
    occurred_at = check_time(raw.get("occurred_at"))
    if isinstance(occurred_at, str):
        return occurred_at
    if occurred_at > now + limits.max_future:
        return (f"occurred_at is in the future (more than "
                f"{int(limits.max_future.total_seconds())} seconds ahead of {iso_utc(now)})")
    if occurred_at < now - limits.max_age:
        return f"occurred_at is older than {limits.max_age.days} days"
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        return "attributes must be a JSON object"
    problem = _attributes_problem(attributes, limits.max_attributes)
    if problem:
        return problem
    member = raw.get("member")
    if not isinstance(member, Mapping):
        return "member is required: {kind, number} of a linked card, or {member_id}"
    item = Item(index, ref, type_code, occurred_at, dict(attributes))
    if "member_id" in member:
        try:
            item.member_id = uuid.UUID(str(member["member_id"]))
        except ValueError:
            return "member.member_id must be a member's id (a UUID)"
    else:
        kind, number = member.get("kind"), member.get("number")
        if not isinstance(kind, str) or not isinstance(number, str) or not number.strip():
            return "member needs kind and number (strings) of a linked card"
        if _SURROGATE.search(kind) or _SURROGATE.search(number):
            return f"member kind and number {_NOT_UNICODE}"
        item.card = (kind, number)
    return item


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
