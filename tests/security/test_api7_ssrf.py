"""API7:2023 Server-side request forgery: a partner's fulfilment URL may not point the
scheme at itself, its network or a metadata service: refused when saved and again when
called, after DNS resolution, and the call goes to the address that was checked."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import outbound
from rewards.outbound import UnsafeAddress, address_problem, url_problem

from ..reward_support import admin_headers, make_offer, make_partner, resident, reward_status
from .raw_server import raw_server

REFUSED = [
    "https://127.0.0.1/passes", "https://127.1.2.3/", "https://localhost/passes",
    "https://app.localhost/", "https://169.254.169.254/latest/meta-data/",
    "https://[fe80::1]/", "https://10.0.0.5/", "https://172.16.3.4/", "https://192.168.1.1/",
    "https://100.64.0.1/", "https://224.0.0.1/", "https://0.0.0.0/", "https://240.0.0.1/",
    "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:169.254.169.254]/",
    "https://[fd00:ec2::254]/", "https://[fc00::1]/", "https://[2002:7f00:1::]/",
    "https://[::]/", "https://user:pw@booking.leeds.test/", "ftp://booking.leeds.test/",
    "gopher://127.0.0.1:6379/",
]


def test_addresses_the_scheme_never_calls() -> None:
    for text in ("127.0.0.1", "10.1.1.1", "172.31.255.255", "192.168.0.1", "100.100.100.200",
                 "169.254.169.254", "224.0.0.251", "255.255.255.255", "0.0.0.0", "::1",
                 "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:10.0.0.1", "2002:a00:1::",
                 "ff02::1", "192.0.0.8", "198.18.0.1"):
        assert address_problem(ipaddress.ip_address(text)), text
    for text in ("81.2.69.160", "8.8.8.8", "2a00:1450:4009:81f::200e"):
        assert address_problem(ipaddress.ip_address(text)) is None, text


def test_bad_endpoints_are_refused_when_saved(client: FlaskClient, app: Flask,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    for url in REFUSED:
        answer = client.patch(f"/v1/admin/partners/{partner['id']}",
                              json={"fulfilment_url": url}, headers=admin)
        assert answer.status_code == 422, (url, answer.json)
        assert "fulfilment_url" in answer.json["errors"], url
    created = client.post("/v1/admin/partners", headers=admin, json={
        "name": "Metadata", "kind": "business",
        "fulfilment_url": "http://169.254.169.254/latest/meta-data/"})
    assert created.status_code == 422
    # Plain http only in development.
    monkeypatch.setitem(app.config, "DEVELOPMENT", False)
    plain = client.patch(f"/v1/admin/partners/{partner['id']}",
                         json={"fulfilment_url": "http://booking.leeds.test/passes"},
                         headers=admin)
    assert plain.status_code == 422 and "https" in plain.json["errors"]["fulfilment_url"][0]
    good = client.patch(f"/v1/admin/partners/{partner['id']}",
                        json={"fulfilment_url": "https://booking.leeds.test/passes"},
                        headers=admin)
    assert good.status_code == 200, good.json
    assert url_problem("https://81.2.69.160/passes", allow_private=False, allow_http=False) is None


def test_a_name_that_resolves_privately_at_call_time_is_not_called(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name was not private when saved; when the job calls, it
    resolves to this machine, where a service listens. Nothing reaches that service."""
    def never(sock: socket.socket, first: bytes) -> None:
        sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 16\r\n\r\n{\"code\": \"PWN\"}")

    monkeypatch.setitem(app.config, "DEVELOPMENT", True)  # plain http to the test server
    with raw_server(never) as (base, seen, _):
        port = int(base.rsplit(":", 1)[1])
        admin = admin_headers(client, app)
        partner = make_partner(client, admin, "Rebinder")
        saved = client.patch(f"/v1/admin/partners/{partner['id']}", headers=admin,
                             json={"fulfilment_url": f"http://rebind.leeds.test:{port}/p"})
        assert saved.status_code == 200, saved.json
        offer = make_offer(client, admin, partner["id"], title="Swim", cost_points=10,
                           fulfilment="webhook")
        real = socket.getaddrinfo

        def rebound(host: str, *args: Any, **kwargs: Any) -> Any:
            if host == "rebind.leeds.test":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebound)
        me = resident(client, app, points=50)
        claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                              headers=me.headers)
        assert claimed.status_code == 202
        assert reward_status(app, claimed.json["id"]) == "failed"
        assert seen == []
    shown = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=me.headers).json
    assert shown["code"] is None
    assert client.get("/v1/me/balance", headers=me.headers).json["available"] == 50


def test_the_call_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once, checked, and that address is connected to (with the
    name in the Host header): a second, different answer from DNS is never asked for."""
    def ok(sock: socket.socket, first: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

    with raw_server(ok) as (base, seen, _):
        port = int(base.rsplit(":", 1)[1])
        lookups: list[str] = []

        def first_public_then_private(host: str, *args: Any, **kwargs: Any) -> Any:
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        monkeypatch.setattr(socket, "getaddrinfo", first_public_then_private)
        answer = outbound.post(f"http://pinned.leeds.test:{port}/x", b"{}", {},
                               deadline_seconds=5, allow_private=True, allow_http=True,
                               max_answer_bytes=100)
        assert (answer.status, answer.body) == (200, b"hi")
        assert [host for host in lookups if host != "127.0.0.1"] == ["pinned.leeds.test"]
        assert f"Host: pinned.leeds.test:{port}".encode() in seen[0]
        with pytest.raises(UnsafeAddress):
            outbound.post(f"http://pinned.leeds.test:{port}/x", b"{}", {}, deadline_seconds=5,
                          allow_private=False, allow_http=True, max_answer_bytes=100)
        assert len(seen) == 1
