"""API10:2023 Unsafe consumption of APIs: what partners' systems answer is not trusted.
A partner trickling bytes cannot hold a worker past the deadline; answers that are not
a pass (not JSON, no code, huge, a redirect elsewhere) issue nothing."""

from __future__ import annotations

import socket
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import outbound
from workers.fulfilment import FulfilmentError, call_partner

from ..reward_support import (
    admin_headers,
    ledger_sound,
    make_offer,
    make_partner,
    resident,
    reward_status,
)
from .raw_server import raw_server

pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


def _trickle(sock: socket.socket, first: bytes) -> None:
    # Each byte arrives well within any per-read timeout; the answer never ends.
    for byte in b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n" * 100:
        sock.sendall(bytes([byte]))
        time.sleep(0.05)


def test_a_trickling_partner_is_cut_off_at_the_deadline() -> None:
    with raw_server(_trickle) as (base, seen, _):
        with pytest.raises(outbound.Deadline):
            outbound.post(base + "/passes", b"{}", {}, deadline_seconds=0.5,
                          allow_private=True, allow_http=True, max_answer_bytes=1000)
        assert len(seen) == 1
        with pytest.raises(FulfilmentError, match="timed out"):
            call_partner(base + "/passes", ["secret"], "key", b"{}", 0.5,
                         allow_private=True, allow_http=True)


def test_a_trickling_partner_fails_the_reward_and_gives_the_points_back(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "PARTNER_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 1)
    with raw_server(_trickle) as (base, seen, _):
        admin = admin_headers(client, app)
        partner = make_partner(client, admin, "Slow Leisure")
        client.patch(f"/v1/admin/partners/{partner['id']}",
                     json={"fulfilment_url": base + "/passes"}, headers=admin)
        offer = make_offer(client, admin, partner["id"], title="Swim", cost_points=10,
                           fulfilment="webhook")
        me = resident(client, app, points=40)
        claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                              headers=me.headers)
        assert claimed.status_code == 202
        assert len(seen) == 1
    assert reward_status(app, claimed.json["id"]) == "failed"
    assert client.get("/v1/me/balance", headers=me.headers).json["available"] == 40
    ledger_sound(app)


@pytest.mark.parametrize("answer, problem", [
    (b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\nnot json!", "not JSON"),
    (b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}", "no usable code"),
    (b"HTTP/1.1 201 Created\r\nContent-Length: 14\r\n\r\n{\"code\": 1234}", "no usable code"),
    (b"HTTP/1.1 201 Created\r\nContent-Length: 312\r\n\r\n{\"code\": \"" + b"A" * 300
     + b"\"}", "no usable code"),
    (b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
     "HTTP 302"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200000, "not JSON"),
    (b"garbage, not HTTP\r\n\r\n", "could not reach"),
])
def test_answers_that_are_not_a_pass_issue_nothing(answer: bytes, problem: str) -> None:
    def respond(sock: socket.socket, first: bytes) -> None:
        sock.sendall(answer)

    with raw_server(respond) as (base, seen, _):
        with pytest.raises(FulfilmentError, match=problem):
            call_partner(base + "/passes", ["secret"], "key", b"{}", 5,
                         allow_private=True, allow_http=True)
        assert len(seen) == 1  # the redirect was not followed
