//! Opening a ledger file: for writing (the lock taken, the schema created or migrated, the
//! writer's station and operator recorded with a `ledger.opened` row), read-only, or for
//! inspection of a file newer than this build; and the per-connection settings all share.

use super::*;

/// How long a reader waits for a checkpoint or a writer's brief exclusive moment.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection settings that do not write to the file (safe before the header check).
fn tune(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, "setting the busy timeout", e))?;
    // The query planner stability guarantee: a cached statement keeps its plan. Without it the
    // bundled SQLite (built with STAT4) re-prepares a statement whenever a bound value might
    // change the plan (here: the partial indexes), which was 80 % of a lookup's time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|e| classify(path, "configuring the query planner", e))?;
    Ok(())
}

impl Ledger {
    /// Opens (creating and migrating as needed) the ledger for writing and takes its lock.
    ///
    /// A second writer gets [`LedgerError::Locked`] naming the holder. A file that is not a
    /// ledger, is damaged or is newer than this build is refused and left as it was.
    pub fn open(path: &Path, writer: &WriterIdentity) -> Result<Ledger, LedgerError> {
        Self::open_migrating_to(path, writer, schema::CURRENT_VERSION).map(|(l, _)| l)
    }

    /// [`Ledger::open`], also saying which migration ran (for `ledger init`).
    pub fn open_reporting(
        path: &Path,
        writer: &WriterIdentity,
    ) -> Result<(Ledger, Migration), LedgerError> {
        Self::open_migrating_to(path, writer, schema::CURRENT_VERSION)
    }

    /// Opens for writing but migrates only up to `target`: lets tests build a ledger of an
    /// earlier schema version through the real code, to test the migrations from it.
    #[doc(hidden)]
    pub fn open_migrating_to(
        path: &Path,
        writer: &WriterIdentity,
        target: i64,
    ) -> Result<(Ledger, Migration), LedgerError> {
        if writer.station.trim().is_empty() || writer.operator.trim().is_empty() {
            return Err(LedgerError::Refused {
                what: format!("opening the ledger {}", path.display()),
                reason: "the writer needs a station name and an operator name".into(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| LedgerError::CreateDir {
                dir: dir.to_path_buf(),
                cause,
            })?;
        }
        let now = now();
        let host = lock::host_name();
        let lock = WriterLock::acquire(
            path,
            &LockHolder {
                station: writer.station.clone(),
                operator: writer.operator.clone(),
                host: host.clone(),
                pid: std::process::id(),
                since: now.clone(),
            },
        )?;
        let mut conn = Connection::open(path).map_err(|cause| LedgerError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        tune(&conn, path)?;
        // Inspect before any pragma that writes: a foreign or newer file must stay untouched.
        let from = match schema::inspect(&conn, path)? {
            schema::FileState::Empty => 0,
            schema::FileState::Ledger(v) => v,
        };
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| classify(path, "switching to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Refused {
                what: format!("the ledger {}", path.display()),
                reason: format!(
                    "SQLite could not switch it to WAL mode (it stays {mode}); put the ledger on a local file system"
                ),
            });
        }
        // 32 MiB of page cache: a batch transaction of thousands of identities stays in memory
        // instead of spilling to the WAL mid-transaction.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;",
        )
        .map_err(|e| classify(path, "setting durability", e))?;
        let to = schema::migrate(&mut conn, path, from, target.max(from))?;
        let ctx = if to >= 1 {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| classify(path, "recording the station", e))?;
            let station_id = writer::upsert_station(&tx, &writer.station, &host, &now)
                .map_err(|e| classify(path, "recording the station", e))?;
            let operator_id = writer::upsert_operator(&tx, &writer.operator, &now)
                .map_err(|e| classify(path, "recording the operator", e))?;
            let ctx = WriterContext {
                station: writer.station.clone(),
                operator: writer.operator.clone(),
                station_id,
                operator_id,
                schema_version: to,
            };
            let w = LedgerWriter {
                tx: &tx,
                ctx: &ctx,
                path,
                now: now.clone(),
            };
            w.append_audit(
                &writer.operator,
                "ledger.opened",
                &format!("station:{}", writer.station),
                &serde_json::json!({
                    "host": host,
                    "pid": std::process::id(),
                    "schema_version": to,
                    "migrated_from": if from != to { Some(from) } else { None },
                }),
            )?;
            tx.commit()
                .map_err(|e| classify(path, "recording the station", e))?;
            ctx
        } else {
            WriterContext {
                station: writer.station.clone(),
                operator: writer.operator.clone(),
                station_id: 0,
                operator_id: 0,
                schema_version: to,
            }
        };
        tracing::info!(ledger = %path.display(), schema = to, "ledger open for writing");
        Ok((
            Ledger {
                conn,
                path: path.to_path_buf(),
                schema_version: to,
                writer: Some(Writer { _lock: lock, ctx }),
            },
            Migration { from, to },
        ))
    }

    /// Opens an existing ledger read-only, for reports; works while a station writes to it.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_read_only_inner(path, false)
    }

    /// [`Ledger::open_read_only`] that also opens a ledger of a newer schema than this build's,
    /// for the audit screen to show it (never to write it). Compare [`Ledger::schema_version`]
    /// with [`schema::CURRENT_VERSION`]; queries of tables a newer version changed may fail.
    pub fn open_for_inspection(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_read_only_inner(path, true)
    }

    fn open_read_only_inner(path: &Path, allow_newer: bool) -> Result<Ledger, LedgerError> {
        // Only a file that is really absent is "not found": a directory the user may not enter
        // (not in the station's group) goes on to the open, whose error says access was refused.
        if std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Err(LedgerError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|cause| LedgerError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        tune(&conn, path)?;
        let state = match schema::inspect(&conn, path) {
            Err(LedgerError::TooNew { found, .. }) if allow_newer => {
                Ok(schema::FileState::Ledger(found))
            }
            other => other,
        };
        let version = match state? {
            schema::FileState::Empty => {
                return Err(LedgerError::NotALedger {
                    path: path.to_path_buf(),
                    reason: "an empty file; `dps-station ledger init` makes it a ledger".into(),
                });
            }
            schema::FileState::Ledger(v) => v,
        };
        if version < schema::CURRENT_VERSION {
            return Err(LedgerError::NeedsMigration {
                path: path.to_path_buf(),
                found: version,
                supported: schema::CURRENT_VERSION,
            });
        }
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            schema_version: version,
            writer: None,
        })
    }
}
