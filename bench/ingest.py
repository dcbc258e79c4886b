"""Ingest throughput: signed batches of 1,000 actions through POST /v1/source/actions
into PostgreSQL (validate, dedupe, evaluate the rules, post to the ledger), against a
raw `COPY` of the same rows into a bare table, measured in the same run.

    python bench/ingest.py [--database-url URL] [--members N] [--batches N] [--processes N]

Makes its own database (rewards_bench_<random>) from the URL, migrates it, builds a
Leeds-like scheme (the demo's action types and rules plus a budgeted campaign, one
source, members with linked travel cards), and drops the database at the end. The
last line printed is one JSON object with the figures."""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest_parts import (  # bench/ingest_parts.py, beside this file
    Awarders,
    Phases,
    measure_ceiling,
)
from pgdb import create_database, drop_database  # bench/pgdb.py, beside this file
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from rewards import create_app  # noqa: E402
from rewards.demo import ACTION_TYPES, BUS_ROUTES, CENTRES, RAIL_TRIPS, RULES  # noqa: E402
from rewards.extensions import db  # noqa: E402
from rewards.ledger import ensure_member_accounts, verify  # noqa: E402
from rewards.members import card_hash  # noqa: E402
from rewards.models import (  # noqa: E402
    Action,
    ActionType,
    Award,
    Identifier,
    Member,
    Posting,
    PostingLine,
    Rule,
    RuleVersion,
    Source,
)
from rewards.security import api_key_hash, new_api_key, signature_header  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BATCH_SIZE = 1000
TZ = ZoneInfo("Europe/London")

# (type, share of actions): mostly bus taps, as a transport operator's feed would be.
MIX = (
    ("bus_journey", 0.60), ("train_journey", 0.12), ("cycle_hire", 0.06),
    ("leisure_visit", 0.08), ("volunteering_hour", 0.04), ("recycling_drop", 0.09),
    ("home_insulation", 0.01),
)
WARDS = ("Gipton & Harehills", "Headingley & Hyde Park", "Roundhay", "Armley", "Pudsey",
         "Killingbeck & Seacroft", "Kirkstall", "Morley North")


@dataclass
class Scheme:
    source_id: uuid.UUID
    api_key: str
    signing_secret: str
    type_ids: dict[str, uuid.UUID]
    cards: list[tuple[str, uuid.UUID]]  # (card number, member id)
    rules: int


# -- database -----------------------------------------------------------------------------

INGEST_TABLES = ("actions", "awards", "postings", "posting_lines")


