"""Staff accounts from the command line and the admin API: creating one with a prompted
password, a partner user by the partner's id, listing and deactivating (audited)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import AuditEntry, Partner, StaffUser

from .helpers import bearer, make_staff, staff_token
from .test_auth import assert_error


def cli(app: Flask, monkeypatch: pytest.MonkeyPatch, *args: str, input: str | None = None,
        flask_cli: bool = False) -> Any:
    from rewards.cli import main

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    group = app.cli if flask_cli else main
    return CliRunner().invoke(group, list(args), input=input,
                              obj=ScriptInfo(create_app=lambda: app))


def _partner(app: Flask, name: str = "Kirkgate Café") -> uuid.UUID:
    with app.app_context():
        partner = Partner(name=name, kind="business", api_key_hash=uuid.uuid4().hex)
        db.session.add(partner)
        db.session.commit()
        return partner.id


def _user(app: Flask, email: str) -> StaffUser:
    with app.app_context():
        user = db.session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        db.session.expunge(user)
        return user


def test_the_first_admin_password_can_be_prompted_for_and_is_not_echoed(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli(app, monkeypatch, "create-staff", "--email", "first@leeds.example",
                 "--role", "admin", input="a secret phrase\na secret phrase\n")
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert "a secret phrase" not in result.output
    secret = re.search(r"TOTP secret: (\w+)", result.output).group(1)
    login = client.post("/v1/auth/login", json={"email": "first@leeds.example",
                                                "password": "a secret phrase",
                                                "totp_code": pyotp.TOTP(secret).now()})
    assert login.status_code == 200 and login.json["role"] == "admin"


def test_a_prompted_password_must_match_its_confirmation(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli(app, monkeypatch, "create-staff", "--email", "x@leeds.example", "--role",
                 "admin", input="one long phrase\nanother phrase\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    with app.app_context():
        assert db.session.scalars(select(StaffUser)).all() == []


def test_a_partner_user_by_the_id_that_staff_partners_prints(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner_id = _partner(app)
    listed = cli(app, monkeypatch, "staff", "partners")
    assert listed.exit_code == 0 and f"{partner_id}  business  Kirkgate Café" in listed.output
    made = cli(app, monkeypatch, "create-staff", "--email", "till@kirkgate.example", "--role",
               "partner", "--partner-id", str(partner_id), "--password", "long enough pw")
    assert made.exit_code == 0, made.output
    assert _user(app, "till@kirkgate.example").partner_id == partner_id


@pytest.mark.parametrize("bad", ["42", "not-a-uuid", str(uuid.uuid4())])
def test_a_bad_partner_id_is_a_usage_error_not_a_traceback(
    app: Flask, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    result = cli(app, monkeypatch, "create-staff", "--email", "p@leeds.example", "--role",
                 "partner", "--partner-id", bad, "--password", "long enough pw")
    assert result.exit_code == 2, result.output
    assert "no such partner" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, ValueError)


def test_flask_app_cli_has_the_rewards_commands(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli(app, monkeypatch, "create-staff", "--email", "f@leeds.example", "--role",
               "analyst", "--password", "long enough pw", flask_cli=True)
    assert made.exit_code == 0, made.output
    listed = cli(app, monkeypatch, "staff", "list", flask_cli=True)
    assert listed.exit_code == 0 and "f@leeds.example  analyst  active" in listed.output
    verified = cli(app, monkeypatch, "ledger", "verify", flask_cli=True)
    assert verified.exit_code == 0 and "ledger ok" in verified.output


def test_staff_list_and_deactivate_from_the_command_line(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_staff(app, "boss@leeds.example", "admin")
    make_staff(app, "rev@leeds.example", "reviewer")
    login = client.post("/v1/auth/login", json={"email": "rev@leeds.example",
                                                "password": "correct horse"})
    token = login.json["access_token"]

    gone = cli(app, monkeypatch, "staff", "deactivate", "Rev@Leeds.example")
    assert gone.exit_code == 0 and "rev@leeds.example deactivated" in gone.output
    again = cli(app, monkeypatch, "staff", "deactivate", "rev@leeds.example")
    assert again.exit_code == 0 and "already inactive" in again.output
    listed = cli(app, monkeypatch, "staff", "list")
    assert listed.output.splitlines() == ["boss@leeds.example  admin  active",
                                          "rev@leeds.example  reviewer  deactivated"]
    active = cli(app, monkeypatch, "staff", "list", "--active-only")
    assert active.output.splitlines() == ["boss@leeds.example  admin  active"]

    # Their token stops working and they cannot log in again.
    assert_error(client.get("/v1/admin/action-types", headers=bearer(token)), 401)
    assert_error(client.post("/v1/auth/login", json={"email": "rev@leeds.example",
                                                     "password": "correct horse"}), 401)
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry)).all()
    assert [(e.action, e.actor_role, e.details["email"]) for e in entries] == [
        ("deactivate", "command_line", "rev@leeds.example")]

    unknown = cli(app, monkeypatch, "staff", "deactivate", "nobody@leeds.example")
    assert unknown.exit_code == 2 and "no staff account" in unknown.output
    last = cli(app, monkeypatch, "staff", "deactivate", "boss@leeds.example")
    assert last.exit_code == 1 and "last active admin" in last.output
    assert _user(app, "boss@leeds.example").active is True


def test_admins_list_and_deactivate_staff_through_the_api(
    client: FlaskClient, app: Flask
) -> None:
    admin = bearer(staff_token(client, app, "admin"))
    make_staff(app, "desk@leeds.example", "desk")
    partner_id = _partner(app)
    with app.app_context():
        db.session.add(StaffUser(email="till@kirkgate.example", role="partner",
                                 partner_id=partner_id, password_hash="x"))
        db.session.commit()

    listed = client.get("/v1/admin/staff", headers=admin)
    assert listed.status_code == 200
    assert [(u["email"], u["role"], u["active"]) for u in listed.json] == [
        ("admin@council.example", "admin", True), ("desk@leeds.example", "desk", True),
        ("till@kirkgate.example", "partner", True)]
    assert listed.json[2]["partner_id"] == str(partner_id)
    assert "password_hash" not in listed.json[0]

    desk = _user(app, "desk@leeds.example")
    done = client.post(f"/v1/admin/staff/{desk.id}/deactivate", headers=admin)
    assert done.status_code == 200 and done.json["active"] is False
    repeat = client.post(f"/v1/admin/staff/{desk.id}/deactivate", headers=admin)
    assert repeat.status_code == 200 and repeat.json["active"] is False
    inactive = client.get("/v1/admin/staff?active=false", headers=admin)
    assert [u["email"] for u in inactive.json] == ["desk@leeds.example"]

    me = _user(app, "admin@council.example")
    assert_error(client.post(f"/v1/admin/staff/{me.id}/deactivate", headers=admin), 409)
    assert_error(client.post(f"/v1/admin/staff/{uuid.uuid4()}/deactivate", headers=admin), 404)
    assert _user(app, "admin@council.example").active is True
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry)).all()
    assert [(e.action, e.target_id, e.actor_id) for e in entries] == [
        ("deactivate", str(desk.id), me.id)]


def test_only_admins_see_or_change_staff_accounts(client: FlaskClient, app: Flask) -> None:
    manager = bearer(staff_token(client, app, "scheme_manager"))
    make_staff(app, "desk@leeds.example", "desk")
    desk = _user(app, "desk@leeds.example")
    assert_error(client.get("/v1/admin/staff", headers=manager), 403)
    assert_error(client.post(f"/v1/admin/staff/{desk.id}/deactivate", headers=manager), 403)
    assert_error(client.get("/v1/admin/staff"), 401)
    assert _user(app, "desk@leeds.example").active is True
