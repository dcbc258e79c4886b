"""Parts of bench/ingest.py: the --phases timers and the --awarding deferred award
workers."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from typing import Any

from rewards import create_app
from rewards.extensions import db


class Phases:
    """--phases: wall time inside the main steps of a batch, summed over the run, by
    wrapping them (a diagnosis: the wrappers cost a little themselves). COPY is split
    into sending rows (Python encoding them) and waiting for the server to finish."""

    # function in rewards.actions.ingest -> label
    STEPS = {"validate_item": "validate", "lock_for_awards": "lock_members",
             "lock_live_rules": "lock_rules", "award_many": "award"}

    def __init__(self) -> None:
        import psycopg

        import rewards.actions.ingest as ingest
        import rewards.awarding.batch as batch

        self.spent: dict[str, float] = {}
        for name, label in self.STEPS.items():
            setattr(ingest, name, self._timed(label, getattr(ingest, name)))
        batch.control_book = self._timed("award.controls_history", batch.control_book)
        batch.award_points = self._timed("award.rules_and_rows", batch.award_points)
        batch.UsageBook.load = self._timed("award.cap_budget_use", batch.UsageBook.load)
        ingest.Writes.save = self._timed("write_rows", ingest.Writes.save)
        psycopg.Copy.write_row = self._timed("write_rows.copy_python", psycopg.Copy.write_row)
        psycopg.Copy.__exit__ = self._timed("write_rows.copy_server_wait",
                                            psycopg.Copy.__exit__)
        ingest.ingest_batch = self._timed("batch", ingest.ingest_batch)
        import rewards.api.source as source

        source.ingest_batch = ingest.ingest_batch

    def _timed(self, label: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - started
        return timed

    def per_batch(self, batches: int) -> dict[str, float]:
        return {label: round(seconds * 1000 / batches, 1)
                for label, seconds in sorted(self.spent.items(), key=lambda kv: -kv[1])}



class Awarders:
    """--awarding deferred: forked award workers, each its own app and connections,
    awarding queued batches (rewards.awarding.award_queued, what the worker's job runs)
    from the moment ingest starts until ingest is done and the queue is empty."""

    def __init__(self, config: dict[str, Any], processes: int,
                 profile: str | None = None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.start, self.ingest_done = context.Event(), context.Event()
        self.results = context.Queue()
        self.workers = [context.Process(target=_award_process,
                                        args=(config, self.start, self.ingest_done,
                                              self.results, profile if n == 0 else None))
                        for n in range(processes)]
        for worker in self.workers:
            worker.start()
        for _ in self.workers:
            if self.results.get(timeout=300) != "ready":
                raise SystemExit("an award process failed to start")

    def go(self, moment: float) -> None:
        self.start.set()

    def finish(self) -> tuple[float, dict[str, int]]:
        """When the last point was in the ledger (monotonic), and what was awarded."""
        self.ingest_done.set()
        finished = 0.0
        done = {"batches": 0, "actions": 0, "points": 0, "runs": 0, "busy_ms": 0}
        for _ in self.workers:
            ended, counted = self.results.get(timeout=3600)
            if ended is None:
                raise SystemExit(f"an award process failed: {counted}")
            finished = max(finished, ended)
            for key, value in counted.items():
                done[key] += value
        for worker in self.workers:
            worker.join()
        return finished, done


def _award_process(config: dict[str, Any], start: Any, ingest_done: Any, results: Any,
                   profile: str | None) -> None:
    from rewards.awarding import award_queued

    app = create_app(config)
    profiler = cProfile.Profile() if profile else None
    done = {"batches": 0, "actions": 0, "points": 0, "runs": 0}
    with app.app_context():
        results.put("ready")
        start.wait()
        try:
            last = time.monotonic()
            busy = 0.0  # seconds inside runs that awarded something
            while True:
                finishing = ingest_done.is_set()  # read before the run: no batch missed
                if profiler:
                    profiler.enable()
                began = time.monotonic()
                run = award_queued(db.session)
                db.session.commit()
                if profiler:
                    profiler.disable()
                if run.batches:
                    last = time.monotonic()
                    busy += last - began
                    done["runs"] += 1
                    for key, value in run.as_dict().items():
                        done[key] += value
                elif finishing:
                    break
                else:
                    time.sleep(0.02)
            if profiler:
                profiler.dump_stats(profile)
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
            done["busy_ms"] = round(busy * 1000)
            results.put((last, done))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which stops
            results.put((None, str(error)[:300]))


# -- --ceiling: what PostgreSQL alone takes for the rows of an awarded action -------------

_ACTION_COLUMNS = ("id, created_at, source_id, external_ref, member_id, action_type_id, "
                   "type_code, occurred_at, attributes, status, flag_reason, points, origin")
_RECORD = f"""
    INSERT INTO actions ({_ACTION_COLUMNS})
    SELECT m.new, a.created_at, a.source_id, a.external_ref || '~c', a.member_id,
           a.action_type_id, a.type_code, a.occurred_at, a.attributes, {{values}}, a.origin
    FROM actions AS a JOIN ceiling_actions AS m ON m.old = a.id"""
_AWARDS = """
    INSERT INTO awards (id, created_at, action_id, member_id, rule_id, rule_version_id,
                        rule_version, rule_name, points, capped_by, occurred_at, inputs,
                        posting_id, revoked_at, points_written_off)
    SELECT w.new, o.created_at, m.new, o.member_id, o.rule_id, o.rule_version_id,
           o.rule_version, o.rule_name, o.points, o.capped_by, o.occurred_at, o.inputs,
           {posting}, NULL, 0
    FROM awards AS o JOIN ceiling_awards AS w ON w.old = o.id
    JOIN ceiling_actions AS m ON m.old = o.action_id
    LEFT JOIN ceiling_postings AS p ON p.old = o.posting_id {where}"""
_STEPS = {
    # The recording: the action row as a deferred batch stores it (pending, 0 points)...
    "record_pending": _RECORD.format(values="'pending', NULL, 0"),
    # ... or written once with what awarding decided (inline awarding's one write).
    "record_awarded": _RECORD.format(values="a.status, a.flag_reason, a.points"),
    # The award run: the action's status and points, then its earn postings, their two
    # lines each and its award rows, as award_queued writes them.
    "update_actions": """
        UPDATE actions AS c SET status = a.status, flag_reason = a.flag_reason,
               points = a.points
        FROM actions AS a JOIN ceiling_actions AS m ON m.old = a.id
        WHERE c.id = m.new""",
    "postings": """
        INSERT INTO postings (id, created_at, kind, reason, key, member_id, action_id,
                              reward_id, available_at, expires_at, origin_id)
        SELECT p.new, o.created_at, o.kind, o.reason, o.key || '~c', o.member_id, m.new,
               NULL, o.available_at, o.expires_at, NULL
        FROM postings AS o JOIN ceiling_postings AS p ON p.old = o.id
        JOIN ceiling_actions AS m ON m.old = o.action_id""",
    "posting_lines": """
        INSERT INTO posting_lines (id, posting_id, account_id, points, created_at)
        SELECT l.new, p.new, o.account_id, o.points, o.created_at
        FROM posting_lines AS o JOIN ceiling_lines AS l ON l.old = o.id
        JOIN ceiling_postings AS p ON p.old = o.posting_id""",
    "awards": _AWARDS.format(posting="p.new", where=""),
    # Only the awards that credited points (a capped or zero award not stored as a row).
    "credited_awards": _AWARDS.format(posting="p.new", where="WHERE o.points > 0"),
    # One ledger row per movement carrying both accounts (a transfer) instead of a
    # posting and two lines: into a table shaped as such a ledger would need it (the
    # posting's columns, both accounts and the points, an index per account as lines
    # have, and the posting's other indexes and keys).
    "transfers": """
        INSERT INTO ceiling_transfers (id, created_at, kind, reason, key, member_id,
                                       action_id, debit_account_id, credit_account_id,
                                       points, available_at, expires_at)
        SELECT p.new, o.created_at, o.kind, o.reason, o.key || '~c', o.member_id, m.new,
               d.account_id, c.account_id, c.points, o.available_at, o.expires_at
        FROM postings AS o JOIN ceiling_postings AS p ON p.old = o.id
        JOIN ceiling_actions AS m ON m.old = o.action_id
        JOIN posting_lines AS d ON d.posting_id = o.id AND d.points < 0
        JOIN posting_lines AS c ON c.posting_id = o.id AND c.points > 0""",
    # Awards' detail on the transfer's side: the credited awards, pointing at no posting.
    "credited_awards_unposted": _AWARDS.format(posting="NULL", where="WHERE o.points > 0"),
}
# Row shapes measured, each one transaction (rolled back, so none weighs on the next).
CEILING_SHAPES = {
    # What ingest writes today with AWARDING=deferred: 5.6 rows and an update an action.
    "current": ("record_pending", "update_actions", "postings", "posting_lines", "awards"),
    # The action written once (as inline awarding does): no update.
    "written_once": ("record_awarded", "postings", "posting_lines", "awards"),
    # ... and no award row for an award that credited nothing.
    "once_credited_awards": ("record_awarded", "postings", "posting_lines", "credited_awards"),
    # ... and one transfer row instead of a posting and two lines.
    "once_transfer": ("record_awarded", "transfers", "credited_awards_unposted"),
    # The action row carrying its award detail, and one transfer: two rows an action.
    "once_transfer_no_award_rows": ("record_awarded", "transfers"),
}
_TRANSFERS_TABLE = """
CREATE TABLE ceiling_transfers (
    id uuid PRIMARY KEY, created_at timestamptz NOT NULL, kind varchar(32) NOT NULL,
    reason text NOT NULL, key varchar(200) UNIQUE, member_id uuid,
    action_id uuid REFERENCES actions (id),
    debit_account_id uuid NOT NULL REFERENCES accounts (id),
    credit_account_id uuid NOT NULL REFERENCES accounts (id),
    points bigint NOT NULL CHECK (points > 0),
    available_at timestamptz, expires_at timestamptz);
CREATE INDEX ON ceiling_transfers (debit_account_id, created_at);
CREATE INDEX ON ceiling_transfers (credit_account_id, created_at);
CREATE INDEX ON ceiling_transfers (action_id);
CREATE INDEX ON ceiling_transfers (member_id);
CREATE INDEX ON ceiling_transfers (available_at);
CREATE INDEX ON ceiling_transfers (expires_at)"""


def measure_ceiling(url: str, actions: int, rounds: int = 3) -> dict[str, Any]:
    """--ceiling, after the run: the rows the run wrote for its `actions` written again
    by PostgreSQL alone, each table in one INSERT ... SELECT (or UPDATE) from the stored
    rows, into the same tables with their indexes, keys and checks: no Python per
    action, no rules, no client encoding. New ids (version 7, as ingest makes them) are
    mapped in before the clock starts. Each shape of CEILING_SHAPES is one transaction,
    timed to its last statement and rolled back; the shapes take turns `rounds` times
    and each keeps its best (the machine's other work only ever slows a round). What
    each row shape can take at best."""
    import psycopg
    from sqlalchemy.engine import make_url

    from rewards.ids import new_ids

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    shapes: dict[str, Any] = {}
    with psycopg.connect(dsn) as connection:
        counts = {}
        for table, source in (("ceiling_actions", "actions"),
                              ("ceiling_postings", "postings WHERE kind = 'earn'"),
                              ("ceiling_lines", "posting_lines WHERE posting_id IN "
                                                "(SELECT id FROM postings WHERE kind = 'earn')"),
                              ("ceiling_awards", "awards")):
            old = [row[0] for row in connection.execute(f"SELECT id FROM {source}")]
            connection.execute(f"CREATE TABLE {table} (old uuid PRIMARY KEY, new uuid)")
            with connection.cursor().copy(f"COPY {table} (old, new) FROM STDIN") as copy:
                for pair in zip(old, new_ids(len(old)), strict=True):
                    copy.write_row(pair)
            connection.execute(f"ANALYZE {table}")
            counts[table] = len(old)
        credited = connection.execute("SELECT count(*) FROM awards WHERE points > 0").fetchone()[0]
        for statement in _TRANSFERS_TABLE.split(";"):
            connection.execute(statement)
        connection.commit()
        rows = {"record_pending": counts["ceiling_actions"],
                "record_awarded": counts["ceiling_actions"], "update_actions": 0,
                "postings": counts["ceiling_postings"], "transfers": counts["ceiling_postings"],
                "posting_lines": counts["ceiling_lines"], "awards": counts["ceiling_awards"],
                "credited_awards": credited, "credited_awards_unposted": credited}
        best: dict[str, tuple[float, dict[str, float]]] = {}
        for _ in range(rounds):  # the shapes in turn, each round: the best of each kept
            for shape, steps in CEILING_SHAPES.items():
                spent: dict[str, float] = {}
                started = time.perf_counter()
                for step in steps:
                    began = time.perf_counter()
                    connection.execute(_STEPS[step])
                    spent[step] = time.perf_counter() - began
                total = time.perf_counter() - started
                connection.rollback()
                if shape not in best or total < best[shape][0]:
                    best[shape] = (total, spent)
        for shape, (total, spent) in best.items():
            shapes[shape] = {
                "actions_per_s": round(actions / total),
                "rows_per_action": round(sum(rows[step] for step in CEILING_SHAPES[shape])
                                         / actions, 2),
                "ms": {step: round(seconds * 1000) for step, seconds in spent.items()},
            }
    return shapes
