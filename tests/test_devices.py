"""Push devices and notification choices: registered by the app, honoured by the
workers, sent through FCM's HTTP v1 API (a local fake of it here) or the log."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import Device, Member
from rewards.notify import notify
from rewards.push import FCM_SCOPE, INVALID_TOKEN, SENT, FcmSender, PushMessage

from .reward_support import admin_headers, make_offer, make_partner, resident

TOKEN = "fcm-token-0123456789"


def _register(client: FlaskClient, headers: dict[str, str], token: str = TOKEN,
              platform: str = "fcm") -> Any:
    return client.post("/v1/me/devices", json={"platform": platform, "token": token},
                       headers=headers)


def test_devices_are_registered_listed_moved_and_forgotten(client: FlaskClient,
                                                           app: Flask) -> None:
    first, second = resident(client, app), resident(client, app)
    made = _register(client, first.headers)
    assert made.status_code == 201, made.json
    assert set(made.json) == {"id", "platform", "created_at", "last_seen_at"}
    assert _register(client, first.headers, "apns0123456789abcdef", "apns").status_code == 201
    assert [d["platform"] for d in client.get("/v1/me/devices", headers=first.headers).json] \
        == ["fcm", "apns"]
    moved = _register(client, second.headers)  # the phone is signed in to another account
    assert moved.status_code == 201 and moved.json["id"] == made.json["id"]
    assert [d["id"] for d in client.get("/v1/me/devices", headers=second.headers).json] == [
        made.json["id"]]
    assert len(client.get("/v1/me/devices", headers=first.headers).json) == 1
    assert client.delete(f"/v1/me/devices/{made.json['id']}",
                         headers=first.headers).status_code == 404
    assert client.delete(f"/v1/me/devices/{made.json['id']}",
                         headers=second.headers).status_code == 204
    for body in ({"platform": "sms", "token": TOKEN}, {"platform": "fcm", "token": "x"},
                 {"platform": "fcm", "token": "has spaces in it"}):
        assert client.post("/v1/me/devices", json=body,
                           headers=first.headers).status_code == 422


def test_notification_choices_default_and_change(client: FlaskClient, app: Flask) -> None:
    member = resident(client, app)
    chosen = client.get("/v1/me/notification-preferences", headers=member.headers).json
    assert chosen["voucher_ready"] == {"push": True, "email": True}
    assert chosen["scheme_news"] == {"push": False, "email": False}
    changed = client.patch("/v1/me/notification-preferences", headers=member.headers,
                           json={"voucher_ready": {"email": False},
                                 "scheme_news": {"push": True}})
    assert changed.status_code == 200, changed.json
    assert changed.json["voucher_ready"] == {"push": True, "email": False}
    assert changed.json["scheme_news"] == {"push": True, "email": False}
    assert changed.json["points_earned"] == {"push": True, "email": False}  # mailed on request
    unknown = client.patch("/v1/me/notification-preferences", headers=member.headers,
                           json={"birthdays": {"push": True}})
    assert unknown.status_code == 422


def test_the_voucher_notice_goes_where_the_member_chose(client: FlaskClient,
                                                        app: Flask) -> None:
    admin = admin_headers(client, app)
    offer = make_offer(client, admin, make_partner(client, admin)["id"], cost_points=5)
    member = resident(client, app, points=100)
    assert _register(client, member.headers).status_code == 201
    pushes = app.extensions.setdefault("sent_push", [])
    mails = app.extensions.setdefault("sent_mail", [])

    def claim() -> tuple[int, int]:
        before = len(pushes), len(mails)
        assert client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                           headers=member.headers).status_code == 202
        return len(pushes) - before[0], len(mails) - before[1]

    assert claim() == (1, 1)
    platform, token, message = pushes[-1]
    assert (platform, token) == ("fcm", TOKEN) and message.title.startswith("Your voucher")
    assert message.data["kind"] == "voucher_ready" and uuid.UUID(message.data["reward_id"])
    client.patch("/v1/me/notification-preferences", headers=member.headers,
                 json={"voucher_ready": {"email": False}})
    assert claim() == (1, 0)
    client.patch("/v1/me/notification-preferences", headers=member.headers,
                 json={"voucher_ready": {"push": False}})
    assert claim() == (0, 0)


class FakeFcm:
    """Google's token endpoint and FCM's messages:send, on 127.0.0.1."""

    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key
        self.sent: list[dict[str, Any]] = []
        self.tokens_granted = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/token":
                    form = parse_qs(raw.decode())
                    claims = jwt.decode(form["assertion"][0], fake.public_key,
                                        algorithms=["RS256"], audience=fake.url + "/token")
                    assert claims["scope"] == FCM_SCOPE
                    fake.tokens_granted += 1
                    self._answer(200, {"access_token": "ya29.fake", "expires_in": 3600})
                elif self.path == "/v1/projects/rewards-test/messages:send":
                    if self.headers["Authorization"] != "Bearer ya29.fake":
                        self._answer(401, {"error": {"status": "UNAUTHENTICATED"}})
                        return
                    message = json.loads(raw)["message"]
                    if message["token"].startswith("gone"):
                        self._answer(404, {"error": {"status": "NOT_FOUND", "details": [
                            {"errorCode": "UNREGISTERED"}]}})
                        return
                    fake.sent.append(message)
                    self._answer(200, {"name": "projects/rewards-test/messages/1"})
                else:
                    self._answer(404, {})

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def fcm(app: Flask) -> Iterator[tuple[FakeFcm, FcmSender]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    fake = FakeFcm(key.public_key())
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    credentials = {"project_id": "rewards-test", "private_key": pem, "private_key_id": "k1",
                   "client_email": "push@rewards-test.iam.example",
                   "token_uri": fake.url + "/token"}
    sender = FcmSender(credentials, endpoint=fake.url)
    saved = app.extensions.get("push_sender")
    app.extensions["push_sender"] = sender
    try:
        yield fake, sender
    finally:
        app.extensions["push_sender"] = saved
        fake.server.shutdown()
        thread.join()


def test_fcm_http_v1_sends_with_one_oauth_token_and_forgets_unregistered_devices(
        client: FlaskClient, app: Flask, fcm: tuple[FakeFcm, FcmSender]) -> None:
    fake, sender = fcm
    with app.app_context():
        message = PushMessage("Hello", "A voucher", {"kind": "voucher_ready"})
        assert sender.send("fcm", "token-a", message) == SENT
        assert sender.send("fcm", "token-b", message) == SENT
        assert sender.send("fcm", "gone-token", message) == INVALID_TOKEN
    assert fake.tokens_granted == 1  # the access token is kept until it expires
    assert fake.sent[0] == {"token": "token-a", "data": {"kind": "voucher_ready"},
                            "notification": {"title": "Hello", "body": "A voucher"}}

    member = resident(client, app)
    _register(client, member.headers, "live-token-123")
    _register(client, member.headers, "gone-token-456")
    with app.app_context():
        row = db.session.get(Member, uuid.UUID(member.id))
        sent = notify(db.session, row, "voucher_ready", "Your voucher", "Coffee at Kirkgate.")
        db.session.commit()
        left = db.session.scalars(select(Device.token)
                                  .where(Device.member_id == row.id)).all()
    assert sent == {"push": 1, "email": 1}
    assert fake.sent[-1]["token"] == "live-token-123"
    assert left == ["live-token-123"]  # FCM said the other is no longer registered
