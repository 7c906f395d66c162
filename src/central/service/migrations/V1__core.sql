-- The central ledger's core (issue 18). Never edit a migration that has shipped: add the next one.
-- Migrations run as the database owner (`central migrate`); the service connects as a login role
-- that is a member of dps_central_service, which has no UPDATE or DELETE on the audit table.

DO $$
BEGIN
    CREATE ROLE dps_central_service NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

-- Stations that joined, known by their client certificate.
CREATE TABLE stations (
    station_id          TEXT PRIMARY KEY,
    certificate_sha256  TEXT NOT NULL UNIQUE,
    certificate_pem     TEXT NOT NULL,
    joined_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at          TIMESTAMPTZ,
    revoked_reason      TEXT,
    last_seen           TIMESTAMPTZ,
    -- The head of the station's chain the service holds (0 and 64 zeros before the first row).
    head_seq            BIGINT NOT NULL DEFAULT 0,
    head_hash           TEXT NOT NULL DEFAULT repeat('0', 64)
);

-- One-time join tokens: only the secret's hash is kept.
CREATE TABLE join_tokens (
    token_id       TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL,
    -- If set, only this station id may join with the token.
    station_id     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    used_at        TIMESTAMPTZ,
    used_by        TEXT
);

-- The service's own audit chain: every join, refusal, receipt, lease, enrollment. Append-only:
-- the trigger refuses UPDATE and DELETE for everyone, and the service role is not granted them.
-- hash = SHA-256(prev ‖ canonical) as in src/central/service/audit.rs.
CREATE TABLE central_audit (
    position    BIGINT PRIMARY KEY,
    at          TEXT NOT NULL,
    station_id  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE FUNCTION central_audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'central_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER central_audit_append_only
    BEFORE UPDATE OR DELETE ON central_audit
    FOR EACH ROW EXECUTE FUNCTION central_audit_refuse_change();
CREATE TRIGGER central_audit_no_truncate
    BEFORE TRUNCATE ON central_audit
    FOR EACH STATEMENT EXECUTE FUNCTION central_audit_refuse_change();

GRANT SELECT, INSERT, UPDATE ON stations TO dps_central_service;
GRANT SELECT, INSERT, UPDATE ON join_tokens TO dps_central_service;
GRANT SELECT, INSERT ON central_audit TO dps_central_service;

-- ---------------------------------------------------------------------------------------------
-- Ingest (src/central/service/ingest*): every outbox row as received, append-only.
CREATE SEQUENCE central_position;

CREATE TABLE ingested_rows (
    station_id      TEXT NOT NULL REFERENCES stations,
    seq             BIGINT NOT NULL CHECK (seq > 0),
    -- The service's global order (nextval('central_position')).
    position        BIGINT NOT NULL UNIQUE,
    -- SHA-256 (hex) of `payload`: the same key with another hash is tampering.
    payload_sha256  TEXT NOT NULL,
    -- The wire::OutboxRow as JSON text, as received.
    payload         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, seq)
);

CREATE TRIGGER ingested_rows_append_only
    BEFORE UPDATE OR DELETE ON ingested_rows
    FOR EACH ROW EXECUTE FUNCTION central_audit_refuse_change();

-- A device (model + serial) belongs to the first station whose row claimed it.
CREATE TABLE devices (
    device_model   TEXT NOT NULL,
    device_serial  TEXT NOT NULL,
    station_id     TEXT NOT NULL REFERENCES stations,
    first_seq      BIGINT NOT NULL,
    PRIMARY KEY (device_model, device_serial)
);

-- The latest snapshot of every identity a station reported. `live` is false once revoked or
-- quarantined; a registration ID can be live on one station only.
CREATE TABLE identities (
    station_id          TEXT NOT NULL REFERENCES stations,
    registration_id     TEXT NOT NULL,
    device_model        TEXT NOT NULL,
    device_serial       TEXT NOT NULL,
    batch               TEXT NOT NULL,
    state               TEXT NOT NULL,
    attestation         TEXT NOT NULL,
    certificate_pem     TEXT,
    endorsement_key     TEXT,
    lease_id            TEXT,
    central_enrollment  BOOLEAN NOT NULL DEFAULT false,
    live                BOOLEAN NOT NULL,
    first_seq           BIGINT NOT NULL,
    last_seq            BIGINT NOT NULL,
    PRIMARY KEY (station_id, registration_id)
);
CREATE UNIQUE INDEX identities_one_live_registration_id ON identities (registration_id) WHERE live;
CREATE INDEX identities_by_batch ON identities (batch);

