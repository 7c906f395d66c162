//! `dps-station ledger …`: create, inspect and check the ledger from a shell. Every command but
//! `init` opens the ledger read-only, so it works while a station is writing to it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dps_station::ledger::audit_query::{Bound, parse_time_bound};
use dps_station::ledger::{
    self, AttestationKind, IdentityFilter, IdentityRecord, IdentityState, Ledger, TimeRange,
    WriterIdentity,
};

/// The ledger commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Create, inspect and check the ledger (the SQLite file that records every identity).
    Ledger(LedgerArgs),
}

/// Options shared by every `ledger` subcommand.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// The ledger file [default: $XDG_DATA_HOME/dps-station/ledger.db].
    #[arg(long, env = "DPS_STATION_LEDGER", global = true, value_name = "PATH")]
    ledger: Option<PathBuf>,

    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Create the ledger, or migrate an existing one to this version's schema.
    Init {
        /// The station name recorded as the writer [default: the host name].
        #[arg(long, env = "DPS_STATION_NAME")]
        station: Option<String>,
        /// The operator recorded as the writer [default: $USER].
        #[arg(long)]
        operator: Option<String>,
    },
    /// Counts: identities by state and attestation, enrollments, audit rows, file size.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List identities, oldest first (with --limit: the newest N).
    List {
        /// Only identities of this batch (by name).
        #[arg(long)]
        batch: Option<String>,
        /// Only identities in this state: issued, written, enrolled, failed, revoked.
        #[arg(long)]
        state: Option<IdentityState>,
        /// Only identities of this attestation kind: x509, symmetric-key, tpm.
        #[arg(long)]
        kind: Option<AttestationKind>,
        /// At most this many (the newest).
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one identity: its attestation, enrollments and audit rows.
    Show {
        /// The registration ID (compared case-insensitively).
        registration_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the file (SQLite quick_check, append-only triggers) and the audit log's hash chain;
    /// exits 1 and names the first broken row when anything is wrong.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an identity for good and delete its DPS individual enrollment (audited with the
    /// reason). DPS unreachable: the ledger is revoked, the delete marked for later, exit 3;
    /// run the command again to retry it.
    Revoke {
        /// The registration ID (compared case-insensitively).
        registration_id: String,
        /// Why (goes into the audit log).
        #[arg(long)]
        reason: String,
        /// The station file (its DPS targets and ledger).
        #[arg(long, env = "DPS_STATION_CONFIG", value_name = "PATH")]
        config: PathBuf,
        /// Who revokes, recorded in the audit log [default: $USER].
        #[arg(long)]
        operator: Option<String>,
    },
    /// Export every identity as CSV (public material only: thumbprints, fingerprints, states).
    Export {
        /// The CSV file to write; `-` for standard output.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
    /// Export the audit log's rows of a time range as CSV for auditors, oldest first, with each
    /// row's hash and previous hash so the chain can be re-checked (columns: id, at, station,
    /// actor, action, subject, details, prev_hash, hash).
    AuditExport {
        /// The first time included: a date (2026-12-01), a UTC time (2026-12-01 08:00) or
        /// RFC 3339 [default: the first row].
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// The end of the range, excluded; a bare date includes that whole day [default: now].
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// The CSV file to write [default: standard output].
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a `ledger` command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    let Commands::Ledger(args) = cmd;
    // Revoke takes its ledger from the station file unless --ledger names one.
    let explicit_ledger = args.ledger.clone();
    let path = match args.ledger {
        Some(p) => p,
        None => ledger::default_path()
            .context("no ledger path: set --ledger, DPS_STATION_LEDGER, XDG_DATA_HOME or HOME")?,
    };
    match args.command {
        LedgerCommand::Init { station, operator } => init(path, station, operator),
        LedgerCommand::Stats { json } => stats(&Ledger::open_read_only(&path)?, json),
        LedgerCommand::List {
            batch,
            state,
            kind,
            limit,
            json,
        } => list(
            &Ledger::open_read_only(&path)?,
            &IdentityFilter {
                batch,
                state,
                attestation: kind,
                limit,
            },
            json,
        ),
        LedgerCommand::Show {
            registration_id,
            json,
        } => show(&Ledger::open_read_only(&path)?, &registration_id, json),
        LedgerCommand::Verify { json } => verify(&Ledger::open_read_only(&path)?, json),
        LedgerCommand::Export { output } => export(&Ledger::open_read_only(&path)?, &output),
        LedgerCommand::AuditExport { from, to, out } => {
            let range = TimeRange {
                from: from
                    .map(|t| parse_time_bound(&t, Bound::From))
                    .transpose()?,
                to: to.map(|t| parse_time_bound(&t, Bound::To)).transpose()?,
            };
            audit_export(&Ledger::open_read_only(&path)?, &range, out.as_deref())
        }
        LedgerCommand::Revoke {
            registration_id,
            reason,
            config,
            operator,
        } => super::ledger_revoke::revoke(
            &config,
            explicit_ledger,
            &registration_id,
            &reason,
            operator,
        ),
    }
}

fn init(
    path: PathBuf,
    station: Option<String>,
    operator: Option<String>,
) -> anyhow::Result<ExitCode> {
    let writer = WriterIdentity {
        station: station.unwrap_or_else(ledger::lock::host_name),
        operator: operator
            .or_else(|| std::env::var("USER").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
    };
    let (l, migration) = Ledger::open_reporting(&path, &writer)?;
    if migration.from == migration.to {
        println!(
            "ledger {} is up to date (schema version {})",
            l.path().display(),
            migration.to
        );
    } else if migration.from == 0 {
        println!(
            "created ledger {} (schema version {})",
            l.path().display(),
            migration.to
        );
    } else {
        println!(
            "migrated ledger {} from schema version {} to {}",
            l.path().display(),
            migration.from,
            migration.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("writing JSON to stdout")?;
    writeln!(out).context("writing to stdout")?;
    Ok(())
}

fn stats(l: &Ledger, json: bool) -> anyhow::Result<ExitCode> {
    let s = l.stats()?;
    if json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let by = |m: &std::collections::BTreeMap<String, i64>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("ledger           {}", s.path);
    println!("schema version   {}", s.schema_version);
    println!("file size        {} bytes", s.file_bytes);
    println!("stations         {}", s.stations);
    println!("operators        {}", s.operators);
    println!("batches          {}", s.batches);
    println!("devices          {}", s.devices);
    println!(
        "identities       {} ({})",
        s.identities,
        by(&s.identities_by_state)
    );
    println!("  by attestation {}", by(&s.identities_by_attestation));
    println!("enrollments      {}", by(&s.enrollments_by_state));
    println!("key sessions     {}", s.key_sessions);
    println!("CA certificates  {}", s.ca_certificates);
    println!("audit rows       {}", s.audit_rows);
    Ok(ExitCode::SUCCESS)
}

fn list(l: &Ledger, filter: &IdentityFilter, json: bool) -> anyhow::Result<ExitCode> {
    let rows = l.list_identities(filter)?;
    if json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let header = [
        "registration id",
        "state",
        "attestation",
        "batch",
        "updated",
    ]
    .map(String::from);
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.registration_id.clone(),
                match r.failed_stage {
                    Some(stage) => format!("{}({stage})", r.state),
                    None => r.state.to_string(),
                },
                r.attestation.to_string(),
                r.batch.clone().unwrap_or_else(|| "-".into()),
                r.updated_at.clone(),
            ]
        })
        .collect();
    // Columns as wide as their widest cell, so that no name breaks the alignment.
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join(" ").trim_end())?;
    }
    writeln!(out, "{} identities", rows.len())?;
    Ok(ExitCode::SUCCESS)
}

fn show(l: &Ledger, registration_id: &str, json: bool) -> anyhow::Result<ExitCode> {
    // The live identity, or else the newest revoked one; earlier ones are re-provisioning history.
    let history = l.identity_history(registration_id)?;
    let identity = match l.find_identity(registration_id)? {
        Some(live) => Some(live),
        None => history.last().cloned(),
    };
    let earlier: Vec<&IdentityRecord> = history
        .iter()
        .filter(|h| identity.as_ref().is_some_and(|i| i.id != h.id))
        .collect();
    let Some(identity) = identity else {
        bail!(
            "no identity with registration ID {registration_id} in the ledger {}; `dps-station ledger list` shows what is there",
            l.path().display()
        );
    };
    let enrollments = l.enrollments_for(&identity.registration_id)?;
    let audit = l.audit_for(&identity.registration_id)?;
    if json {
        print_json(&serde_json::json!({
            "identity": identity,
            "earlier_identities": earlier,
            "enrollments": enrollments,
            "audit": audit,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_identity(&identity);
    if !earlier.is_empty() {
        println!("earlier identities of this registration ID:");
        for h in &earlier {
            println!(
                "  #{} {} since {}{}",
                h.id,
                h.state,
                h.updated_at,
                h.revoked_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
    println!("enrollments:");
    if enrollments.is_empty() {
        println!("  (none)");
    }
    for e in &enrollments {
        println!(
            "  #{} {} at {} ({}{}), attempts {}, queued {}{}{}{}",
            e.id,
            e.state,
            e.dps_target,
            e.kind,
            e.group_name
                .as_deref()
                .map(|g| format!(" {g}"))
                .unwrap_or_default(),
            e.attempts,
            e.queued_at,
            e.enrolled_at
                .as_deref()
                .map(|t| format!(", enrolled {t}"))
                .unwrap_or_default(),
            e.etag
                .as_deref()
                .map(|t| format!(", etag {t}"))
                .unwrap_or_default(),
            e.last_error
                .as_deref()
                .map(|t| format!(", last error: {t}"))
                .unwrap_or_default(),
        );
    }
    println!("audit:");
    for a in &audit {
        println!(
            "  #{} {} {} by {} at {}: {}",
            a.id, a.at, a.action, a.actor, a.station, a.details
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_identity(i: &IdentityRecord) {
    println!("registration id  {}", i.registration_id);
    match (&i.failed_stage, &i.failed_reason) {
        (Some(stage), reason) => println!(
            "state            {} at {stage}: {}",
            i.state,
            reason.as_deref().unwrap_or("")
        ),
        _ => println!("state            {}", i.state),
    }
    if let Some(reason) = &i.revoked_reason {
        println!("revoked because  {reason}");
    }
    println!("attestation      {}", i.attestation);
    println!("batch            {}", i.batch.as_deref().unwrap_or("-"));
    if let Some(d) = &i.device {
        println!(
            "device           {} {} (hardware id {})",
            d.model,
            d.serial_number,
            d.hardware_id.as_deref().unwrap_or("-")
        );
    }
    if let Some(c) = &i.certificate {
        println!("subject          {}", c.subject);
        println!("issuer           {}", c.issuer);
        println!("serial           {}", c.serial);
        println!("valid            {} .. {}", c.not_before, c.not_after);
        println!("sha1 thumbprint  {}", c.sha1_thumbprint);
        println!("sha256           {}", c.sha256_thumbprint);
    }
    if let Some(fp) = &i.key_fingerprint {
        println!("key fingerprint  {fp}");
    }
    if let Some(nonce) = &i.key_nonce {
        println!("key nonce        {nonce} (random input of the HSM-computed key; not secret)");
    }
    if let Some(ek) = &i.endorsement_key {
        println!("endorsement key  {} bytes", ek.len());
    }
    println!(
        "station          {} (operator {})",
        i.station.as_deref().unwrap_or("-"),
        i.operator.as_deref().unwrap_or("-")
    );
    println!("created          {}", i.created_at);
    println!("updated          {}", i.updated_at);
}

fn verify(l: &Ledger, json: bool) -> anyhow::Result<ExitCode> {
    let problems = l.file_problems()?;
    let report = l.verify_audit_chain()?;
    let ok = problems.is_empty() && report.is_intact();
    if json {
        print_json(&serde_json::json!({
            "path": l.path().display().to_string(),
            "ok": ok,
            "file_problems": problems,
            "audit": report,
        }))?;
    } else {
        if problems.is_empty() {
            println!("file: ok (SQLite quick_check, append-only triggers present)");
        } else {
            println!("file: PROBLEMS:");
            for p in problems.iter().take(20) {
                println!("  {p}");
            }
        }
        match &report.first_broken {
            None => println!(
                "audit log: intact, {} rows, last hash {}",
                report.rows_checked, report.last_hash
            ),
            Some(b) => println!(
                "audit log: BROKEN at row {}: {} ({} rows before it check out)",
                b.id, b.problem, report.rows_checked
            ),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn export(l: &Ledger, output: &PathBuf) -> anyhow::Result<ExitCode> {
    let count = if output.as_os_str() == "-" {
        l.export_csv(std::io::stdout().lock())?
    } else {
        let file = std::fs::File::create(output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let n = l.export_csv(&mut w)?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing {}", output.display()))?;
        eprintln!("exported {n} identities to {}", output.display());
        n
    };
    tracing::info!(rows = count, "ledger exported");
    Ok(ExitCode::SUCCESS)
}

fn audit_export(
    l: &Ledger,
    range: &TimeRange,
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let count = match out {
        None => l.export_audit_csv(range, std::io::stdout().lock(), |_| {})?,
        Some(file) => {
            let n = l.export_audit_csv_file(range, file, |_| {})?;
            eprintln!("exported {n} audit rows to {}", file.display());
            n
        }
    };
    tracing::info!(rows = count, "audit log exported");
    Ok(ExitCode::SUCCESS)
}
