"""The simulators' logging: quiet by design (10,000 chargers per process), never a secret.

- `log`: our own messages, no per-frame logging.
- `ocpp_log`: handed to every ChargePoint instead of the library's `ocpp` logger. The library logs
  each frame at INFO and whole frames with its errors; a frame may carry a password
  (ChangeConfiguration AuthorizationKey), so frames are cut out of every record and only records
  of WARNING and above are kept.
- `ws_log`: handed to `websockets.connect`; pinned at WARNING because at DEBUG websockets logs the
  upgrade headers (Authorization) and every frame, whatever the root logger's level.
- `LogOnce`: a pod reports each kind of trouble once (the first charger that hit it), not once per
  charger per retry.
"""

from __future__ import annotations

import logging

log = logging.getLogger("cpolab.sim")
ocpp_log = logging.getLogger("cpolab.sim.ocpp")
ocpp_log.setLevel(logging.WARNING)
ws_log = logging.getLogger("cpolab.sim.websockets")
ws_log.setLevel(logging.WARNING)


class _DropFrames(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.args = tuple("<frame>" for _ in record.args) if isinstance(record.args, tuple) else ()
        if record.exc_info and record.exc_info[0] is not None:
            # An exception's text (e.g. a schema error) may quote the frame: keep its type only.
            record.msg = f"{record.msg} ({record.exc_info[0].__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


ocpp_log.addFilter(_DropFrames())


class LogOnce:
    """Remembers which kinds of trouble were logged already, per pod."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warning(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._seen:
            self._seen.add(kind)
            log.warning(message + " (logged once per pod)", *args)
