"""Residents' API through gunicorn on a large scheme, against bare Flask in the same run.

    python bench/api.py [--database-url URL] [--members 100000] [--actions 1000000]
                        [--workers 4] [--seconds 8] [--rounds 4] [--mixed] [--keep]

Makes its own database (rewards_bench_<random>), migrates it, and loads a scheme's
history straight into PostgreSQL with generate_series (not through the API): members
with their accounts, `--actions` bus taps with their awards, earn postings and lines
over the last 700 days, a live catalogue, issued vouchers for a partner's till, and
members with travel cards for a source. Then it starts gunicorn with the project's
settings (rewards/gunicorn_conf.py, `--workers` sync workers) and beside it a bare Flask
app under the same gunicorn settings (one GET and one POST route answering small JSON),
and drives each endpoint with bench/httpload.py from this process:

- closed loop (`--concurrency` clients back to back, `--seconds`): requests a second,
  compared with bare Flask's GET (reads) or POST (writes) measured in turns with it
  (`--rounds` turns each within `--seconds`: the machine's load drifts, and a ratio
  should weigh the same load on both);
- open loop at half that rate: p50 and p99 latency, counted from when each request
  was due.

`--mixed` adds a run of all of them together at a fixed rate in a resident-heavy mix
(balance, offers, actions, ledger, claims, redemptions, source batches of 20 taps).
Afterwards `rewards ledger verify` must pass on the database. The last line printed is
one JSON object with the figures."""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from api_scheme import build  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from httpload import Request, Result, closed_loop, open_loop, request_bytes  # noqa: E402
from pgdb import create_database, drop_database  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SECRET_KEY = "bench-secret-key-at-least-32-bytes-long-" + "x" * 8
IDENTIFIER_KEY = "bench-identifier-key"
READS = ("balance", "ledger", "actions", "offers")
WRITES = ("claims", "redemptions")
# The mixed run's shares: what a resident app's traffic looks like, with the tills and
# one transport feed posting alongside.
MIX = (("balance", 30), ("offers", 20), ("actions", 15), ("ledger", 10), ("claims", 8),
       ("redemptions", 10), ("sources", 7), ("dashboard", 2))


def bare_app() -> Flask:
    """The baseline: Flask and JSON with nothing else, served the same way."""
    app = Flask("bare")

    @app.get("/bare")
    def read() -> Any:
        return jsonify({"available": 120, "pending": 0, "lifetime_earned": 480})

    @app.post("/bare")
    def write() -> Any:
        body = request.get_json()
        return jsonify({"received": body}), 201

    return app


# -- requests -----------------------------------------------------------------------------

