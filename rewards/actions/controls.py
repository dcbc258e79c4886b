"""Controls before points are awarded: is an action plausible? Decides only, no I/O.

Two checks, each over one member's actions (any of their cards, any source):
- velocity: more than N actions of one type within an hour (N per type, or scheme-wide);
- travel: two actions carrying `attributes.lat`/`lon` too far apart for the time
  between them (an implied speed over the scheme's limit, 200 km/h by default).
Actions in the future or older than the source's window are rejected before these run
(see ingest.validate_item). An action that fails a control is stored `flagged` with the
reason, awards nothing, and waits for a reviewer; approving it awards it then.
"""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
# How far either side of a located action to look for others: at 200 km/h anywhere in
# Britain is reachable within it, so an older sighting cannot make a move implausible.
TRAVEL_HORIZON = timedelta(hours=12)
# Moves shorter than this are GPS noise or the next stop, however little time passed.
MIN_DISTANCE_KM = 1.0
EARTH_RADIUS_KM = 6371.0088
HELD = "held for review: "


@dataclass(frozen=True)
class ControlSettings:
    """Limits from the scheme's settings; 0 turns a check off."""

    max_per_hour: int = 0
    max_per_hour_by_type: Mapping[str, int] = field(default_factory=dict)
    max_speed_kmh: float = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ControlSettings:
        return cls(
            max_per_hour=int(config.get("CONTROL_MAX_PER_HOUR", 0) or 0),
            max_per_hour_by_type=dict(config.get("CONTROL_MAX_PER_HOUR_BY_TYPE") or {}),
            max_speed_kmh=float(config.get("CONTROL_MAX_SPEED_KMH", 0) or 0),
        )

    def per_hour_limit(self, type_code: str) -> int:
        return int(self.max_per_hour_by_type.get(type_code, self.max_per_hour) or 0)

    def reach(self, type_code: str, located: bool) -> timedelta | None:
        """How far either side of an action its checks look; None when none applies."""
        reach = None
        if self.per_hour_limit(type_code) > 0:
            reach = HOUR
        if located and self.max_speed_kmh > 0:
            reach = max(reach or TRAVEL_HORIZON, TRAVEL_HORIZON)
        return reach

    @property
    def enabled(self) -> bool:
        return (self.max_per_hour > 0 or self.max_speed_kmh > 0
                or any(n > 0 for n in self.max_per_hour_by_type.values()))


