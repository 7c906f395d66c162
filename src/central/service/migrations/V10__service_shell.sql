-- The service's shell (svc, issue 18): `GET /v1/health` reports the schema version, which the
-- service's role reads from refinery's history (made by `central migrate`, owned by the owner).
GRANT SELECT ON refinery_schema_history TO dps_central_service;
