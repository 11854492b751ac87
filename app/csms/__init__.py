"""Our OCPP server (CSMS) inside the API: the `/ocpp/{cpo_id}/{identity}` WebSocket endpoint for OCPP
1.6J and 2.0.1 chargers (app.csms.runtime), one ChargePoint class per version (v16, v201), the
connection table (connections), group-committed writes (writer) and the OCPP frame log (ocpp_log)."""
