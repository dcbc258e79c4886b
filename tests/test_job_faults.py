"""Jobs under faults, with real worker processes: many jobs through a forking worker
with no failed attempt; a job Redis lost sent again by the relay; a worker that
outlives its Redis being killed and restarted; a hung Redis that never holds a claim."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import func, select, update

from rewards import jobs, relay
from rewards.extensions import db
from rewards.handover import handover
from rewards.models import OutboxMessage, Posting, Reward, utcnow

from .reward_support import (
    admin_headers,
    ledger_sound,
    make_offer,
    make_partner,
    member_available,
    resident,
)
from .test_worker import BIN, ROOT, handed_over, run_rewards_worker, worker_env

COST = 10


def _claimer(client: FlaskClient, app: Flask, most: int) -> Any:
    """claim(n): n more claims of one offer by one resident, up to `most` in all."""
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=COST, stock=most + 5)
    me = resident(client, app, points=COST * most)

    def claim(count: int) -> list[str]:
        ids = []
        for _ in range(count):
            claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                                  headers=me.headers)
            assert claimed.status_code == 202, claimed.json
            ids.append(claimed.json["id"])
        return ids

    return claim


def _claims(client: FlaskClient, app: Flask, count: int) -> list[str]:
    return list(_claimer(client, app, count)(count))


def _issued(app: Flask, ids: list[str]) -> dict[str, int]:
    with app.app_context():
        statuses = dict(db.session.execute(
            select(Reward.status, func.count()).where(
                Reward.id.in_([uuid.UUID(i) for i in ids])).group_by(Reward.status)).all())
        captures = db.session.execute(
            select(Posting.reward_id, func.count()).where(Posting.kind == "capture")
            .group_by(Posting.reward_id)).all()
        db.session.rollback()
    assert all(count == 1 for _, count in captures), captures
    return {"issued": statuses.get("issued", 0), "captures": len(captures),
            "other": sum(n for status, n in statuses.items() if status != "issued")}


def _outbox(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        rows = list(db.session.scalars(select(OutboxMessage)))
        db.session.expunge_all()
        return rows


def _rq_key_prefix(app: Flask) -> str:
    return f"rq:queue:{app.config['RQ_QUEUE_PREFIX']}"


def test_many_jobs_through_a_forking_worker_never_fail(client: FlaskClient, app: Flask,
                                                       rq_mode: str) -> None:
    """The worker's own process relays the outbox (using the database) before it forks
    a work horse per job: each horse must get connections of its own."""
    from rq.registry import FailedJobRegistry

    ids = _claims(client, app, 40)
    done = run_rewards_worker(app, rq_mode, "--fork")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert _issued(app, ids) == {"issued": 40, "captures": 40, "other": 0}
    rows = _outbox(app)
    assert len(rows) == 40
    assert {(row.attempts, row.due_at, row.last_error) for row in rows} == {(1, None, None)}
    queue = f"{app.config['RQ_QUEUE_PREFIX']}rewards"
    assert FailedJobRegistry(queue, connection=Redis.from_url(rq_mode)).count == 0
    ledger_sound(app)


def test_a_job_redis_lost_is_sent_again_and_issued_once(client: FlaskClient, app: Flask,
                                                        rq_mode: str) -> None:
    [reward_id] = _claims(client, app, 1)
    handed_over()
    connection = Redis.from_url(rq_mode)
    queue_key = f"{_rq_key_prefix(app)}rewards"
    assert connection.lrange(queue_key, 0, -1) == [reward_job_id(app).encode()]

    # While RQ holds the job the relay leaves it alone, even with its lease lapsed.
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(due_at=utcnow()))
        db.session.commit()
        assert relay.relay() == 0
    assert connection.llen(queue_key) == 1
    [row] = _outbox(app)
    assert row.due_at is not None and row.due_at > utcnow()

    # Redis loses it (a restart without persistence, a fail-over): the relay sends it.
    job_id = reward_job_id(app)
    connection.delete(f"rq:job:{job_id}")
    connection.lrem(queue_key, 0, job_id)
    with app.app_context():
        assert relay.relay(everything=True) == 1
    assert connection.lrange(queue_key, 0, -1) == [job_id.encode()]
    # A second copy of the job (a relay racing the first) changes nothing.
    connection.rpush(queue_key, job_id)

    done = run_rewards_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    assert _issued(app, [reward_id]) == {"issued": 1, "captures": 1, "other": 0}
    [row] = _outbox(app)
    assert (row.attempts, row.due_at) == (1, None) and row.done_at is not None
    ledger_sound(app)


def test_a_lease_written_before_the_clock_went_back_does_not_hold_a_lost_job(
        client: FlaskClient, app: Flask, rq_mode: str) -> None:
    """The clock went back an hour (an NTP correction, a host whose clock ran fast wrote
    the row) and Redis lost the job: its lease now ends an hour ahead, further than any
    lease is ever set, so the relay looks at it at once rather than an hour later. A
    lease within what a job can have is still waited for."""
    from datetime import timedelta

    [reward_id] = _claims(client, app, 1)
    handed_over()
    connection = Redis.from_url(rq_mode)
    queue_key = f"{_rq_key_prefix(app)}rewards"
    job_id = reward_job_id(app)
    connection.delete(f"rq:job:{job_id}")
    connection.lrem(queue_key, 0, job_id)
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(due_at=utcnow() + timedelta(seconds=50)))
        db.session.commit()
        assert relay.relay() == 0  # an ordinary lease: not due yet
        db.session.execute(update(OutboxMessage).values(due_at=utcnow() + timedelta(hours=1)))
        db.session.commit()
        assert relay.relay() == 1
    assert connection.lrange(queue_key, 0, -1) == [job_id.encode()]
    done = run_rewards_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    assert _issued(app, [reward_id]) == {"issued": 1, "captures": 1, "other": 0}
    ledger_sound(app)


def test_a_job_whose_attempts_keep_dying_is_given_up_and_its_points_returned(
    client: FlaskClient, app: Flask, rq_mode: str
) -> None:
    """Every attempt died with its worker (out of memory, say): after JOB_MAX_ATTEMPTS
    + 2 the relay stops sending it, and the reward fails there and then, its points and
    stock back, rather than when the stuck-reward sweep finds it six hours later."""
    [reward_id] = _claims(client, app, 1)
    handed_over()
    job_id = reward_job_id(app)
    connection = Redis.from_url(rq_mode)
    most = int(app.config["JOB_MAX_ATTEMPTS"])
    # One short of the cap: sent again as usual.
    connection.delete(f"rq:job:{job_id}")
    connection.lrem(f"{_rq_key_prefix(app)}rewards", 0, job_id)
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(
            attempts=most + relay.ABANDONED_EXTRA - 1, due_at=utcnow()))
        db.session.commit()
        assert relay.relay() == 1
    assert _issued(app, [reward_id]) == {"issued": 0, "captures": 0, "other": 1}
    # That attempt dies too: its lease lapses and the relay gives up.
    connection.delete(f"rq:job:{job_id}")
    connection.lrem(f"{_rq_key_prefix(app)}rewards", 0, job_id)
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(
            attempts=most + relay.ABANDONED_EXTRA, due_at=utcnow()))
        db.session.commit()
        assert relay.relay() == 0
        reward = db.session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None and reward.status == "failed"
        assert "cut short" in (reward.failure_reason or "")
        member_id = str(reward.member_id)
        db.session.rollback()
    assert connection.llen(f"{_rq_key_prefix(app)}rewards") == 0
    [row] = _outbox(app)
    assert row.due_at is None and row.done_at is not None
    assert (row.last_error or "").startswith("abandoned:")
    assert member_available(app, member_id) == COST
    with app.app_context():
        assert relay.relay(everything=True) == 0  # nothing more to send
    ledger_sound(app)


def reward_job_id(app: Flask) -> str:
    [row] = _outbox(app)
    return str(row.id)


# -- a private Redis ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(_free_port(), tmp_path)
    try:
        yield server
    finally:
        server.kill()


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def test_a_worker_outlives_its_redis(client: FlaskClient, app: Flask,
                                     private_redis: PrivateRedis, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "REDIS_URL", private_redis.url)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log_file:
        # Started while Redis is not there yet: it waits and reconnects.
        worker = subprocess.Popen([str(BIN / "rewards"), "worker"],
                                  env=worker_env(app, private_redis.url), cwd=ROOT,
                                  stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        _wait_for(lambda: "reconnecting in" in log_path.read_text(), 30,
                  "the worker to report Redis unavailable")
        private_redis.start()
        connection = Redis.from_url(private_redis.url)
        _wait_for(lambda: connection.scard("rq:workers") == 1, 30, "the worker to register")

        # Redis dies and comes back empty; the worker is still there and works.
        private_redis.kill()
        time.sleep(2)
        assert worker.poll() is None, log_path.read_text()
        private_redis.start()
        [reward_id] = _claims(client, app, 1)
        handed_over()
        _wait_for(lambda: _issued(app, [reward_id])["issued"] == 1, 60,
                  "the voucher to be issued")
        assert worker.poll() is None, log_path.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log_path.read_text()


class SilentRedis:
    """Accepts connections and reads what it is sent, but never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.received = threading.Event()
        self.connections: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                self.received.set()
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def test_a_hung_redis_does_not_hold_a_claim(client: FlaskClient, app: Flask,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import rewards.handover

    silent = SilentRedis()
    # Long enough that the hand-over is surely still waiting when the claim returns.
    monkeypatch.setattr(rewards.handover, "HANDOVER_TIMEOUT", 60.0)
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
    try:
        [reward_id] = _claims(client, app, 1)
        # The claim has its answer while the hand-over still waits on Redis.
        assert silent.received.wait(timeout=30), "nothing was sent to Redis"
        assert not handover.wait(timeout=0.5)
        # Marked handed over before the hand-over (so no attempt can begin first),
        # with a queued job's lease: if this process died now, the relay would send it.
        [row] = _outbox(app)
        assert (row.attempts, row.done_at) == (0, None)
        assert row.dispatched_at is not None and row.due_at is not None
    finally:
        silent.close()
    assert handover.wait(timeout=30)
    # Redis never took it: the row stays due for the relay, the reward pending.
    [row] = _outbox(app)
    assert row.dispatched_at is None and row.due_at is not None
    assert _issued(app, [reward_id]) == {"issued": 0, "captures": 0, "other": 1}


def test_readiness_names_a_hung_redis_without_leaving_rotation(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every API host shares one Redis, and claims wait in the outbox while it is away:
    a load balancer polling /readyz must not take every host out, nor time out polling."""
    import rewards.api.health

    assert rewards.api.health.REDIS_PROBE_TIMEOUT <= 1
    silent = SilentRedis()
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
    try:
        ready = client.get("/readyz")
        assert silent.received.is_set()
    finally:
        silent.close()
    assert ready.status_code == 200
    assert ready.json == {"status": "degraded",
                          "checks": {"database": "ok", "redis": "unavailable"}}


# -- forked processes and the parent's connections ------------------------------------------

def _in_child(work: Any) -> str:
    """Run `work()` in a forked child; its text result (or the error) comes back."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's exit is os._exit
        try:
            os.close(read)
            result = str(work())
        except BaseException as error:
            result = f"error: {error!r}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        return pipe.read()


def _postgres_only() -> None:
    if db.dialect != "postgresql":
        pytest.skip("connection sharing is about PostgreSQL's sockets")


def test_a_forked_child_gets_connections_of_its_own(app: Flask) -> None:
    from sqlalchemy import text

    with app.app_context():
        _postgres_only()
        # The parent is in a transaction, and has an idle connection in its pool too.
        with db.engine.connect() as spare:
            spare.execute(text("SELECT 1"))
        parent = db.session.scalar(text("SELECT pg_backend_pid()"))

        def child_backend() -> int:
            pid = db.session.scalar(text("SELECT pg_backend_pid()"))
            db.session.commit()
            return int(pid)

        child = _in_child(child_backend)
        assert child.isdigit(), child
        assert int(child) != parent
        # The parent's transaction is untouched.
        assert db.session.scalar(text("SELECT pg_backend_pid()")) == parent
        db.session.commit()


def test_a_child_killed_mid_transaction_leaves_nothing_open(app: Flask) -> None:
    from sqlalchemy import text

    with app.app_context():
        _postgres_only()
        db.session.execute(text("SELECT 1"))
        db.session.commit()  # the parent's connection waits in its pool
        name = db.engine.url.database

        def die_in_a_transaction() -> str:
            db.session.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            os.kill(os.getpid(), signal.SIGKILL)
            return "not reached"

        _in_child(die_in_a_transaction)

        def stuck() -> int:
            count = db.session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"), {"name": name})
            db.session.commit()
            return int(count or 0)

        _wait_for(lambda: stuck() == 0, 10, "the killed child's transaction to end")
        assert db.session.scalar(text("SELECT pg_try_advisory_xact_lock(4242)")) is True
        db.session.commit()


def test_the_scheduler_waits_for_redis(app: Flask, private_redis: PrivateRedis,
                                       tmp_path: Path) -> None:
    log_path = tmp_path / "cron.log"
    with open(log_path, "w") as log_file:
        cron = subprocess.Popen([str(BIN / "rewards"), "cron"],
                                env=worker_env(app, private_redis.url), cwd=ROOT,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_for(lambda: "reconnecting the scheduler in" in log_path.read_text(), 30,
                  "the scheduler to report Redis unavailable")
        assert cron.poll() is None, log_path.read_text()
        private_redis.start()
        connection = Redis.from_url(private_redis.url)
        _wait_for(lambda: list(connection.scan_iter("rq:cron_scheduler:*")), 60,
                  "the scheduler to register")
        assert cron.poll() is None, log_path.read_text()

        # Redis dies under the running scheduler and comes back empty: it registers
        # again and goes on queueing (the minute relay is due at once on each start).
        private_redis.kill()
        time.sleep(3)
        assert cron.poll() is None, log_path.read_text()
        private_redis.start()
        connection = Redis.from_url(private_redis.url)
        _wait_for(lambda: list(connection.scan_iter("rq:cron_scheduler:*")), 90,
                  "the scheduler to register again")
        _wait_for(lambda: connection.llen(f"rq:queue:{app.config['RQ_QUEUE_PREFIX']}default"),
                  90, "the scheduler to queue a job again")
        assert cron.poll() is None, log_path.read_text()
    finally:
        if cron.poll() is None:
            os.killpg(cron.pid, signal.SIGTERM)
        cron.wait(timeout=30)
    assert cron.returncode == 0, log_path.read_text()


@pytest.mark.parametrize("mode", [[], ["--fork"]], ids=["own-process", "forking"])
def test_workers_recover_when_the_database_drops_their_connections(
    client: FlaskClient, app: Flask, rq_mode: str, tmp_path: Path, mode: list[str]
) -> None:
    """What a PostgreSQL restart does to a worker: every connection it holds dies. The
    next job must run on fresh connections, in its first attempt."""
    from sqlalchemy import text

    with app.app_context():
        _postgres_only()
        name = db.engine.url.database
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen([str(BIN / "rewards"), "worker", *mode],
                                  env=worker_env(app, rq_mode), cwd=ROOT, stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    claim = _claimer(client, app, 2)
    try:
        [first] = claim(1)
        handed_over()
        _wait_for(lambda: _issued(app, [first])["issued"] == 1, 60, "the first voucher")
        with app.app_context():
            killed = db.session.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            db.session.commit()
        assert killed >= 1
        db.session.remove()
        [second] = claim(1)
        handed_over()
        _wait_for(lambda: _issued(app, [second])["issued"] == 1, 60, "the second voucher")
        assert worker.poll() is None, log_path.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    rows = _outbox(app)
    assert {(row.attempts, row.due_at, row.last_error) for row in rows} == {(1, None, None)}


def test_rows_of_jobs_done_a_week_ago_are_purged(app: Flask) -> None:
    from datetime import timedelta

    import workers.outbox

    now = utcnow()
    with app.app_context():
        rows = {
            "old and done": OutboxMessage(job="workers.outbox.relay",
                                          done_at=now - timedelta(days=8)),
            "recent": OutboxMessage(job="workers.outbox.relay", done_at=now - timedelta(days=1)),
            "old, not done": OutboxMessage(job="workers.outbox.relay",
                                           due_at=now + timedelta(seconds=30),
                                           created_at=now - timedelta(days=30)),
        }
        db.session.add_all(rows.values())
        db.session.flush()
        db.session.execute(update(OutboxMessage).where(OutboxMessage.done_at.is_not(None))
                           .values(due_at=None))
        db.session.commit()
        kept = {rows["recent"].id, rows["old, not done"].id}
        assert workers.outbox.purge_done() == 1
        assert set(db.session.scalars(select(OutboxMessage.id))) == kept
        assert workers.outbox.purge_done() == 0
        db.session.commit()


def test_a_purge_takes_every_row_past_the_week_not_one_batch(app: Flask) -> None:
    """More rows done a week ago than one delete takes: the nightly run takes them all,
    or a busy scheme's rows would pile up past the week they are kept for."""
    from datetime import timedelta

    now = utcnow()
    with app.app_context():
        db.session.add_all([OutboxMessage(job="workers.outbox.relay",
                                          done_at=now - timedelta(days=8, minutes=i))
                            for i in range(5)])
        db.session.add(OutboxMessage(job="workers.outbox.relay", done_at=now - timedelta(days=6)))
        db.session.flush()
        db.session.execute(update(OutboxMessage).values(due_at=None))  # done: none due
        db.session.commit()
        assert relay.purge_done(now - timedelta(days=7), limit=2) == 5
        assert db.session.scalar(select(func.count(OutboxMessage.id))) == 1
        assert relay.purge_done(now - timedelta(days=7), limit=2) == 0


def test_a_gunicorn_worker_hands_its_last_jobs_over_before_it_exits(
    client: FlaskClient, app: Flask, rq_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim answered just before the worker leaves (a deploy, max_requests): its job
    reaches Redis before the process goes, rather than waiting for the relay."""
    monkeypatch.setenv("DATABASE_PRE_PING", "1")  # gunicorn's settings would set 0
    from rewards import gunicorn_conf
    from rewards.api import health

    real_push = jobs.push

    def slow_push(*args: Any, **kwargs: Any) -> int:
        time.sleep(0.5)  # Redis answering slowly
        return real_push(*args, **kwargs)

    monkeypatch.setattr(jobs, "push", slow_push)

    class Worker:
        pid = os.getpid()

        class log:  # noqa: N801 (gunicorn's attribute)
            warning = staticmethod(lambda *args: None)

    _claims(client, app, 1)
    try:
        gunicorn_conf.worker_exit(None, Worker())
    finally:
        health._draining.clear()
    queue_key = f"{_rq_key_prefix(app)}rewards"
    assert Redis.from_url(rq_mode).lrange(queue_key, 0, -1) == [reward_job_id(app).encode()]
