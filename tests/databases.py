"""The app database the tests run on: SQLite files, or a real PostgreSQL server started here as a
plain process (no Docker). `pytest --db postgres` (or CPOLAB_TEST_DB=postgres) selects it.

Every database handed out is new and migrated to head by `python -m app.store.migrate upgrade`, the
command `make run` and compose's `migrate` service run: tests never create tables any other way.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from app.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgres")


def postgres_bindir() -> Path:
    """Debian's server binaries (apt-get install postgresql); CPOLAB_PG_BINDIR overrides."""
    if explicit := os.environ.get("CPOLAB_PG_BINDIR"):
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(
            "no PostgreSQL server found: `apt-get install postgresql` (CI does) or set CPOLAB_PG_BINDIR; "
            "or run the suite on SQLite (the default)"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """A throwaway cluster in a temp dir of its own, on a free loopback port, durability off (tests only)."""

    def __init__(self, port: int) -> None:
        # Not under pytest's tmp dir: that is private to root, and the server may run as `postgres`.
        self.workdir = Path(tempfile.mkdtemp(prefix="cpolab-pg-"))
        self.port = port
        self.bindir = postgres_bindir()
        self.data = self.workdir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        # The server refuses to run as root; CI runs as root, so it runs as Debian's `postgres` user.
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.user else list(args)

    def start(self) -> PostgresServer:
        if self.user:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"),
            check=True,
            capture_output=True,
        )
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 — lives as long as the server
        self.proc = subprocess.Popen(
            self._cmd(
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=500",
                # A test server: losing it on a crash costs nothing, syncing costs seconds per test.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start, see {self.workdir / 'postgres.log'}")
            time.sleep(0.1)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> None:
        engine = create_engine(self.admin_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


class AppDatabase:
    """One migrated app database: the async URL processes use, plus a sync engine for assertions."""

    def __init__(self, url: str, sync_url: str) -> None:
        self.url = url
        self.sync_url = sync_url
        self._engine: Engine | None = None

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(
                self.sync_url, connect_args={"timeout": 30} if self.dialect == "sqlite" else {}
            )
        return self._engine

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Positional `?` parameters on either backend; aware datetimes stored as the app stores them."""
        names = iter(range(len(args)))
        bound = re.sub(r"\?", lambda _m: f":p{next(names)}", sql)
        params = {f"p{i}": self._param(a) for i, a in enumerate(args)}
        with self.engine().begin() as conn:
            result = conn.execute(text(bound), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def _param(self, value: object) -> object:
        if self.dialect == "sqlite" and isinstance(value, datetime):
            # SQLAlchemy's SQLite DateTime: naive UTC text, which is what the app's queries compare.
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def last_cpo_id(self) -> int:
        sql = (
            # last_value is the start value until the first nextval (is_called false).
            "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM cpo_id_seq"
            if self.dialect == "postgresql"
            else "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'cpo'"
        )
        return int(self.query(sql)[0][0])

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def migrate(url: str) -> None:
    """Exactly what `make run` and compose's `migrate` service run."""
    subprocess.run(
        [sys.executable, "-m", "app.store.migrate", "upgrade", "--database-url", url],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


class DatabaseFactory:
    """Hands out fresh databases on the selected backend. A migrated one is a copy of a template that
    the real `migrate` command brought to head once per session (Postgres: CREATE DATABASE … TEMPLATE;
    SQLite: a file copy), which saves a migration process per test."""

    TEMPLATE = "cpolab_template"

    def __init__(self, backend: str, workdir: Path, postgres: PostgresServer | None) -> None:
        self.backend = backend
        self.workdir = workdir
        self.postgres = postgres
        self._count = 0
        self._made: list[AppDatabase] = []
        self._template: AppDatabase | None = None

    def _empty(self, slug: str, template: str | None = None) -> AppDatabase:
        if self.postgres is not None:
            self.postgres.create_database(slug, template=template)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.postgres.port}/{slug}"
            return AppDatabase(url, self.postgres.admin_url(slug))
        path = self.workdir / f"{slug}.db"
        if template is not None:
            shutil.copyfile(self.workdir / f"{template}.db", path)
        return AppDatabase(f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}")

    def new(self, name: str = "db", *, migrated: bool = True) -> AppDatabase:
        self._count += 1
        slug = f"{re.sub(r'[^a-z0-9_]', '_', name.lower())[:40]}_{self._count}"
        if migrated and self._template is None:
            self._template = self._empty(self.TEMPLATE)
            migrate(self._template.url)
        db = self._empty(slug, self.TEMPLATE if migrated else None)
        self._made.append(db)
        return db

    @asynccontextmanager
    async def opened(self, name: str = "db") -> AsyncIterator[Database]:
        """A fresh migrated database, opened with the app's own engine, disposed afterwards."""
        database = Database(self.new(name).url)
        try:
            yield database
        finally:
            await database.dispose()

    def close(self) -> None:
        for db in self._made:
            db.dispose()
