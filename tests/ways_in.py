"""Shared by the tests of the ways actions come in: residents with cards, row counts,
error shapes, times inside the acceptance window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Action, Award, Member, Posting, PostingLine

from .helpers import bearer, link, member_token

ERROR_KEYS = {"code", "status", "message"}


def daytime(days_ago: int, hour: int = 12, minute: int = 0) -> datetime:
    """A London-time moment `days_ago` days back at hour:minute."""
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)


def resident(client: FlaskClient, app: Flask, email: str,
             card: str | None = None) -> tuple[dict[str, str], str]:
    """A resident (optionally with a linked travel card): (auth headers, member id)."""
    token = member_token(client, app, email)
    if card:
        linked = link(client, app, bearer(token), card)
        assert linked.status_code == 201, linked.json
    member_id = client.get("/v1/me", headers=bearer(token)).json["id"]
    return bearer(token), member_id


def counts(app: Flask, *models: Any) -> dict[str, int]:
    """Rows in the ledger's and actions' tables (and any others given)."""
    with app.app_context():
        return {model.__tablename__: int(db.session.scalar(
                    select(func.count()).select_from(model)) or 0)
                for model in (Action, Award, Posting, PostingLine, Member, *models)}


def balance(client: FlaskClient, headers: dict[str, str]) -> int:
    return client.get("/v1/me/balance", headers=headers).json["available"]


def assert_error(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code, (response.status_code, response.data[:500])
    assert response.mimetype == "application/json"
    body = response.json
    assert ERROR_KEYS <= set(body), body
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def add_type_and_rule(client: FlaskClient, admin: dict[str, str], code: str, category: str,
                      points: str, **rule: Any) -> None:
    created = client.post("/v1/admin/action-types", headers=admin,
                          json={"code": code, "name": code.replace("_", " "),
                                "category": category})
    assert created.status_code == 201, created.json
    body = {"name": f"{code} points", "action_types": [code], "points": points,
            "status": "active",
            "starts_at": (datetime.now(UTC) - timedelta(days=40)).isoformat(), **rule}
    made = client.post("/v1/admin/rules", headers=admin, json=body)
    assert made.status_code == 201, made.json
