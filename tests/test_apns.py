"""APNs: pushes to iPhones go over HTTP/2 with a provider token (ES256 JWT) to a local
fake of Apple's service; tokens Apple says are gone are forgotten; the sender is set up
from the environment and routes each device to its own platform's service."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from sqlalchemy import select

from rewards.apns import ApnsSender, outcome, payload
from rewards.extensions import db
from rewards.models import Device, Member
from rewards.notify import notify
from rewards.push import FAILED, INVALID_TOKEN, SENT, ByPlatform, PushMessage, sender

from .reward_support import resident

TOPIC = "uk.gov.leeds.rewards"
GOOD = "a" * 64
GONE = "0" * 64
BAD = "b" * 63
BUSY = "c" * 64


class FakeApns:
    """Apple's /3/device/<token>, HTTP/2 with prior knowledge, on 127.0.0.1. It checks
    the provider token with the team's public key, as Apple does."""

    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        conn = H2Connection(config=H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, dict[str, Any]] = {}
        with sock:
            while True:
                data = sock.recv(65535)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, RequestReceived):
                        streams[event.stream_id] = {
                            "headers": {k.decode() if isinstance(k, bytes) else k:
                                        v.decode() if isinstance(v, bytes) else v
                                        for k, v in event.headers}, "body": b""}
                    elif isinstance(event, DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, StreamEnded):
                        status, answer = self._answer(streams.pop(event.stream_id))
                        body = json.dumps(answer).encode() if answer else b""
                        conn.send_headers(event.stream_id, [
                            (":status", str(status)), ("apns-id", "fake-id"),
                            ("content-length", str(len(body)))], end_stream=not body)
                        if body:
                            conn.send_data(event.stream_id, body, end_stream=True)
                sock.sendall(conn.data_to_send())

    def _answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        headers = request["headers"]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"])
        except jwt.PyJWTError:
            return 403, {"reason": "InvalidProviderToken"}
        if scheme != "bearer" or jwt.get_unverified_header(token).get("kid") != "KEY123":
            return 403, {"reason": "InvalidProviderToken"}
        device = headers[":path"].rsplit("/", 1)[1]
        self.received.append({"device": device, "headers": headers, "claims": claims,
                              "body": json.loads(request["body"])})
        if headers.get("apns-topic") != TOPIC:
            return 400, {"reason": "TopicDisallowed"}
        if device == GONE:
            return 410, {"reason": "Unregistered", "timestamp": 1}
        if len(device) != 64:
            return 400, {"reason": "BadDeviceToken"}
        if device == BUSY:
            return 429, {"reason": "TooManyRequests"}
        return 200, None

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def apns(app: Flask, tmp_path: Path) -> Iterator[tuple[FakeApns, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    p8 = tmp_path / "AuthKey_KEY123.p8"
    p8.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    fake = FakeApns(key.public_key())
    try:
        yield fake, p8
    finally:
        fake.close()


def test_apns_sends_over_http2_with_one_provider_token(apns: tuple[FakeApns, Path]) -> None:
    fake, p8 = apns
    apple = ApnsSender(p8.read_text(), "KEY123", "TEAM456789", TOPIC, endpoint=fake.url)
    message = PushMessage("You earned 30 points", "For 3 action(s).",
                          {"kind": "points_earned", "points": "30"})
    try:
        assert apple.send("apns", GOOD, message) == SENT
        assert apple.send("apns", GOOD, message) == SENT
        assert apple.send("apns", GONE, message) == INVALID_TOKEN
        assert apple.send("apns", BAD, message) == INVALID_TOKEN
        assert apple.send("apns", BUSY, message) == FAILED
    finally:
        apple.close()
    assert fake.connections == 1  # one HTTP/2 connection for every push
    first = fake.received[0]
    assert first["headers"]["apns-topic"] == TOPIC
    assert first["headers"]["apns-push-type"] == "alert"
    assert first["headers"][":method"] == "POST"
    assert first["headers"][":path"] == f"/3/device/{GOOD}"
    assert first["claims"]["iss"] == "TEAM456789" and isinstance(first["claims"]["iat"], int)
    assert first["body"] == {"aps": {"alert": {"title": "You earned 30 points",
                                               "body": "For 3 action(s)."},
                                     "sound": "default"},
                             "kind": "points_earned", "points": "30"}
    # The provider token is made once and reused, not signed for every push.
    assert len({r["headers"]["authorization"] for r in fake.received}) == 1


def test_apns_unreachable_or_refusing_is_a_failure_to_retry(apns: tuple[FakeApns, Path]) -> None:
    fake, p8 = apns
    nowhere = ApnsSender(p8.read_text(), "KEY123", "TEAM456789", TOPIC,
                         endpoint="http://127.0.0.1:9", timeout=2)
    assert nowhere.send("apns", GOOD, PushMessage("t", "b")) == FAILED
    wrong_key = ApnsSender(p8.read_text(), "OTHERKEY", "TEAM456789", TOPIC, endpoint=fake.url)
    assert wrong_key.send("apns", GOOD, PushMessage("t", "b")) == FAILED
    assert wrong_key._token is None  # a refused provider token is made afresh next time
    assert outcome(200, None) == SENT and outcome(400, "DeviceTokenNotForTopic") == INVALID_TOKEN
    assert outcome(400, "PayloadTooLarge") == FAILED and outcome(503, None) == FAILED
    assert payload(PushMessage("t", "b"))["aps"]["alert"] == {"title": "t", "body": "b"}


def test_devices_go_to_their_platforms_service(client: FlaskClient, app: Flask,
                                               apns: tuple[FakeApns, Path]) -> None:
    fake, p8 = apns
    member = resident(client, app)
    for platform, token in (("apns", GOOD), ("apns", GONE), ("fcm", "fcm-token-0123456789")):
        assert client.post("/v1/me/devices", json={"platform": platform, "token": token},
                           headers=member.headers).status_code == 201
    saved = app.extensions.pop("push_sender", None)
    app.config.update(APNS_KEY_FILE=str(p8), APNS_KEY_ID="KEY123", APNS_TEAM_ID="TEAM456789",
                      APNS_TOPIC=TOPIC, APNS_ENDPOINT=fake.url)
    logged = app.extensions.setdefault("sent_push", [])
    logged.clear()
    try:
        with app.app_context():
            made = sender(app)
            assert isinstance(made, ByPlatform) and set(made.senders) == {"apns"}
            row = db.session.get(Member, uuid.UUID(member.id))
            sent = notify(db.session, row, "voucher_ready", "Your voucher is ready",
                          "Coffee at Kirkgate.")
            assert sent == {"email": 1, "push": 2}
            left = db.session.scalars(select(Device.token).where(
                Device.member_id == row.id)).all()
        assert sorted(left) == sorted([GOOD, "fcm-token-0123456789"])  # the gone one forgotten
        assert [r["device"] for r in fake.received] == [GOOD, GONE]
        assert [(p, t) for p, t, _ in logged] == [("fcm", "fcm-token-0123456789")]  # no FCM set
        app.config.update(APNS_TOPIC=None)
        app.extensions.pop("push_sender", None)
        with app.app_context(), pytest.raises(RuntimeError, match="APNS_TOPIC"):
            sender(app)
    finally:
        app.config.update(APNS_KEY_FILE=None, APNS_TOPIC=None)
        made = app.extensions.pop("push_sender", None)
        if made is not None and "apns" in getattr(made, "senders", {}):
            made.senders["apns"].close()
        if saved is not None:
            app.extensions["push_sender"] = saved