def drop_foreign_keys(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in INGEST_TABLES:
            for (name,) in connection.execute(text(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = CAST(:table AS regclass) AND contype = 'f'"), {"table": table}):
                connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    engine.dispose()
    print(f"dropped the foreign keys of {', '.join(INGEST_TABLES)} (diagnosis, not a real setup)")


# -- scheme -------------------------------------------------------------------------------

def build_scheme(members: int, rng: random.Random) -> Scheme:
    session = db.session
    now = datetime.now(UTC)
    types = {}
    for code, name, category, description in ACTION_TYPES:
        action_type = ActionType(code=code, name=name, category=category,
                                 description=description)
        session.add(action_type)
        types[code] = action_type
    rule_defs = [(r.name, r.action_types, r.condition, r.points, r.caps, r.points_caps,
                  None, None, r.priority, r.stackable, r.hold_days) for r in RULES]
    # A campaign with a window and a budget: every batch takes its row lock.
    rule_defs.append(("Clean Air fortnight", ("bus_journey", "cycle_hire"),
                      "action.weekday <= 5", "5", {"per_day": 2}, {},
                      now + timedelta(days=7), 50_000_000, 0, True, 0))
    for (name, codes, condition, points, caps, points_caps, ends_at, budget, priority,
         stackable, hold_days) in rule_defs:
        rule = Rule(id=uuid.uuid4(), name=name, current_version=1)
        session.add(rule)
        session.add(RuleVersion(
            rule_id=rule.id, version=1, name=name, action_types=list(codes),
            condition=condition, points=points, caps=dict(caps), points_caps=dict(points_caps),
            starts_at=now - timedelta(days=30), ends_at=ends_at, budget_points=budget,
            priority=priority, stackable=stackable, hold_days=hold_days, status="active"))
    api_key = new_api_key("src")
    signing_secret = secrets.token_hex(32)
    source = Source(name="West Yorkshire travel and leisure feed",
                    api_key_hash=api_key_hash(api_key), signing_secret=signing_secret,
                    action_types=list(types))
    session.add(source)
    session.flush()

    cards = []
    for n in range(members):
        member = Member(id=uuid.uuid4(), email=f"bench{n:06d}@example.org",
                        ward=rng.choice(WARDS),
                        joined_at=now - timedelta(days=rng.randint(30, 400)))
        session.add(member)
        ensure_member_accounts(session, member.id)
        number = f"6335{n:012d}"
        session.add(Identifier(member_id=member.id, kind="travel_card",
                               number_hash=card_hash("travel_card", number), last4=number[-4:]))
        cards.append((number, member.id))
        if n % 2000 == 1999:
            session.flush()
    session.commit()
    return Scheme(source.id, api_key, signing_secret,
                  {code: t.id for code, t in types.items()}, cards, len(rule_defs))


# -- actions ------------------------------------------------------------------------------

def attributes_for(type_code: str, rng: random.Random) -> dict[str, Any]:
    if type_code == "bus_journey":
        return {"route": rng.choice(BUS_ROUTES), "distance_km": round(rng.uniform(1, 15), 1)}
    if type_code == "train_journey":
        origin, destination, km = rng.choice(RAIL_TRIPS)
        return {"from": origin, "to": destination, "distance_km": km}
    if type_code == "cycle_hire":
        return {"dock": f"LDS-{rng.randint(1, 80):03d}", "minutes": rng.randint(5, 60)}
    if type_code == "leisure_visit":
        return {"centre": rng.choice(CENTRES), "activity": "swim"}
    if type_code == "volunteering_hour":
        return {"hours": rng.choice((1, 1.5, 2, 3)), "organisation": "Leeds Mind"}
    if type_code == "recycling_drop":
        return {"site": "Kirkstall Road", "kg": rng.randint(2, 25)}
    return {"measure": "loft insulation", "certificate": f"TM-{rng.randint(100000, 999999)}"}


def make_items(count: int, scheme: Scheme, days: int, rng: random.Random,
               run: str) -> list[tuple[dict[str, Any], uuid.UUID]]:
    """(batch item, the member it is for): random members, times in the last `days`
    days between 06:00 and 23:00 London time, none in the future."""
    codes = [code for code, _ in MIX]
    weights = [share for _, share in MIX]
    latest = datetime.now(UTC) - timedelta(minutes=10)
    today = latest.astimezone(TZ).date()
    items = []
    for n in range(count):
        card, member_id = rng.choice(scheme.cards)
        type_code = rng.choices(codes, weights)[0]
        day = today - timedelta(days=rng.randrange(days))
        moment = datetime(day.year, day.month, day.day, rng.randint(6, 22), rng.randint(0, 59),
                          rng.randint(0, 59), tzinfo=TZ).astimezone(UTC)
        if moment > latest:
            moment = latest - timedelta(hours=rng.randint(1, 12))
        items.append(({
            "external_ref": f"bench-{run}-{n:08d}",
            "member": {"kind": "travel_card", "number": card},
            "type": type_code,
            "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "attributes": attributes_for(type_code, rng),
        }, member_id))
    return items


# -- the two measurements -----------------------------------------------------------------

def run_ingest(app: Any, scheme: Scheme, bodies: list[bytes],
               profile: str | None) -> tuple[float, dict[str, int], int]:
    client = app.test_client()
    statuses: dict[str, int] = {}
    points = 0
    answers = []
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for raw in bodies:
        response = client.post("/v1/source/actions", data=raw, content_type="application/json",
                               headers={"X-Api-Key": scheme.api_key,
                                        "X-Signature": signature_header(scheme.signing_secret,
                                                                        raw)})
        answers.append(response)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    for response in answers:
        if response.status_code != 200:
            raise SystemExit(f"batch refused: {response.status_code} {response.get_data()[:300]!r}")
        for result in json.loads(response.get_data())["results"]:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            points += result.get("points") or 0
    return elapsed, statuses, points


def _ingest_process(config: dict[str, Any], scheme: Scheme, bodies: list[bytes],
                    start: Any, results: Any) -> None:
    """One of --processes: its own app (own connections), its share of the batches,
    sent once every process is ready."""
    app = create_app(config)
    results.put("ready")
    start.wait()
    try:
        elapsed, statuses, points = run_ingest(app, scheme, bodies, None)
        results.put((time.monotonic(), statuses, points))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which stops
        results.put((None, {"error": 1}, str(error)[:300]))


def run_processes(config: dict[str, Any], scheme: Scheme, bodies: list[bytes],
                  processes: int, at_start: Any = None) -> tuple[float, dict[str, int], int]:
    """The batches dealt round-robin to `processes` forked processes posting at the
    same time; elapsed from the common start until the last process finished.
    `at_start(moment)` is called at that start (the award workers start with them)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_ingest_process,
                               args=(config, scheme, bodies[n::processes], start, results))
               for n in range(processes)]
    for worker in workers:
        worker.start()
    for _ in workers:
        if results.get(timeout=300) != "ready":
            raise SystemExit("an ingest process failed to start")
    started = time.monotonic()
    if at_start is not None:
        at_start(started)
    start.set()
    finished, statuses, points = started, {}, 0
    for _ in workers:
        ended, counted, earned = results.get(timeout=3600)
        if ended is None:
            raise SystemExit(f"an ingest process failed: {earned}")
        finished = max(finished, ended)
        for status, count in counted.items():
            statuses[status] = statuses.get(status, 0) + count
        points += earned
    for worker in workers:
        worker.join()
    return finished - started, statuses, points


COPY_TABLE = """CREATE {unlogged} TABLE bench_copy (
    id uuid, source_id uuid, external_ref varchar(200), member_id uuid,
    action_type_id uuid, type_code varchar(64), occurred_at timestamptz, attributes jsonb)"""


def run_copy(url: str, rows: list[tuple[Any, ...]], unlogged: bool) -> float:
    """Rows per second for a bare COPY of `rows`, one stream in one transaction."""
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute(COPY_TABLE.format(unlogged="UNLOGGED" if unlogged else ""))
        connection.commit()
        columns = ("id, source_id, external_ref, member_id, action_type_id, type_code, "
                   "occurred_at, attributes")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        connection.commit()
        elapsed = time.perf_counter() - started
        copied = connection.execute("SELECT count(*) FROM bench_copy").fetchone()[0]
    if copied != len(rows):
        raise SystemExit(f"COPY stored {copied} rows of {len(rows)}")
    return len(rows) / elapsed


def check_database(expected: int) -> dict[str, int]:
    session = db.session
    counts = {name: int(session.scalar(select(func.count()).select_from(model)) or 0)
              for name, model in (("actions", Action), ("awards", Award),
                                  ("postings", Posting), ("posting_lines", PostingLine))}
    if counts["actions"] != expected:
        raise SystemExit(f"expected {expected} actions rows, found {counts['actions']}")
    problems = verify(session)
    if problems:
        print(f"ledger is not sound: {problems[:5]}", file=sys.stderr, flush=True)
    counts["verify_problems"] = len(problems)
    pending = int(session.scalar(
        select(func.count()).select_from(Action).where(Action.status == "pending")) or 0)
    if pending:
        raise SystemExit(f"{pending} actions were never awarded")
    counts["flagged"] = int(session.scalar(
        select(func.count()).select_from(Action).where(Action.status == "flagged")) or 0)
    awarded = int(session.scalar(select(func.coalesce(func.sum(Award.points), 0))) or 0)
    issued = int(session.scalar(
        select(func.coalesce(func.sum(PostingLine.points), 0)).where(PostingLine.points > 0)
    ) or 0)
    if awarded != issued:
        raise SystemExit(f"awards total {awarded} but the ledger credited {issued}")
    session.commit()
    counts["points"] = awarded
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--days", type=int, default=7,
                        help="actions fall in the last DAYS days (fewer days: more caps hit)")
    parser.add_argument("--unlogged", action="store_true",
                        help="COPY into an UNLOGGED table (the actions table is logged)")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the ingest loop, write stats to FILE, print the top")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() once the app is built, as a server process can "
                             "(gunicorn post_fork): full collections then skip startup objects")
    parser.add_argument("--phases", action="store_true",
                        help="diagnosis: print (and add to the JSON) milliseconds a batch "
                             "spent in each main step, COPY split into Python and server")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--ceiling", action="store_true",
                        help="after the run, write the same rows again by PostgreSQL alone "
                             "(INSERT ... SELECT, no Python per action): what the row shape "
                             "can take, against the same COPY baseline")
    parser.add_argument("--processes", type=int, default=1,
                        help="ingest processes posting at once, each with its own app and "
                             "connections, the batches dealt among them")
    parser.add_argument("--awarding", choices=("inline", "deferred"), default="inline",
                        help="inline: each request awards its batch (the default setting); "
                             "deferred: requests record and queue, --award-processes "
                             "workers award; timed until the last point is in the ledger")
    parser.add_argument("--profile-awards", metavar="FILE",
                        help="with --awarding deferred: cProfile the first award worker")
    parser.add_argument("--award-processes", type=int, default=1,
                        help="with --awarding deferred: award workers running at once")
    parser.add_argument("--without-foreign-keys", action="store_true",
                        help="diagnosis only: drop the foreign keys of the four tables ingest "
                             "writes, to measure what their per-row checks cost")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        raise SystemExit("--database-url must be a PostgreSQL URL")

    rng = random.Random(2026)
    run = secrets.token_hex(3)
    url, admin = create_database(args.database_url)
    print(f"database {make_url(url).database}", flush=True)
    try:
        from rewards.migrate import upgrade

        upgrade(url)
        if args.without_foreign_keys:
            drop_foreign_keys(url)
        config = {
            "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "SMTP_URL": None,
            "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-key-at-least-32-bytes-long",
            "IDENTIFIER_KEY": "bench-identifier-key",
            "AWARDING": args.awarding, "AWARDING_JOBS": False,
        }
        app = create_app(config)
        with app.app_context():
            started = time.perf_counter()
            scheme = build_scheme(args.members, rng)
            print(f"scheme: {len(scheme.type_ids)} action types, {scheme.rules} live rules, "
                  f"1 source, {args.members} members with travel cards "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)

        total = args.batches * BATCH_SIZE
        items = [item for item, _ in make_items(total, scheme, args.days, rng, run)]
        bodies = [json.dumps({"items": items[i:i + BATCH_SIZE]}).encode()
                  for i in range(0, total, BATCH_SIZE)]
        # Only the request bodies (bytes) stay: the client's own objects would otherwise
        # swell every full garbage collection the server side runs during the requests.
        del items
        gc.collect()
        if args.gc_freeze:
            gc.freeze()
        if args.processes > 1 and (args.phases or args.profile):
            raise SystemExit("--phases and --profile measure one process: drop --processes")
        phases = Phases() if args.phases else None
        phase_ms: dict[str, float] = {}
        deferred = args.awarding == "deferred"
        if args.processes > 1 or deferred:
            with app.app_context():
                db.engine.dispose()  # the children open their own connections
        awarders = (Awarders(config, args.award_processes, args.profile_awards) if deferred
                    else None)
        started = time.monotonic()
        if args.processes > 1:
            elapsed, statuses, points = run_processes(
                config, scheme, bodies, args.processes,
                at_start=awarders.go if awarders else None)
        else:
            if awarders:
                awarders.go(started)
            elapsed, statuses, points = run_ingest(app, scheme, bodies, args.profile)
        recorded_per_s = total / elapsed
        award_runs: dict[str, int] = {}
        if awarders:
            # Timed until the last point is in the ledger, not just until the answers.
            finished, award_runs = awarders.finish()
            elapsed = max(elapsed, finished - started)
            points = award_runs["points"]
            award_busy_per_s = award_runs["actions"] / max(award_runs["busy_ms"] / 1000, 1e-9)
            print(f"recording: {recorded_per_s:,.0f} actions/s; awarding: "
                  f"{award_runs['batches']} batches in {award_runs['runs']} runs by "
                  f"{args.award_processes} process(es), {award_busy_per_s:,.0f} actions a "
                  f"second of a worker's time in runs", flush=True)
        if phases is not None:
            # Only the ingest loop so far: the COPY baseline below is not counted.
            phase_ms = phases.per_batch(args.batches)
            for label, ms in phase_ms.items():
                print(f"  {label:28s} {ms:7.1f} ms a batch", flush=True)
        actions_per_s = total / elapsed
        print(f"ingest ({args.processes} process{'es' if args.processes > 1 else ''}): "
              f"{total:,} actions in {args.batches} batches of {BATCH_SIZE} in "
              f"{elapsed:.2f} s: {actions_per_s:,.0f} actions/s "
              f"({elapsed / args.batches * 1000:.1f} ms a batch)", flush=True)
        if statuses.get("accepted", 0) != total:
            raise SystemExit(f"not every item was accepted: {statuses}")
        with app.app_context():
            counts = check_database(total)
        written = sum(counts[t] for t in INGEST_TABLES)
        print(f"stored: {counts['actions']:,} actions, {counts['awards']:,} awards, "
              f"{counts['postings']:,} postings, {counts['posting_lines']:,} posting lines "
              f"({written / total:.1f} rows an action, {written / elapsed:,.0f} rows/s); "
              f"{points:,} points awarded, {counts['flagged']:,} actions held for review; "
              f"ledger verify: {counts['verify_problems']} problems", flush=True)

        ceiling: dict[str, Any] = {}
        if args.ceiling:
            ceiling = measure_ceiling(url, total)
            for shape, figures in ceiling.items():
                print(f"ceiling {shape:28s} {figures['rows_per_action']:4.2f} rows an action: "
                      f"{figures['actions_per_s']:7,} actions/s by PostgreSQL alone "
                      f"({figures['ms']} ms)", flush=True)

        member_of = dict(scheme.cards)
        rows = [(uuid.uuid4(), scheme.source_id, item["external_ref"],
                 member_of[item["member"]["number"]], scheme.type_ids[item["type"]],
                 item["type"], datetime.fromisoformat(item["occurred_at"].replace("Z", "+00:00")),
                 json.dumps(item["attributes"]))
                for body in bodies for item in json.loads(body)["items"]]
        copy_rows_per_s = run_copy(url, rows, args.unlogged)
        print(f"COPY baseline: {len(rows):,} of the same rows into a bare "
              f"{'unlogged' if args.unlogged else 'logged'} table: "
              f"{copy_rows_per_s:,.0f} rows/s", flush=True)
    finally:
        if args.keep:
            print(f"kept database {make_url(url).database}")
        else:
            drop_database(admin, url)

    ratio = actions_per_s / copy_rows_per_s
    print(f"ratio: ingest runs at {ratio:.1%} of the raw COPY rate "
          f"(aim: at least 20,000 actions/s and 10%)")
    print(json.dumps({
        "actions_per_s": round(actions_per_s),
        "copy_rows_per_s": round(copy_rows_per_s),
        "ratio_to_copy": round(ratio, 4),
        "batches": args.batches,
        "batch_size": BATCH_SIZE,
        "processes": args.processes,
        "verify_ok": counts["verify_problems"] == 0,  # rewards ledger verify's checks
        "rules": scheme.rules,
        "awarding": args.awarding,
        **({"award_processes": args.award_processes,
            "recorded_per_s": round(recorded_per_s),
            "awarded_per_busy_s": round(award_busy_per_s)} if args.awarding == "deferred"
           else {}),
        **({"phases_ms_per_batch": phase_ms} if phases is not None else {}),
        **({"ceiling": {shape: {**figures, "ratio_to_copy": round(
            figures["actions_per_s"] / copy_rows_per_s, 4)} for shape, figures in ceiling.items()}}
           if ceiling else {}),
    }))
    if counts["verify_problems"]:
        raise SystemExit("the ledger is not sound after the run")


if __name__ == "__main__":
    main()
