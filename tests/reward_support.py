"""Building the reward side for tests: partners, offers, members with points, partner
users, card-only members, and a partner's fulfilment endpoint on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from rewards.extensions import db
from rewards.ledger import adjust, verify
from rewards.members import create_member, link_card, set_pin
from rewards.models import Member, Posting, Reward, StaffUser
from rewards.wards import load_wards

from .helpers import bearer, member_token, staff_token

_serial = iter(range(1, 1_000_000))


def admin_headers(client: FlaskClient, app: Flask, role: str = "scheme_manager") -> dict[str, str]:
    return bearer(staff_token(client, app, role))


def make_partner(client: FlaskClient, admin: dict[str, str], name: str | None = None,
                 kind: str = "business", **extra: Any) -> dict[str, Any]:
    body = {"name": name or f"Partner {next(_serial)}", "kind": kind, **extra}
    response = client.post("/v1/admin/partners", json=body, headers=admin)
    assert response.status_code == 201, response.json
    return response.json


def make_offer(client: FlaskClient, admin: dict[str, str], partner_id: str,
               **fields: Any) -> dict[str, Any]:
    body = {"partner_id": partner_id, "title": f"Offer {next(_serial)}", "cost_points": 10,
            **fields}
    response = client.post("/v1/admin/offers", json=body, headers=admin)
    assert response.status_code == 201, response.json
    return response.json


def give_points(app: Flask, member_id: uuid.UUID | str, points: int) -> None:
    with app.app_context():
        adjust(db.session, uuid.UUID(str(member_id)), points, "test points")
        db.session.commit()


def load_test_wards(app: Flask, *names: str) -> None:
    """The scheme's wards, as `rewards wards load` would load them (code: the name)."""
    with app.app_context():
        load_wards(db.session, [(name, name) for name in names])
        db.session.commit()


@dataclass
class Resident:
    headers: dict[str, str]
    id: str
    email: str


def resident(client: FlaskClient, app: Flask, points: int = 0, **profile: Any) -> Resident:
    """A resident who logged in (the first login creates them), with `points` to spend
    and any profile fields (ward, locale) set."""
    email = f"member{next(_serial)}@example.org"
    headers = bearer(member_token(client, app, email))
    if profile.get("ward"):
        add_ward(app, profile["ward"])
    if profile:
        changed = client.patch("/v1/me", json=profile, headers=headers)
        assert changed.status_code == 200, changed.json
    member_id = client.get("/v1/me", headers=headers).json["id"]
    if points:
        give_points(app, member_id, points)
    return Resident(headers, member_id, email)


def add_ward(app: Flask, name: str) -> None:
    """Make `name` one of the scheme's wards (GET /v1/wards), as the council loads them."""
    from sqlalchemy import func, select

    from rewards.models.ward import Ward
    from rewards.wards import load_wards

    with app.app_context():
        if db.session.scalar(select(Ward.code).where(func.lower(Ward.name) == name.lower())):
            return
        load_wards(db.session, [(name.upper().replace(" ", "_")[:32], name)])
        db.session.commit()


def card_member(app: Flask, number: str, pin: str = "4729", points: int = 0,
                kind: str = "leisure_card") -> str:
    """A member enrolled at a council desk: no email, a card and a PIN."""
    with app.app_context():
        member = create_member(db.session)
        set_pin(member, pin)
        link_card(db.session, member, kind, number)
        if points:
            adjust(db.session, member.id, points, "test points")
        db.session.commit()
        return str(member.id)


def partner_user(client: FlaskClient, app: Flask, partner_id: str,
                 email: str | None = None) -> dict[str, str]:
    """A partner's user, logged in through the API: bearer headers."""
    email = email or f"till{next(_serial)}@partner.example"
    with app.app_context():
        db.session.add(StaffUser(email=email, role="partner", partner_id=uuid.UUID(partner_id),
                                 password_hash=generate_password_hash("till password")))
        db.session.commit()
    login = client.post("/v1/auth/login", json={"email": email, "password": "till password"})
    assert login.status_code == 200, login.json
    return bearer(login.json["access_token"])


def till(partner: dict[str, Any]) -> dict[str, str]:
    return {"X-Api-Key": partner["api_key"]}


def available(client: FlaskClient, headers: dict[str, str]) -> int:
    response = client.get("/v1/me/balance", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["available"]


def member_available(app: Flask, member_id: str) -> int:
    from rewards.ledger import member_balances

    with app.app_context():
        return member_balances(db.session, uuid.UUID(member_id)).available


def ledger_sound(app: Flask) -> None:
    with app.app_context():
        assert verify(db.session) == []


def postings(app: Flask, kind: str) -> int:
    with app.app_context():
        return int(db.session.scalar(
            select(func.count(Posting.id)).where(Posting.kind == kind)) or 0)


def reward_status(app: Flask, reward_id: str) -> str:
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None
        return reward.status


def member_row(app: Flask, member_id: str) -> Member:
    with app.app_context():
        member = db.session.get(Member, uuid.UUID(member_id))
        assert member is not None
        db.session.expunge(member)
        return member


# -- a partner's fulfilment endpoint --------------------------------------------------------

@dataclass
class Call:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class PartnerSystem:
    """A leisure booking system on 127.0.0.1: answers each request by the next entry
    of `script` ("ok", an HTTP status such as 500, "hang" until released, or "slow"
    for `slow_seconds`), then "ok" for ever. Like a real idempotent endpoint it gives
    the same pass for the same Idempotency-Key."""

    secret: str
    script: list[Any] = field(default_factory=list)
    slow_seconds: float = 2.0
    calls: list[Call] = field(default_factory=list)
    passes: dict[str, str] = field(default_factory=dict)
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def signature_ok(self, call: Call) -> bool:
        """As a partner's system should check it: any v1= entry (there are two while the
        scheme rotates the secret) right under the one secret this system holds."""
        items = [item.split("=", 1) for item in call.headers["X-Signature"].split(",")]
        stamps = [value for name, value in items if name == "t"]
        if len(stamps) != 1:
            return False
        expected = hmac.new(self.secret.encode(), f"{stamps[0]}.".encode() + call.body,
                            hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected, value) for name, value in items
                   if name == "v1")

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[str, Any]:
        with self._lock:
            self.calls.append(Call(headers, body))
            if not self.signature_ok(self.calls[-1]):
                return "status", 401  # as a real system refuses a request it cannot trust
            step = self.script.pop(0) if self.script else "ok"
        self.received.set()
        if step == "hang":
            self.release.wait(timeout=60)
            return "status", 503
        if step == "slow":
            self.release.wait(timeout=self.slow_seconds)
            step = "ok"
        if step == "ok":
            key = headers.get("Idempotency-Key", "")
            with self._lock:
                code = self.passes.setdefault(key, f"SWIM-{len(self.passes) + 1:04d}")
            return "ok", {"code": code, "reference": f"booking {key[:8]}"}
        return "status", int(step)


@contextmanager
def partner_system(secret: str, script: list[Any] | None = None,
                   slow_seconds: float = 2.0) -> Iterator[PartnerSystem]:
    system = PartnerSystem(secret, list(script or []), slow_seconds)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind, value = system.answer(dict(self.headers.items()), body)
            try:
                if kind == "ok":
                    raw = json.dumps(value).encode()
                    self.send_response(201)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                else:
                    self.send_response(value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
            except OSError:  # the caller gave up (a timeout, a killed worker)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    system.url = f"http://127.0.0.1:{server.server_address[1]}/passes"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield system
    finally:
        system.release.set()
        server.shutdown()
        server.server_close()
