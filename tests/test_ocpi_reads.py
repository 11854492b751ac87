"""app.ocpi.reads: the hot-path reads see every commit at once, survive a dropped connection, and
on Postgres refuse a statement SQLAlchemy would have to rewrite per execution and take the database
URL's driver options as the main engine does."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.ocpi import reads
from app.store.db import Database
from app.store.tables import Cpo
from tests.databases import DatabaseFactory
from tests.rows import cpo_row

_STATUS = select(Cpo.status).where(Cpo.id == 1)  # type: ignore[arg-type]


async def test_a_read_sees_a_commit_made_after_the_previous_read(databases: DatabaseFactory) -> None:
    made = databases.new("reads_fresh")
    db = Database(made.url)
    try:
        async with db.session() as session, session.begin():
            session.add(cpo_row("reads-org", "RDS", "READY", id=1))
        assert await reads.read_rows(db, _STATUS, {}) == [("READY",)]
        async with db.session() as session, session.begin():
            await session.execute(text("UPDATE cpo SET status = 'DESTROYED' WHERE id = 1"))
        assert await reads.read_rows(db, _STATUS, {}) == [("DESTROYED",)]  # no cached answer
    finally:
        await reads.dispose(db)
        await db.dispose()


async def test_a_connection_dropped_by_the_server_is_replaced_and_the_read_retried(
    databases: DatabaseFactory,
) -> None:
    if databases.backend != "postgres":
        pytest.skip("SQLite reads inline on a file: there is no server to drop the connection")
    made = databases.new("reads_dropped")
    db = Database(made.url)
    try:
        async with db.session() as session, session.begin():
            session.add(cpo_row("reads-org", "RDS", "READY", id=1))
        assert await reads.read_rows(db, _STATUS, {}) == [("READY",)]  # a pooled connection now exists
        with made.engine().connect() as admin:
            killed = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert killed >= 1
        assert await reads.read_rows(db, _STATUS, {}) == [("READY",)]
    finally:
        await reads.dispose(db)
        await db.dispose()


async def test_a_statement_expanded_per_execution_is_refused_on_postgres(databases: DatabaseFactory) -> None:
    if databases.backend != "postgres":
        pytest.skip("only the Postgres reader sends SQLAlchemy's compiled text itself")
    made = databases.new("reads_expanding")
    db = Database(made.url)
    try:
        expanding = select(Cpo.status).where(Cpo.id.in_([1, 2]))  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="bindparam"):
            await reads.read_rows(db, expanding, {})
    finally:
        await reads.dispose(db)
        await db.dispose()


async def test_the_url_options_sqlalchemys_adapter_knows_reach_asyncpg_in_its_terms(databases: DatabaseFactory) -> None:
    if databases.backend != "postgres":
        pytest.skip("the asyncpg reader is Postgres-only")
    made = databases.new("reads_url_options")
    # Both are options of SQLAlchemy's asyncpg adapter (the main engine honours them); passed to
    # asyncpg unchanged, the first is an unknown keyword and the second a string where a number goes.
    db = Database(f"{made.url}?prepared_statement_cache_size=10&command_timeout=5")
    try:
        async with db.session() as session, session.begin():
            session.add(cpo_row("reads-org", "RDS", "READY", id=1))
        assert await reads.read_rows(db, _STATUS, {}) == [("READY",)]
    finally:
        await reads.dispose(db)
        await db.dispose()
