"""Awarding's deciding parts without a database: cap and budget use counted forward
through a batch, the windows an action falls in, which awards an action earns, and the
rows and earn postings that come of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rewards.awarding import (
    MAX_AWARD_POINTS,
    Accepted,
    Item,
    ReplayUsage,
    UsageBook,
    WantedUse,
    Writes,
    award_points,
    decide,
    flag_reason,
    rule_plans,
)
from rewards.rules import RuleSpec, compile_rule, member_facts

TZ = "Europe/London"
START = datetime(2026, 1, 1, tzinfo=UTC)
MONDAY = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # noon in London (GMT)
NOW = MONDAY + timedelta(hours=1)
MEMBER_ID = uuid.UUID("00000000-0000-7000-8000-000000000001")
OTHER_ID = uuid.UUID("00000000-0000-7000-8000-000000000002")
FACTS = member_facts("Armley", datetime(2025, 6, 1, tzinfo=UTC), NOW)


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """No app and no database here: replaces the suite's database clean-up."""
    yield


def rule(name: str = "Bus journey", points: str = "10", **options: Any):
    spec = RuleSpec(
        rule_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        version_id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        version=1, name=name, action_types=frozenset({"bus_journey"}),
        condition="true", points=points, starts_at=START, **options)
    return compile_rule(spec)


class Batch:
    """What ingest does for each accepted action, in memory."""

    def __init__(self, *rules: Any, book: UsageBook | None = None) -> None:
        self.rules = list(rules)
        self.plans = rule_plans(self.rules)
        self.wanted = WantedUse(TZ)
        self.book = book or UsageBook()
        self.writes = Writes(NOW)

    def work(self, at: datetime, member_id: uuid.UUID = MEMBER_ID) -> Accepted:
        applicable = [p for p in self.plans.values() if p.rule.applies_to("bus_journey", at)]
        windows = self.wanted.add(member_id, applicable, at, at.date())
        item = Item(0, f"ref-{at.isoformat()}", "bus_journey", at, {})
        return Accepted(item, member_id, uuid.uuid4(), applicable, windows)

    def award(self, at: datetime, member_id: uuid.UUID = MEMBER_ID) -> tuple[int, str]:
        return award_points(self.work(at, member_id), FACTS, self.book, self.rules,
                            self.plans, None, uuid.uuid4(), NOW, TZ, self.writes)


def test_a_daily_cap_is_counted_forward_through_the_batch_per_member() -> None:
    batch = Batch(rule(caps={"per_day": 2}))
    got = [batch.award(MONDAY + timedelta(minutes=n)) for n in range(3)]
    assert got == [(10, "accepted"), (10, "accepted"), (0, "accepted")]
    assert [a["capped_by"] for a in batch.writes.awards] == [None, None, "per_day"]
    # Another member's cap is their own; the next day is a new window.
    assert batch.award(MONDAY, OTHER_ID) == (10, "accepted")
    assert batch.award(MONDAY + timedelta(days=1)) == (10, "accepted")


def test_use_read_before_the_batch_counts_against_the_cap() -> None:
    capped = rule(caps={"per_day": 2}, points_caps={"per_day": 25})
    batch = Batch(capped)
    work = batch.work(MONDAY)
    day = work.windows["per_day"]
    assert day == datetime(2026, 1, 5, tzinfo=UTC)  # midnight in London, in winter
    assert batch.wanted.windows == {
        (MEMBER_ID, capped.spec.rule_id, "per_day", day): day + timedelta(days=1)}
    batch.book.windows[(MEMBER_ID, capped.spec.rule_id, "per_day", day)] = (1, 20)
    # One more action fits the count cap, but only 5 points of the points cap.
    assert batch.award(MONDAY) == (5, "accepted")
    assert batch.award(MONDAY) == (0, "accepted")
    assert batch.book.windows[(MEMBER_ID, capped.spec.rule_id, "per_day", day)] == (2, 25)