-- Identities refused because another station holds the device or the registration ID.
CREATE TABLE quarantine (
    station_id       TEXT NOT NULL REFERENCES stations,
    seq              BIGINT NOT NULL,
    registration_id  TEXT NOT NULL,
    device_model     TEXT NOT NULL,
    device_serial    TEXT NOT NULL,
    reason           TEXT NOT NULL,
    held_by          TEXT NOT NULL,
    at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, seq, registration_id)
);

-- Every receipt issued, as sent (the Signed<Receipt> JSON): `central verify` checks that every
-- stored row is covered by one.
CREATE TABLE receipts (
    receipt_id        BIGSERIAL PRIMARY KEY,
    station_id        TEXT NOT NULL REFERENCES stations,
    first_seq         BIGINT NOT NULL,
    last_seq          BIGINT NOT NULL,
    head_seq          BIGINT NOT NULL,
    head_hash         TEXT NOT NULL,
    central_position  BIGINT NOT NULL,
    signed            TEXT NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX receipts_by_station ON receipts (station_id, last_seq);

-- ---------------------------------------------------------------------------------------------
-- Leases (src/central/service/leases*): a batch's cap, and what has been handed out of it.
CREATE TABLE batches (
    batch               TEXT PRIMARY KEY,
    cap                 BIGINT NOT NULL CHECK (cap >= 0),
    -- Sum over open leases of `count`, plus `used` of returned ones; never above `cap`.
    allocated           BIGINT NOT NULL DEFAULT 0 CHECK (allocated >= 0 AND allocated <= cap),
    lease_size          INTEGER NOT NULL DEFAULT 50 CHECK (lease_size > 0),
    lease_ttl_seconds   INTEGER NOT NULL DEFAULT 86400 CHECK (lease_ttl_seconds > 0),
    central_enrollment  BOOLEAN NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE leases (
    lease_id     TEXT PRIMARY KEY,
    batch        TEXT NOT NULL REFERENCES batches,
    station_id   TEXT NOT NULL REFERENCES stations,
    count        INTEGER NOT NULL CHECK (count > 0),
    issued_at    TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    -- Set when the station gives the rest back (batch close) or the lease expires unused.
    used         INTEGER CHECK (used >= 0 AND used <= count),
    returned_at  TIMESTAMPTZ
);
CREATE INDEX leases_open_by_station ON leases (station_id) WHERE returned_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- Central enrollment (src/central/service/enroll*): one job per identity the service enrolls.
-- Ingest inserts a job when a live identity with central_enrollment reaches `written`; replicas
-- take jobs with FOR UPDATE SKIP LOCKED; the outcome goes back to the station in its next receipt.
CREATE TABLE enrollment_jobs (
    registration_id  TEXT PRIMARY KEY,
    station_id       TEXT NOT NULL REFERENCES stations,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'enrolled', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    etag             TEXT,
    error            TEXT,
    done_at          TIMESTAMPTZ,
    -- Set when a receipt carried the outcome to the station.
    reported_at      TIMESTAMPTZ
);
CREATE INDEX enrollment_jobs_due ON enrollment_jobs (next_attempt_at) WHERE state = 'pending';
CREATE INDEX enrollment_jobs_unreported ON enrollment_jobs (station_id) WHERE state <> 'pending' AND reported_at IS NULL;

GRANT USAGE, SELECT ON SEQUENCE central_position TO dps_central_service;
GRANT USAGE, SELECT ON SEQUENCE receipts_receipt_id_seq TO dps_central_service;
GRANT SELECT, INSERT ON ingested_rows TO dps_central_service;
GRANT SELECT, INSERT ON devices TO dps_central_service;
GRANT SELECT, INSERT, UPDATE ON identities TO dps_central_service;
GRANT SELECT, INSERT ON quarantine TO dps_central_service;
GRANT SELECT, INSERT ON receipts TO dps_central_service;
GRANT SELECT, INSERT, UPDATE ON batches TO dps_central_service;
GRANT SELECT, INSERT, UPDATE ON leases TO dps_central_service;
GRANT SELECT, INSERT, UPDATE ON enrollment_jobs TO dps_central_service;
