"""Database.write_promptly: on a SQLite file another process has locked, a request's short write
polls for the lock (rolling back and running its work again) instead of sleeping in SQLite's busy
handler, gives up with a clear error after its patience, and leaves nothing half-written."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.db import Database
from app.store.tables import Cpo
from tests.databases import DatabaseFactory
from tests.rows import cpo_row

pytestmark = pytest.mark.sqlite_only

# Another process (like a worker) takes SQLite's write lock, says so, holds it, then commits.
_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@contextmanager
def write_lock_held(path: str, seconds: float) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


async def _count(db: Database) -> int:
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(Cpo))).scalar_one()


async def test_a_write_waits_for_another_process_lock_by_polling_and_commits_once(
    databases: DatabaseFactory,
) -> None:
    made = databases.new("prompt_write_waits")
    db = Database(made.url)
    attempts = 0

    async def insert(session: AsyncSession) -> str:
        nonlocal attempts
        attempts += 1
        session.add(cpo_row("prompt-org", "PRW", "PENDING", id=1))
        await session.flush()
        return "done"

    try:
        with write_lock_held(str(db.sqlite_path), 0.6) as holder:
            started = time.monotonic()
            assert await db.write_promptly(insert) == "done"
            waited = time.monotonic() - started
            assert holder.wait(timeout=10) == 0  # it committed: the lock was really released by it
        assert waited >= 0.3  # it did wait for the other process …
        assert attempts > 1  # … by polling (rolled back and ran again), not inside SQLite's handler
        assert await _count(db) == 1  # and the repeated work wrote its row once
    finally:
        await db.dispose()


async def test_a_write_gives_up_after_its_patience_and_writes_nothing(databases: DatabaseFactory) -> None:
    made = databases.new("prompt_write_gives_up")
    db = Database(made.url)

    async def insert(session: AsyncSession) -> None:
        session.add(cpo_row("prompt-org", "PRG", "PENDING", id=1))
        await session.flush()

    try:
        with write_lock_held(str(db.sqlite_path), 30):
            started = time.monotonic()
            with pytest.raises(OperationalError, match="locked"):
                await db.write_promptly(insert, patience_s=0.3)
            assert time.monotonic() - started < 5  # not the 30 s of the ordinary busy timeout
        assert await _count(db) == 0
    finally:
        await db.dispose()


async def test_other_errors_are_not_retried(databases: DatabaseFactory) -> None:
    made = databases.new("prompt_write_other_errors")
    db = Database(made.url)
    attempts = 0

    async def broken(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(select(func.count()).select_from(Cpo).where(Cpo.id == func.no_such_function()))

    try:
        with pytest.raises(OperationalError, match="no such function"):
            await db.write_promptly(broken)
        assert attempts == 1
    finally:
        await db.dispose()
