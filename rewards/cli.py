"""`rewards ...` commands (also available as `flask --app rewards ...`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select

from . import create_app


def _app_or_refusal() -> Flask:
    """The app, or a one-line refusal (no traceback) when a key is missing or unsafe."""
    from .config import ConfigurationError
    from .keys import UnsafeConfiguration

    try:
        return create_app()
    except (UnsafeConfiguration, ConfigurationError) as refusal:
        raise click.ClickException(str(refusal)) from None


class _Commands(FlaskGroup):
    """Every command: a database that cannot be reached is one line saying so (and exit
    status 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import InterfaceError, OperationalError

        try:
            return super().invoke(ctx)
        except (OperationalError, InterfaceError) as error:
            cause = str(error.orig or error).strip().splitlines()[0]
            raise click.ClickException(
                f"the database cannot be reached ({cause}): check DATABASE_URL and that "
                "the database is running, then try again") from None


@click.group(cls=_Commands, create_app=_app_or_refusal)
def main() -> None:
    """Citizen rewards scheme."""


@main.group("db")
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from .migrate import upgrade

    upgrade(current_app.config["SQLALCHEMY_DATABASE_URI"], revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION."""
    from .migrate import downgrade

    downgrade(current_app.config["SQLALCHEMY_DATABASE_URI"], revision)


@main.command("create-staff")
@click.option("--email", required=True)
@click.option("--role", required=True,
              type=click.Choice(["admin", "scheme_manager", "reviewer", "analyst", "desk",
                                 "partner"]))
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 12 characters (STAFF_PASSWORD_MIN_LENGTH), not a common password; "
                   "asked for (twice, not echoed) when not given.")
@click.option("--partner-id", default=None,
              help="For role partner: the partner they work for (`rewards staff partners`).")
@with_appcontext
def create_staff(email: str, role: str, password: str, partner_id: str | None) -> None:
    """Create a staff or partner user (or reset their password, role and second factor:
    their logins end). Admins and scheme managers get a TOTP secret, printed once."""
    import uuid

    from .extensions import db
    from .models import Partner, StaffUser
    from .staff import TOTP_ROLES, enrol_now, set_password

    partner = None
    if role == "partner":
        if not partner_id:
            raise click.BadParameter("a partner user needs --partner-id", param_hint="--partner-id")
        try:
            partner = db.session.get(Partner, uuid.UUID(partner_id))
        except ValueError:
            partner = None
        if partner is None:
            raise click.BadParameter("no such partner", param_hint="--partner-id")
    email = email.strip().lower()
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        user = StaffUser(email=email, password_hash="", role=role)
        db.session.add(user)
        db.session.flush()
    try:
        set_password(db.session, user, password)  # also ends the user's logins
    except ValueError as problem:
        raise click.BadParameter(str(problem), param_hint="--password") from None
    user.role = role
    user.partner_id = partner.id if partner else None
    user.active = True
    seed, uri = enrol_now(user) if role in TOTP_ROLES else (None, None)
    if uri is None:
        user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    db.session.commit()
    click.echo(f"{role} {email} ready")
    if uri is not None:
        click.echo(f"TOTP secret: {seed}")
        click.echo(f"TOTP URI: {uri}")
        click.echo("Add it to an authenticator app; logging in needs its 6-digit code as "
                   "totp_code (docs/authentication.md).")


@main.command("identifier-keys")
@with_appcontext
def identifier_keys() -> None:
    """How many linked cards are hashed under the current IDENTIFIER_KEY and how many
    not yet (still under IDENTIFIER_KEY_PREVIOUS, or from before key ids were kept)."""
    from sqlalchemy import func

    from .extensions import db
    from .models import Identifier
    from .security import identifier_key_id

    current = identifier_key_id()
    total = db.session.scalar(select(func.count(Identifier.id))) or 0
    on_current = db.session.scalar(select(func.count(Identifier.id))
                                   .where(Identifier.key_id == current)) or 0
    remaining = total - on_current
    click.echo(f"current key {current}: {on_current} card(s); "
               f"not yet on it: {remaining} card(s)")


@main.command("demo")
@click.option("--members", default=300, show_default=True)
@click.option("--weeks", default=4, show_default=True)
@click.option("--force", is_flag=True, help="Load even if demo data is already there.")
@click.option("--history-members", type=int, default=None,
              help="Members with months of history written in bulk [default: 10 x members].")
@click.option("--history-months", default=6, show_default=True)
@with_appcontext
def demo(members: int, weeks: int, force: bool, history_members: int | None,
         history_months: int) -> None:
    """Load a Leeds-like demo scheme (skipped if it is already loaded)."""
    from .demo import load_demo

    summary = load_demo(members=members, weeks=weeks, force=force,
                        history_members=history_members, history_months=history_months)
    click.echo(summary)


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty and no job is due.")
@click.option("--fork", is_flag=True, help="Run each job in a forked work horse.")
@with_appcontext
def worker(burst: bool, fork: bool) -> None:
    """Run an RQ worker for the scheme's queues inside the app context; it relays
    due outbox jobs and outlives Redis outages (workers/runner.py)."""
    from workers.runner import run_worker

    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: jobs run in-process, no worker needed.")
    run_worker(current_app._get_current_object(), burst=burst, fork=fork)


@main.command("cron")
@with_appcontext
def cron() -> None:
    """Run the scheduler (`rq cron workers.cron`), reconnecting when Redis goes away."""
    from workers.runner import run_cron

    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: nothing to schedule.")
    run_cron(current_app._get_current_object())


@main.group("jobs")
def jobs_group() -> None:
    """Background jobs."""


@jobs_group.command("relay")
@with_appcontext
def jobs_relay() -> None:
    """Send jobs still waiting in the outbox."""
    from . import relay

    click.echo(f"sent {relay.relay(everything=True)}")


@main.group("ledger")
def ledger_group() -> None:
    """The points ledger."""


@ledger_group.command("verify")
@with_appcontext
def ledger_verify() -> None:
    """Check every posting sums to zero, all accounts together sum to zero, no member's
    balance is below zero, each member's lots add up to their available balance, each
    member's running totals equal their lines, each rule's running total equals its
    awards (less what revocations took back), awards are marked revoked exactly when
    their actions are, and each earn posting credits exactly its awards. One snapshot:
    safe while the scheme runs."""
    from .extensions import db
    from .ledger import verify_snapshot

    problems = verify_snapshot(db.session)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    click.echo("ledger ok")


@ledger_group.command("recount-totals")
@with_appcontext
def ledger_recount_totals() -> None:
    """Sum members' running totals again from the ledger's lines (after lines were
    written with triggers off; `verify` says when). Writes wait while it runs."""
    from .extensions import db
    from .ledger.totals import recount_totals

    counted = recount_totals(db.session)
    db.session.commit()
    click.echo(f"recounted the totals of {counted} member(s)")


_NOW = click.option("--now", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                                                 "%Y-%m-%d"]),
                    default=None, help="Act as of this time (UTC unless an offset is given).")


def _as_of(now: datetime | None) -> datetime | None:
    if now is None:
        return None
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _ledger_run(run: Callable[..., Any], now: datetime | None) -> Any:
    """A run of rewards.ledger.runs as of `now` (default: the present): its summary, or
    exit 1 saying which members it failed for."""
    from .extensions import db
    from .ledger.runs import RunFailed
    from .models import utcnow

    try:
        return run(db.session, _as_of(now) or utcnow())
    except RunFailed as failed:
        click.echo(str(failed), err=True)
        sys.exit(1)


@ledger_group.command("expire")
@_NOW
@with_appcontext
def ledger_expire(now: datetime | None) -> None:
    """Expire what is left of lots past their expiry date (the daily job, run now)."""
    from .ledger.runs import expire_all

    summary = _ledger_run(expire_all, now)
    click.echo(f"expired {summary.points} points of {summary.members} member(s)")


@ledger_group.command("release")
@_NOW
@with_appcontext
def ledger_release(now: datetime | None) -> None:
    """Make pending points whose hold has passed spendable (the hourly job, run now)."""
    from .ledger.runs import release_all

    summary = _ledger_run(release_all, now)
    click.echo(f"released {summary.points} pending points of {summary.members} member(s)")


@main.group("dashboard")
def dashboard_group() -> None:
    """The staff dashboard's rollups."""


@dashboard_group.command("refresh")
@with_appcontext
def dashboard_refresh() -> None:
    """Bring the rollups up to date with what changed since the last refresh."""
    from .dashboard.refresh import refresh
    from .extensions import db

    report = refresh(db.session)
    click.echo(f"refreshed {report.days} day(s), {report.ledger_days} ledger day(s), "
               f"{report.months} month(s) in {report.took_ms} ms")


@dashboard_group.command("rebuild")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First day (scheme time zone), YYYY-MM-DD.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last day (scheme time zone), YYYY-MM-DD.")
@with_appcontext
def dashboard_rebuild(first: datetime, last: datetime) -> None:
    """Recompute every rollup for a range of days from the raw tables."""
    from .dashboard.refresh import rebuild
    from .extensions import db

    if first > last:
        click.echo("--from must not be after --to", err=True)
        sys.exit(2)
    report = rebuild(db.session, first.date(), last.date())
    db.session.commit()
    click.echo(f"rebuilt {report.days} day(s), {report.months} month(s) in "
               f"{report.took_ms} ms")


@main.command("openapi")
@click.option("--output", "-o", default="openapi.yaml", show_default=True)
@with_appcontext
def openapi(output: str) -> None:
    """Write the OpenAPI description the app serves (YAML, or JSON for a .json name)."""
    from .openapi import spec_text

    Path(output).write_text(spec_text(json_format=output.endswith(".json")))
    click.echo(f"wrote {output}")


# Wards: the list the council publishes, and its postcode lookup (CSV files with a header).
@main.group("wards")
def wards_group() -> None:
    """The scheme's wards and the postcode lookup."""


def _csv_pairs(path: str, first: str, second: str) -> list[tuple[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {first, second} <= set(rows[0]):
        raise click.BadParameter(f"the header must name {first} and {second}")
    return [(row[first] or "", row[second] or "") for row in rows]


@wards_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def wards_load(path: str) -> None:
    """Add or rename wards from a CSV with columns code,name."""
    from .extensions import db
    from .wards import load_wards

    count = load_wards(db.session, _csv_pairs(path, "code", "name"))
    db.session.commit()
    click.echo(f"{count} wards loaded")


@wards_group.command("postcodes")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def wards_postcodes(path: str) -> None:
    """Replace the postcode lookup from a CSV with columns postcode,ward_code."""
    from .extensions import db
    from .wards import load_postcodes

    loaded, skipped = load_postcodes(db.session, _csv_pairs(path, "postcode", "ward_code"))
    db.session.commit()
    click.echo(f"{loaded} postcodes loaded, {skipped} rows skipped")


# `rewards staff ...` (list, deactivate, partners' ids).
from .cli_staff import staff_group  # noqa: E402

main.add_command(staff_group)

# `rewards backup ...` (create, restore, check).
from .cli_backup import backup_group  # noqa: E402

main.add_command(backup_group)

# Flask's own commands, which `flask --app rewards` has already.
_FLASK_OWN = frozenset({"run", "shell", "routes"})


def register_commands(app: Flask) -> None:
    """Give `flask --app rewards ...` the same commands as `rewards ...`."""
    for name, command in main.commands.items():
        if name not in _FLASK_OWN:
            app.cli.add_command(command, name)


if __name__ == "__main__":  # pragma: no cover
    main()



# Privacy commands (rewards/cli_privacy.py).
def _add_privacy_commands() -> None:
    from . import cli_privacy

    for command in cli_privacy.COMMANDS:
        main.add_command(command)


_add_privacy_commands()
