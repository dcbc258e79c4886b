"""Redemption throughput: vouchers redeemed through POST /v1/partner/redemptions (a
till's API key, the code in a JSON body; the app checks the key, finds the voucher,
redeems it exactly once and records what the council owes) on PostgreSQL, against a
bare Flask app with one POST route that only parses the JSON, in the same run and the
same way: Flask's test client (the whole WSGI app, no network) in P processes (as
gunicorn runs P workers; default one per CPU) of T threads each (tills at once).

    python bench/redeem.py [--database-url URL] [--redemptions N] [--processes P]
                           [--threads T]

Makes its own database (rewards_bench_<random>) from the URL, migrates it, creates a
partner, an offer and members each holding issued vouchers, and drops the database at
the end. The last line printed is one JSON object with the figures."""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, jsonify, request  # noqa: E402
from pgdb import create_database, drop_database  # bench/pgdb.py, beside this file
from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from rewards import create_app  # noqa: E402
from rewards.extensions import db  # noqa: E402
from rewards.models import Member, Offer, Partner, Redemption, Reward  # noqa: E402
from rewards.security import api_key_hash, new_api_key  # noqa: E402
from rewards.vouchers import new_voucher_code  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WARM_UP = 300


def build(count: int, members: int) -> tuple[str, list[str]]:
    """A partner (its till key), one offer, and `count` issued vouchers spread over
    `members` members: what a month of claims leaves behind. Rows go in directly:
    claiming and issuing are not what is measured."""
    session = db.session
    now = datetime.now(UTC)
    key = new_api_key("ptn")
    partner = Partner(id=uuid.uuid4(), name="Laynes Espresso", kind="business",
                      api_key_hash=api_key_hash(key))
    session.add(partner)
    offer = Offer(id=uuid.uuid4(), partner_id=partner.id, title="Any hot drink", cost_points=80,
                  value_pence=250, status="live")
    session.add(offer)
    session.flush()
    member_ids = [uuid.uuid4() for _ in range(members)]
    session.execute(insert(Member), [
        {"id": mid, "email": f"bench{n:06d}@example.org", "locale": "en", "joined_at": now,
         "created_at": now, "pin_failures": 0}
        for n, mid in enumerate(member_ids)])
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(new_voucher_code())
    ordered = sorted(codes, key=lambda _: secrets.randbits(32))
    rows = [{"id": uuid.uuid4(), "member_id": member_ids[n % members], "offer_id": offer.id,
             "status": "issued", "cost_points": 80, "code": code, "issued_at": now,
             "expires_at": now + timedelta(days=30), "created_at": now}
            for n, code in enumerate(ordered)]
    for start in range(0, len(rows), 5000):
        session.execute(insert(Reward), rows[start:start + 5000])
    session.commit()
    session.execute(text("ANALYZE"))
    session.commit()
    return key, ordered


def bare_flask() -> Flask:
    app = Flask("bare")

    @app.post("/redeem")
    def redeem() -> Any:
        body = request.get_json()
        return jsonify({"code": body["code"], "redeemed": True}), 201

    return app


def _run_share(app_factory: Any, path: str, headers: dict[str, str], codes: list[str],
               warm: list[str], threads: int, expect: int, ready: Any, go: Any,
               results: Any) -> None:
    """One process: build the app, warm it up, wait for the start, report failures."""
    app = app_factory()
    shares = [codes[i::threads] for i in range(threads)]
    failures: list[str] = []
    clients = [app.test_client() for _ in shares]
    for code in warm:  # compiled SQL, pooled connections: what a running server has
        clients[0].post(path, json={"code": code}, headers=headers)

    def run(client: Any, share: list[str]) -> None:
        for code in share:
            response = client.post(path, json={"code": code}, headers=headers)
            if response.status_code != expect:
                failures.append(f"{response.status_code} {response.get_data()[:200]!r}")

    workers = [threading.Thread(target=run, args=pair) for pair in zip(clients, shares,
                                                                      strict=True)]
    ready.release()
    go.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(failures[:3])


