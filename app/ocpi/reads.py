"""One-statement reads on the OCPI hot path (token resolve, page rows), at the lowest cost per backend.

SQLite: a synchronous read-only engine on the same file. An indexed SQLite read costs ~0.1 ms of
CPU, less than aiosqlite's thread hand-offs around it (execute, fetch, rollback on close), so it
runs inline on the event loop. WAL readers do not wait for writers; if the file is busy anyway the
short timeout falls back to the async engine. Every call reads the database afresh: nothing here
caches a result (a revoked token is refused by every API process at once).

Postgres: straight on an asyncpg pool (app.ocpi.pg_reads, imported only for a Postgres database).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.exc import OperationalError

from app.store.db import Database

_READER_BUSY_TIMEOUT_S = 0.05
_readers: weakref.WeakKeyDictionary[Database, Engine | None] = weakref.WeakKeyDictionary()


def sqlite_reader(db: Database) -> Engine | None:
    """The synchronous read-only engine of a SQLite file database; None for any other database."""
    if db not in _readers:
        reader = None
        if db.sqlite_path is not None:
            url = db.engine.url.set(drivername="sqlite")
            reader = create_engine(url, connect_args={"timeout": _READER_BUSY_TIMEOUT_S})
            event.listen(reader, "connect", _query_only)
        _readers[db] = reader
    return _readers[db]


def _query_only(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA query_only = 1")


async def dispose(db: Database) -> None:
    """Close the reader pools of `db` (the API's shutdown, beside `db.dispose()`)."""
    if db.engine.dialect.name == "postgresql":
        from app.ocpi import pg_reads

        await pg_reads.dispose(db)
    sync_reader = _readers.pop(db, None)
    if sync_reader is not None:
        sync_reader.dispose()


async def read_rows(db: Database, stmt: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
    """Every row of one SELECT, on a connection of its own (no transaction left open)."""
    reader = sqlite_reader(db)
    if reader is not None:
        try:
            with reader.connect() as conn:
                return list(conn.execute(stmt, params).all())
        except OperationalError:
            pass  # busy or locked: take the async path rather than block the event loop
    if db.engine.dialect.name == "postgresql":
        from app.ocpi import pg_reads  # asyncpg is the postgres extra's: not imported on SQLite

        return await pg_reads.read_rows(db, stmt, params)
    async with db.engine.connect() as conn:  # SQLite, busy: the main engine, which waits its turn
        return list((await conn.execute(stmt, params)).all())
