"""Partner timeout, retries, attempt limit and stuck-reward deadline come from the
environment; a value the scheme cannot run with stops it at start, by name, without a
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.config import Config, ConfigurationError

from .test_cli import rewards

SETTINGS = {
    "JOB_MAX_ATTEMPTS": ("6", 6),
    "JOB_RETRY_INTERVALS": ("2, 10,600", [2, 10, 600]),
    "JOB_TIMEOUT_SECONDS": ("45", 45),
    "PARTNER_TIMEOUT_SECONDS": ("2.5", 2.5),
    "REWARD_STUCK_AFTER_SECONDS": ("7200", 7200),
}


def test_job_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    defaults = Config()
    assert (defaults.JOB_MAX_ATTEMPTS, defaults.JOB_RETRY_INTERVALS, defaults.JOB_TIMEOUT_SECONDS,
            defaults.PARTNER_TIMEOUT_SECONDS, defaults.REWARD_STUCK_AFTER_SECONDS) == (
        4, [5, 30, 120], 30, 10.0, 21600)
    for name, (raw, _) in SETTINGS.items():
        monkeypatch.setenv(name, raw)
    config = Config()
    assert {name: getattr(config, name) for name in SETTINGS} == {
        name: value for name, (_, value) in SETTINGS.items()}


@pytest.mark.parametrize("name,raw", [
    ("JOB_RETRY_INTERVALS", "5,x"), ("JOB_RETRY_INTERVALS", "5,-1"),
    ("JOB_RETRY_INTERVALS", ","), ("JOB_MAX_ATTEMPTS", "0"), ("JOB_TIMEOUT_SECONDS", "1.5"),
    ("PARTNER_TIMEOUT_SECONDS", "soon"), ("REWARD_STUCK_AFTER_SECONDS", "5"),
])
def test_a_job_setting_out_of_range_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigurationError, match=f"^{name} must be .*not '{raw}'$"):
        Config()


def test_the_command_line_says_which_setting_is_wrong(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_RETRY_INTERVALS", "5,soon")
    done = rewards("ledger", "verify", db_url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == ("Error: JOB_RETRY_INTERVALS must be comma-separated whole "
                                   "seconds, e.g. 5,30,120, not '5,soon'")
