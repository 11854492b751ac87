"""The app database a benchmark runs on: `--database sqlite` (the Stack's own file, the default) or
`--database postgres` (a throwaway PostgreSQL server started here as a plain process, like the test
suite's, with a fresh database per stack, a copy of one the real `migrate` command brought to head)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from tests.databases import AppDatabase, DatabaseFactory, PostgresServer
from tests.stack import free_port

_TICK = os.sysconf("SC_CLK_TCK")


def add_database_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="app database: a SQLite file (default) or a throwaway PostgreSQL server started by the bench",
    )


class BenchDatabases:
    """Hands out migrated app databases (the test suite's DatabaseFactory on the bench's server); None on
    SQLite (the Stack then makes and migrates its own)."""

    def __init__(self, server: PostgresServer | None) -> None:
        self.server = server
        self._factory = DatabaseFactory("postgres", server.workdir, server) if server is not None else None

    def new(self, name: str) -> AppDatabase | None:
        return self._factory.new(name) if self._factory is not None else None

    def server_cpu_seconds(self) -> float:
        """CPU seconds of every process of the Postgres server: postmaster, backends, background workers."""
        if self.server is None or self.server.proc is None:
            return 0.0
        return tree_cpu_seconds(self.server.proc.pid)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and all its descendants, found by parent pid (Postgres backends call
    setsid, so a session or process group does not hold them); children already reaped count through
    their parent's cutime/cstime."""
    stats: dict[int, tuple[int, float]] = {}  # pid → (ppid, cpu seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # after the command: state ppid pgrp session … utime(11) stime cutime cstime
        stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


@contextmanager
def bench_databases(kind: str) -> Iterator[BenchDatabases]:
    """A Postgres server for the whole benchmark when `kind` is postgres, stopped (and its data dir removed)
    on the way out, whatever happens."""
    if kind == "sqlite":
        yield BenchDatabases(None)
        return
    server = PostgresServer(free_port())
    try:
        server.start()
        print(f"PostgreSQL {server.bindir.parent.name} on 127.0.0.1:{server.port} (fsync off, like the tests)")
        yield BenchDatabases(server)
    finally:
        server.stop()