def test_a_budget_is_shared_by_every_member_and_ends_exactly() -> None:
    budgeted = rule(budget_points=25)
    batch = Batch(budgeted)
    batch.work(MONDAY)
    assert batch.wanted.budgeted == {budgeted.spec.rule_id}
    batch.book.budgets[budgeted.spec.rule_id] = 0
    got = [batch.award(MONDAY, member) for member in (MEMBER_ID, OTHER_ID, MEMBER_ID)]
    assert got == [(10, "accepted"), (10, "accepted"), (5, "accepted")]
    assert batch.award(MONDAY, OTHER_ID) == (0, "accepted")
    assert batch.writes.awards[-1]["capped_by"] == "budget"
    assert batch.book.budgets[budgeted.spec.rule_id] == 25


def test_stacked_rules_make_one_earn_per_hold_and_awards_point_at_it() -> None:
    batch = Batch(rule("Bus journey"), rule("Bus bonus", points="5"),
                  rule("Held bonus", points="3", hold_days=14))
    assert batch.award(MONDAY) == (18, "accepted")
    earns = batch.writes.earns
    assert sorted((e.hold_days, e.points, len(e.reasons)) for e in earns) == [
        (0, 15, 2), (14, 3, 1)]
    by_posting = {e.posting_id: e for e in earns}
    assert sorted(by_posting[a["posting_id"]].hold_days for a in batch.writes.awards) == [
        0, 0, 14]
    [action] = batch.writes.actions
    assert (action["status"], action["points"], action["flag_reason"]) == ("accepted", 18, None)


def test_no_points_no_posting_and_no_cap_used() -> None:
    batch = Batch(rule(points="0", caps={"per_day": 1}))
    assert batch.award(MONDAY) == (0, "accepted")
    assert batch.award(MONDAY) == (0, "accepted")
    assert batch.writes.earns == []
    assert [a["capped_by"] for a in batch.writes.awards] == [None, None]


def test_an_absurd_award_fails_its_rule_and_flags_the_action() -> None:
    batch = Batch(rule("Per km", points=str(MAX_AWARD_POINTS * 10)), rule("Bus journey"))
    work = batch.work(MONDAY)
    evaluation = decide(work, FACTS, batch.book, batch.rules, NOW, TZ)
    assert [(d.spec.name, d.points) for d in evaluation.decisions] == [("Bus journey", 10)]
    reason = flag_reason(evaluation)
    assert reason is not None and reason.startswith("rule Per km v1 failed: points formula")
    assert batch.award(MONDAY) == (10, "flagged")
    assert batch.writes.actions[-1]["flag_reason"] == reason


def test_rules_that_awarded_before_are_skipped() -> None:
    first, second = rule("Bus journey"), rule("Bus bonus", points="5")
    batch = Batch(first, second)
    work = batch.work(MONDAY)
    points, _ = award_points(work, FACTS, batch.book, batch.rules, batch.plans, None,
                             uuid.uuid4(), NOW, TZ, batch.writes,
                             skip_rules={uuid.UUID(first.spec.rule_id)})
    assert points == 5
    assert [a["rule_name"] for a in batch.writes.awards] == ["Bus bonus"]


def test_no_applicable_rule_asks_no_engine() -> None:
    batch = Batch()
    work = batch.work(MONDAY)
    assert work.plans == [] and work.windows == {}
    evaluation = decide(work, FACTS, batch.book, [], NOW, TZ)
    assert evaluation.decisions == [] and evaluation.errors == []


def test_a_replay_counts_only_what_caps_and_budgets_measure() -> None:
    capped = rule("Capped", caps={"per_day": 1})
    budgeted, plain = rule("Budgeted", budget_points=30), rule("Plain")
    book = ReplayUsage([capped, budgeted, plain])
    day = {"per_day": MONDAY.date(), "per_week": None, "per_month": None, "lifetime": None}
    for spec in (capped.spec, budgeted.spec, plain.spec):
        book.record(7, spec.rule_id, 10, day)
    usage = book.usage(7, "bus_journey", day)
    assert usage.counts == {(capped.spec.rule_id, "per_day"): 1}
    assert usage.points == {(capped.spec.rule_id, "per_day"): 10}
    assert usage.budget_spent == {budgeted.spec.rule_id: 10}
    assert book.usage(8, "bus_journey", day).counts == {}
