"""Deferred awarding (AWARDING="deferred"): a batch is recorded pending and queued; the
worker's run awards queued batches together, exactly once, with caps and budgets as
inline awarding gives them, and a revocation of a pending action wins cleanly."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from rewards import jobs
from rewards.awarding import award_queued, on_batch_awarded, queue_strays
from rewards.awarding import deferred as deferred_module
from rewards.extensions import db
from rewards.ledger import verify
from rewards.models import Action, Award, AwardQueue, Posting, utcnow
from tests.helpers import bearer, postgres_only, signed_post, tap
from tests.test_flow import _daytime
from tests.test_source import CARD, OTHER_CARD, World, available_and_awarded, resident, world

__all__ = ["world"]  # the fixture, used by name


@pytest.fixture
def deferred(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deferred awarding with no job queued: the tests run the worker's step."""
    monkeypatch.setitem(app.config, "AWARDING", "deferred")
    monkeypatch.setitem(app.config, "AWARDING_JOBS", False)
    yield


def award(app: Flask) -> dict[str, int]:
    with app.app_context():
        run = award_queued(db.session)
        db.session.commit()
        return run.as_dict()


def statuses(app: Flask) -> dict[str, int]:
    with app.app_context():
        return dict(db.session.execute(
            select(Action.status, func.count()).group_by(Action.status)).all())


def counts(app: Flask) -> tuple[int, int, int]:
    """(queued batches, awards, postings)."""
    with app.app_context():
        return tuple(int(db.session.scalar(select(func.count()).select_from(model)) or 0)
                     for model in (AwardQueue, Award, Posting))  # type: ignore[return-value]


def sound(app: Flask) -> None:
    with app.app_context():
        assert verify(db.session) == []