def timed(app_factory: Any, path: str, headers: dict[str, str], codes: list[str],
          processes: int, threads: int, expect: int, warm: list[str] | None = None) -> float:
    """Requests per second: `codes` split over `processes` forked processes of
    `threads` threads, each thread with its own test client, all started together;
    the clock runs from the start until the last one finishes."""
    context = multiprocessing.get_context("fork")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    warm = warm or []
    children = [context.Process(target=_run_share, args=(
        app_factory, path, headers, codes[i::processes], warm[i::processes], threads, expect,
        ready, go, results)) for i in range(processes)]
    for child in children:
        child.start()
    for _ in children:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    failures = [results.get() for _ in children]
    elapsed = time.perf_counter() - started
    for child in children:
        child.join()
    problems = [problem for batch in failures for problem in batch]
    if problems or any(child.exitcode for child in children):
        raise SystemExit(f"requests failed, e.g. {problems[:1]}")
    return len(codes) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redemptions", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=5_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="server processes, as gunicorn workers (default: one per CPU)")
    parser.add_argument("--threads", type=int, default=2,
                        help="tills at once in each process (threads, each its own client)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        raise SystemExit("--database-url must be a PostgreSQL URL")

    url, admin = create_database(args.database_url)
    print(f"database {make_url(url).database}", flush=True)
    try:
        from rewards.migrate import upgrade

        upgrade(url)
        config = {
            "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "SMTP_URL": None,
            "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-key-at-least-32-bytes-long",
            "IDENTIFIER_KEY": "bench-identifier-key",
            "RATELIMIT_ENABLED": False,  # measures redemption, not the per-till limit
        }
        app = create_app(config)
        with app.app_context():
            started = time.perf_counter()
            key, codes = build(args.redemptions + WARM_UP, args.members)
            print(f"{len(codes):,} issued vouchers of {args.members:,} members "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
        warm, measured = codes[:WARM_UP], codes[WARM_UP:]
        headers = {"X-Api-Key": key}
        db.session.remove()
        db.engine.dispose()  # the forked processes open their own connections

        def rewards_app() -> Flask:
            return create_app(config)

        gc.collect()
        redemptions_per_s = timed(rewards_app, "/v1/partner/redemptions", headers, measured,
                                  args.processes, args.threads, 201, warm)
        print(f"redeem: {len(measured):,} redemptions, {args.processes} process(es) of "
              f"{args.threads} thread(s): {redemptions_per_s:,.0f} redemptions/s", flush=True)
        bare_per_s = timed(bare_flask, "/redeem", headers, measured, args.processes,
                           args.threads, 201, warm)
        print(f"bare Flask (JSON in, JSON out, nothing else), the same way: "
              f"{bare_per_s:,.0f} requests/s", flush=True)

        # Exactly once: every code redeemed, one standing redemption each, and a second
        # try of a sample refused.
        again = timed(rewards_app, "/v1/partner/redemptions", headers, measured[:500], 1, 1,
                      409)
        with app.app_context():
            standing = db.session.scalar(select(func.count(Redemption.id))
                                         .where(Redemption.undone_at.is_(None)))
            left = db.session.scalar(select(func.count(Reward.id))
                                     .where(Reward.status == "issued"))
            owed = db.session.scalar(select(func.sum(Redemption.value_pence)))
            db.session.commit()
        if standing != len(codes) or left != 0:
            raise SystemExit(f"expected {len(codes)} redemptions and no voucher left, found "
                             f"{standing} and {left}")
        print(f"checked: {standing:,} redemptions, none twice (repeats refused at "
              f"{again:,.0f}/s), £{owed / 100:,.2f} owed", flush=True)
    finally:
        if args.keep:
            print(f"kept database {make_url(url).database}")
        else:
            drop_database(admin, url)

    ratio = redemptions_per_s / bare_per_s
    print(f"ratio: redeeming runs at {ratio:.1%} of bare Flask (aim: at least 1,000/s)")
    print(json.dumps({
        "redemptions_per_s": round(redemptions_per_s),
        "bare_flask_per_s": round(bare_per_s),
        "ratio": round(ratio, 4),
        "redemptions": len(measured),
        "processes": args.processes,
        "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
