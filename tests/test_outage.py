"""A database outage answers 503 with Retry-After in the one error shape; /readyz turns
503 while the process shuts down, through a real gunicorn sent SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from rewards.api import health
from rewards.extensions import db, make_engine

from .helpers import postgres_only
from .reward_support import admin_headers, make_offer, make_partner, resident
from .test_worker import BIN, ROOT, worker_env


def test_a_database_outage_answers_503_with_retry_after(client: FlaskClient, app: Flask) -> None:
    me = resident(client, app, points=10)
    assert client.get("/v1/offers", headers=me.headers).status_code == 200
    requests = [("get", "/v1/offers", me.headers, None),
                ("get", "/v1/me/balance", me.headers, None),
                ("post", "/v1/me/rewards", me.headers,
                 {"offer_id": "00000000-0000-0000-0000-000000000000"})]
    for method, path, headers, body in requests:
        with _down(app):
            answer = getattr(client, method)(path, headers=headers, json=body)
        assert answer.status_code == 503, (path, answer.json)
        assert answer.headers["Retry-After"] == "5"
        assert answer.json["code"] == 503
        assert answer.json["status"] == "Service Unavailable"
        assert "try again" in answer.json["message"]
        assert "Traceback" not in answer.get_data(as_text=True)
    # Back up: the same process answers normally, with no broken session left over.
    assert client.get("/v1/offers", headers=me.headers).status_code == 200
    assert client.get("/v1/me/balance", headers=me.headers).json["available"] == 10


def test_readyz_answers_503_in_time_when_the_database_says_nothing(
    client: FlaskClient, app: Flask
) -> None:
    """A server that takes the connection and then says nothing (paused, hung): the
    probe gives up after READINESS_DB_TIMEOUT, so a load balancer sees 503, not a
    request held until gunicorn kills the worker; the next probe, while the first still
    waits, answers at once."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # and never answer
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    port = listener.getsockname()[1]
    app.config["READINESS_DB_TIMEOUT"] = 1.0
    live = db.engine
    silent = create_engine(f"postgresql+psycopg://rewards@127.0.0.1:{port}/rewards",
                           connect_args={"connect_timeout": 10})
    try:
        db.engine = silent
        for _ in range(2):
            started = time.monotonic()
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json == {"status": "unavailable",
                                  "checks": {**ready.json["checks"], "database": "unavailable"}}
            assert time.monotonic() - started < 2.5
    finally:
        db.engine = live
        app.config["READINESS_DB_TIMEOUT"] = 2.0
        stop.set()
        acceptor.join()
        for connection in held:
            connection.close()
        listener.close()
        silent.dispose()
    # With the silent server's connections closed, the waiting probe ends: ready again.
    deadline = time.monotonic() + 3
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json
        time.sleep(0.05)


def test_probes_at_once_both_find_the_database_ready(client: FlaskClient, app: Flask) -> None:
    """Probes from several threads (gunicorn with --threads, two load balancers) take
    turns: none answers 503 because another was probing at that moment."""
    from concurrent.futures import ThreadPoolExecutor

    def probe(_: int) -> int:
        with app.test_client() as own:
            return own.get("/readyz").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(probe, range(40))) == {200}


def test_a_page_answers_a_page_when_the_database_is_away(client: FlaskClient,
                                                         app: Flask) -> None:
    """Staff and partner pages are for people at a browser: a short page saying to try
    again, with the same 503 and Retry-After, not the API's JSON."""
    from .test_partner_pages import _csrf

    for path, form in (("/staff/login", {"email": "a@council.example", "password": "x"}),
                       ("/partner/login", {"email": "till@cafe.example", "password": "x"})):
        token = _csrf(client.get(path).data)
        with _down(app):
            answer = client.post(path, data={**form, "csrf": token})
        assert answer.status_code == 503, (path, answer.data[:300])
        assert answer.mimetype == "text/html"
        assert answer.headers["Retry-After"] == "5"
        assert b"try again" in answer.data and b"Traceback" not in answer.data
        assert '<p lang="cy">Mae&#39;r cynllun yn brysur' in answer.data.decode()
    # A scheme that does not speak Welsh says it in English only.
    app.config["SCHEME_LANGUAGES"], before = ("it", "en"), app.config["SCHEME_LANGUAGES"]
    try:
        token = _csrf(client.get("/staff/login").data)
        with _down(app):
            answer = client.post("/staff/login", data={"email": "a@council.example",
                                                       "password": "x", "csrf": token})
    finally:
        app.config["SCHEME_LANGUAGES"] = before
    assert answer.status_code == 503 and b"try again" in answer.data
    assert b'lang="cy"' not in answer.data and b'lang="it"' not in answer.data