@dataclass(frozen=True)
class Sighting:
    """What the controls know of one action: its type, time and place (if sent)."""

    type_code: str
    occurred_at: datetime
    position: tuple[float, float] | None = None


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def position_of(attributes: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(lat, lon) in degrees when the attributes carry both as numbers in range, else None:
    a position the controls cannot read is no position (the travel check is skipped)."""
    if not attributes:
        return None
    lat = _coordinate(attributes.get("lat"), 90)
    lon = _coordinate(attributes.get("lon"), 180)
    return None if lat is None or lon is None else (lat, lon)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def too_many(candidate: Sighting, history: Sequence[Sighting], limit: int) -> str | None:
    """Whether some hour holding the candidate holds more than `limit` actions of its type."""
    if limit <= 0:
        return None
    moment = candidate.occurred_at
    times = sorted([h.occurred_at for h in history if h.type_code == candidate.type_code
                    and abs(h.occurred_at - moment) < HOUR] + [moment])
    if len(times) <= limit:
        return None
    busiest, first, last = 0, moment, moment
    for index, start in enumerate(times):
        if start > moment:
            break
        if moment - start >= HOUR:
            continue
        end = bisect_left(times, start + HOUR)  # the hour [start, start + 1 h)
        if end - index > busiest:
            busiest, first, last = end - index, start, times[end - 1]
    if busiest <= limit:
        return None
    return (f"more than {limit} {candidate.type_code} actions by this member within an hour "
            f"({busiest} between {_iso(first)} and {_iso(last)})")


def impossible_travel(candidate: Sighting, history: Sequence[Sighting],
                      max_speed_kmh: float) -> str | None:
    """Whether the nearest located action before or after the candidate is too far away
    for the time between them."""
    here = candidate.position
    if here is None or max_speed_kmh <= 0:
        return None
    moment = candidate.occurred_at
    before: Sighting | None = None
    after: Sighting | None = None
    for other in history:
        if other.position is None or abs(other.occurred_at - moment) > TRAVEL_HORIZON:
            continue
        if other.occurred_at <= moment:
            if before is None or other.occurred_at > before.occurred_at:
                before = other
        elif after is None or other.occurred_at < after.occurred_at:
            after = other
    worst: tuple[float, float, Sighting] | None = None
    for other in (before, after):
        if other is None or other.position is None:
            continue
        km = distance_km(here, other.position)
        if km < MIN_DISTANCE_KM:
            continue
        hours = abs((moment - other.occurred_at).total_seconds()) / 3600
        speed = math.inf if hours == 0 else km / hours
        if speed > max_speed_kmh and (worst is None or speed > worst[1]):
            worst = (km, speed, other)
    if worst is None:
        return None
    km, speed, other = worst
    minutes = abs((moment - other.occurred_at).total_seconds()) / 60
    implied = "at the same moment" if speed == math.inf else f"{speed:.0f} km/h"
    return (f"implausible travel: {km:.1f} km from this member's action at "
            f"{_iso(other.occurred_at)} in {minutes:.0f} minutes ({implied}; "
            f"more than {max_speed_kmh:g} km/h)")


def hold_reason(candidate: Sighting, history: Sequence[Sighting],
                settings: ControlSettings) -> str | None:
    """Why the candidate must wait for a reviewer, or None. `history`: the member's
    other actions near it (stored, or earlier in the same batch), revoked ones left out."""
    reasons = [
        reason for reason in (
            too_many(candidate, history, settings.per_hour_limit(candidate.type_code)),
            impossible_travel(candidate, history, settings.max_speed_kmh),
        ) if reason
    ]
    return "; ".join(reasons) if reasons else None


def held(reason: str) -> str:
    """The words a flagged action and the source's per-item result carry."""
    return HELD + reason


Window = tuple[datetime, datetime]


def history_windows(
    actions: Iterable[tuple[uuid.UUID, str, datetime, bool]], settings: ControlSettings
) -> dict[uuid.UUID, list[Window]]:
    """For (member, type, occurred_at, located) of each action to check: per member, the
    time ranges of their stored actions the checks need, overlapping ranges merged."""
    wanted: dict[uuid.UUID, list[Window]] = {}
    reaches: dict[tuple[str, bool], timedelta | None] = {}  # a batch has few types
    for member_id, type_code, moment, located in actions:
        key = (type_code, located)
        if key not in reaches:
            reaches[key] = settings.reach(type_code, located)
        reach = reaches[key]
        if reach is not None:
            wanted.setdefault(member_id, []).append((moment - reach, moment + reach))
    merged: dict[uuid.UUID, list[Window]] = {}
    for member_id, windows in wanted.items():
        if len(windows) == 1:
            merged[member_id] = windows
            continue
        out: list[Window] = []
        for start, end in sorted(windows):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged[member_id] = out
    return merged


class ControlBook:
    """A batch's view of its members' actions: the stored ones near the batch's, then
    each checked action as it is decided, so later items (in time order) see earlier ones."""

    def __init__(self, settings: ControlSettings,
                 stored: Mapping[uuid.UUID, Iterable[Sighting]] | None = None) -> None:
        self.settings = settings
        self.history: dict[uuid.UUID, list[Sighting]] = {
            member_id: list(sightings) for member_id, sightings in (stored or {}).items()}

    def check(self, member_id: uuid.UUID, type_code: str, occurred_at: datetime,
              attributes: Mapping[str, Any] | None) -> str | None:
        """The reason to hold this action (already prefixed "held for review: "), or None;
        either way it joins the member's history."""
        if not self.settings.enabled:
            return None
        sighting = Sighting(type_code, occurred_at, position_of(attributes))
        history = self.history.setdefault(member_id, [])
        reason = hold_reason(sighting, history, self.settings)
        history.append(sighting)
        return held(reason) if reason else None
