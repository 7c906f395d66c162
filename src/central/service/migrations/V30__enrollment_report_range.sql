-- Which receipt range last carried an enrollment outcome (src/central/service/receipts.rs). A station
-- that sends rows of that range again never applied that receipt (it lost the answer), so the
-- outcome rides again in the receipt of the re-send instead of being lost.
ALTER TABLE enrollment_jobs
    ADD COLUMN reported_first_seq BIGINT,
    ADD COLUMN reported_last_seq  BIGINT;
CREATE INDEX enrollment_jobs_reported_range ON enrollment_jobs (station_id, reported_last_seq)
    WHERE reported_at IS NOT NULL;
