"""Schema migrations (Alembic): the one way tables are created or altered, on SQLite and Postgres.

    python -m app.store.migrate upgrade     # to head; what `make run` and compose's `migrate` run
    python -m app.store.migrate current     # the database's revision and the code's head
    python -m app.store.migrate check       # exit 1 unless the database is at head

API and workers never migrate: a worker refuses to start on a schema that is not at its head, and the
API's /readyz reports it. Concurrent `upgrade`s are safe: they take turns on a lock (an advisory lock
on Postgres, a file lock beside a SQLite file) and the later one finds nothing left to do.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import functools
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import migrations
from app.store.db import Database

SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent
# Any constant shared by every process that migrates this database (Postgres advisory lock key).
_PG_LOCK_KEY = 0x63706F6C6162  # "cpolab"
BASELINE = "0001"


class SchemaNotAtHead(RuntimeError):
    """The database's revision is not the one this code was written for."""


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


@functools.cache  # the code's head cannot change while the process runs; /readyz asks every probe
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(db: Database) -> str | None:
    """The revision stamped in the database (None: never migrated)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


async def require_at_head(db: Database) -> None:
    current, head = await current_revision(db), head_revision()
    if current != head:
        raise SchemaNotAtHead(
            f"database schema is at revision {current or 'none'}, this code needs {head}: "
            "run `python -m app.store.migrate upgrade` first"
        )


@asynccontextmanager
async def _migration_lock(db: Database, conn: AsyncConnection) -> Any:
    if db.engine.dialect.name == "postgresql":
        # Held until the migration transaction ends (Postgres runs DDL in transactions).
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
        return
    if db.sqlite_path is None:  # in-memory SQLite
        yield
        return
    fd = await asyncio.to_thread(os.open, f"{db.sqlite_path}.migrate-lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _run(connection: Connection, revision: str, downgrade: bool) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    if _current(connection) is None and inspect(connection).has_table("cpo"):
        # Made by create_all before migrations existed: that schema is the baseline.
        command.stamp(cfg, BASELINE)
    (command.downgrade if downgrade else command.upgrade)(cfg, revision)


async def upgrade(db: Database, revision: str = "head") -> None:
    async with db.engine.connect() as conn, _migration_lock(db, conn):
        await conn.run_sync(_run, revision, False)
        await conn.commit()


async def downgrade(db: Database, revision: str) -> None:
    async with db.engine.connect() as conn, _migration_lock(db, conn):
        await conn.run_sync(_run, revision, True)
        await conn.commit()


async def _cli(action: str, url: str) -> int:
    db = Database(url)
    try:
        if action == "upgrade":
            await upgrade(db)
            print(f"database at revision {await current_revision(db)} (head)")
            return 0
        current, head = await current_revision(db), head_revision()
        print(f"current: {current or 'none'}\nhead:    {head}")
        return 0 if action == "current" or current == head else 1
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    from app.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m app.store.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["upgrade", "current", "check"])
    parser.add_argument("--database-url", help="default: CPOLAB_DATABASE_URL")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(_cli(args.action, args.database_url or get_settings().database_url)))


if __name__ == "__main__":
    main()
