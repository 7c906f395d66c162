//! What ingest does with the identity snapshots of newly stored rows: records devices (the first
//! station to claim a model + serial holds it), keeps the latest state of every identity, refuses to
//! take as live an identity whose serial or registration ID another station holds live (quarantine),
//! and queues central enrollment. Each step is one statement over arrays (`unnest`), not one round
//! trip per row: a batch of 1,000 rows costs a handful of statements.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Transaction;

use crate::central::wire::{IdentitySnapshot, OutboxRow, Quarantined};

/// Serialises the "who holds this device / registration ID" decision across concurrent ingests
/// (and service replicas): two stations sending the same serial at once must not both be live.
/// Held to the end of the transaction; taken before `audit::append`'s lock, always in that order.
const CLAIM_LOCK: i64 = 0x6470_735f_636c_6169; // "dps_clai"

/// The ledger's state name for a revoked identity: never live.
const REVOKED: &str = "revoked";
/// The state at which a centrally enrolled identity is handed to the enroll worker.
const WRITTEN: &str = "written";

/// One identity's latest snapshot in the batch, and where it first appeared.
struct Latest<'a> {
    first_seq: i64,
    last_seq: i64,
    snapshot: &'a IdentitySnapshot,
    reached_written: bool,
}

/// Applies the snapshots of `rows` (all newly stored, in seq order) for `station_id`. Identities it
/// quarantines become rows of `quarantine`, where the receipt reads them (so a re-sent batch's
/// receipt names them too).
pub async fn apply(
    tx: &Transaction<'_>,
    station_id: &str,
    rows: &[&OutboxRow],
) -> Result<(), tokio_postgres::Error> {
    let mut order: Vec<&str> = Vec::new();
    let mut latest: HashMap<&str, Latest<'_>> = HashMap::new();
    for row in rows {
        let Some(snapshot) = row.identity.as_ref() else {
            continue;
        };
        let key = snapshot.registration_id.as_str();
        let entry = latest.entry(key).or_insert_with(|| {
            order.push(key);
            Latest {
                first_seq: row.seq,
                last_seq: row.seq,
                snapshot,
                reached_written: false,
            }
        });
        entry.last_seq = row.seq;
        entry.snapshot = snapshot;
        entry.reached_written |= snapshot.state == WRITTEN;
    }
    if order.is_empty() {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await?;

    let all: Vec<&Latest<'_>> = order.iter().filter_map(|k| latest.get(k)).collect();
    record_devices(tx, station_id, &all).await?;
    let held_ids = registration_ids_held_elsewhere(tx, station_id, &order).await?;
    let held_devices = devices_held_elsewhere(tx, station_id, &all).await?;
    let already: HashSet<String> = tx
        .query(
            "SELECT DISTINCT registration_id FROM quarantine
             WHERE station_id = $1 AND registration_id = ANY($2)",
            &[&station_id, &order],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut quarantined = Vec::new();
    let mut live = Vec::with_capacity(all.len());
    for item in &all {
        let s = item.snapshot;
        let revoked = s.state == REVOKED;
        let conflict = match held_ids.get(&s.registration_id) {
            Some(holder) => Some((holder.clone(), format!(
                "registration ID {} is already live on station {holder}: this identity from station {station_id} was quarantined and is not counted; set the device aside and have an engineer revoke one of the two",
                s.registration_id
            ))),
            None => held_devices
                .get(&(s.device_model.clone(), s.device_serial.clone()))
                .map(|holder| (holder.clone(), format!(
                    "device {} serial {} is already provisioned on station {holder}: this identity ({}) from station {station_id} was quarantined and is not counted; set the device aside and have an engineer revoke one of the two",
                    s.device_model, s.device_serial, s.registration_id
                ))),
        };
        let was_quarantined = already.contains(&s.registration_id);
        if let Some((held_by, reason)) = conflict.as_ref()
            && !revoked
            && !was_quarantined
        {
            quarantined.push(Quarantined {
                seq: item.first_seq,
                registration_id: s.registration_id.clone(),
                device_model: s.device_model.clone(),
                device_serial: s.device_serial.clone(),
                reason: reason.clone(),
                held_by: held_by.clone(),
            });
        }
        live.push(!revoked && conflict.is_none() && !was_quarantined);
    }
    if !quarantined.is_empty() {
        for q in &quarantined {
            tracing::warn!(
                station = station_id,
                registration_id = %q.registration_id,
                held_by = %q.held_by,
                "identity quarantined: another station holds it"
            );
        }
        record_quarantine(tx, station_id, &quarantined).await?;
    }
    upsert_identities(tx, station_id, &all, &live).await?;
    queue_enrollments(tx, station_id, &all, &live).await?;
    Ok(())
}

async fn record_devices(
    tx: &Transaction<'_>,
    station_id: &str,
    all: &[&Latest<'_>],
) -> Result<(), tokio_postgres::Error> {
    let models: Vec<&str> = all
        .iter()
        .map(|l| l.snapshot.device_model.as_str())
        .collect();
    let serials: Vec<&str> = all
        .iter()
        .map(|l| l.snapshot.device_serial.as_str())
        .collect();
    let seqs: Vec<i64> = all.iter().map(|l| l.first_seq).collect();
    tx.execute(
        "INSERT INTO devices (device_model, device_serial, station_id, first_seq)
         SELECT m, s, $1, q FROM unnest($2::text[], $3::text[], $4::bigint[]) AS d(m, s, q)
         ON CONFLICT DO NOTHING",
        &[&station_id, &models, &serials, &seqs],
    )
    .await?;
    Ok(())
}

async fn registration_ids_held_elsewhere(
    tx: &Transaction<'_>,
    station_id: &str,
    ids: &[&str],
) -> Result<HashMap<String, String>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT registration_id, station_id FROM identities
             WHERE live AND station_id <> $1 AND registration_id = ANY($2)",
            &[&station_id, &ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

async fn devices_held_elsewhere(
    tx: &Transaction<'_>,
    station_id: &str,
    all: &[&Latest<'_>],
) -> Result<HashMap<(String, String), String>, tokio_postgres::Error> {
    let models: Vec<&str> = all
        .iter()
        .map(|l| l.snapshot.device_model.as_str())
        .collect();
    let serials: Vec<&str> = all
        .iter()
        .map(|l| l.snapshot.device_serial.as_str())
        .collect();
    Ok(tx
        .query(
            "SELECT i.device_model, i.device_serial, min(i.station_id)
             FROM unnest($2::text[], $3::text[]) AS d(m, s)
             JOIN identities i ON i.live AND i.device_model = d.m AND i.device_serial = d.s
             WHERE i.station_id <> $1
             GROUP BY i.device_model, i.device_serial",
            &[&station_id, &models, &serials],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

async fn record_quarantine(
    tx: &Transaction<'_>,
    station_id: &str,
    quarantined: &[Quarantined],
) -> Result<(), tokio_postgres::Error> {
    let seqs: Vec<i64> = quarantined.iter().map(|q| q.seq).collect();
    let ids: Vec<&str> = quarantined
        .iter()
        .map(|q| q.registration_id.as_str())
        .collect();
    let models: Vec<&str> = quarantined
        .iter()
        .map(|q| q.device_model.as_str())
        .collect();
    let serials: Vec<&str> = quarantined
        .iter()
        .map(|q| q.device_serial.as_str())
        .collect();
    let reasons: Vec<&str> = quarantined.iter().map(|q| q.reason.as_str()).collect();
    let holders: Vec<&str> = quarantined.iter().map(|q| q.held_by.as_str()).collect();
    tx.execute(
        "INSERT INTO quarantine (station_id, seq, registration_id, device_model, device_serial, reason, held_by)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
         ON CONFLICT DO NOTHING",
        &[&station_id, &seqs, &ids, &models, &serials, &reasons, &holders],
    )
    .await?;
    Ok(())
}

async fn upsert_identities(
    tx: &Transaction<'_>,
    station_id: &str,
    all: &[&Latest<'_>],
    live: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let snap = |f: fn(&IdentitySnapshot) -> &str| -> Vec<&str> {
        all.iter().map(|l| f(l.snapshot)).collect()
    };
    let ids = snap(|s| &s.registration_id);
    let models = snap(|s| &s.device_model);
    let serials = snap(|s| &s.device_serial);
    let batches = snap(|s| &s.batch);
    let states = snap(|s| &s.state);
    let attestations = snap(|s| &s.attestation);
    let opt = |f: fn(&IdentitySnapshot) -> Option<&str>| -> Vec<Option<&str>> {
        all.iter().map(|l| f(l.snapshot)).collect()
    };
    let certificates = opt(|s| s.certificate_pem.as_deref());
    let endorsement_keys = opt(|s| s.endorsement_key.as_deref());
    let leases = opt(|s| s.lease_id.as_deref());
    let central: Vec<bool> = all.iter().map(|l| l.snapshot.central_enrollment).collect();
    let first: Vec<i64> = all.iter().map(|l| l.first_seq).collect();
    let last: Vec<i64> = all.iter().map(|l| l.last_seq).collect();
    tx.execute(
        "INSERT INTO identities (station_id, registration_id, device_model, device_serial, batch, state,
                                 attestation, certificate_pem, endorsement_key, lease_id,
                                 central_enrollment, live, first_seq, last_seq)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                  $8::text[], $9::text[], $10::text[], $11::bool[], $12::bool[],
                                  $13::bigint[], $14::bigint[])
         ON CONFLICT (station_id, registration_id) DO UPDATE SET
             device_model = EXCLUDED.device_model, device_serial = EXCLUDED.device_serial,
             batch = EXCLUDED.batch, state = EXCLUDED.state, attestation = EXCLUDED.attestation,
             certificate_pem = EXCLUDED.certificate_pem, endorsement_key = EXCLUDED.endorsement_key,
             lease_id = EXCLUDED.lease_id, central_enrollment = EXCLUDED.central_enrollment,
             live = EXCLUDED.live, last_seq = EXCLUDED.last_seq",
        &[
            &station_id,
            &ids,
            &models,
            &serials,
            &batches,
            &states,
            &attestations,
            &certificates,
            &endorsement_keys,
            &leases,
            &central,
            &live,
            &first,
            &last,
        ],
    )
    .await?;
    Ok(())
}

async fn queue_enrollments(
    tx: &Transaction<'_>,
    station_id: &str,
    all: &[&Latest<'_>],
    live: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let due: Vec<&str> = all
        .iter()
        .zip(live)
        .filter(|(l, live)| **live && l.snapshot.central_enrollment && l.reached_written)
        .map(|(l, _)| l.snapshot.registration_id.as_str())
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO enrollment_jobs (registration_id, station_id)
         SELECT r, $1 FROM unnest($2::text[]) AS j(r)
         ON CONFLICT DO NOTHING",
        &[&station_id, &due],
    )
    .await?;
    Ok(())
}
