"""Voucher issuance against claims: do the workers keep up with what the API accepts?

Claims go through POST /v1/me/rewards with jobs through Redis (the outbox, handed over
after each response), in P processes of T threads each, as gunicorn would run them:
claims/s accepted. Then N `rewards worker` processes issue the vouchers: vouchers/s
issued, from the first voucher to the last. The same again for a smaller batch with
`rewards worker --fork` (a forked work horse per job, RQ's default) to compare.

    python bench/issuance.py [--database-url URL] [--redis-url URL] [--claims N]
                             [--workers N] [--processes P] [--threads T] [--fork-claims N]

Makes its own database (rewards_bench_<random>) and Redis keys (a random queue
prefix), drops both at the end. Checks one voucher (one capture posting) per reward,
no failed attempt and `rewards ledger verify` clean. The last line printed is one
JSON object with the figures."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_scheme import member_logins  # noqa: E402  bench/api_scheme.py
from pgdb import create_database, drop_database  # noqa: E402  bench/pgdb.py
from redis import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from rewards import create_app  # noqa: E402
from rewards.extensions import db  # noqa: E402
from rewards.ledger import adjust, verify  # noqa: E402
from rewards.members import create_member  # noqa: E402
from rewards.models import Member, Offer, OutboxMessage, Partner, Posting, Reward  # noqa: E402
from rewards.security import api_key_hash, new_api_key  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
COST = 10


def build(members: int) -> str:
    """A partner with one offer (our own vouchers, ample stock) and `members` members
    with points enough for two claims each. Returns the offer id."""
    session = db.session
    now = datetime.now(UTC)
    partner = Partner(id=uuid.uuid4(), name="Leeds Leisure", kind="business",
                      api_key_hash=api_key_hash(new_api_key("ptn")))
    offer = Offer(id=uuid.uuid4(), partner_id=partner.id, title="Free swim", cost_points=COST,
                  value_pence=450, status="live", stock=10 * members)
    session.add_all([partner, offer])
    member_ids = [create_member(session, email=f"bench{n:06d}@example.org", joined_at=now).id
                  for n in range(members)]
    session.commit()
    for mid in member_ids:
        adjust(session, mid, 2 * COST, "bench points")
    session.commit()
    return str(offer.id)


def _claim_process(config: dict[str, Any], offer_id: str, tokens: list[str], threads: int,
                   results: Any) -> None:
    from rewards.handover import handover

    app = create_app(config)
    shares = [tokens[n::threads] for n in range(threads)]
    errors = []

    def run(share: list[str]) -> None:
        client = app.test_client()
        for token in share:
            answer = client.post("/v1/me/rewards", json={"offer_id": offer_id},
                                 headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 202:
                errors.append(answer.status_code)

    workers = [threading.Thread(target=run, args=(share,)) for share in shares]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    handover.wait(timeout=120)
    results.put((len(errors), started, time.time()))


def claim_all(config: dict[str, Any], offer_id: str, members: list[str], processes: int,
              threads: int) -> float:
    """Claims/s accepted (and handed over to Redis): each member (an access token of a
    login of theirs) claims once; from the first process starting to claim to the last
    one done (start-up not counted)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    procs = [context.Process(target=_claim_process,
                             args=(config, offer_id, members[n::processes], threads, results))
             for n in range(processes)]
    for proc in procs:
        proc.start()
    outcomes = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    errors = sum(outcome[0] for outcome in outcomes)
    elapsed = max(outcome[2] for outcome in outcomes) - min(outcome[1] for outcome in outcomes)
    if errors:
        raise SystemExit(f"{errors} claims were refused")
    return len(members) / elapsed


def _issued(app: Any) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(Reward.id)).where(Reward.status == "issued"))
        db.session.commit()
        return int(count or 0)


def issue_all(app: Any, env: dict[str, str], workers: int, expected: int, fork: bool,
              limit: float) -> float:
    """Vouchers/s issued by `workers` worker processes, first voucher to last."""
    already = _issued(app)
    command = [str(Path(sys.executable).parent / "rewards"), "worker"]
    if fork:
        command.append("--fork")
    procs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
             for _ in range(workers)]
    first = last = None
    deadline = time.monotonic() + limit
    try:
        while True:
            done = _issued(app) - already
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= expected:
                last = (now, done)
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {done} of {expected} vouchers issued in {limit:.0f} s")
            time.sleep(0.05)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    assert first is not None and last is not None
    span = max(last[0] - first[0], 1e-6)
    return (last[1] - first[1]) / span


