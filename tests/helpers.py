"""Building a scheme through the HTTP API, as staff, a source and a resident would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from rewards.extensions import db
from rewards.models import StaffUser
from rewards.security import signature_header

from .conftest import otp_from_mail


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_staff(app: Flask, email: str, role: str, password: str = "correct horse") -> None:
    with app.app_context():
        db.session.add(StaffUser(email=email, role=role,
                                 password_hash=generate_password_hash(password)))
        db.session.commit()


def staff_token(client: FlaskClient, app: Flask, role: str = "admin") -> str:
    email = f"{role}@council.example"
    make_staff(app, email, role)
    response = client.post("/v1/auth/login", json={"email": email, "password": "correct horse"})
    assert response.status_code == 200, response.json
    assert response.json["role"] == role
    return response.json["access_token"]


def member_token(client: FlaskClient, app: Flask, email: str) -> str:
    assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202
    code = otp_from_mail(app, email)
    response = client.post("/v1/auth/token", json={"email": email, "code": code})
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def link_code_for(app: Flask, number: str, kind: str = "travel_card") -> str:
    """Today's link code for a card, as its operator would show it (the kind's link
    secret is made if the scheme has none yet)."""
    from rewards.linking import code_for_card

    with app.app_context():
        code = code_for_card(db.session, kind, number)
        db.session.commit()
    return code


def link(client: FlaskClient, app: Flask, headers: dict[str, str], number: str,
         kind: str = "travel_card") -> Any:
    """POST /v1/me/identifiers with a valid link code: the resident holds the card."""
    return client.post("/v1/me/identifiers", headers=headers, json={
        "kind": kind, "number": number, "link_code": link_code_for(app, number, kind)})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Scheme:
    admin: str
    action_type: dict[str, Any]
    rule: dict[str, Any]
    source: dict[str, Any]
    partner: dict[str, Any]
    offer: dict[str, Any]


def build_scheme(
    client: FlaskClient,
    app: Flask,
    *,
    cost_points: int = 25,
    stock: int | None = 100,
    per_day: int = 4,
    starts_at: datetime | None = None,
) -> Scheme:
    admin = staff_token(client, app, "admin")
    auth = bearer(admin)
    action_type = client.post(
        "/v1/admin/action-types",
        json={"code": "bus_journey", "name": "Bus journey", "category": "travel"},
        headers=auth,
    )
    assert action_type.status_code == 201, action_type.json
    rule = client.post(
        "/v1/admin/rules",
        json={
            "name": "Bus journey",
            "action_types": ["bus_journey"],
            "condition": "action.attributes.distance_km >= 1",
            "points": "action.hour < 7 or action.hour >= 19 ? 15 : 10",
            "caps": {"per_day": per_day},
            "status": "active",
            "starts_at": iso(starts_at or datetime.now(UTC) - timedelta(days=30)),
        },
        headers=auth,
    )
    assert rule.status_code == 201, rule.json
    source = client.post(
        "/v1/admin/sources",
        json={"name": "First Bus", "action_types": ["bus_journey"]},
        headers=auth,
    )
    assert source.status_code == 201, source.json
    partner = client.post(
        "/v1/admin/partners", json={"name": "Laynes Espresso", "kind": "business"}, headers=auth
    )
    assert partner.status_code == 201, partner.json
    offer_body: dict[str, Any] = {"partner_id": partner.json["id"], "title": "Flat white",
                                  "cost_points": cost_points, "stock": stock}
    offer = client.post("/v1/admin/offers", json=offer_body, headers=auth)
    assert offer.status_code == 201, offer.json
    return Scheme(admin, action_type.json, rule.json, source.json, partner.json, offer.json)


def signed_post(
    client: FlaskClient,
    source: dict[str, Any],
    body: Any,
    path: str = "/v1/source/actions",
    timestamp: int | None = None,
    secret: str | None = None,
) -> Any:
    raw = json.dumps(body).encode()
    return client.post(
        path,
        data=raw,
        content_type="application/json",
        headers={
            "X-Api-Key": source["api_key"],
            "X-Signature": signature_header(secret or source["signing_secret"], raw, timestamp),
        },
    )


def tap(ref: str, card: str, when: datetime, distance_km: float = 3.2,
        type_code: str = "bus_journey") -> dict[str, Any]:
    return {
        "external_ref": ref,
        "member": {"kind": "travel_card", "number": card},
        "type": type_code,
        "occurred_at": iso(when),
        "attributes": {"distance_km": distance_km},
    }


def postgres_only(app: Flask, why: str) -> None:
    """Skip, saying `why`, unless the suite runs on PostgreSQL (CI runs it on both)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip(why)


def at_once(app: Flask, count: int, send: Callable[[FlaskClient, int], Any]) -> list[Any]:
    """Run `send(client, index)` in `count` threads, each with its own test client,
    released at the same moment; their results in thread order. A thread that raised or
    hung fails the test."""
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            own = app.test_client()
            barrier.wait(timeout=30)
            answers[index] = send(own, index)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert not errors, errors
    return answers