def test_a_database_error_logs_no_values_of_the_statement(
    client: FlaskClient, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement's error names its values unless the engine hides them: a resident
    logging in while the database restarts must not leave their address in the log."""
    postgres_only(app, "the server ending pooled connections is about PostgreSQL")
    assert make_engine("sqlite://").hide_parameters
    email = "leak.me@example.org"
    with _engine(make_engine(db.engine.url.render_as_string(hide_password=False),
                             pre_ping=False)):
        assert client.post("/v1/auth/token", json={"email": email, "code": "123456"}
                           ).status_code == 401
        with app.app_context():
            _cut_pooled_connections()
        with caplog.at_level("ERROR"):
            failed = client.post("/v1/auth/token", json={"email": email, "code": "123456"})
    assert failed.status_code == 503
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "database unavailable" in logged
    assert email not in logged and "123456" not in logged


@pytest.mark.parametrize("command", [["ledger", "verify"], ["staff", "list"],
                                     ["db", "upgrade"]])
def test_a_command_says_in_one_line_that_the_database_cannot_be_reached(
    app: Flask, command: list[str]
) -> None:
    env = worker_env(app, "redis://127.0.0.1:1/0")
    env["DATABASE_URL"] = "postgresql+psycopg://rewards@127.0.0.1:1/rewards"
    done = subprocess.run([str(BIN / "rewards"), *command], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert "the database cannot be reached" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


class _down:
    """The database stops answering: nothing listens where the engine connects."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def __enter__(self) -> None:
        self.live = db.engine
        self.dead = create_engine("postgresql+psycopg://rewards@127.0.0.1:1/rewards",
                                  connect_args={"connect_timeout": 1})
        db.session.remove()
        db.engine = self.dead
        db.session.configure(bind=self.dead)

    def __exit__(self, *exc: object) -> None:
        db.session.remove()
        db.engine = self.live
        db.session.configure(bind=self.live)
        self.dead.dispose()


def test_readyz_turns_503_while_shutting_down(client: FlaskClient,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/readyz").status_code == 200
    # Importing gunicorn's settings sets DATABASE_PRE_PING=0 unless it is set: not for
    # the worker processes later tests start.
    monkeypatch.setenv("DATABASE_PRE_PING", "1")
    from rewards import gunicorn_conf

    try:
        gunicorn_conf.worker_int(object())
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["checks"]["process"] == "shutting down"
        assert client.get("/healthz").status_code == 200  # alive, just not taking traffic
    finally:
        health._draining.clear()
    assert client.get("/readyz").status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_gunicorn_drains_before_it_stops(app: Flask) -> None:
    port = _free_port()
    env = worker_env(app, "")
    env.pop("REDIS_URL")
    env["SHUTDOWN_DRAIN_SECONDS"] = "3"
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "python:rewards.gunicorn_conf", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "rewards:create_app()"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(url) == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn never became ready"
            time.sleep(0.2)
        os.kill(server.pid, signal.SIGTERM)
        seen = []
        while server.poll() is None and len(seen) < 200:
            try:
                seen.append(_get(url))
            except OSError:
                seen.append(0)  # no longer accepting
            time.sleep(0.05)
        # Draining: still serving, but not ready; then it stops.
        assert 503 in seen, seen
        assert 200 not in seen[seen.index(503):], seen
        _, errors = server.communicate(timeout=60)
        assert server.returncode == 0, errors
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _cut_pooled_connections() -> None:
    """The database restarts under the pool: every connection this database has ends,
    closed by the server (the pool does not know)."""
    outside = create_engine(db.engine.url, poolclass=NullPool)
    try:
        with outside.connect() as connection:
            ended = connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
            connection.rollback()
    finally:
        outside.dispose()
    assert ended


def test_a_dropped_connection_costs_one_503_and_no_points(client: FlaskClient,
                                                          app: Flask) -> None:
    """The API without a ping before each request (DATABASE_PRE_PING=0, as gunicorn
    runs it): a pooled connection the database dropped fails the request that gets it
    with 503 (nothing written), and the pool starts afresh, so the next requests are
    answered."""
    postgres_only(app, "the server ending pooled connections is about PostgreSQL")
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    me = resident(client, app, points=30)
    with _engine(make_engine(db.engine.url.render_as_string(hide_password=False),
                             pre_ping=False)):
        _one_503_then_answers(client, app, me.headers, offer["id"])


def _one_503_then_answers(client: FlaskClient, app: Flask, headers: dict[str, str],
                          offer_id: str) -> None:
    assert client.get("/v1/me/balance", headers=headers).json["available"] == 30
    assert client.get("/v1/me/rewards", headers=headers).status_code == 200  # pooled
    with app.app_context():
        _cut_pooled_connections()
    failed = client.post("/v1/me/rewards", headers=headers, json={"offer_id": offer_id})
    assert failed.status_code == 503, failed.json
    assert failed.headers["Retry-After"] == "5"
    # Nothing was held; the same process answers again at once, on new connections. A
    # read on the process's own read connection (dropped too) runs again on a new one.
    assert client.get("/v1/me/balance", headers=headers).json["available"] == 30
    claimed = client.post("/v1/me/rewards", headers=headers, json={"offer_id": offer_id})
    assert claimed.status_code == 202, claimed.json
    assert client.get("/v1/me/balance", headers=headers).json["available"] == 20


class _engine:
    """The app on `engine` for a while (then back on its own)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        self.live = db.engine
        db.session.remove()
        db.engine = self.engine
        db.session.configure(bind=self.engine)

    def __exit__(self, *exc: object) -> None:
        db.session.remove()
        db.engine = self.live
        db.session.configure(bind=self.live)
        self.engine.dispose()


def test_a_database_failure_after_the_member_was_read_still_answers_503(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session is rolled back and removed for a 503; the member's entity the view
    had loaded (a donation reads it) is then expired and detached. Choosing the
    answer's language read its locale after that, failed, and the 503 became a 500."""
    from sqlalchemy.exc import OperationalError

    from rewards.api import donations as donation_api

    admin = admin_headers(client, app)
    charity = make_partner(client, admin, kind="charity")
    me = resident(client, app, points=30)

    def deadlocked(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO donations ...", {}, Exception("deadlock detected"))

    monkeypatch.setattr(donation_api, "donate", deadlocked)
    for language in (None, "cy"):
        headers = {**me.headers, **({"Accept-Language": language} if language else {})}
        answer = client.post("/v1/me/donations", headers=headers,
                             json={"charity_id": charity["id"], "points": 5})
        assert answer.status_code == 503, answer.json
        assert answer.headers["Retry-After"] == "5"
        assert answer.json["code"] == 503
    monkeypatch.undo()
    assert client.get("/v1/me/balance", headers=me.headers).json["available"] == 30


class _PausableProxy:
    """A TCP proxy to the test database that can stop passing bytes on while keeping
    every connection open: a paused server, or a partition behind a NAT or proxy, as the
    client sees it (its packets are acknowledged; no answer ever comes)."""

    def __init__(self, host: str, port: int) -> None:
        import threading

        self.target = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.closing.is_set():
            try:
                client = self.listener.accept()[0]
            except OSError:
                continue
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for one, other in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.closing.set()
        self.flowing.set()
        for one in self.sockets:
            one.close()
        self.listener.close()


def test_a_database_that_stops_answering_costs_a_503_in_time_not_a_hung_worker(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's connection is open but the server says nothing more (paused, hung, a
    partition that keeps connections open): the request answers 503 with Retry-After
    after DATABASE_QUERY_TIMEOUT, rather than holding the worker until gunicorn kills
    it, and once the server answers again so does the same process, on new
    connections."""
    import threading

    postgres_only(app, "a connection to a server that stops answering is PostgreSQL's")
    me = resident(client, app, points=30)
    url = db.engine.url
    proxy = _PausableProxy(url.host or "127.0.0.1", url.port or 5432)
    monkeypatch.setenv("DATABASE_QUERY_TIMEOUT", "1")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "1")
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with _engine(make_engine(through, pre_ping=False)):
            answers: list = []
            took: list = []

            def ask() -> None:  # one thread: a read-only view keeps a connection per thread
                for _ in range(3):  # connections held, as in a worker that has served
                    assert client.get("/v1/me/balance", headers=me.headers).status_code == 200
                proxy.flowing.clear()
                started = time.monotonic()
                answers.append(client.get("/v1/me/balance", headers=me.headers))
                took.append(time.monotonic() - started)

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(15)
            assert answers, "the request was still waiting for the database after 15 s"
            assert answers[0].status_code == 503, answers[0].json
            assert answers[0].headers["Retry-After"] == "5"
            assert answers[0].json["code"] == 503
            assert took[0] < 4
            proxy.flowing.set()
            again = client.get("/v1/me/balance", headers=me.headers)
            assert again.status_code == 200, again.json
            assert again.json["available"] == 30
    finally:
        proxy.close()


def _smtp_refusing() -> str:
    """An address where nothing listens: connecting is refused at once."""
    return f"smtp://127.0.0.1:{_free_port()}"


@pytest.mark.parametrize("server", ["refusing", "silent"])
def test_a_login_code_while_mail_is_down_answers_503_and_counts_no_code(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    """The mail server refuses connections, or takes them and never answers: asking
    for a login code answers 503 with Retry-After in the error shape (not a 500), in
    time, and the code that was never mailed does not count against the address's
    codes an hour, so asking again once mail is back works."""
    import threading

    from rewards import mail

    held: list[socket.socket] = []
    listener = socket.socket()
    if server == "silent":
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        threading.Thread(target=lambda: [held.append(listener.accept()[0])
                                         for _ in range(8)], daemon=True).start()
        url = f"smtp://127.0.0.1:{listener.getsockname()[1]}"
    else:
        url = _smtp_refusing()
    monkeypatch.setattr(mail, "SMTP_TIMEOUT_SECONDS", 1.0, raising=False)
    app.config["SMTP_URL"] = url
    email = "resident@leeds.gov.uk"
    try:
        for _ in range(app.config["OTP_PER_HOUR"] + 1):
            started = time.monotonic()
            answer = client.post("/v1/auth/otp", json={"email": email})
            assert answer.status_code == 503, answer.json
            assert answer.headers["Retry-After"]
            assert answer.json["code"] == 503 and answer.json["reason"] == "unavailable"
            assert "Traceback" not in answer.get_data(as_text=True)
            assert time.monotonic() - started < 3
    finally:
        app.config["SMTP_URL"] = None
        listener.close()
        for one in held:
            one.close()
    assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202


def test_a_slow_mail_server_cannot_hold_a_login_code_past_the_deadline(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mail server that answers every step, each just inside the per-step timeout:
    the whole exchange still ends at SMTP_DEADLINE_SECONDS with 503 (the request must end
    well before gunicorn's own timeout kills the worker and drops the client)."""
    import threading

    from rewards import mail

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def slow_server() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                continue
            conn.settimeout(5)
            try:
                time.sleep(0.6)
                conn.sendall(b"220 slow.example ESMTP\r\n")
                data = b""
                while not stop.is_set():
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    while b"\r\n" in data:
                        line, data = data.split(b"\r\n", 1)
                        time.sleep(0.6)
                        if line.upper().startswith(b"DATA"):
                            conn.sendall(b"354 go on\r\n")
                        elif line.upper().startswith(b"QUIT"):
                            conn.sendall(b"221 bye\r\n")
                        elif line == b"." or line.upper()[:4] in (b"EHLO", b"MAIL", b"RCPT"):
                            conn.sendall(b"250 ok\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=slow_server, daemon=True).start()
    monkeypatch.setattr(mail, "SMTP_TIMEOUT_SECONDS", 1.0, raising=False)
    monkeypatch.setattr(mail, "SMTP_DEADLINE_SECONDS", 1.5, raising=False)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        answer = client.post("/v1/auth/otp", json={"email": "slow@leeds.gov.uk"})
        took = time.monotonic() - started
    finally:
        app.config["SMTP_URL"] = None
        stop.set()
        listener.close()
    assert answer.status_code == 503, answer.json
    assert took < 2.5
