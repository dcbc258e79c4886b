"""Request ids, log formats and the Prometheus endpoint."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards import logs
from rewards.config import Config

from .helpers import bearer
from .test_auth import assert_error
from .test_worker import BIN, ROOT, _member_with_points, run_rq_worker, worker_env

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def metrics_on(app: Flask) -> Iterator[dict[str, str]]:
    app.config["METRICS_TOKEN"] = TOKEN
    try:
        yield bearer(TOKEN)
    finally:
        app.config["METRICS_TOKEN"] = None


@pytest.fixture
def json_logs(app: Flask, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The app's log handler as production has it, writing where the test can read."""
    logs.configure_logging("INFO", "json")
    try:
        yield
    finally:
        logs.configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        metric, _, label_text = key.partition("{")
        given = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and given == wanted:
            return float(value)
    return 0.0


# -- request ids ------------------------------------------------------------------

def test_a_given_request_id_is_echoed_and_a_missing_or_odd_one_is_made(
    client: FlaskClient,
) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.42"})
    assert given.headers["X-Request-Id"] == "lb-7f3a.42"
    made = [client.get("/healthz").headers["X-Request-Id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert made[0] != made[1]
    odd = client.get("/healthz", headers={"X-Request-Id": 'x" {"level": "fake"}'})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-Id"])
    too_long = client.get("/healthz", headers={"X-Request-Id": "a" * 129})
    assert too_long.headers["X-Request-Id"] != "a" * 129
    # Errors carry it too.
    missing = client.get("/v1/no-such-thing", headers={"X-Request-Id": "err-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-Id"] == "err-1"


def test_json_log_lines_carry_the_request_id(
    client: FlaskClient, app: Flask, json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens: readyz logs why
    try:
        ready = client.get("/readyz", headers={"X-Request-Id": "probe-123"})
    finally:
        app.config["REDIS_URL"] = None
    assert ready.status_code == 200 and ready.json["status"] == "degraded"
    lines = json_lines(capsys.readouterr().err)
    warning = next(line for line in lines if line["message"].startswith("readiness: redis"))
    assert warning["request_id"] == "probe-123"
    assert warning["level"] == "WARNING" and warning["logger"] == app.logger.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", warning["time"])


def test_text_logs_and_exceptions(capsys: pytest.CaptureFixture[str], app: Flask) -> None:
    import logging

    logs.configure_logging("INFO", "text")
    try:
        with logs.request_id_set("job-9"):
            logging.getLogger("rewards.test").info("hello %s", "there")
        logs.configure_logging("INFO", "json")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("rewards.test").exception("it broke")
    finally:
        logs.configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    err = capsys.readouterr().err
    assert re.search(r"INFO rewards\.test \[job-9\]: hello there", err)
    broke = json_lines(err)[-1]
    assert broke["message"] == "it broke" and "request_id" not in broke
    assert "ValueError: boom" in broke["exc"]


def test_log_format_defaults_to_json_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REWARDS_ENV", raising=False)
    assert Config().LOG_FORMAT == "text"
    monkeypatch.setenv("REWARDS_ENV", "production")
    assert Config().LOG_FORMAT == "json"
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert Config().LOG_FORMAT == "text"


def test_a_claims_request_id_follows_its_job_into_the_worker(
    client: FlaskClient, app: Flask, rq_mode: str
) -> None:
    from rq.job import Job

    scheme, me = _member_with_points(client, app, mail_points=True)
    claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                        headers={**me, "X-Request-Id": "claim-req-42"})
    assert claim.status_code == 202 and claim.headers["X-Request-Id"] == "claim-req-42"
    from redis import Redis

    from rewards.extensions import db
    from rewards.handover import handover
    from rewards.models import OutboxMessage

    assert handover.wait()  # the hand-over to Redis happens after the response
    with app.app_context():
        message_id = str(db.session.query(OutboxMessage.id).filter(
            OutboxMessage.job == "workers.rewards.issue_reward").one()[0])

    done = run_rq_worker_logging(app, rq_mode)
    assert done.returncode == 0, done.stderr
    # Only the claim's id went to Redis; the job the worker built carries the request.
    assert Job.fetch(message_id, connection=Redis.from_url(rq_mode)).meta == {
        "request_id": "claim-req-42"}
    lines = json_lines(done.stderr)
    mail = [line for line in lines if line["message"].startswith("mail to")]
    assert mail, done.stderr[-2000:]
    # The voucher's mail under the claim's request; the points notice of the batch
    # before it under that batch's own request. Each job's lines carry their request.
    ids = [line.get("request_id") for line in mail]
    assert "claim-req-42" in ids and None not in ids and len(set(ids)) == len(mail) == 2
    issued = client.get(f"/v1/me/rewards/{claim.json['id']}", headers=me).json
    assert issued["status"] == "issued"


def test_a_job_sent_again_after_redis_lost_it_keeps_its_request_id(
    client: FlaskClient, app: Flask, rq_mode: str
) -> None:
    """The outbox row keeps the id of the request that wrote it: a job the relay sends
    after Redis was down (or lost it) logs under the claim's request like any other."""
    from redis import Redis
    from rq.job import Job

    from rewards import relay
    from rewards.extensions import db
    from rewards.handover import handover
    from rewards.models import OutboxMessage

    scheme, me = _member_with_points(client, app, mail_points=False)
    assert handover.wait()
    assert run_rq_worker(app, rq_mode).returncode == 0
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # down while the claim commits
    try:
        claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                            headers={**me, "X-Request-Id": "claim-req-77"})
        assert claim.status_code == 202
        assert handover.wait()
    finally:
        app.config["REDIS_URL"] = rq_mode
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.job == "workers.rewards.issue_reward")).one()
        assert (message.request_id, message.dispatched_at) == ("claim-req-77", None)
        message_id = str(message.id)
        db.session.rollback()
        assert relay.relay(everything=True) == 1  # Redis is back: the relay sends it
    assert Job.fetch(message_id, connection=Redis.from_url(rq_mode)).meta == {
        "request_id": "claim-req-77"}
    done = run_rq_worker_logging(app, rq_mode)
    assert done.returncode == 0, done.stderr
    mail = [line for line in json_lines(done.stderr) if line["message"].startswith("mail to")]
    assert [line.get("request_id") for line in mail] == ["claim-req-77"], done.stderr[-2000:]


