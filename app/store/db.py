"""Async engine, sessions and dialect-neutral idempotent inserts (SQLite by default, Postgres too)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

from app.store import charging_tables as charging_models  # noqa: F401
from app.store import ocpi_tables as ocpi_models  # noqa: F401
from app.store import tables as models  # registers every table on SQLModel.metadata

# Every table of the app: what the migrations must produce (migrations/env.py, `alembic check`).
metadata = SQLModel.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        # API and workers write the same file: WAL lets readers run beside the single writer,
        # busy_timeout makes a second writer wait instead of failing with "database is locked".
        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    async def dispose(self) -> None:
        await self.engine.dispose()

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
