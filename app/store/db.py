"""Async engine, sessions and dialect-neutral idempotent inserts (SQLite by default, Postgres too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

from app.store import charging_tables as charging_models  # noqa: F401
from app.store import ocpi_tables as ocpi_models  # noqa: F401
from app.store import tables as models  # registers every table on SQLModel.metadata

# Every table of the app: what the migrations must produce (migrations/env.py, `alembic check`).
metadata = SQLModel.metadata

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A prompt writer's longest sleep inside SQLite before it yields to the event loop and tries again.
SQLITE_PROMPT_POLL_MS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_file_path(url: str) -> str | None:
    """The file of a SQLite URL; None for an in-memory SQLite database or any other backend."""
    path = url.split(":///", 1)[-1]
    return path if url.startswith("sqlite") and path and path != ":memory:" else None


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> AsyncEngine:
    if url.startswith("sqlite"):
        if path := sqlite_file_path(url):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

        # API and workers write the same file: WAL lets readers run beside the single writer,
        # busy_timeout makes a second writer wait instead of failing with "database is locked".
        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self.sqlite_path = sqlite_file_path(url)
        # SQLite file only: the same file, its connections polling for the write lock (write_promptly).
        self._prompt_engine = make_engine(url, busy_timeout_ms=SQLITE_PROMPT_POLL_MS) if self.sqlite_path else None

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._prompt_engine is not None:
            await self._prompt_engine.dispose()

    async def write_promptly(self, work: Callable[[AsyncSession], Awaitable[T]], patience_s: float = 30.0) -> T:
        """`work` in one write transaction (committed), for a short write on a request's path.

        On SQLite a writer that finds the file locked by another process (a worker) sleeps in the
        busy handler's growing steps (1, 2, 5 … 100 ms) and may wake long after the lock is free. A
        prompt writer sleeps at most SQLITE_PROMPT_POLL_MS inside SQLite, then rolls back, yields and
        runs `work` again, so it starts within a few ms of the lock freeing: `work` must be safe to
        repeat after a rollback (make its objects inside it). Elsewhere: one plain transaction."""
        if self._prompt_engine is None:
            async with self.session() as session, session.begin():
                return await work(session)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                async with AsyncSession(self._prompt_engine, expire_on_commit=False) as session, session.begin():
                    return await work(session)
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.001)

    def upsert(self, table: Any) -> Any:
        """This dialect's INSERT, which knows ON CONFLICT (SQLite and Postgres spell it alike)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def insert_ignore(self, table: type[SQLModel]) -> Any:
        """INSERT … ON CONFLICT DO NOTHING: replays of an activity leave existing rows untouched.

        Execute it with the rows as parameters (`session.execute(stmt, rows)`): one prepared statement
        run per row (executemany) costs far less CPU than compiling a multi-row VALUES clause.
        """
        return self.upsert(table.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]


async def serialize_on(session: AsyncSession, key: str) -> None:
    """Make transactions that call this with the same key run one after another, from here to their
    end: a transaction-scoped advisory lock on Postgres. SQLite needs nothing: it has one writer at a
    time, and the caller's INSERT before its reads has taken that lock already."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


async def delete_owned_rows(session: AsyncSession, cpo_id: int) -> int:
    """Delete every row a CPO owns: each table keyed by cpo_id (network, tokens, party reservation,
    blueprint, OCPI peers and log; new tables are covered automatically), not the CPO row itself.
    Returns the rows deleted."""
    if session.bind.dialect.name == "postgresql":
        # The CSMS writes a charger's row first, then its EVSEs, Location and outbox (a disconnect, a
        # status). Deleting children first took those locks in the opposite order: Postgres found
        # deadlocks between a teardown and its chargers' disconnects. Lock the chargers first.
        charger = models.Charger.__table__  # type: ignore[attr-defined]
        lock = select(charger.c.identity).where(charger.c.cpo_id == cpo_id).order_by(charger.c.identity)
        await session.execute(lock.with_for_update())
    deleted = 0
    for table in reversed(SQLModel.metadata.sorted_tables):
        if "cpo_id" in table.c:
            deleted += (await session.execute(delete(table).where(table.c.cpo_id == cpo_id))).rowcount or 0
    return deleted
