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
}

/// Runs the benchmark and prints the figures.
pub fn run(args: &GuiBenchArgs) -> anyhow::Result<ExitCode> {
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