def test_a_batch_is_recorded_pending_then_awarded_once(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    """Six taps on one day (cap 4 a day) in two batches: the answers carry no points,
    the actions wait as pending; one run awards four of them, and a second run (or a
    batch sent again) changes nothing."""
    taps = [tap(f"d-{n}", world.card, _daytime(2, 9 + n)) for n in range(6)]
    first = signed_post(client, world.scheme.source, {"items": taps[:3]})
    second = signed_post(client, world.scheme.source, {"items": taps[3:]})
    for answer in (first, second):
        assert answer.status_code == 200, answer.json
        for result in answer.json["results"]:
            assert result["status"] == "accepted" and result["action_id"]
            assert result["points"] is None  # not awarded yet
    assert statuses(app) == {"pending": 6}
    assert counts(app) == (2, 0, 0)
    listed = client.get("/v1/me/actions", headers=world.me)
    assert listed.status_code == 200
    assert {item["status"] for item in listed.json} == {"pending"}

    assert award(app) == {"batches": 2, "actions": 6, "points": 40}
    assert statuses(app) == {"accepted": 6}
    assert available_and_awarded(app, world.member_id) == (40, 40)
    with app.app_context():
        points = db.session.scalars(select(Action.points).order_by(Action.occurred_at)).all()
        capped = db.session.scalar(select(func.count()).select_from(Award)
                                   .where(Award.capped_by == "per_day"))
    assert points == [10, 10, 10, 10, 0, 0]  # the latest actions are the capped ones
    assert capped == 2
    queued, awards, postings = counts(app)
    assert queued == 0 and awards == 6 and postings == 4

    assert award(app) == {"batches": 0, "actions": 0, "points": 0}
    again = signed_post(client, world.scheme.source, {"items": taps[:3]})
    assert [r["status"] for r in again.json["results"]] == ["duplicate"] * 3
    assert award(app)["batches"] == 0
    assert available_and_awarded(app, world.member_id) == (40, 40)
    sound(app)


def test_deferred_awards_what_inline_awards(
    client: FlaskClient, app: Flask, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same taps of two members, once inline and once deferred (other refs, other
    days): the same points per member and the same capped count."""
    _, other = resident(client, app, "bea@example.org", OTHER_CARD)

    def taps(prefix: str, days_ago: int) -> list[dict[str, Any]]:
        return [tap(f"{prefix}-{card[-4:]}-{n}", card, _daytime(days_ago, 8 + n))
                for card in (CARD, OTHER_CARD) for n in range(5)]

    inline = signed_post(client, world.scheme.source, {"items": taps("i", 3)})
    inline_points = [r["points"] for r in inline.json["results"]]
    monkeypatch.setitem(app.config, "AWARDING", "deferred")
    monkeypatch.setitem(app.config, "AWARDING_JOBS", False)
    signed_post(client, world.scheme.source, {"items": taps("d", 5)})
    award(app)
    with app.app_context():
        by_ref = dict(db.session.execute(select(Action.external_ref, Action.points)).all())
    assert [by_ref[f"d-{ref[2:]}"] for ref in (t["external_ref"] for t in taps("i", 3))] \
        == inline_points
    assert available_and_awarded(app, world.member_id) == (80, 80)
    assert available_and_awarded(app, other) == (80, 80)
    sound(app)


def test_the_job_awards_right_after_the_request_without_redis(
    client: FlaskClient, app: Flask, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded setup (no Redis): the queued job runs in-process after commit, so a
    deferred batch is awarded by the time the next request comes."""
    monkeypatch.setitem(app.config, "AWARDING", "deferred")
    answer = signed_post(client, world.scheme.source,
                         {"items": [tap("j-1", world.card, _daytime(1, 10))]})
    assert answer.status_code == 200 and answer.json["results"][0]["points"] is None
    assert statuses(app) == {"accepted": 1}
    assert counts(app)[0] == 0
    assert available_and_awarded(app, world.member_id) == (10, 10)


def test_a_pending_action_revoked_before_awarding_earns_nothing(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    signed_post(client, world.scheme.source, {"items": [
        tap("r-1", world.card, _daytime(1, 9)), tap("r-2", world.card, _daytime(1, 10))]})
    revoked = signed_post(client, world.scheme.source, {"external_refs": ["r-1"]},
                          path="/v1/source/actions/revocations")
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["results"][0]["status"] == "revoked"
    assert revoked.json["results"][0]["points_reversed"] == 0
    assert award(app) == {"batches": 1, "actions": 1, "points": 10}
    assert statuses(app) == {"accepted": 1, "revoked": 1}
    assert available_and_awarded(app, world.member_id) == (10, 10)
    # Revoked after awarding: taken back exactly.
    later = signed_post(client, world.scheme.source, {"external_refs": ["r-2"]},
                        path="/v1/source/actions/revocations")
    assert later.json["results"][0]["points_reversed"] == 10
    assert client.get("/v1/me/balance", headers=world.me).json["available"] == 0
    sound(app)


def test_the_sweep_queues_pending_actions_no_batch_names(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    signed_post(client, world.scheme.source,
                {"items": [tap("s-1", world.card, _daytime(1, 9))]})
    with app.app_context():
        db.session.execute(AwardQueue.__table__.delete())  # a queue row lost
        db.session.execute(update(Action).values(created_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
        assert queue_strays(db.session) == 1
        db.session.commit()
        assert queue_strays(db.session) == 0  # queued now
        db.session.commit()
    assert award(app)["points"] == 10
    sound(app)


def test_listeners_hear_which_members_were_awarded(
    client: FlaskClient, app: Flask, world: World, deferred: None,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[dict[uuid.UUID, list[int]]] = []
    monkeypatch.setattr(deferred_module, "_listeners", [])
    on_batch_awarded(lambda session, awarded: heard.append(dict(awarded)))
    signed_post(client, world.scheme.source, {"items": [
        tap("n-1", world.card, _daytime(1, 9)), tap("n-2", world.card, _daytime(1, 10))]})
    award(app)
    assert heard == [{uuid.UUID(world.member_id): [20, 2]}]


def test_members_hear_of_deferred_points_once_they_are_awarded(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    """The batch's answer carries no points, so nobody is told then; the worker's run
    that awards them tells each member once, for all their actions in the run."""
    assert client.patch("/v1/me/notification-preferences", headers=world.me,
                        json={"points_earned": {"email": True}}).status_code == 200
    mails = app.extensions.setdefault("sent_mail", [])
    before = len(mails)
    signed_post(client, world.scheme.source, {"items": [
        tap("m-1", world.card, _daytime(1, 9)), tap("m-2", world.card, _daytime(1, 10))]})
    assert mails[before:] == []
    with app.app_context():
        award_queued(db.session)
        db.session.commit()
        jobs.dispatch_pending()  # as the worker's relay sends the notice job on
    told = [m for m in mails[before:] if m["Subject"].startswith("You earned")]
    assert [m["Subject"] for m in told] == ["You earned 20 points"]
    assert "for 2 action(s)" in told[0].get_content()
    award(app)  # nothing left to award: nobody is told again
    assert len([m for m in mails[before:] if m["Subject"].startswith("You earned")]) == 1


def test_two_workers_at_once_award_every_batch_once(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    """Twelve batches for two members on one day, two workers taking a few batches a
    run at the same time: each action is awarded once, and each member's cap holds
    (four awards a day) however the batches were shared between the workers."""
    postgres_only(app, "SKIP LOCKED and row locks between workers need PostgreSQL")
    _, other = resident(client, app, "bea@example.org", OTHER_CARD)
    for batch in range(12):
        items = [tap(f"w-{batch}-{card[-4:]}", card, _daytime(2, 7 + batch))
                 for card in (CARD, OTHER_CARD)]
        assert signed_post(client, world.scheme.source, {"items": items}).status_code == 200
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                while award_queued(db.session, most=3).batches:
                    db.session.commit()
                db.session.commit()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert statuses(app) == {"accepted": 24}
    assert counts(app)[0] == 0
    assert available_and_awarded(app, world.member_id) == (40, 40)
    assert available_and_awarded(app, other) == (40, 40)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Award)) == 24
    sound(app)


def test_concurrent_deferred_batches_with_the_same_refs_record_once(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    from tests.helpers import at_once

    postgres_only(app, "threads writing at once need PostgreSQL")
    body = {"items": [tap(f"c-{n}", world.card, _daytime(1, 8 + n)) for n in range(3)]}
    answers = at_once(app, 4, lambda own, _: signed_post(own, world.scheme.source, body))
    results = [r["status"] for a in answers for r in a.json["results"]]
    assert results.count("accepted") == 3 and results.count("duplicate") == 9
    award(app)
    assert available_and_awarded(app, world.member_id) == (30, 30)
    assert client.get("/v1/me/balance", headers=bearer(world.token)).json["available"] == 30
    sound(app)


def test_a_csv_import_awards_inline_whatever_the_setting(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    """A CSV import's report counts its points, so it asks for inline awarding."""
    from rewards.actions.ingest import ingest_batch
    from rewards.models import Source

    with app.app_context():
        source = db.session.get(Source, uuid.UUID(world.scheme.source["id"]))
        outcome = ingest_batch(db.session, source, [tap("v-1", world.card, _daytime(1, 9))],
                               awarding="inline")
        assert [r["points"] for r in outcome.results] == [10]
    assert statuses(app) == {"accepted": 1}
    assert counts(app)[0] == 0


def test_a_batch_that_fails_to_award_does_not_hold_up_the_others(
    client: FlaskClient, app: Flask, world: World, deferred: None,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job: a run that fails is retried a batch at a time; the failing batch stays
    queued (and is logged), the batches queued after it are awarded."""
    from workers.awarding import award_queued as award_job

    for n in range(3):
        signed_post(client, world.scheme.source,
                    {"items": [tap(f"f-{n}", world.card, _daytime(1, 9 + n))]})
    with app.app_context():
        poisoned = db.session.scalar(select(Action.id).where(Action.external_ref == "f-1"))
    real = deferred_module.award_many

    def failing(session: Any, postgres: bool, planner: Any, accepted: Any, *args: Any,
                **kwargs: Any) -> Any:
        if any(work.action_id == poisoned for work in accepted):
            raise RuntimeError("a bug met on this batch")
        return real(session, postgres, planner, accepted, *args, **kwargs)

    monkeypatch.setattr(deferred_module, "award_many", failing)
    with app.app_context():
        done = award_job()
    assert done == {"batches": 2, "actions": 2, "points": 20, "failed": 1}
    assert statuses(app) == {"accepted": 2, "pending": 1}
    assert counts(app)[0] == 1
    monkeypatch.setattr(deferred_module, "award_many", real)  # the bug fixed
    with app.app_context():
        assert award_job()["batches"] == 1
    assert statuses(app) == {"accepted": 3}
    sound(app)


def test_the_award_backlog_is_a_metric(
    client: FlaskClient, app: Flask, world: World, deferred: None
) -> None:
    """Operations see how many batches wait and for how long (the AwardBacklog alert)."""
    from tests.test_observability import TOKEN, sample

    app.config["METRICS_TOKEN"] = TOKEN
    try:
        def metrics() -> str:
            return client.get("/metrics", headers=bearer(TOKEN)).get_data(as_text=True)

        idle = metrics()
        assert sample(idle, "rewards_award_queue_batches") == 0
        assert sample(idle, "rewards_award_queue_oldest_age_seconds") == 0
        for n in range(2):
            signed_post(client, world.scheme.source,
                        {"items": [tap(f"q-{n}", world.card, _daytime(1, 9 + n))]})
        waiting = metrics()
        assert sample(waiting, "rewards_award_queue_batches") == 2
        assert sample(waiting, "rewards_award_queue_oldest_age_seconds") > 0
        award(app)
        assert sample(metrics(), "rewards_award_queue_batches") == 0
    finally:
        app.config["METRICS_TOKEN"] = None


@pytest.mark.parametrize("lag_minutes", [0, 15, 24 * 60])
def test_the_dashboard_counts_an_action_awarded_after_the_refresh_saw_it_pending(
    client: FlaskClient, app: Flask, world: World, deferred: None, lag_minutes: int
) -> None:
    """An action recorded pending is not counted; the award run that counts it (here
    with no points: 0.5 km is under the rule's 1 km) dates nothing the refresh reads,
    however far behind the queue was (the alert's territory, not a fault)."""
    from rewards.dashboard import Filters, Raw, compute
    from rewards.dashboard.filters import today
    from rewards.dashboard.refresh import refresh

    answer = signed_post(client, world.scheme.source,
                         {"items": [tap("late-1", world.card, _daytime(3), 0.5)]})
    assert answer.status_code == 200, answer.json
    with app.app_context():
        recorded = utcnow() - timedelta(minutes=lag_minutes)
        db.session.execute(update(Action).values(created_at=recorded))
        db.session.execute(update(AwardQueue).values(created_at=recorded))
        db.session.commit()
        refresh(db.session)  # the minute's refresh, while the action waits
    assert award(app)["actions"] == 1
    with app.app_context():
        assert db.session.scalar(select(Action.points)) == 0
        refresh(db.session, now=utcnow() + timedelta(minutes=1))  # the next minute's
        period = Filters(today() - timedelta(days=30), today())
        got = compute("actions", period, threshold=1).to_json()["rows"]
        raw = compute("actions", period, source=Raw(), threshold=1).to_json()["rows"]
        assert [row["actions"] for row in raw] == [1]
        assert got == raw


def test_batches_whose_job_redis_lost_are_awarded_once_by_a_real_worker(
        client: FlaskClient, app: Flask, world: World, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The award job goes through the outbox: Redis restarted empty after the batches'
    jobs were handed over, and a worker killed (SIGKILL) while it may be awarding, a
    new worker awards every batch once (the killed run's transaction never committed)."""
    import os
    import signal
    import subprocess

    from redis import Redis

    from tests.test_job_faults import PrivateRedis, _free_port, _wait_for
    from tests.test_worker import BIN, ROOT, handed_over, worker_env

    postgres_only(app, "the worker processes share the database with the test")
    server = PrivateRedis(_free_port(), tmp_path)
    server.start()
    try:
        monkeypatch.setitem(app.config, "AWARDING", "deferred")
        monkeypatch.setitem(app.config, "REDIS_URL", server.url)
        _, other = resident(client, app, "bea@example.org", OTHER_CARD)
        for batch in range(6):
            items = [tap(f"r-{batch}-{card[-4:]}", card, _daytime(2, 7 + batch))
                     for card in (CARD, OTHER_CARD)]
            assert signed_post(client, world.scheme.source, {"items": items}).status_code == 200
        handed_over()
        assert Redis.from_url(server.url).llen(
            f"rq:queue:{app.config['RQ_QUEUE_PREFIX']}default") == 6
        server.kill()
        server.start()  # empty: the award jobs are gone
        env = worker_env(app, server.url)

        def worker(name: str) -> subprocess.Popen[bytes]:
            with open(tmp_path / f"{name}.log", "w") as log_file:
                return subprocess.Popen([str(BIN / "rewards"), "worker"], env=env, cwd=ROOT,
                                        stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)

        first = worker("first")
        _wait_for(lambda: Redis.from_url(server.url).scard("rq:workers") == 1, 30,
                  "the first worker to start")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        second = worker("second")
        try:
            _wait_for(lambda: counts(app)[0] == 0 and statuses(app) == {"accepted": 12}, 30,
                      "every queued batch to be awarded")
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(timeout=30)
    finally:
        server.kill()
    assert available_and_awarded(app, world.member_id) == (40, 40)
    assert available_and_awarded(app, other) == (40, 40)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Award)) == 12
    sound(app)
