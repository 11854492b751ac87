"""Raise this process's open-file limit to its hard limit: every charger WebSocket is a descriptor
(an API process may hold 10,000 of them, a sim worker as many), and Linux often starts processes
with a soft limit of 1,024."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("cpolab")


def raise_open_files_limit() -> int:
    """Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    return soft
