"""Browser tests of the staff pages: Debian's Chromium driven by Playwright, against
the app served on a free local port with a seeded demo scheme loaded once for the
package. Never downloads a browser: `make browser-deps` installs Chromium with apt and
axe-core with npm. In CI (CI=true) a missing browser fails these tests; elsewhere they
are skipped with a message saying how to install it."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from rewards.extensions import db
from rewards.models import Base, StaffUser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
AXE_DIR = Path(os.environ.get("AXE_DIR", ROOT / ".cache" / "npm"))
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
INSTALL_HINT = "run `make browser-deps` (apt-get install chromium; npm install axe-core)"

ANALYST_EMAIL = "analyst@council.example"
ANALYST_PASSWORD = "correct horse battery"
# The demo scheme, made small: loads in seconds, and its ~430 members over 33 wards
# give cells both above and below the suppression threshold.
DEMO = {"members": 30, "weeks": 1, "history_members": 400, "history_months": 3}


def _missing(what: str) -> None:
    message = f"{what} is missing: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """The package shares one loaded scheme (see `live_server`), so nothing is wiped
    between its tests; `live_server` wipes it when the package is done."""
    yield


@pytest.fixture(scope="session")
def axe_script() -> Path:
    path = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists() and shutil.which("npm"):
        subprocess.run(["npm", "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund",
                        "--no-save", "axe-core@4"], check=False, capture_output=True,
                       timeout=300)
    if not path.exists():
        _missing(f"axe-core ({path})")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("The playwright package (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _wipe() -> None:
    db.session.remove()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="package")
def live_server(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1:<free port> with the demo scheme and an analyst loaded."""
    from rewards.demo import load_demo

    with app.app_context():
        _wipe()
        load_demo(force=True, **DEMO)
        db.session.add(StaffUser(email=ANALYST_EMAIL, role="analyst",
                                 password_hash=generate_password_hash(ANALYST_PASSWORD)))
        db.session.commit()
        db.session.remove()
    # The demo refreshed the rollups and nothing changes them while these tests run:
    # no request needs to refresh them again (and race the server's threads doing it).
    saved_refresh = app.config["DASHBOARD_REFRESH_SECONDS"]
    app.config["DASHBOARD_REFRESH_SECONDS"] = 24 * 3600
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.config["DASHBOARD_REFRESH_SECONDS"] = saved_refresh
        with app.app_context():
            _wipe()


def log_in_form(tab: Any, base_url: str, email: str = ANALYST_EMAIL,
                password: str = ANALYST_PASSWORD) -> None:
    tab.goto(f"{base_url}/staff/login")
    tab.fill("#email", email)
    tab.fill("#password", password)
    tab.click("form.login button[type=submit]")


@pytest.fixture(scope="package")
def analyst_session(browser: Any, live_server: str) -> dict[str, Any]:
    """The analyst logs in through the form once; each test's tab starts with its cookie."""
    context = browser.new_context()
    tab = context.new_page()
    log_in_form(tab, live_server)
    tab.wait_for_url(f"{live_server}/staff/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(browser: Any, live_server: str, analyst_session: dict[str, Any],
         request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser tab logged in as the analyst, on the overview; its screenshot is
    kept under test-artifacts/ whatever the outcome. CSP is bypassed only so the test
    can inject axe-core; the page's own scripts all come from /staff/static."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900},
                                  locale="en-GB", storage_state=analyst_session)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(f"{live_server}/staff/")
    tab.base_url = live_server  # type: ignore[attr-defined]
    tab.script_errors = errors  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in request.node.name)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()