class Requests:
    """Endless streams of prepared requests for each endpoint; a voucher code is used
    once, a member's token goes round (each member can claim several times)."""

    def __init__(self, scheme: dict[str, Any], rng: random.Random) -> None:
        self.scheme = scheme
        self.rng = rng
        self.codes = iter(scheme["codes"])
        self.batch = 0

    def _member(self, method: str, path: str, body: bytes = b"") -> bytes:
        headers = {"Authorization": f"Bearer {self.rng.choice(self.scheme['tokens'])}"}
        if body:
            headers["Content-Type"] = "application/json"
        return request_bytes(method, path, headers, body)

    def make(self, endpoint: str) -> Request | None:
        if endpoint == "balance":
            return endpoint, self._member("GET", "/v1/me/balance"), 200
        if endpoint == "ledger":
            return endpoint, self._member("GET", "/v1/me/ledger?page_size=20"), 200
        if endpoint == "actions":
            return endpoint, self._member("GET", "/v1/me/actions?page_size=20"), 200
        if endpoint == "offers":
            return endpoint, self._member("GET", "/v1/offers"), 200
        if endpoint == "claims":
            body = json.dumps({"offer_id": self.scheme["claim_offer"]}).encode()
            return endpoint, self._member("POST", "/v1/me/rewards", body), 202
        if endpoint == "redemptions":
            code = next(self.codes, None)
            if code is None:
                return None
            body = json.dumps({"code": code}).encode()
            return endpoint, request_bytes("POST", "/v1/partner/redemptions", {
                "X-Api-Key": self.scheme["till_key"], "Content-Type": "application/json"},
                body), 201
        if endpoint == "sources":
            return endpoint, self._source_batch(20), 200
        if endpoint == "dashboard":  # a council analyst looking at one figure
            path = f"/v1/admin/dashboard/{self.rng.choice(self.scheme['figures'])}"
            return endpoint, request_bytes("GET", path, {
                "Authorization": f"Bearer {self.scheme['staff_token']}"}), 200
        raise ValueError(endpoint)

    def _source_batch(self, size: int) -> bytes:
        from rewards.security import signature_header

        self.batch += 1
        moment = datetime.now(UTC) - timedelta(minutes=30)
        cards = self.scheme["cards"]
        items = [{"external_ref": f"live-{self.batch}-{n}",
                  "member": {"kind": "travel_card", "number": self.rng.choice(cards)},
                  "type": "bus_journey", "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "attributes": {"route": "4", "distance_km": 3.2}} for n in range(size)]
        body = json.dumps({"items": items}).encode()
        return request_bytes("POST", "/v1/source/actions", {
            "X-Api-Key": self.scheme["source_key"], "Content-Type": "application/json",
            "X-Signature": signature_header(self.scheme["secret"], body)}, body)

    def stream(self, endpoint: str, count: int) -> list[Request]:
        made = (self.make(endpoint) for _ in range(count))
        return [item for item in made if item is not None]

    def mixed(self, count: int) -> list[Request]:
        labels = self.rng.choices([name for name, _ in MIX], [w for _, w in MIX], k=count)
        made = (self.make(label) for label in labels)
        return [item for item in made if item is not None]


def bare_requests(count: int) -> tuple[list[Request], list[Request]]:
    body = json.dumps({"offer_id": str(uuid.uuid4())}).encode()
    get = ("bare_get", request_bytes("GET", "/bare", {"Authorization": "Bearer x"}), 200)
    post = ("bare_post", request_bytes("POST", "/bare", {"Content-Type": "application/json"},
                                       body), 201)
    return [get] * count, [post] * count


# -- servers ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """gunicorn with the project's settings, serving `app` on a free port."""

    def __init__(self, app: str, workers: int, env: dict[str, str]) -> None:
        self.port = free_port()
        command = [str(Path(sys.executable).parent / "gunicorn"), "--config",
                   "python:rewards.gunicorn_conf", "--workers", str(workers), "--bind",
                   f"127.0.0.1:{self.port}", "--pythonpath", str(HERE), "--log-level",
                   "warning", app]
        self.process = subprocess.Popen(command, env={**os.environ, **env},
                                        cwd=str(HERE.parent))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(1.0)  # every worker booted, not just the arbiter listening
                return
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(
                        f"gunicorn exited with {self.process.returncode}") from None
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def alternating(bare: Gunicorn, baseline: list[Request], server: Gunicorn,
                requests: list[Request], concurrency: int, seconds: float,
                rounds: int) -> tuple[Any, Any, Any]:
    """Bare Flask and the endpoint flat out in turns, `rounds` times each for
    `seconds / rounds` (a drifting load weighs on both alike), then the endpoint at
    half its rate: (bare, flat out, paced), the turns' results added up."""
    closed_loop(bare.port, iter(baseline[:200]), concurrency, 60)
    closed_loop(server.port, iter(requests[:200]), concurrency, 60)
    label, bare_label = requests[0][0], baseline[0][0]
    rest = iter(requests[200:])
    bare_parts, parts = [], []
    for _ in range(rounds):
        bare_parts.append(closed_loop(bare.port, iter(baseline), concurrency,
                                      seconds / rounds).get(bare_label, Result()))
        parts.append(closed_loop(server.port, rest, concurrency,
                                 seconds / rounds).get(label, Result()))
    flat_out = added(parts)
    paced = open_loop(server.port, rest, max(flat_out.rate / 2, 1), seconds)
    return added(bare_parts), flat_out, paced.get(label)


def added(parts: list[Any]) -> Any:
    total = Result()
    for part in parts:
        total.seconds += part.seconds
        total.latencies.extend(part.latencies)
        for status, count in part.errors.items():
            total.errors[status] = total.errors.get(status, 0) + count
        total.samples.extend(part.samples[:1])
    return total


def describe(name: str, flat_out: Any, paced: Any, bare: float) -> dict[str, Any]:
    ratio = flat_out.rate / bare if bare else 0.0  # bare: measured just before
    figures = {"per_s": round(flat_out.rate, 1), "ratio": round(ratio, 4),
               "p50_ms_flat_out": round(flat_out.percentile_ms(0.5), 2),
               "paced_per_s": round(paced.rate, 1) if paced else 0,
               "p50_ms": round(paced.percentile_ms(0.5), 2) if paced else None,
               "p99_ms": round(paced.percentile_ms(0.99), 2) if paced else None,
               "errors": flat_out.error_count + (paced.error_count if paced else 0)}
    samples = flat_out.samples + (paced.samples if paced else [])
    figures["bare_flask_per_s"] = round(bare, 1)
    print(f"{name:12s} {figures['per_s']:8.1f}/s  {ratio:6.1%} of bare ({bare:,.0f}/s)  "
          f"at half rate: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
          f"errors {figures['errors']} {samples[:1]}", flush=True)
    return figures


def half_capacity(results: dict[str, Any]) -> float:
    """Half the requests a second the server could take in the mixed proportions, from
    each endpoint's flat-out rate (a source batch counted as twice a claim)."""
    rates = {name: figures["per_s"] for name, figures in results.items() if figures["per_s"]}
    rates.setdefault("sources", rates.get("claims", 20) / 2)
    shares = [(weight, rates[name]) for name, weight in MIX if name in rates]
    total = sum(weight for weight, _ in shares)
    seconds_a_request = sum(weight / total / rate for weight, rate in shares)
    return max(1.0, 0.5 / seconds_a_request)


def verify_with_cli(url: str) -> bool:
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY,
           "IDENTIFIER_KEY": IDENTIFIER_KEY, "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "rewards"), "ledger", "verify"],
                          env=env, capture_output=True, text=True)
    print(f"rewards ledger verify: exit {done.returncode} "
          f"({time.perf_counter() - started:.1f} s) {done.stdout.strip()[-300:]}", flush=True)
    return done.returncode == 0


def clear_queues(redis_url: str, prefix: str) -> None:
    """Drop the jobs the claims queued under this run's prefix (no worker ran them)."""
    from redis import Redis
    from rq import Queue

    connection = Redis.from_url(redis_url)
    for name in connection.smembers("rq:queues"):
        queue_name = name.decode().removeprefix("rq:queue:")
        if queue_name.startswith(prefix):
            Queue(queue_name, connection=connection).delete(delete_jobs=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1),
                        help="gunicorn sync workers (default: two per CPU)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="clients at once in the closed loop (default: 2 per worker)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4,
                        help="turns of bare Flask and the endpoint within --seconds")
    parser.add_argument("--mixed", action="store_true", help="also run the mixed traffic")
    parser.add_argument("--mixed-rate", type=float, default=0,
                        help="requests a second in the mixed run (default: half what the "
                             "endpoints' flat-out rates allow in the mix)")
    parser.add_argument("--only", help="comma-separated endpoints to measure")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    concurrency = args.concurrency or 2 * args.workers
    rng = random.Random(2026)
    url, admin = create_database(args.database_url)
    print(f"database {make_url(url).database}", flush=True)
    prefix = f"bench{secrets.token_hex(3)}_"
    env = {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "IDENTIFIER_KEY": IDENTIFIER_KEY,
           "REDIS_URL": args.redis_url, "RQ_QUEUE_PREFIX": prefix, "LOG_LEVEL": "WARNING",
           # The bench's one till key stands for a city's tills: its limit is still
           # counted on every redemption (in Redis), never reached.
           "RATE_LIMIT_REDEEM": "1000000 per minute"}
    endpoints = [name for name in READS + WRITES
                 if not args.only or name in args.only.split(",")]
    results: dict[str, Any] = {}
    mixed: dict[str, Any] = {}
    sources_rate = None
    bare_rates: dict[str, list[float]] = {}
    try:
        from rewards import create_app
        from rewards.extensions import db
        from rewards.migrate import upgrade

        upgrade(url)
        # Access tokens that outlast the run (--mixed on a million actions: ~15 min).
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None,
                          "SECRET_KEY": SECRET_KEY, "IDENTIFIER_KEY": IDENTIFIER_KEY,
                          "LOG_LEVEL": "WARNING", "ACCESS_TOKEN_TTL": 4 * 3600,
                          "STAFF_TOKEN_TTL": 4 * 3600})
        budget = int(args.seconds * 2000) + 2000
        with app.app_context():
            started = time.perf_counter()
            scheme = build(args.members, args.actions, vouchers=budget * 3, carded=2000)
            print(f"loaded {args.members:,} members, {args.actions:,} actions "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            db.session.remove()
            db.engine.dispose()
        made = Requests(scheme, rng)
        print(f"gunicorn: {args.workers} sync workers, rewards/gunicorn_conf.py; client: "
              f"asyncio in one process, {concurrency} at once, new connection a request",
              flush=True)
        bare_get, bare_post = bare_requests(budget)
        bare = Gunicorn("api:bare_app()", args.workers, env)
        server = Gunicorn("rewards:create_app()", args.workers, env)
        try:
            for name in endpoints:
                # Bare Flask in turns with each endpoint: on a shared machine the load
                # changes from minute to minute, and a ratio should not span two loads.
                baseline = bare_get if name in READS else bare_post
                stream = made.stream(name, budget)
                flat_bare, flat_out, paced = alternating(bare, baseline, server, stream,
                                                         concurrency, args.seconds,
                                                         args.rounds)
                bare_rates.setdefault("GET" if name in READS else "POST", []).append(
                    flat_bare.rate)
                results[name] = describe(name, flat_out, paced, flat_bare.rate)
            if args.mixed:
                if "sources" not in results:
                    # A source batch's own rate, for the mix's capacity (not a figure
                    # with an aim: a batch is twenty actions, see bench/ingest.py).
                    batches = made.stream("sources", budget // 10)
                    sources_rate = added(list(closed_loop(
                        server.port, iter(batches), concurrency, args.seconds / 2).values())).rate
                    print(f"sources         {sources_rate:,.1f}/s flat out (batches of 20)",
                          flush=True)
                    results_for_mix = {**results, "sources": {"per_s": sources_rate}}
                else:
                    results_for_mix = results
                rate = args.mixed_rate or half_capacity(results_for_mix)
                stream = made.mixed(int(rate * args.seconds * 2) + 10)
                print(f"mixed at {rate:,.0f} requests/s for {args.seconds * 2:.0f} s:",
                      flush=True)
                for label, result in sorted(open_loop(server.port, iter(stream), rate,
                                                      args.seconds * 2).items()):
                    mixed[label] = result.summary()
                    print(f"  {label:12s} {mixed[label]}", flush=True)
        finally:
            server.stop()
            bare.stop()
        verify_ok = verify_with_cli(url)
    finally:
        try:
            clear_queues(args.redis_url, prefix)
        except Exception as error:  # a bench without Redis still reports
            print(f"could not clear the bench's queues: {error}")
        if args.keep:
            print(f"kept database {make_url(url).database}")
        else:
            drop_database(admin, url)

    reads = [results[n]["ratio"] for n in READS if n in results]
    writes = [results[n]["ratio"] for n in WRITES if n in results]
    summary = {
        "endpoints": results,
        "bare_flask_get_per_s": [round(rate, 1) for rate in bare_rates.get("GET", [])],
        "bare_flask_post_per_s": [round(rate, 1) for rate in bare_rates.get("POST", [])],
        "reads_ratio_min": min(reads) if reads else None,
        "writes_ratio_min": min(writes) if writes else None,
        "p99_ms_max": max((r["p99_ms"] or 0) for r in results.values()) if results else None,
        "errors": sum(r["errors"] for r in results.values())
        + sum(m["errors"] for m in mixed.values()),
        "verify_ok": verify_ok,
        "mixed": mixed,
        "mixed_sources_batches_per_s": sources_rate,
        "members": args.members, "actions": args.actions, "workers": args.workers,
        "concurrency": concurrency, "seconds": args.seconds, "rounds": args.rounds,
    }
    print(f"reads at least {summary['reads_ratio_min'] or 0:.1%} of bare Flask (aim 30%), writes "
          f"at least {summary['writes_ratio_min'] or 0:.1%} (aim 15%), p99 at most "
          f"{summary['p99_ms_max']} ms (aim 50), errors {summary['errors']}, verify "
          f"{'clean' if verify_ok else 'FAILED'}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
