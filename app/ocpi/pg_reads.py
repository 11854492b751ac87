"""The Postgres half of app.ocpi.reads: one-statement reads straight on an asyncpg pool.

Each statement is compiled by SQLAlchemy once and sent as asyncpg's cached prepared statement,
outside any transaction. Through SQLAlchemy's async engine the two reads of a locations page (token,
page rows) cost the API ~0.74 ms of CPU; straight on asyncpg ~0.47 ms, of which the pool's reset
query at every release (a round trip restoring session state these reads never change) was ~0.12 ms
per read: it is skipped. A connection the server dropped fails the read; the pool replaces it and the
read is retried once (a SELECT is safe to repeat). Rows are asyncpg Records: callers read them by
position or unpack them, as they do SQLAlchemy rows.

Imported only for a Postgres database: asyncpg comes with the `postgres` extra.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Executable

from app.store.db import Database

# Per API process, beside the main engine's pool; kept open once made. With 5 kept and 10 overflow,
# 20 concurrent page readers opened and closed a connection (a backend fork and startup) on most
# reads: bench_locations on Postgres went 205 → 334 pages/s.
POOL_SIZE = 15
# What a dropped connection raises (terminated backend, closed socket): retried once.
_DROPPED = (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError, asyncpg.InterfaceError, OSError)
_pools: weakref.WeakKeyDictionary[Database, asyncio.Future[asyncpg.Pool]] = weakref.WeakKeyDictionary()
_statements: dict[Executable, tuple[str, tuple[str, ...], dict[str, Any]]] = {}


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pool release without asyncpg's reset query: these reads set nothing to reset."""


def _pool(db: Database) -> asyncio.Future[asyncpg.Pool]:
    pool = _pools.get(db)
    if pool is None:
        _args, kwargs = db.engine.dialect.create_connect_args(db.engine.url)
        # The URL's options as SQLAlchemy's asyncpg adapter reads them, turned into asyncpg's.
        kwargs.pop("prepared_statement_name_func", None)
        if "prepared_statement_cache_size" in kwargs:
            kwargs["statement_cache_size"] = int(kwargs.pop("prepared_statement_cache_size"))
        if "command_timeout" in kwargs:
            kwargs["command_timeout"] = float(kwargs["command_timeout"])
        made = asyncpg.create_pool(min_size=0, max_size=POOL_SIZE, reset=_keep_session, **kwargs)
        pool = _pools[db] = asyncio.ensure_future(made)
    return pool


def _statement(db: Database, stmt: Executable) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """(SQL, parameter names in $n order, the values bound inside `stmt`), compiled once."""
    found = _statements.get(stmt)
    if found is None:
        compiled = stmt.compile(dialect=db.engine.dialect)
        sql = str(compiled)
        if "POSTCOMPILE" in sql:  # an IN of a Python list, expanded per execution by SQLAlchemy alone
            raise ValueError("hot-path reads take fixed parameters: bind each IN element with bindparam()")
        inside = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        found = _statements[stmt] = (sql, tuple(compiled.positiontup or ()), inside)
    return found


async def read_rows(db: Database, stmt: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
    sql, names, inside = _statement(db, stmt)
    args = [params[name] if name in params else inside[name] for name in names]
    pool = await _pool(db)
    try:
        return await pool.fetch(sql, *args)
    except _DROPPED:
        return await pool.fetch(sql, *args)  # the server dropped that connection: once more


async def dispose(db: Database) -> None:
    pool = _pools.pop(db, None)
    if pool is not None and pool.done() and pool.exception() is None:
        await pool.result().close()
