"""The files a newcomer deploys with: README's commands, .env for docker compose, the
entry point, the Dockerfile and the lock files. Docker itself is not needed: each test
checks what the engine would be given."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from rewards.cli import main

from .test_cli import BIN, ROOT, rewards

README = (ROOT / "README.md").read_text()


def _code_lines(text: str) -> list[str]:
    lines, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside and line.strip() in ("```sh", "```bash")
            continue
        if inside:
            line = pending + line.split("  #")[0].strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            lines.append(line)
    return [line for line in lines if line]


def _rewards_invocations(lines: list[str]) -> list[list[str]]:
    found = []
    for line in lines:
        words = shlex.split(line.replace("<", "'<").replace(">", ">'"))
        for i, word in enumerate(words):
            if word.endswith("rewards") and word.split("/")[-1] == "rewards" and \
                    (i + 1 < len(words) and not words[i + 1].startswith(":")):
                if i > 0 and words[i - 1] in ("--app", "-c"):
                    continue
                found.append(words[i + 1:])
                break
    return found


def test_every_rewards_command_in_the_readme_exists_with_its_options() -> None:
    invocations = _rewards_invocations(_code_lines(README))
    assert len(invocations) >= 8, invocations
    ctx = click.Context(main)
    for words in invocations:
        command: click.Command = main
        rest = list(words)
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            found = command.get_command(ctx, rest[0])
            assert found is not None, f"README: rewards {' '.join(words)}: no {rest[0]!r}"
            command, rest = found, rest[1:]
        options = {opt for param in command.params for opt in param.opts}
        given = {word.split("=")[0] for word in rest if word.startswith("--")}
        assert given <= options, (words, given - options)
        for param in command.params:
            if isinstance(param, click.Option) and param.required and not param.prompt:
                assert set(param.opts) & given, f"README: rewards {' '.join(words)} lacks " \
                                                f"{param.opts[0]}"


def test_no_design_files_outside_the_repository_are_referenced() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    outside = ".." + "/shared"  # spelled apart so this file does not match itself
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".md", ".py", ".yml", ".yaml", ".toml", ".sh", ".html", ""):
            if path.is_file():
                assert outside not in path.read_text(errors="ignore"), name
    for doc in ("docs/architecture.md", "docs/operations.md"):
        assert doc in README


def test_new_env_writes_every_key_compose_requires_and_never_overwrites(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / ".env"
    made = subprocess.run([str(ROOT / "scripts" / "new-env"), str(target)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in target.read_text().splitlines()
                  if line and not line.startswith("#"))
    for key in ("SECRET_KEY", "IDENTIFIER_KEY", "POSTGRES_PASSWORD", "METRICS_TOKEN"):
        assert re.fullmatch(r"[0-9a-f]{64}", values[key]), key
    assert values["SECRET_KEY"] != values["IDENTIFIER_KEY"]

    compose = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    assert required == {"SECRET_KEY", "IDENTIFIER_KEY", "POSTGRES_PASSWORD"}
    assert required <= set(values)
    optional = set(re.findall(r"\$\{(\w+):-", compose))
    assert optional <= set(values) | {"MAIL_FROM"}
    # The scheme's identity reaches the containers, and what new-env writes is the
    # default the app itself would take.
    assert {"SCHEME_NAME", "SCHEME_TIMEZONE", "SCHEME_LANGUAGES", "SCHEME_CURRENCY",
            "POSTCODE_DISTRICT_PATTERN"} <= optional
    from rewards.config import Config
    for key in ("SCHEME_NAME", "SCHEME_TIMEZONE", "SCHEME_LANGUAGES", "SCHEME_CURRENCY",
                "POSTCODE_DISTRICT_PATTERN"):
        monkeypatch.delenv(key, raising=False)
    defaults = Config()
    for key in ("SCHEME_NAME", "SCHEME_TIMEZONE", "SCHEME_CURRENCY"):
        assert values[key] == getattr(defaults, key), key
    assert tuple(values["SCHEME_LANGUAGES"].split(",")) == defaults.SCHEME_LANGUAGES
    monkeypatch.setenv("POSTCODE_DISTRICT_PATTERN", values["POSTCODE_DISTRICT_PATTERN"])
    assert Config().POSTCODE_DISTRICT_PATTERN == defaults.POSTCODE_DISTRICT_PATTERN

    before = target.read_text()
    again = subprocess.run([str(ROOT / "scripts" / "new-env"), str(target)],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "exists already" in again.stderr
    assert target.read_text() == before


def test_compose_services_match_the_entry_points_roles_and_the_readme() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    entry = (ROOT / "docker-entrypoint.sh").read_text()
    roles = set(re.findall(r"^    (\w+)\)$", entry, re.M))
    assert roles == {"api", "worker", "cron", "migrate", "demo"}
    for name in ("migrate", "api", "worker", "cron"):
        assert services[name]["command"][0] in roles
    for line in _code_lines(README):
        run = re.match(r"docker compose run --rm (\w+)(?: (\S+))?", line)
        if run:
            assert run.group(1) in services, line
            assert run.group(2) in roles | {"rewards"}, line
    api_env = services["api"]["environment"]
    assert api_env["PROMETHEUS_MULTIPROC_DIR"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["worker"]["environment"]
    assert api_env["DATABASE_URL"].startswith("postgresql+psycopg://rewards:${POSTGRES_PASSWORD")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD")


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def test_compose_stops_gracefully_and_runs_two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker compose stop` (and every `up` that replaces a container) sends SIGTERM and
    SIGKILLs after the grace period: long enough for gunicorn to drain and finish its
    requests, and for a worker to finish the job in hand."""
    # Importing gunicorn's settings sets DATABASE_PRE_PING=0 (for the API) unless it is
    # set: set here, and put back after, so the suite's worker processes keep the ping.
    monkeypatch.setenv("DATABASE_PRE_PING", "1")
    from rewards import gunicorn_conf
    from rewards.config import Config

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert _seconds(services["api"]["stop_grace_period"]) > gunicorn_conf.graceful_timeout
    assert gunicorn_conf.graceful_timeout > gunicorn_conf.drain_seconds
    assert _seconds(services["worker"]["stop_grace_period"]) > Config().JOB_TIMEOUT_SECONDS
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["cron"].get("deploy", {}).get("replicas", 1) == 1
    for name in ("api", "worker", "cron", "postgres", "redis"):
        assert services[name].get("restart", "unless-stopped") == "unless-stopped"


