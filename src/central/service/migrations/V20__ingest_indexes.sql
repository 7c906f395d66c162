-- Ingest (src/central/service/ingest_identities.rs) asks, for every batch, which of its devices
-- another station holds live: without this index that question scans every identity.
CREATE INDEX identities_live_device ON identities (device_model, device_serial) WHERE live;
