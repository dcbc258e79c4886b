"""The rulebook's process-wide pieces that need no database: run-time failures
logged once per rule version and message."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rewards.actions import rulebook
from rewards.rules import RuleSpec


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """No app and no database here: replaces the suite's database clean-up."""
    yield


@pytest.fixture(autouse=True)
def fresh_log() -> Iterator[None]:
    rulebook._logged.clear()
    yield
    rulebook._logged.clear()


def spec(version_id: str, version: int = 1) -> RuleSpec:
    return RuleSpec(rule_id="rule-1", version_id=version_id, version=version, name="Hours bonus",
                    action_types=frozenset({"bus_journey"}), condition="true",
                    points="action.attributes.hours * 2",
                    starts_at=datetime(2026, 1, 1, tzinfo=UTC))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "rewards.actions.rules"]


def test_a_failure_is_logged_once_per_version_and_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rewards.actions.rules")
    broken = spec("v-1")
    message = "vmError: Opcode Multiply: Unsupported type"
    for action in range(50):
        rulebook.log_rule_failures([(broken, message)], f"action-{action}")
    [line] = warnings(caplog)
    assert "Hours bonus v1" in line and "action-0" in line and message in line
    # The repeats are still there for whoever turns debug on.
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG) == 49

    caplog.clear()
    assert rulebook.log_rule_failures([(broken, "another message")], "action-x") == 1
    assert rulebook.log_rule_failures([(spec("v-2", 2), message)], "action-y") == 1
    assert rulebook.log_rule_failures([(broken, message)], "action-z") == 0
    assert len(warnings(caplog)) == 2


def test_the_log_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rulebook, "MAX_LOGGED_FAILURES", 10)
    broken = spec("v-1")
    for n in range(25):
        rulebook.log_rule_failures([(broken, f"points formula gave {n}, a negative number")],
                                   "a")
    assert len(rulebook._logged) == 10


def test_forgetting_a_version_logs_its_failures_again(caplog: pytest.LogCaptureFixture) -> None:
    broken = spec("v-1")
    assert rulebook.log_rule_failures([(broken, "boom")], "a") == 1
    rulebook.forget_failures(["v-1"])
    assert rulebook.log_rule_failures([(broken, "boom")], "b") == 1