def run_rq_worker_logging(app: Flask, redis_url: str) -> subprocess.CompletedProcess[str]:
    """`rq worker --burst` logging JSON at INFO (mail printed to the log is INFO)."""
    prefix = app.config["RQ_QUEUE_PREFIX"]
    env = worker_env(app, redis_url)
    env.update(LOG_FORMAT="json", LOG_LEVEL="INFO")
    return subprocess.run(
        [str(BIN / "rq"), "worker", "--burst", "--url", redis_url, "--path", str(ROOT),
         "--job-class", "workers.rqjob.OutboxJob",
         f"{prefix}rewards", f"{prefix}default"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


# -- metrics ----------------------------------------------------------------------

def test_metrics_are_off_without_a_token_and_need_it_when_on(
    client: FlaskClient, app: Flask
) -> None:
    assert_error(client.get("/metrics"), 404)
    app.config["METRICS_TOKEN"] = TOKEN
    try:
        assert_error(client.get("/metrics"), 401)
        assert_error(client.get("/metrics", headers=bearer("wrong")), 401)
        assert_error(client.get("/metrics", headers={"Authorization": TOKEN}), 401)
        assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    finally:
        app.config["METRICS_TOKEN"] = None


def test_request_latency_is_counted_by_route_template(
    client: FlaskClient, app: Flask, metrics_on: dict[str, str]
) -> None:
    route = "/v1/admin/staff/<uuid:staff_id>/deactivate"
    before = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    for _ in range(3):
        client.get("/healthz")
    client.post("/v1/admin/staff/6c1d2c84-6f57-4b5e-9f5a-2f1e1c0c1a11/deactivate")
    client.get("/v1/nothing/here")
    after = client.get("/metrics", headers=metrics_on)
    assert after.mimetype == "text/plain"
    text = after.get_data(as_text=True)
    name = "rewards_http_request_duration_seconds_count"

    def grew(**labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert grew(route="/healthz", method="GET", status="2xx") == 3
    assert grew(route=route, method="POST", status="4xx") == 1
    assert grew(route="<unmatched>", method="GET", status="4xx") == 1
    assert "6c1d2c84" not in text  # the template, never the raw path
    assert sample(text, "rewards_http_request_duration_seconds_bucket", route="/healthz",
                  method="GET", status="2xx", le="+Inf") >= 3


def test_metrics_answer_while_the_database_is_away(
    client: FlaskClient, app: Flask, metrics_on: dict[str, str]
) -> None:
    """The request figures live in the process: a scrape during a database outage
    still answers them (they are what shows the outage), with rewards_database_up 0."""
    from .test_outage import _down

    up = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(up, "rewards_database_up") == 1
    with _down(app):
        assert client.get("/v1/me/balance", headers=bearer("x")).status_code == 401
        scraped = client.get("/metrics", headers=metrics_on)
    assert scraped.status_code == 200, scraped.get_data(as_text=True)[:300]
    text = scraped.get_data(as_text=True)
    assert sample(text, "rewards_database_up") == 0
    assert "rewards_http_request_duration_seconds_count" in text
    assert "rewards_outbox_depth" not in text
    back = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(back, "rewards_database_up") == 1 and "rewards_outbox_depth" in back


def test_backlog_figures_come_from_the_database_and_redis(
    client: FlaskClient, app: Flask, rq_mode: str, metrics_on: dict[str, str]
) -> None:
    idle = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(idle, "rewards_outbox_depth") == 0
    assert sample(idle, "rewards_pending_rewards") == 0
    assert sample(idle, "rewards_oldest_pending_reward_age_seconds") == 0
    assert sample(idle, "rewards_redis_up") == 1

    scheme, me = _member_with_points(client, app)
    # The batch's points notice is handed over and run first: the backlog below is the claim's.
    from rewards.handover import handover

    assert handover.wait()
    assert run_rq_worker(app, rq_mode).returncode == 0
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # down: the claim waits in the outbox
    try:
        claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                            headers=me)
        assert claim.status_code == 202
        down = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    finally:
        app.config["REDIS_URL"] = rq_mode
    assert sample(down, "rewards_outbox_depth") == 1
    assert sample(down, "rewards_pending_rewards") == 1
    assert sample(down, "rewards_oldest_pending_reward_age_seconds") > 0
    assert sample(down, "rewards_redis_up") == 0

    from rewards import relay

    with app.app_context():
        assert relay.relay(everything=True) == 1
    queued = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(queued, "rewards_outbox_depth") == 1  # queued, not yet done
    assert sample(queued, "rewards_jobs_queued", queue="rewards") == 1
    assert sample(queued, "rewards_jobs_failed", queue="rewards") == 0
    assert sample(queued, "rewards_pending_rewards") == 1

    assert run_rq_worker(app, rq_mode).returncode == 0
    done = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(done, "rewards_outbox_depth") == 0
    assert sample(done, "rewards_jobs_queued", queue="rewards") == 0
    assert sample(done, "rewards_pending_rewards") == 0
    assert sample(done, "rewards_oldest_pending_reward_age_seconds") == 0


def test_retries_and_failures_are_counted_from_the_outbox(
    client: FlaskClient, app: Flask, metrics_on: dict[str, str]
) -> None:
    """Retries are the outbox's (RQ's scheduler and failed registry never see them): a
    job in flight after a failed attempt is retrying; one done with its error kept gave
    up, and counts for an hour."""
    from datetime import timedelta

    from rewards.extensions import db
    from rewards.models import OutboxMessage, utcnow

    now = utcnow()
    rows = [
        # (queue, attempts, due_at, done_at, last_error)
        ("rewards", 0, now, None, None),                                  # waiting
        ("rewards", 1, now + timedelta(seconds=30), None, "HTTP 503"),   # retry due
        ("rewards", 2, now + timedelta(seconds=60), None, "HTTP 500"),   # retry running
        ("default", 1, now, None, "timeout"),                            # retry due
        ("rewards", 3, None, now - timedelta(minutes=2), None),          # succeeded
        ("rewards", 4, None, now - timedelta(minutes=10), "HTTP 503"),   # gave up
        ("default", 5, None, now - timedelta(minutes=1), "abandoned: 5 attempts"),
        ("rewards", 4, None, now - timedelta(hours=2), "HTTP 503"),      # long ago
    ]
    with app.app_context():
        for queue, attempts, due_at, done_at, error in rows:
            message = OutboxMessage(job="workers.rewards.issue_reward", queue=queue,
                                    attempts=attempts, done_at=done_at, last_error=error)
            db.session.add(message)
            db.session.flush()
            message.due_at = due_at  # None is not left to the column's default
        db.session.commit()
    text = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    assert sample(text, "rewards_outbox_depth") == 4
    assert sample(text, "rewards_jobs_retrying", queue="rewards") == 2
    assert sample(text, "rewards_jobs_retrying", queue="default") == 1
    assert sample(text, "rewards_jobs_failed", queue="rewards") == 1
    assert sample(text, "rewards_jobs_failed", queue="default") == 1
    with app.app_context():
        db.session.execute(OutboxMessage.__table__.delete().where(
            OutboxMessage.__table__.c.last_error.is_not(None)))
        db.session.commit()
    quiet = client.get("/metrics", headers=metrics_on).get_data(as_text=True)
    for name in ("rewards_jobs_retrying", "rewards_jobs_failed"):
        for queue in ("rewards", "default"):
            assert f'{name}{{queue="{queue}"}} 0.0' in quiet


def test_gunicorn_workers_report_together_in_multiprocess_mode(tmp_path) -> None:
    """Two gunicorn workers started by the image's entry point: a scrape answered by
    either counts the requests both answered."""
    import os
    import time
    import urllib.request

    from .test_cli import rewards
    from .test_entrypoint import _free_port

    url = f"sqlite:///{tmp_path / 'api.db'}"
    assert rewards("db", "upgrade", db_url=url, cwd=tmp_path).returncode == 0
    port = _free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999.db").write_bytes(b"left from a previous run")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=url, PORT=str(port), WEB_CONCURRENCY="2", LOG_LEVEL="WARNING",
               METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
               SECRET_KEY="metrics-test-secret-key-32-bytes-or-more",
               IDENTIFIER_KEY="metrics-test-identifier-key",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    server = subprocess.Popen(["sh", str(ROOT / "docker-entrypoint.sh"), "api"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        for _ in range(20):
            urllib.request.urlopen(f"{base}/healthz", timeout=30).close()
        scrapes = []
        for _ in range(4):
            request = urllib.request.Request(f"{base}/metrics", headers=bearer(TOKEN))
            with urllib.request.urlopen(request, timeout=30) as answer:
                scrapes.append(answer.read().decode())
    finally:
        server.terminate()
        server.communicate(timeout=30)
    counts = {sample(text, "rewards_http_request_duration_seconds_count", route="/healthz",
                     method="GET", status="2xx") for text in scrapes}
    assert counts == {20.0}  # whichever worker answered each request and each scrape
    assert not (metrics_dir / "counter_999.db").exists()
    assert len(list(metrics_dir.glob("histogram_*.db"))) >= 1


def test_requests_are_answered_when_the_metrics_directory_has_no_room(tmp_path) -> None:
    """Under gunicorn the request timings go to files in PROMETHEUS_MULTIPROC_DIR. When
    they cannot grow (a full disk; here a file size limit, which fails the same calls)
    the answer still goes out: the figure is passed over, with a warning. A full disk
    used to be worse still: prometheus_client maps files it sized with truncate(), so
    the first write was SIGBUS and the worker died on every request."""
    import os
    import sys

    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from rewards import create_app\n"
        "app = create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://', 'REDIS_URL': None,\n"
        "                  'TESTING': True, 'LOG_LEVEL': 'WARNING',\n"
        "                  'SECRET_KEY': 'test-secret-key-at-least-32-bytes-long',\n"
        "                  'IDENTIFIER_KEY': 'test-identifier-key'})\n"
        "client = app.test_client()\n"
        "print([client.get('/healthz').status_code for _ in range(3)])\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[200, 200, 200]"
    assert "request timings not recorded" in done.stderr
    assert not [p for p in tmp_path.iterdir() if p.stat().st_size == 0]  # none unreadable
