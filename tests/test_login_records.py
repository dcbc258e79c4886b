"""Login records do not pile up (old sessions and idle lockout counters are deleted by
a nightly job and a command), and TOTP seeds are encrypted at rest."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.security import generate_password_hash

from rewards.extensions import db
from rewards.members import otp_address
from rewards.models import OtpCode, StaffUser, utcnow
from rewards.models.login import LoginSession, LoginThrottle
from rewards.sealed import seal, totp_seed
from workers.logins import purge_logins

from .conftest import otp_from_mail
from .helpers import bearer, member_token

PASSWORD = "a long password"


def _cli(app: Flask, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from rewards.cli import main

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    return CliRunner().invoke(main, list(args), obj=ScriptInfo(create_app=lambda: app))


def _session_ids(app: Flask) -> set[uuid.UUID]:
    with app.app_context():
        return set(db.session.scalars(select(LoginSession.id)))


def test_purge_deletes_ended_sessions_and_idle_counters_only(
    client: FlaskClient, app: Flask
) -> None:
    old, recent, live = (member_token(client, app, f"r{i}@example.org") for i in range(3))
    with app.app_context():
        rows = {s.member_id: s for s in db.session.scalars(select(LoginSession))}
        assert len(rows) == 3
        sessions = list(rows.values())
        now = utcnow()
        # Ended long ago (expired), ended yesterday (revoked), still live.
        sessions[0].expires_at = now - timedelta(days=40)
        sessions[1].revoked_at = now - timedelta(days=1)
        keep = {sessions[1].id, sessions[2].id}
        db.session.add_all([
            LoginThrottle(key="login:idle", failures=3, updated_at=now - timedelta(days=31)),
            LoginThrottle(key="login:fresh", failures=2, updated_at=now - timedelta(days=2)),
            LoginThrottle(key="login:locked", failures=20, updated_at=now - timedelta(days=60),
                          locked_until=now + timedelta(hours=1)),
            LoginThrottle(key="otp:legacy", failures=0, updated_at=None),
        ])
        db.session.commit()

    with app.app_context():
        assert purge_logins() == {"sessions": 1, "throttles": 2, "login_codes": 0}
    assert _session_ids(app) == keep
    with app.app_context():
        keys = set(db.session.scalars(select(LoginThrottle.key)))
        # The three fresh rows the logins above made are kept too.
        assert {k for k in keys if not k.startswith("otp:")} == {"login:fresh", "login:locked"}
        assert len(keys) == 5
    # The live session still works; the purged one is refused like any ended one.
    assert client.get("/v1/me", headers=bearer(live)).status_code == 200
    assert client.get("/v1/me", headers=bearer(old)).status_code == 401
    assert client.get("/v1/me", headers=bearer(recent)).status_code == 401
    with app.app_context():
        assert purge_logins() == {"sessions": 0, "throttles": 0, "login_codes": 0}


def test_login_codes_hold_no_address_and_go_a_day_after_they_were_asked_for(
    client: FlaskClient, app: Flask
) -> None:
    # Anyone may ask a code for anyone's address: the person may never join, and could
    # not ask for erasure; the table must not become a list of addresses.
    for address in ("neighbour@example.org", "Later@Example.org"):
        assert client.post("/v1/auth/otp", json={"email": address}).status_code == 202
    with app.app_context():
        codes = db.session.scalars(select(OtpCode).order_by(OtpCode.created_at)).all()
        assert len(codes) == 2
        for code in codes:
            assert "@" not in code.email_hash and "neighbour" not in code.email_hash
        assert codes[1].email_hash == otp_address("later@example.org")
        codes[0].created_at = utcnow() - timedelta(hours=25)
        db.session.commit()
        assert purge_logins() == {"sessions": 0, "throttles": 0, "login_codes": 1}
        left = db.session.scalars(select(OtpCode.email_hash)).all()
        assert left == [otp_address("later@example.org")]
    # The code that is left still logs in.
    code = otp_from_mail(app, "later@example.org")
    assert client.post("/v1/auth/token", json={"email": "later@example.org", "code": code}
                       ).status_code == 200


def test_purge_command_takes_a_retention(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    member_token(client, app, "cmd@example.org")
    with app.app_context():
        db.session.execute(update(LoginSession).values(revoked_at=utcnow() - timedelta(days=3)))
        db.session.commit()
    kept = _cli(app, monkeypatch, "staff", "purge-logins")  # 30 days by default
    assert kept.exit_code == 0, kept.output
    assert "0 login session(s)" in kept.output
    gone = _cli(app, monkeypatch, "staff", "purge-logins", "--days", "2")
    assert gone.exit_code == 0, gone.output
    assert "1 login session(s)" in gone.output
    assert _session_ids(app) == set()


def test_purge_is_scheduled() -> None:
    import importlib

    from rq import cron

    importlib.import_module("workers.cron")
    names = {entry["func"].__name__: entry for entry in cron._job_data_registry}
    assert names["purge_logins"]["cron"]
    assert names["purge_logins"]["queue_name"].endswith("default")


# -- TOTP seeds at rest ---------------------------------------------------------------

def _admin_from_cli(app: Flask, monkeypatch: pytest.MonkeyPatch, email: str) -> str:
    result = _cli(app, monkeypatch, "create-staff", "--email", email, "--role", "admin",
                  "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    return re.search(r"TOTP secret: ([A-Z2-7]+)", result.output).group(1)


def _login(client: FlaskClient, email: str, seed: str) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": PASSWORD,
                                                "totp_code": pyotp.TOTP(seed).now()})


def test_totp_seed_is_not_stored_in_clear(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = _admin_from_cli(app, monkeypatch, "sealed@council.example")
    with app.app_context():
        stored = db.session.scalar(select(StaffUser.totp_secret))
        assert seed not in stored and stored.startswith("gAAAAA")
    assert _login(client, "sealed@council.example", seed).status_code == 200

    # Enrolling through the API: the answer carries the seed, the row does not.
    monkeypatch.setitem(app.config, "STAFF_TOTP_REQUIRED", True)
    with app.app_context():
        db.session.add(StaffUser(email="late@council.example", role="scheme_manager",
                                 password_hash=generate_password_hash(PASSWORD)))
        db.session.commit()
    token = client.post("/v1/auth/login", json={"email": "late@council.example",
                                                "password": PASSWORD}).json["access_token"]
    begun = client.post("/v1/auth/totp", headers=bearer(token))
    assert begun.status_code == 201, begun.json
    with app.app_context():
        stored = db.session.scalar(select(StaffUser.totp_secret)
                                   .where(StaffUser.email == "late@council.example"))
        assert begun.json["secret"] not in stored
    confirmed = client.post("/v1/auth/totp/confirm", headers=bearer(token),
                            json={"code": pyotp.TOTP(begun.json["secret"]).now()})
    assert confirmed.status_code == 200, confirmed.json


def test_seeds_from_before_encryption_still_work_and_get_sealed(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = {}
    for name in ("one", "two"):
        seeds[name] = pyotp.random_base32()
        with app.app_context():
            db.session.add(StaffUser(email=f"{name}@council.example", role="admin",
                                     password_hash=generate_password_hash(PASSWORD),
                                     totp_secret=seeds[name], totp_enabled_at=utcnow()))
            db.session.commit()
    # A login with a plain seed works, and seals it.
    assert _login(client, "one@council.example", seeds["one"]).status_code == 200
    # The command seals the rest.
    result = _cli(app, monkeypatch, "staff", "seal-totp")
    assert result.exit_code == 0 and "1 TOTP seed(s) sealed" in result.output, result.output
    with app.app_context():
        stored = db.session.scalars(select(StaffUser.totp_secret)).all()
        assert all(s.startswith("gAAAAA") for s in stored)
        assert not set(seeds.values()) & set(stored)
    assert _login(client, "two@council.example", seeds["two"]).status_code == 200
    assert "0 TOTP seed(s)" in _cli(app, monkeypatch, "staff", "seal-totp").output


def test_a_dedicated_key_rotates_with_its_previous_value(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = "a" * 64, "b" * 64
    monkeypatch.setitem(app.config, "TOTP_KEY", first)
    seed = _admin_from_cli(app, monkeypatch, "rot@council.example")
    monkeypatch.setitem(app.config, "TOTP_KEY", second)
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        assert totp_seed(user) is None  # the new key alone cannot open it
    # Refused without the previous key, even with the right code.
    assert _login(client, "rot@council.example", seed).status_code == 401
    monkeypatch.setitem(app.config, "TOTP_KEY_PREVIOUS", first)
    result = _cli(app, monkeypatch, "staff", "seal-totp")
    assert "1 TOTP seed(s) sealed" in result.output, result.output
    monkeypatch.setitem(app.config, "TOTP_KEY_PREVIOUS", None)
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        assert totp_seed(user) == seed
        # The derived key (from SECRET_KEY) is not the dedicated one.
        monkeypatch.setitem(app.config, "TOTP_KEY", None)
        assert totp_seed(user) is None
        assert seal(seed) != user.totp_secret
        assert db.session.scalar(select(func.count()).select_from(StaffUser)) == 1
