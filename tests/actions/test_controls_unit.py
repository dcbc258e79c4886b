"""The controls' decisions, without a database: velocity, implausible travel, the
history windows a batch reads, and a batch's book of what it has seen."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from rewards.actions.controls import (
    HOUR,
    TRAVEL_HORIZON,
    ControlBook,
    ControlSettings,
    Sighting,
    distance_km,
    history_windows,
    hold_reason,
    impossible_travel,
    position_of,
    too_many,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
LEEDS = (53.7997, -1.5492)
LONDON = (51.5074, -0.1278)
HEADINGLEY = (53.8190, -1.5780)


def at(minutes: float, type_code: str = "bus_journey",
       where: tuple[float, float] | None = None) -> Sighting:
    return Sighting(type_code, T0 + timedelta(minutes=minutes), where)


# -- positions and distances ---------------------------------------------------------

@pytest.mark.parametrize(("attributes", "expected"), [
    ({"lat": 53.8, "lon": -1.55}, (53.8, -1.55)),
    ({"lat": 53, "lon": 0}, (53.0, 0.0)),
    ({"lat": "53.8", "lon": -1.55}, None),  # strings are not read as numbers
    ({"lat": 91, "lon": 0}, None),
    ({"lat": 0, "lon": -180.5}, None),
    ({"lat": math.nan, "lon": 0}, None),
    ({"lat": True, "lon": 0}, None),
    ({"lat": 53.8}, None),
    ({}, None),
    (None, None),
])
def test_position_is_read_only_from_numbers_in_range(attributes, expected) -> None:
    assert position_of(attributes) == expected


def test_distance_is_the_great_circle() -> None:
    assert distance_km(LEEDS, LONDON) == pytest.approx(272, abs=2)
    assert distance_km(LEEDS, LEEDS) == 0
    assert distance_km(LEEDS, HEADINGLEY) == pytest.approx(2.86, abs=0.05)


# -- velocity --------------------------------------------------------------------------

def test_up_to_the_limit_in_an_hour_passes_and_one_more_is_held() -> None:
    history = [at(0), at(10), at(20)]
    assert too_many(at(30), history[:2], 3) is None
    reason = too_many(at(30), history, 3)
    assert reason is not None
    assert "more than 3 bus_journey actions" in reason
    assert "(4 between 2026-11-20T08:00:00Z and 2026-11-20T08:30:00Z)" in reason


def test_only_the_same_type_counts() -> None:
    history = [at(0, "cycle_hire"), at(10, "cycle_hire"), at(20, "cycle_hire")]
    assert too_many(at(30), history, 3) is None


def test_an_hour_is_sixty_minutes_not_a_clock_hour() -> None:
    # 08:00, 08:20, 08:40 and 09:00: no hour-long window holds all four.
    assert too_many(at(60), [at(0), at(20), at(40)], 3) is None
    # 08:00 ... 08:59: one does.
    assert too_many(at(59), [at(0), at(20), at(40)], 3) is not None
    # Spread over two hours: never more than 2 in one.
    spread = [at(n * 35) for n in range(4)]
    assert too_many(at(140), spread, 2) is None


def test_an_action_arriving_late_is_counted_in_the_hour_it_happened() -> None:
    """The source sends 08:05 after 08:10, 08:20 and 08:30 are stored: it makes four."""
    assert too_many(at(5), [at(10), at(20), at(30)], 3) is not None
    assert too_many(at(5), [at(70), at(80), at(90)], 3) is None


def test_a_limit_of_zero_is_off() -> None:
    assert too_many(at(0), [at(0)] * 50, 0) is None


# -- travel ----------------------------------------------------------------------------

def test_leeds_then_london_half_an_hour_later_is_held() -> None:
    reason = impossible_travel(at(30, where=LONDON), [at(0, where=LEEDS)], 200)
    assert reason is not None
    assert "implausible travel: 272" in reason
    assert "in 30 minutes" in reason and "km/h" in reason and "more than 200 km/h" in reason


def test_leeds_then_london_three_hours_later_is_fine() -> None:
    assert impossible_travel(at(180, where=LONDON), [at(0, where=LEEDS)], 200) is None


def test_the_next_action_counts_as_well_as_the_last() -> None:
    """A tap that arrives late is checked against the one after it."""
    assert impossible_travel(at(0, where=LEEDS), [at(30, where=LONDON)], 200) is not None


def test_only_the_nearest_located_actions_matter() -> None:
    # London at 08:00, Leeds at 11:00 (plausible), then Leeds at 11:20: compared with
    # 11:00, not with London.
    history = [at(0, where=LONDON), at(180, where=LEEDS)]
    assert impossible_travel(at(200, where=HEADINGLEY), history, 200) is None


def test_two_places_at_once_are_held_but_gps_noise_is_not() -> None:
    reason = impossible_travel(at(0, where=HEADINGLEY), [at(0, where=LEEDS)], 200)
    assert reason is not None and "at the same moment" in reason
    nearby = (LEEDS[0] + 0.003, LEEDS[1])  # about 330 m
    assert impossible_travel(at(0, where=nearby), [at(0, where=LEEDS)], 200) is None


def test_no_position_or_no_limit_means_no_travel_check() -> None:
    assert impossible_travel(at(30), [at(0, where=LEEDS)], 200) is None
    assert impossible_travel(at(30, where=LONDON), [at(0)], 200) is None
    assert impossible_travel(at(30, where=LONDON), [at(0, where=LEEDS)], 0) is None


def test_sightings_beyond_the_horizon_are_ignored() -> None:
    far = TRAVEL_HORIZON.total_seconds() / 60 + 1
    # Paris over 12 hours before is a long way, but it cannot make the trip implausible.
    assert impossible_travel(at(far, where=LONDON), [at(0, where=(48.85, 2.35))], 200) is None


# -- together --------------------------------------------------------------------------

SETTINGS = ControlSettings(max_per_hour=3, max_per_hour_by_type={"leisure_visit": 1},
                           max_speed_kmh=200)


def test_hold_reason_gives_every_reason() -> None:
    history = [at(0, where=LEEDS), at(5), at(10)]
    reason = hold_reason(at(15, where=LONDON), history, SETTINGS)
    assert reason is not None
    assert "more than 3" in reason and "implausible travel" in reason
    assert hold_reason(at(15), history[:2], SETTINGS) is None


def test_settings_from_config_with_per_type_limits() -> None:
    settings = ControlSettings.from_config({
        "CONTROL_MAX_PER_HOUR": 10, "CONTROL_MAX_PER_HOUR_BY_TYPE": {"leisure_visit": 2,
                                                                    "bus_journey": 0},
        "CONTROL_MAX_SPEED_KMH": 150})
    assert settings.per_hour_limit("cycle_hire") == 10
    assert settings.per_hour_limit("leisure_visit") == 2
    assert settings.per_hour_limit("bus_journey") == 0  # off for this type
    assert settings.max_speed_kmh == 150 and settings.enabled
    assert not ControlSettings.from_config({}).enabled
    assert settings.reach("cycle_hire", located=False) == HOUR
    assert settings.reach("cycle_hire", located=True) == TRAVEL_HORIZON
    assert settings.reach("bus_journey", located=False) is None


def test_history_windows_are_merged_per_member() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    windows = history_windows([
        (a, "bus_journey", T0, False),
        (a, "bus_journey", T0 + timedelta(minutes=90), False),   # overlaps the first
        (a, "bus_journey", T0 + timedelta(hours=5), False),      # apart
        (b, "bus_journey", T0, True),                            # located: 12 h each way
        (b, "leisure_visit", T0, False),
    ], SETTINGS)
    assert windows[a] == [(T0 - HOUR, T0 + timedelta(minutes=150)),
                          (T0 + timedelta(hours=4), T0 + timedelta(hours=6))]
    assert windows[b] == [(T0 - TRAVEL_HORIZON, T0 + TRAVEL_HORIZON)]
    off = ControlSettings(max_per_hour=0)
    assert history_windows([(a, "bus_journey", T0, False)], off) == {}


def test_a_book_counts_what_it_has_seen_in_order() -> None:
    member, other = uuid.uuid4(), uuid.uuid4()
    book = ControlBook(SETTINGS, {member: [at(0)]})
    results = [book.check(member, "bus_journey", T0 + timedelta(minutes=m), {})
               for m in (10, 20, 30, 40)]
    assert results[:2] == [None, None]
    assert results[2] is not None and results[2].startswith("held for review: more than 3")
    assert results[3] is not None  # held ones still count
    assert book.check(other, "bus_journey", T0 + timedelta(minutes=30), {}) is None
    # Per-type limit: the second leisure visit within the hour is held.
    assert book.check(other, "leisure_visit", T0, {}) is None
    assert book.check(other, "leisure_visit", T0 + timedelta(minutes=50), {}) is not None


def test_a_book_with_controls_off_holds_nothing() -> None:
    book = ControlBook(ControlSettings())
    member = uuid.uuid4()
    assert all(book.check(member, "bus_journey", T0, {"lat": 0, "lon": n}) is None
               for n in range(20))
