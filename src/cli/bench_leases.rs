//! `dps-station bench leases`: lease allocation latency (issue 18 point 8: p99 under 20 ms) on a
//! throwaway PostgreSQL cluster, each grant a full transaction (batch row lock, lease row, central
//! audit row, ECDSA signature). `bench central` (ingest) reports the same figure beside its own.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use dps_station::central::service::{db, leases_admin, migrations};
use dps_station::central::signing::ServiceSigner;
use dps_station::central::temp_cluster::TempCluster;

/// Options of `bench leases`.
#[derive(Debug, Args)]
pub struct BenchLeasesArgs {
    /// Leases to grant, one after the other.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
}

/// Runs the benchmark and prints p50 and p99.
pub fn run(args: &BenchLeasesArgs) -> anyhow::Result<ExitCode> {
    let cluster = TempCluster::start().context("cannot start a throwaway PostgreSQL cluster")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (mut admin, connection) =
            tokio_postgres::connect(&cluster.admin_url(), tokio_postgres::NoTls)
                .await
                .context("cannot reach the throwaway cluster")?;
        tokio::spawn(connection);
        migrations::run(&mut admin).await?;
        anyhow::Ok(())
    })?;
    let url = cluster
        .service_login("bench_leases")
        .context("cannot make the service's login")?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let certificate =
        rcgen::CertificateParams::new(vec!["bench signer".into()])?.self_signed(&key)?;
    let signer = ServiceSigner::from_pkcs8_pem(&key.serialize_pem(), certificate.der())?;
    let pool = db::pool(&url, 4)?;
    let figures = runtime.block_on(leases_admin::measure_leases(&pool, &signer, args.requests))?;
    println!(
        "lease allocation: {} grants, p50 {:.2} ms, p99 {:.2} ms (goal p99 < 20 ms)",
        figures.requests,
        figures.p50.as_secs_f64() * 1e3,
        figures.p99.as_secs_f64() * 1e3
    );
    drop(pool);
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}
