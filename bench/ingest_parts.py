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