def test_the_entry_point_runs_migrate_and_rewards_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'e.db'}", LOG_LEVEL="WARNING",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.pop("SECRET_KEY", None)
    refused = subprocess.run(["sh", str(ROOT / "docker-entrypoint.sh"), "migrate"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    env.update(SECRET_KEY="deployment-test-secret-key-32-bytes-or-more",
               IDENTIFIER_KEY="deployment-test-identifier-key")

    def entry(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(ROOT / "docker-entrypoint.sh"), *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, input=stdin,
                              timeout=120)

    assert entry("migrate").returncode == 0
    made = entry("rewards", "create-staff", "--email", "you@council.example", "--role",
                 "admin", stdin="a long pass phrase\na long pass phrase\n")
    assert made.returncode == 0, made.stderr
    listed = entry("rewards", "staff", "list")
    assert listed.stdout.strip() == "you@council.example  admin  active"
    verified = entry("rewards", "ledger", "verify")
    assert verified.returncode == 0 and "ledger ok" in verified.stdout


def _names(lock: Path) -> set[str]:
    return {re.split(r"[=<> ;\[]", line, maxsplit=1)[0].lower().replace("_", "-")
            for line in lock.read_text().splitlines()
            if line and not line.startswith((" ", "#", "-"))}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[=<>~!\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in requirements}


def test_the_lock_files_cover_pyproject_and_the_image_installs_from_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(ROOT / "requirements.lock")
    dev = _names(ROOT / "requirements-dev.lock")
    missing = _requirement_names(project["dependencies"]) - runtime
    assert not missing, f"run `make lock`: {missing} not in requirements.lock"
    missing = _requirement_names(project["optional-dependencies"]["test"]) - dev
    assert not missing, f"run `make lock`: {missing} not in requirements-dev.lock"
    assert runtime <= dev
    assert "rq>=2.7" in "".join(project["dependencies"]).replace(" ", "")

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert "--no-deps -e ." in dockerfile
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), f"Dockerfile copies {name}, which is missing"
    makefile = (ROOT / "Makefile").read_text()
    assert "-r $(DEV_LOCK)" in makefile and "\nlock:" in makefile


def test_flask_app_has_the_rewards_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", LOG_LEVEL="WARNING",
               SECRET_KEY="deployment-test-secret-key-32-bytes-or-more",
               IDENTIFIER_KEY="deployment-test-identifier-key")
    assert rewards("db", "upgrade", db_url=env["DATABASE_URL"], cwd=tmp_path).returncode == 0
    done = subprocess.run([str(BIN / "flask"), "--app", "rewards", "ledger", "verify"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ledger ok" in done.stdout, done.stderr


def test_the_access_log_writes_no_query_string_referer_or_voucher_code() -> None:
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config as GunicornConfig

    from rewards import gunicorn_conf

    logger = gunicorn_conf.AccessLogger(GunicornConfig())
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/v1/partner/vouchers/K7PQ2MZX9A?x=1",
               "PATH_INFO": "/v1/partner/vouchers/K7PQ2MZX9A", "QUERY_STRING": "x=1",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1",
               "HTTP_REFERER": "https://app.example/?email=someone@example.org"}
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    atoms = logger.atoms(response, SimpleNamespace(headers=[]), environ,
                         datetime.timedelta(milliseconds=3))
    written = " ".join(str(atoms[key]) for key in ("r", "U", "q", "f"))
    assert "K7PQ2MZX9A" not in written and "someone@example.org" not in written
    assert atoms["r"] == "GET /v1/partner/vouchers/- HTTP/1.1"
    other = {**environ, "PATH_INFO": "/v1/admin/members", "QUERY_STRING": "email=a@b.example",
             "RAW_URI": "/v1/admin/members?email=a@b.example"}
    atoms = logger.atoms(response, SimpleNamespace(headers=[]), other,
                         datetime.timedelta(milliseconds=3))
    assert atoms["r"] == "GET /v1/admin/members HTTP/1.1" and atoms["q"] == ""
    assert gunicorn_conf.logger_class is gunicorn_conf.AccessLogger
