"""Version 7 ids for bulk writes: well-formed, unique, and ordered by the time made."""

from __future__ import annotations

import uuid

from rewards.ids import IdPool, new_ids


def test_ids_are_version_7_with_the_time_in_front() -> None:
    moment_ns = 1_795_000_000_123_456_789  # 2026-11-18, Unix nanoseconds
    ids = new_ids(500, now_ns=moment_ns)
    assert len(set(ids)) == 500
    for made in ids:
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert made.int >> 80 == moment_ns // 1_000_000
    assert str(uuid.UUID(str(ids[0]))) == str(ids[0])


def test_later_ids_sort_after_earlier_ones() -> None:
    earlier = new_ids(50, now_ns=1_795_000_000_000_000_000)
    later = new_ids(50, now_ns=1_795_000_000_001_000_000)  # one millisecond on
    assert max(earlier) < min(later)
    assert max(str(i) for i in earlier) < min(str(i) for i in later)


def test_the_pool_hands_out_fresh_ids_across_blocks() -> None:
    pool = IdPool(block=8)
    drawn = [pool() for _ in range(30)]
    assert len(set(drawn)) == 30 and all(i.version == 7 for i in drawn)


def test_ids_are_ordinary_uuids() -> None:
    made = new_ids(3)
    for value in made:
        again = uuid.UUID(str(value))
        assert again == value and hash(again) == hash(value) and again.int == value.int
        assert value.is_safe == uuid.SafeUUID.unknown
        assert uuid.UUID(bytes=value.bytes) == value and value.hex == again.hex
    assert {made[0]: 1}[uuid.UUID(str(made[0]))] == 1
