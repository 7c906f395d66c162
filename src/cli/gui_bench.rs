//! `dps-station bench gui`: CPU time per frame of the line screen under load, and memory.

use std::process::ExitCode;

use clap::Args;

/// `bench gui` options.
#[derive(Debug, Args)]
pub struct GuiBenchArgs {
    /// Fixture slots (tiles).
    #[arg(long, default_value_t = 32)]
    slots: usize,
    /// Engine events per second fed to the desk.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Frames to draw (at 60 Hz of simulated time).
    #[arg(long, default_value_t = 1_200)]
    frames: usize,
    /// Measure the engineer's ledger browser instead of the line screen: scrolling and searching
    /// a ledger of --identities identities, made in --dir (once; later runs reuse it).
    #[arg(long)]
    ledger: bool,
    /// Identities in the ledger of --ledger.
    #[arg(long, default_value_t = 1_000_000, requires = "ledger")]
    identities: u64,
    /// Folder of the ledger of --ledger [default: a folder in the temp dir].
    #[arg(long, requires = "ledger", value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Runs the benchmark and prints the figures.
pub fn run(args: &GuiBenchArgs) -> anyhow::Result<ExitCode> {
    if args.ledger {
        return ledger(args);
    }
    if !(1..=32).contains(&args.slots) || args.frames < 100 || args.rate <= 0.0 {
        anyhow::bail!("--slots must be 1 to 32, --frames at least 100, --rate above 0");
    }
    let r = dps_station::gui::bench::run(args.slots, args.rate, args.frames);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "bench gui: {} slots, {} events over {} frames ({:.0} events/s at 60 frames/s): CPU per frame median {:.2} ms, p99 {:.2} ms, max {:.2} ms (first frames, fonts); peak memory {:.0} MB",
        args.slots,
        r.events,
        r.frames,
        args.rate,
        ms(r.median),
        ms(r.p99),
        ms(r.max),
        r.peak_rss as f64 / 1e6
    );
    println!(
        "goals: p99 under 4 ms: {}; memory under 150 MB: {}",
        if r.p99 < std::time::Duration::from_millis(4) {
            "met"
        } else {
            "NOT met"
        },
        if r.peak_rss < 150_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `bench gui --ledger`.
fn ledger(args: &GuiBenchArgs) -> anyhow::Result<ExitCode> {
    if args.identities == 0 || args.frames < 100 {
        anyhow::bail!("--identities must be above 0 and --frames at least 100");
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("dps-station-bench-gui-ledger"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("ledger-{}.db", args.identities));
    let r = dps_station::gui::engineer::ledger_bench::run(
        &path,
        args.identities,
        args.frames,
        |line| eprintln!("{line}"),
    )?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "bench gui --ledger: {} identities ({}), {} frames scrolling {} rows: CPU per frame median {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} searches, typed → first rows median {:.1} ms, worst {:.1} ms; at most {} rows held; peak memory {:.0} MB",
        r.identities,
        if r.fill_seconds > 0.0 {
            format!("made in {:.0} s", r.fill_seconds)
        } else {
            "reused".to_string()
        },
        r.frames,
        r.rows_scrolled,
        ms(r.median),
        ms(r.p99),
        ms(r.max),
        r.searches,
        ms(r.search_median),
        ms(r.search_max),
        r.rows_held_max,
        r.peak_rss as f64 / 1e6
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goals: p99 frame under 8 ms: {}; search under 50 ms (worst): {}; memory under 200 MB: {}",
        met(r.p99 < std::time::Duration::from_millis(8)),
        met(r.search_max < std::time::Duration::from_millis(50)),
        met(r.peak_rss < 200_000_000)
    );
    Ok(ExitCode::SUCCESS)
}
