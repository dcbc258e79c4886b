"""`rewards ...` commands (also available as `flask --app rewards ...`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from . import create_app


@click.group(cls=FlaskGroup, create_app=lambda: create_app())
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
@click.option("--password", required=True)
@click.option("--partner-id", default=None, help="For role partner: the partner they work for.")
@with_appcontext
def create_staff(email: str, role: str, password: str, partner_id: str | None) -> None:
    """Create a staff or partner user (or reset their password and role)."""
    import uuid

    from .extensions import db
    from .models import Partner, StaffUser

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    partner = None
    if role == "partner":
        if not partner_id:
            raise click.BadParameter("a partner user needs --partner-id", param_hint="--partner-id")
        partner = db.session.get(Partner, uuid.UUID(partner_id))
        if partner is None:
            raise click.BadParameter("no such partner", param_hint="--partner-id")
    email = email.strip().lower()
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        user = StaffUser(email=email, password_hash="", role=role)
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    user.role = role
    user.partner_id = partner.id if partner else None
    user.active = True
    db.session.commit()
    click.echo(f"{role} {email} ready")


@main.command("demo")
@click.option("--members", default=300, show_default=True)
@click.option("--weeks", default=4, show_default=True)
@click.option("--force", is_flag=True, help="Load even if demo data is already there.")
@with_appcontext
def demo(members: int, weeks: int, force: bool) -> None:
    """Load a Leeds-like demo scheme (skipped if it is already loaded)."""
    from .demo import load_demo

    summary = load_demo(members=members, weeks=weeks, force=force)
    click.echo(summary)


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_appcontext
def worker(burst: bool) -> None:
    """Run an RQ worker for the scheme's queues inside the app context."""
    from rq import Worker

    from . import jobs
    from .extensions import redis

    connection = redis.get()
    if connection is None:
        raise click.ClickException("REDIS_URL is not set: jobs run in-process, no worker needed.")
    sent = jobs.relay(older_than_seconds=0)
    if sent:
        click.echo(f"sent {sent} outbox job(s) left from before")
    queues = [jobs.queue_name(name) for name in jobs.QUEUES]
    Worker(queues, connection=connection).work(burst=burst, with_scheduler=True)


@main.group("jobs")
def jobs_group() -> None:
    """Background jobs."""


@jobs_group.command("relay")
@with_appcontext
def jobs_relay() -> None:
    """Send jobs still waiting in the outbox."""
    from . import jobs

    click.echo(f"sent {jobs.relay(older_than_seconds=0)}")


@main.group("ledger")
def ledger_group() -> None:
    """The points ledger."""


@ledger_group.command("verify")
@with_appcontext
def ledger_verify() -> None:
    """Check every posting sums to zero, all accounts together sum to zero, no member's
    balance is below zero, each member's lots add up to their available balance, each
    rule's running total equals its awards (less what revocations took back), awards
    are marked revoked exactly when their actions are, and each earn posting credits
    exactly its awards. One snapshot: safe while the scheme runs."""
    from .extensions import db
    from .ledger import verify_snapshot

    problems = verify_snapshot(db.session)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    click.echo("ledger ok")


_NOW = click.option("--now", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                                                 "%Y-%m-%d"]),
                    default=None, help="Act as of this time (UTC unless an offset is given).")


def _as_of(now: datetime | None) -> datetime | None:
    if now is None:
        return None
    return now if now.tzinfo else now.replace(tzinfo=UTC)


@ledger_group.command("expire")
@_NOW
@with_appcontext
def ledger_expire(now: datetime | None) -> None:
    """Expire what is left of lots past their expiry date (the daily job, run now)."""
    from .extensions import db
    from .ledger.runs import RunFailed, expire_all
    from .models import utcnow

    try:
        summary = expire_all(db.session, _as_of(now) or utcnow())
    except RunFailed as failed:
        click.echo(str(failed), err=True)
        sys.exit(1)
    click.echo(f"expired {summary.points} points of {summary.members} member(s)")


@ledger_group.command("release")
@_NOW
@with_appcontext
def ledger_release(now: datetime | None) -> None:
    """Make pending points whose hold has passed spendable (the hourly job, run now)."""
    from .extensions import db
    from .ledger.runs import RunFailed, release_all
    from .models import utcnow

    try:
        summary = release_all(db.session, _as_of(now) or utcnow())
    except RunFailed as failed:
        click.echo(str(failed), err=True)
        sys.exit(1)
    click.echo(f"released {summary.points} pending points of {summary.members} member(s)")


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


if __name__ == "__main__":  # pragma: no cover
    main()

