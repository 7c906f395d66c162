//! The station's outbox (issue 18, point 1): one outbox row per audit row, in the same SQLite
//! transaction, with an identity snapshot that never holds a key.

use dps_station::central::wire::OutboxRow;
use dps_station::ledger::audit::{AuditContent, GENESIS, row_hash};
use dps_station::ledger::*;
use rusqlite::Connection;

pub fn writer() -> WriterIdentity {
    WriterIdentity {
        station: "line-1".into(),
        operator: "ann".into(),
    }
}

pub fn certificate(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).unwrap().der().to_vec()
}

/// A device and an X.509 identity for it, `issued` then `written`.
pub fn provision(ledger: &mut Ledger, serial: &str) -> String {
    let rid = format!("sensor-{serial}");
    let device = ledger
        .upsert_device(&NewDevice {
            model: "nrf9160".into(),
            serial_number: serial.into(),
            hardware_id: None,
            firmware: None,
            batch: None,
        })
        .unwrap();
    ledger
        .record_issued(&NewIdentity {
            registration_id: rid.clone(),
            batch: None,
            device: Some(device),
            attestation: Attestation::X509 {
                certificate_der: certificate(&rid),
            },
        })
        .unwrap();
    ledger.transition(&rid, &Transition::Written).unwrap();
    rid
}

/// Every outbox payload, in seq order, parsed as the wire type.
pub fn outbox_rows(path: &std::path::Path) -> Vec<OutboxRow> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare("SELECT seq, payload FROM outbox ORDER BY seq")
        .unwrap();
    s.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (seq, payload) = r.unwrap();
            let row: OutboxRow = serde_json::from_str(&payload).unwrap();
            assert_eq!(row.seq, seq);
            row
        })
        .collect()
}

fn count(path: &std::path::Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The payloads re-hash to their own hashes and chain: the service can check them with `row_hash`.
pub fn assert_chains(rows: &[OutboxRow]) {
    let mut prev = GENESIS;
    for row in rows {
        assert_eq!(row.prev_hash, hex::encode(prev), "row {}", row.seq);
        let hash = row_hash(
            &prev,
            row.seq,
            &AuditContent {
                at: &row.at,
                station: &row.station,
                actor: &row.actor,
                action: &row.action,
                subject: &row.subject,
                details: &row.details,
            },
        );
        assert_eq!(row.hash, hex::encode(hash), "row {}", row.seq);
        prev = hash;
    }
}

#[test]
fn every_audit_row_has_its_outbox_row_with_a_snapshot_of_identity_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, &writer()).unwrap();
    let rid = provision(&mut ledger, "000001");
    drop(ledger);

    let rows = outbox_rows(&path);
    assert_eq!(rows.len() as i64, count(&path, "audit_log"));
    assert_eq!(rows.first().map(|r| r.seq), Some(1));
    assert_chains(&rows);
    let states: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            r.identity
                .as_ref()
                .map(|i| (r.action.clone(), i.state.clone()))
        })
        .collect();
    assert_eq!(
        states,
        [
            ("identity.issued".into(), "issued".into()),
            ("identity.written".into(), "written".into())
        ]
    );
    let snap = rows.iter().rev().find_map(|r| r.identity.clone()).unwrap();
    assert_eq!(snap.registration_id, rid);
    assert_eq!(snap.device_model, "nrf9160");
    assert_eq!(snap.device_serial, "000001");
    assert_eq!(snap.attestation, "x509");
    assert!(
        snap.certificate_pem
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert!(
        rows.iter()
            .filter(|r| !r.action.starts_with("identity."))
            .all(|r| r.identity.is_none())
    );
}

#[test]
fn a_failed_transaction_leaves_neither_audit_nor_outbox_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, &writer()).unwrap();
    let (audit, outbox) = (count(&path, "audit_log"), count(&path, "outbox"));
    let result: Result<(), LedgerError> = ledger.transaction(|w| {
        w.append_audit("ann", "test.row", "x", &serde_json::json!({}))?;
        assert_eq!(count(&path, "outbox"), outbox, "not visible before commit");
        Err(LedgerError::Refused {
            what: "the test".into(),
            reason: "fails on purpose".into(),
        })
    });
    assert!(result.is_err());
    assert_eq!(count(&path, "audit_log"), audit);
    assert_eq!(count(&path, "outbox"), outbox);
    // A transaction that commits writes both.
    ledger
        .append_audit("ann", "test.row", "x", &serde_json::json!({}))
        .unwrap();
    assert_eq!(count(&path, "audit_log"), audit + 1);
    assert_eq!(count(&path, "outbox"), outbox + 1);
    assert_eq!(ledger.outbox_status().unwrap().depth, (outbox + 1) as u64);
}

#[test]
fn the_outbox_never_holds_a_key() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let key: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    {
        let mut ledger = Ledger::open(&path, &writer()).unwrap();
        ledger
            .record_issued(&NewIdentity {
                registration_id: "sym-1".into(),
                batch: None,
                device: None,
                attestation: Attestation::SymmetricKey {
                    key_fingerprint: KeyFingerprint::of_key(&key),
                    key_nonce: None,
                },
            })
            .unwrap();
        ledger.transition("sym-1", &Transition::Written).unwrap();
        ledger.checkpoint().unwrap();
    }
    let rows = outbox_rows(&path);
    let snap = rows.iter().find_map(|r| r.identity.clone()).unwrap();
    assert_eq!(snap.attestation, "symmetric");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(dir.path().join("ledger.db-wal")).unwrap_or_default());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    for needle in [
        key.clone(),
        hex::encode(&key).into_bytes(),
        b64.into_bytes(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
            "the key is in the ledger file"
        );
    }
}

#[test]
fn central_enrollment_is_marked_in_the_snapshots_written_while_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, &writer()).unwrap();
    provision(&mut ledger, "000001");
    ledger
        .transaction(|w| w.set_central_enrollment(true))
        .unwrap();
    // Setting what holds already writes nothing.
    let audit = count(&path, "audit_log");
    ledger
        .transaction(|w| w.set_central_enrollment(true))
        .unwrap();
    assert_eq!(count(&path, "audit_log"), audit);
    provision(&mut ledger, "000002");
    drop(ledger);
    let marks: Vec<(String, bool)> = outbox_rows(&path)
        .into_iter()
        .filter_map(|r| r.identity.map(|i| (i.device_serial, i.central_enrollment)))
        .collect();
    assert_eq!(
        marks,
        [
            ("000001".into(), false),
            ("000001".into(), false),
            ("000002".into(), true),
            ("000002".into(), true)
        ]
    );
    let rows = outbox_rows(&path);
    assert!(rows.iter().any(|r| r.action == "central.enrollment_site"));
}
