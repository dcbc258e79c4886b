"""How many gunicorn processes per core: the API's throughput as its worker count grows.

Migrates its own PostgreSQL database (made and dropped), starts the image's `api` role
(docker-entrypoint.sh: gunicorn with the project's settings) with 1, 2, 4 ... sync
workers in turn, and drives `GET /readyz` (a full request through the app: request id,
metrics, one database round trip, JSON) from separate client processes for a fixed time
each. Prints
requests a second and the median latency for each worker count, and as its last line one
JSON object: {"cores": N, "runs": [{"workers", "req_per_s", "p50_ms", "errors"}...],
"best_workers": W}. The client shares the machine, so figures are relative.

    python bench/scaling.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from bench.pgdb import create_database, drop_database  # noqa: E402

PATH = "/readyz"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def client(port: int, path: str, seconds: float, out: multiprocessing.Queue) -> None:
    latencies, errors = [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            connection.close()
            if answer.status != 200:
                errors += 1
                continue
        except OSError:
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    out.put((latencies, errors))


def run(env: dict[str, str], workers: int, clients: int, seconds: float) -> dict[str, float]:
    port = free_port()
    server_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    server = subprocess.Popen(["sh", str(ROOT / "docker-entrypoint.sh"), "api"], cwd=ROOT,
                              env=server_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", PATH)
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API did not start") from None
                time.sleep(0.3)
        time.sleep(1.0)  # every worker up
        queue: multiprocessing.Queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=client, args=(port, PATH, seconds, queue))
                 for _ in range(clients)]
        for proc in procs:
            proc.start()
        results = [queue.get() for _ in procs]
        for proc in procs:
            proc.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = [value for values, _ in results for value in values]
    return {"workers": workers, "req_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "errors": sum(errors for _, errors in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts to try")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--seconds", type=float, default=8.0, help="per worker count")
    args = parser.parse_args()

    url, admin = create_database(args.database_url)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(DATABASE_URL=url, LOG_LEVEL="WARNING", SECRET_KEY="bench-" + "k" * 32,
               IDENTIFIER_KEY="bench-" + "i" * 32,
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        subprocess.run([str(BIN / "rewards"), "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        runs = []
        for workers in (int(n) for n in args.workers.split(",")):
            figures = run(env, workers, args.clients, args.seconds)
            runs.append(figures)
            print(f"{workers} worker(s): {figures['req_per_s']} req/s, "
                  f"p50 {figures['p50_ms']} ms, {figures['errors']} errors", flush=True)
    finally:
        drop_database(admin, url)
    best = max(runs, key=lambda r: r["req_per_s"])
    print(json.dumps({"cores": os.cpu_count(), "endpoint": f"GET {PATH}",
                      "clients": args.clients, "runs": runs, "best_workers": best["workers"]}))


if __name__ == "__main__":
    main()
