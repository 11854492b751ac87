"""Schema migrations (Alembic) on the selected backend (`--db sqlite|postgres`): upgrades keep rows,
models and migrations agree (`alembic check`), concurrent upgrades take turns, and no process runs
on a schema it was not written for."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app.store.db import Database
from app.store.migrate import BASELINE, alembic_config, current_revision, downgrade, head_revision, upgrade
from tests.databases import ROOT, DatabaseFactory
from tests.stack import SECRET

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _run(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CPOLAB_DATABASE_URL": url, "CPOLAB_JWT_SECRET": SECRET}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _migrate(action: str, url: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "app.store.migrate", action, url=url)


async def _indexes(db: Database, table: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: {ix["name"] for ix in inspect(c).get_indexes(table)})


_CPO_INSERT = (
    "INSERT INTO cpo ({id}org, country_code, party_id, requested_party_id, role, name_prefix, template,"
    " template_version, seed, ocpi_version, status, locations, chargers, evses, connectors, created_at, updated_at)"
    " VALUES ({value}'mig-org', 'DE', 'MIG', 'MIG', 'CPO', 'Mig', 'small-urban-ac', 1, 7, '2.2.1', 'READY',"
    " 1, 1, 1, 1, :now, :now)"
)


async def _seed_baseline_rows(db: Database) -> None:
    """CPO 41 with a tariff, and CPO 50 created then deleted (its id must never be handed out again)."""
    async with db.engine.begin() as conn:
        for cpo_id in (41, 50):
            await conn.execute(text(_CPO_INSERT.format(id="id, ", value=f"{cpo_id}, ")), {"now": NOW})
        await conn.execute(text("DELETE FROM cpo WHERE id = 50"))
        await conn.execute(
            text("INSERT INTO tariff (cpo_id, id, currency, data, last_updated) VALUES (41, 'T1', 'EUR', '{}', :now)"),
            {"now": NOW},
        )


async def _assert_ids_not_reused(db: Database) -> None:
    """SQLite: AUTOINCREMENT and its high-water mark survive table rebuilds. (Postgres ids come from a
    sequence, which never goes back; the explicit ids inserted above do not move it.)"""
    if db.engine.dialect.name != "sqlite":
        return
    async with db.engine.begin() as conn:
        ddl = (await conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'cpo'"))).scalar_one()
        assert "AUTOINCREMENT" in ddl
        new_id = (
            await conn.execute(text(_CPO_INSERT.format(id="", value="") + " RETURNING id"), {"now": NOW})
        ).scalar_one()
        await conn.execute(text("DELETE FROM cpo WHERE id = :id"), {"id": new_id})
    assert new_id > 50


async def _assert_rows_kept(db: Database) -> None:
    async with db.engine.connect() as conn:
        cpo = (await conn.execute(text("SELECT org, status, seed FROM cpo WHERE id = 41"))).one()
        tariff = (await conn.execute(text("SELECT currency FROM tariff WHERE cpo_id = 41"))).one()
    assert tuple(cpo) == ("mig-org", "READY", 7) and tuple(tariff) == ("EUR",)


async def test_upgrade_from_the_previous_revision_keeps_rows(databases: DatabaseFactory):
    target = databases.new("previous", migrated=False)
    db = Database(target.url)
    try:
        previous = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision()).down_revision
        assert isinstance(previous, str)
        await upgrade(db, BASELINE)
        await _seed_baseline_rows(db)
        await upgrade(db, previous)
        assert await current_revision(db) == previous

        out = _migrate("upgrade", target.url)  # the command make run / compose run
        assert out.returncode == 0, out.stderr
        assert await current_revision(db) == head_revision()
        await _assert_rows_kept(db)
        assert "ix_tariff_cpo_updated" in await _indexes(db, "tariff")
        assert "ix_ocpi_session_cpo_updated" in await _indexes(db, "ocpi_session")
        assert "ix_ocpi_cdr_cpo_updated" in await _indexes(db, "ocpi_cdr")
        await _assert_ids_not_reused(db)
        async with db.engine.begin() as conn:  # 0003: any signed 64-bit seed fits (Postgres INTEGER did not)
            await conn.execute(text("UPDATE cpo SET seed = :seed WHERE id = 41"), {"seed": 2**63 - 1})
            assert (await conn.execute(text("SELECT seed FROM cpo WHERE id = 41"))).scalar_one() == 2**63 - 1
            await conn.execute(text("UPDATE cpo SET seed = 7 WHERE id = 41"))

        await downgrade(db, BASELINE)  # every revision can be rolled back, rows intact
        assert "ix_tariff_cpo_updated" not in await _indexes(db, "tariff")
        await _assert_rows_kept(db)
        await _assert_ids_not_reused(db)
    finally:
        await db.dispose()


async def test_a_database_made_before_migrations_is_adopted_as_the_baseline(databases: DatabaseFactory):
    """Deployed databases were made by create_all and carry no alembic_version: upgrade adopts them."""
    target = databases.new("pre_alembic", migrated=False)
    db = Database(target.url)
    try:
        await upgrade(db, BASELINE)
        await _seed_baseline_rows(db)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        assert await current_revision(db) is None

        await upgrade(db)
        assert await current_revision(db) == head_revision()
        await _assert_rows_kept(db)
    finally:
        await db.dispose()


def test_models_and_migrations_agree(databases: DatabaseFactory):
    target = databases.new("check")
    out = _run(sys.executable, "-m", "alembic", "check", url=target.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No new upgrade operations detected" in out.stdout + out.stderr


def test_check_and_current_report_the_revision(databases: DatabaseFactory):
    empty = databases.new("empty", migrated=False)
    out = _migrate("check", empty.url)
    assert out.returncode == 1 and "current: none" in out.stdout and head_revision() in out.stdout
    assert _migrate("current", empty.url).returncode == 0
    assert _migrate("upgrade", empty.url).returncode == 0
    out = _migrate("check", empty.url)
    assert out.returncode == 0 and f"current: {head_revision()}" in out.stdout


async def test_concurrent_upgrades_take_turns(databases: DatabaseFactory):
    """compose may run `migrate` twice (a restart, a second replica): both succeed, once each."""
    target = databases.new("race", migrated=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "app.store.migrate", "upgrade", "--database-url", target.url]
    procs = [await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(3)]
    results = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode()[-2000:] for _, err in results]
    db = Database(target.url)
    try:
        assert await current_revision(db) == head_revision()
    finally:
        await db.dispose()


def test_worker_refuses_a_schema_that_is_not_at_head(databases: DatabaseFactory):
    empty = databases.new("unmigrated", migrated=False)
    out = _run(sys.executable, "worker.py", url=empty.url, timeout=60)
    assert out.returncode != 0
    assert "cpolab worker refuses to start" in out.stderr and "app.store.migrate upgrade" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
