"""OCPP charge-point simulators. They speak OCPP-J over WebSockets like real chargers and know nothing
of cpolab (no database, no OCPI, no import from the rest of `app`).

    pod = Pod([ChargerConfig(...), ...], seed=7)
    task = asyncio.create_task(pod.run())   # until cancelled
    pod.online(), pod.stats()
"""

from app.sim.config import ChargerConfig, SimEvse, Tunables
from app.sim.pod import Pod

__all__ = ["ChargerConfig", "Pod", "SimEvse", "Tunables"]
