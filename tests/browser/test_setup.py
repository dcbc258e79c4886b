"""Without a browser the browser tests say how to install one: skipped on a developer's
machine, failed in CI (CI=true), where a skip would hide that nothing was tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_without_chromium(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CHROMIUM_PATH"] = "/nonexistent/chromium"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rsE", "-p", "no:cacheprovider",
         "tests/browser/test_dashboard_pages.py::test_login_through_the_form_and_its_accessibility"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci, code, said", [(None, 0, "SKIPPED"), ("true", 1, "ERROR")])
def test_a_missing_browser(ci: str | None, code: int, said: str) -> None:
    result = _run_without_chromium(ci)
    out = result.stdout + result.stderr
    assert result.returncode == code, out[-2000:]
    assert said in out
    assert "Chromium (/nonexistent/chromium) is missing: run `make browser-deps`" in out
