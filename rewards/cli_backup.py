"""`rewards backup ...`: back up the database with its keys, restore one into a fresh
database, and check that a backup restores and verifies (see rewards/backup.py)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from . import backup as backups


def _keys() -> dict[str, str]:
    return {name: str(current_app.config[name]) for name in backups.KEYS}


def _url() -> str:
    return str(current_app.config["SQLALCHEMY_DATABASE_URI"])


@click.group("backup")
def backup_group() -> None:
    """Backups of the database together with its keys."""


@backup_group.command("create")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=Path("backups"), show_default=True, help="Directory to put it in.")
@with_appcontext
def backup_create(output: Path) -> None:
    """Back up DATABASE_URL's database and the keys its data needs (SECRET_KEY,
    IDENTIFIER_KEY) into a new directory under OUTPUT. Keep it as secret as the keys."""
    try:
        made = backups.create(_url(), _keys(), output)
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"backup written to {made}")


@backup_group.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--target-url", required=True,
              help="An empty PostgreSQL database (postgresql+psycopg://...).")
@click.option("--create", "create_db", is_flag=True,
              help="Create the target database first (it must not exist).")
def backup_restore(backup_dir: Path, target_url: str, create_db: bool) -> None:
    """Restore BACKUP_DIR into the empty database at --target-url, checking the dump's
    checksum, the migration it was at and its row counts. Then run the scheme on it with
    the keys in BACKUP_DIR/keys.env."""
    from sqlalchemy.engine import make_url

    try:
        found = backups.read(backup_dir)
        if create_db:
            backups.create_database(target_url, str(make_url(target_url).database))
        counts = backups.restore(found, target_url)
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo("restored: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    click.echo(f"start the scheme with DATABASE_URL set to it and the keys in "
               f"{backup_dir / 'keys.env'}, then run `rewards ledger verify`")


@backup_group.command("check")
@click.option("--keep", is_flag=True, help="Keep the scratch database and the backup.")
@with_appcontext
def backup_check(keep: bool) -> None:
    """Prove the backups work: back up DATABASE_URL's database with its keys, restore it
    into a new scratch database on the same server, run `rewards ledger verify` on it
    with the backed-up keys, then drop the scratch database. Exit 1 if anything fails."""
    url = _url()
    work = Path(tempfile.mkdtemp(prefix="rewards-backup-check-"))
    name = backups.scratch_name()
    created = False
    try:
        made = backups.create(url, _keys(), work)
        click.echo(f"backed up to {made}")
        found = backups.read(made)
        scratch = backups.create_database(url, name)
        created = True
        counts = backups.restore(found, scratch)
        click.echo(f"restored into {name}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
        verified = backups.verify_restored(scratch, found.keys)
        sys.stdout.write(verified.stdout)
        sys.stderr.write(verified.stderr)
        if verified.returncode != 0:
            raise click.ClickException("the restored ledger does not verify")
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if created and not keep:
            backups.drop_database(url, name)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    click.echo("backup check ok" + (f" (kept {name} and {work})" if keep else ""))
