"""One-statement reads on the OCPI hot path (token resolve, page rows), at the lowest cost per backend.

SQLite: a synchronous read-only engine on the same file. An indexed SQLite read costs ~0.1 ms of
CPU, less than aiosqlite's thread hand-offs around it (execute, fetch, rollback on close), so it
runs inline on the event loop. WAL readers do not wait for writers; if the file is busy anyway the
short timeout falls back to the async engine. Every call reads the database afresh: nothing here
caches a result (a revoked token is refused by every API process at once).

Postgres (and anything else): a small async engine of its own in autocommit mode, without the
main engine's pre-ping, so a read is one round trip (the main pool's checkout ping alone is three:
BEGIN, `;`, ROLLBACK, plus BEGIN/ROLLBACK around the query). A connection the server dropped
fails the read; the pool then discards it and the read is retried once on a fresh connection
(a SELECT is safe to repeat).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Executable, Row, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.store.db import Database

_READER_BUSY_TIMEOUT_S = 0.05
# Per API process, beside the main engine's pool; all kept open. With 5 kept and 10 overflow, 20
# concurrent page readers opened and closed a Postgres connection (a backend fork and startup) on most
# reads: bench_locations on Postgres went 205 → 334 pages/s and 4.1 → 1.5 ms of server CPU per page.
_ASYNC_READER_POOL = 15
_readers: weakref.WeakKeyDictionary[Database, Engine | None] = weakref.WeakKeyDictionary()
_async_readers: weakref.WeakKeyDictionary[Database, AsyncEngine] = weakref.WeakKeyDictionary()


def sqlite_reader(db: Database) -> Engine | None:
    """The synchronous read-only engine of a SQLite file database; None for any other database."""
    if db not in _readers:
        url = db.engine.url
        reader = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            reader = create_engine(url.set(drivername="sqlite"), connect_args={"timeout": _READER_BUSY_TIMEOUT_S})
            event.listen(reader, "connect", _query_only)
        _readers[db] = reader
    return _readers[db]


def _query_only(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA query_only = 1")


def _async_reader(db: Database) -> AsyncEngine:
    reader = _async_readers.get(db)
    if reader is None:
        url = db.engine.url
        if url.get_backend_name() == "sqlite":
            reader = db.engine  # the fallback when the inline reader is busy: rare, keep one pool
        else:
            reader = create_async_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=_ASYNC_READER_POOL, max_overflow=0
            )
        _async_readers[db] = reader
    return reader


async def dispose(db: Database) -> None:
    """Close the reader pools of `db` (the API's shutdown, beside `db.dispose()`)."""
    reader = _async_readers.pop(db, None)
    if reader is not None and reader is not db.engine:
        await reader.dispose()
    sync_reader = _readers.pop(db, None)
    if sync_reader is not None:
        sync_reader.dispose()


async def read_rows(db: Database, stmt: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
    """Every row of one SELECT, on a connection of its own (no transaction left open)."""
    reader = sqlite_reader(db)
    if reader is not None:
        try:
            with reader.connect() as conn:
                return list(conn.execute(stmt, params).all())
        except OperationalError:
            pass  # busy or locked: take the async path rather than block the event loop
    reader = _async_reader(db)
    try:
        return await _read(reader, stmt, params)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return await _read(reader, stmt, params)  # the server dropped that connection: once more


async def _read(engine: AsyncEngine, stmt: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt, params)).all())