def check(app: Any, connection: Redis, prefix: str) -> None:
    from rq.registry import FailedJobRegistry

    with app.app_context():
        rewards = db.session.scalar(select(func.count(Reward.id)))
        captures = db.session.scalar(select(func.count(Posting.id))
                                     .where(Posting.kind == "capture"))
        retried = db.session.scalar(select(func.count(OutboxMessage.id))
                                    .where(OutboxMessage.attempts != 1))
        problems = verify(db.session)
        db.session.commit()
    failed = sum(FailedJobRegistry(f"{prefix}{name}", connection=connection).count
                 for name in ("rewards", "default"))
    if rewards != captures or retried or failed or problems:
        raise SystemExit(f"{rewards} rewards, {captures} vouchers, {retried} jobs not done in "
                         f"one attempt, {failed} failed jobs, ledger problems: {problems[:3]}")
    print(f"checked: {captures:,} vouchers for {rewards:,} rewards, every job done in one "
          f"attempt, no failed job, ledger sound", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--fork-claims", type=int, default=200,
                        help="claims issued by forking workers, to compare (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    url, admin = create_database(args.database_url)
    prefix = f"bench-{secrets.token_hex(4)}-"
    connection = Redis.from_url(args.redis_url)
    print(f"database {make_url(url).database}, queues {prefix}*", flush=True)
    figures: dict[str, Any] = {}
    try:
        from rewards.migrate import upgrade

        upgrade(url)
        config = {
            "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": args.redis_url, "SMTP_URL": None,
            "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-key-at-least-32-bytes-long",
            "IDENTIFIER_KEY": "bench-identifier-key", "RQ_QUEUE_PREFIX": prefix,
        }
        env = dict(os.environ, DATABASE_URL=url, REDIS_URL=args.redis_url,
                   SECRET_KEY=config["SECRET_KEY"], IDENTIFIER_KEY=config["IDENTIFIER_KEY"],
                   RQ_QUEUE_PREFIX=prefix, LOG_LEVEL="WARNING")
        app = create_app(config)
        total = args.claims + args.fork_claims
        with app.app_context():
            offer_id = build(total)
            # Signed in, as residents are: an access token names a login of theirs.
            members = member_logins(db.session, list(db.session.scalars(
                select(Member.id).order_by(Member.email))))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()  # the forked processes open their own connections

        claims_per_s = claim_all(config, offer_id, members[:args.claims], args.processes,
                                 args.threads)
        print(f"claims: {args.claims:,} accepted at {claims_per_s:,.1f}/s "
              f"({args.processes} process(es) of {args.threads} thread(s))", flush=True)
        vouchers_per_s = issue_all(app, env, args.workers, args.claims, fork=False, limit=300)
        print(f"issuing: {args.workers} worker(s), no fork: {vouchers_per_s:,.1f} vouchers/s",
              flush=True)
        figures.update(claims_per_s=round(claims_per_s, 1),
                       vouchers_per_s=round(vouchers_per_s, 1),
                       ratio=round(vouchers_per_s / claims_per_s, 3),
                       keeps_up=vouchers_per_s >= claims_per_s, claims=args.claims,
                       workers=args.workers, processes=args.processes, threads=args.threads)
        if args.fork_claims:
            claim_all(config, offer_id, members[args.claims:total], args.processes, args.threads)
            forked_per_s = issue_all(app, env, args.workers, args.fork_claims, fork=True,
                                     limit=300)
            print(f"issuing: {args.workers} worker(s) forking a horse per job: "
                  f"{forked_per_s:,.1f} vouchers/s", flush=True)
            figures.update(forked_vouchers_per_s=round(forked_per_s, 1),
                           fork_claims=args.fork_claims)
        check(app, connection, prefix)
    finally:
        for key in connection.scan_iter(f"rq:*{prefix}*"):
            connection.delete(key)
        drop_database(admin, url)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
