"""OCPP charge-point simulators. They speak OCPP-J over WebSockets like real chargers and know nothing
of cpolab (no database, no OCPI, no import from the rest of `app`).

    from app.sim.config import ChargerConfig, SimEvse, Tunables
    from app.sim.pod import Pod

    pod = Pod([ChargerConfig(...), ...], seed=7)
    task = asyncio.create_task(pod.run())   # until cancelled
    pod.online(), pod.stats()

The package itself imports nothing, so a caller that needs only the configuration's limits
(app.control.schemas) does not load the simulator and the `ocpp` client code with it.
"""
