//! `dps-station bench line`: the whole line (slots, SoftHSM2, durable ledger, enrollment into the
//! in-process emulator) over a virtual fixture, with where each slot's time goes and how much CPU
//! the station's own threads use beside the simulator's and the emulator's.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use dps_station::device::simulator::{SimFaults, SimOptions};
use dps_station::station::config::Mode;
use dps_station::station::demo::{self, DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::events::Event;
use dps_station::station::report::ReportFigures;

/// `bench line` options.
#[derive(Debug, Args)]
pub struct BenchLineArgs {
    /// Slots of the virtual fixture.
    #[arg(long, default_value_t = 16)]
    pub slots: usize,
    /// Devices in the batch.
    #[arg(long, default_value_t = 1000)]
    pub devices: u64,
    /// Emulated line speed; 0 = no wire delay (what the station itself sustains).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// `(utime + stime)` in seconds and the thread name, from a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let (head, after) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted after the `)`.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS))
}

fn process_cpu_seconds() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|(_, s)| s)
}

/// Who a thread works for, by the name its spawner gave it.
fn owner(thread: &str) -> &'static str {
    if thread.starts_with("slot-")
        || thread == "ledger-writer"
        || thread == "enrollment"
        || thread == "batch"
        || thread == "hsm-keep-alive"
        || thread == "issue"
        || thread.starts_with("reqwest")
    {
        "station"
    } else if thread.starts_with("sim-") {
        "simulator"
    } else if thread.starts_with("bench") || thread == "dps-station" {
        "bench"
    } else if thread.starts_with("dps-emulator") {
        "emulator"
    } else {
        "other"
    }
}

/// Samples every thread's CPU time while the batch runs (every 250 ms), by thread name. Threads
/// that end between two samples (the station's per-device `issue` helper) are missed or counted
/// short, so the station's own share is reported as the process's CPU minus what the simulator,
/// the emulator and the benchmark's own threads used: those live for the whole batch and are
/// sampled exactly.
struct ThreadCpu {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<HashMap<u32, (String, f64)>>>,
}

impl ThreadCpu {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-cpu".into())
            .spawn(move || {
                let mut seen: HashMap<u32, (String, f64)> = HashMap::new();
                loop {
                    sample(&mut seen);
                    if flag.load(Ordering::Relaxed) {
                        return seen;
                    }
                    // Reading /proc for every thread costs CPU the line would use: a few looks
                    // a second are enough for threads that live for the batch.
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
            .ok();
        Self { stop, handle }
    }

    /// CPU seconds by owner, and the names of the threads no owner claims.
    fn finish(mut self) -> (BTreeMap<&'static str, f64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let mut by_owner = BTreeMap::new();
        let mut unclaimed = Vec::new();
        for (name, seconds) in seen.values() {
            let who = owner(name);
            *by_owner.entry(who).or_insert(0.0) += seconds;
            if who == "other" && !unclaimed.contains(name) {
                unclaimed.push(name.clone());
            }
        }
        unclaimed.sort();
        (by_owner, unclaimed)
    }
}

fn sample(seen: &mut HashMap<u32, (String, f64)>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((name, ticks)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            continue;
        };
        // schedstat's first field is the time on a CPU in nanoseconds: far finer than stat's
        // 10 ms ticks, which round a lightly loaded thread to nothing.
        let seconds = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(ticks, |ns| ns / 1e9);
        let entry = seen.entry(tid).or_insert((name.clone(), 0.0));
        if entry.0 != name {
            // A thread id reused by a new thread: keep the old one's time under its own key.
            let old = std::mem::replace(entry, (name, seconds));
            seen.insert(u32::MAX - tid, old);
        } else if seconds > entry.1 {
            entry.1 = seconds;
        }
    }
}

/// The step a slot is in, as its events tell it.
fn step_of(event: &Event) -> Option<(&str, &'static str)> {
    match event {
        Event::SlotWaiting { slot } => Some((slot, "waiting")),
        Event::DeviceSeen { slot, .. } => Some((slot, "seen")),
        Event::StageStarted { slot, stage } => Some((slot, stage.as_str())),
        Event::Passed { slot, .. } | Event::Failed { slot, .. } => Some((slot, "done")),
        _ => None,
    }
}

/// What each step between two events of a slot means on this line.
fn phase_name(from: &str, to: &str) -> String {
    let what = match (from, to) {
        ("waiting", "seen") => "next device: fixture swap, port, BOOT, HELLO",
        ("seen", "check") => "-",
        ("check", "key") => "check (ledger lookup)",
        ("key", "issue") => "KEYGEN + CSR (wire); x509-csr signs + records `issued` meanwhile",
        ("issue", "record") => "issue: HSM signs (modes that do not overlap it)",
        ("record", "write") => "CSR check; record `issued` (durable commit) if not overlapped",
        ("write", "verify") => "PUT chain + CONFIG (wire)",
        ("verify", "lock") => "READBACK (wire) + compare",
        ("lock", "done") => "LOCK (wire) + `written` (durable commit)",
        ("done", "waiting") => "release the device",
        _ => "",
    };
    format!("{from} → {to}  {what}")
}

/// Time per slot step, from the engine's events as the bench receives them.
#[derive(Default)]
struct Phases {
    last: HashMap<String, (&'static str, Instant)>,
    spans: BTreeMap<(usize, String), Vec<Duration>>,
    order: HashMap<String, usize>,
}

impl Phases {
    fn on(&mut self, event: &Event, now: Instant) {
        let Some((slot, step)) = step_of(event) else {
            return;
        };
        if let Some((from, at)) = self.last.insert(slot.to_string(), (step, now)) {
            let name = phase_name(from, step);
            let next = self.order.len();
            let rank = *self.order.entry(name.clone()).or_insert(next);
            self.spans.entry((rank, name)).or_default().push(now - at);
        }
    }

    fn print(&self, devices: f64) {
        println!("  where a slot's time goes (per device; mean / median / p95 ms):");
        let mut total = 0.0;
        for ((_, name), spans) in &self.spans {
            let mut sorted = spans.clone();
            sorted.sort();
            let sum: f64 = sorted.iter().map(Duration::as_secs_f64).sum();
            total += sum;
            let q = |p: f64| dps_station::station::report::quantile(&sorted, p).as_secs_f64() * 1e3;
            println!(
                "    {:>8.2} {:>8.2} {:>8.2}  {name}",
                sum * 1e3 / devices,
                q(0.5),
                q(0.95)
            );
        }
        println!(
            "    {:>8.2}                    slot time per device (all slots' time / devices)",
            total * 1e3 / devices
        );
    }
}

/// `bench line`: a batch of x509-csr devices over a virtual fixture, SoftHSM2, the emulator and a
/// durable ledger; devices per hour, CPU per device, and the ratio to the serial-wire limit.
pub fn bench(args: &BenchLineArgs) -> anyhow::Result<ExitCode> {
    if args.slots == 0 || args.devices == 0 {
        bail!("--slots and --devices must be at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let workspace = DemoWorkspace::create(KeyStoreChoice::Auto)?;
    let baud = (args.baud > 0).then_some(args.baud);
    let sim = SimOptions {
        faults: SimFaults {
            baud,
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let options = RunOptions {
        devices: args.devices,
        slots: args.slots,
        sim,
        timing: "immediately",
    };
    let cpu0 = process_cpu_seconds().unwrap_or(0.0);
    let threads = ThreadCpu::start();
    let started = Instant::now();
    // Steady state: from the first device seen to the last device done (no start-up, no drain).
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut phases = Phases::default();
    let run = workspace.run_mode(Mode::X509Csr, "bench-line", &options, &mut |e| {
        let now = Instant::now();
        phases.on(e, now);
        match e {
            Event::DeviceSeen { .. } if first.is_none() => first = Some(now),
            Event::Passed { .. } | Event::Failed { .. } => last = Some(now),
            _ => {}
        }
    })?;
    let steady = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds().unwrap_or(0.0) - cpu0;
    let (by_owner, unclaimed) = threads.finish();
    let n = run.summary.outcomes.len().max(1) as f64;
    let mut bytes: Vec<u64> = run.devices.iter().map(|d| d.wire_bytes).collect();
    bytes.sort_unstable();
    let median_bytes = bytes.get(bytes.len() / 2).copied().unwrap_or(0);
    let f = ReportFigures::of(&run.summary);
    println!(
        "bench line: {} devices, {} slots, {} (x509-csr, {}, emulator, durable ledger)",
        args.devices,
        args.slots,
        if args.baud > 0 {
            format!("{} baud", args.baud)
        } else {
            "no wire delay".into()
        },
        if workspace.is_software() {
            "SOFTWARE keys"
        } else {
            "SoftHSM2"
        }
    );
    println!(
        "  passed {} failed {}; enrolled {}",
        f.passed, f.failed, run.summary.enrollment.enrolled
    );
    println!(
        "  wall {:.1} s → {:.0} devices/hour ({:.1} devices/s)",
        wall,
        n * 3600.0 / wall,
        n / wall
    );
    if let (Some(a), Some(b)) = (first, last) {
        println!(
            "  steady state (first device seen to last done): {:.1} s → {:.1} devices/s; before it {:.1} s (key store, ledger, CA), after it {:.1} s (enrollment drain, shutdown)",
            steady,
            n / steady.max(f64::EPSILON),
            (a - started).as_secs_f64(),
            wall - (b - started).as_secs_f64()
        );
    }
    println!(
        "  per device: median {:.1} ms, p95 {:.1} ms (HELLO to lock + ledger)",
        f.median.as_secs_f64() * 1e3,
        f.p95.as_secs_f64() * 1e3
    );
    let not_station: f64 = by_owner
        .iter()
        .filter(|(k, _)| **k != "station")
        .map(|(_, v)| v)
        .sum();
    println!(
        "  CPU per device: station {:.2} ms (process {:.2} ms minus simulator, emulator and bench threads); sampled by thread: {}",
        (cpu - not_station).max(0.0) * 1e3 / n,
        cpu * 1e3 / n,
        by_owner
            .iter()
            .map(|(k, v)| format!("{k} {:.2} ms", v * 1e3 / n))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !unclaimed.is_empty() {
        println!("  (\"other\" threads: {})", unclaimed.join(", "));
    }
    phases.print(n);
    if let Some(baud) = baud {
        let wire = median_bytes as f64 * 10.0 / f64::from(baud);
        let limit_per_hour = args.slots as f64 * 3600.0 / wire;
        println!(
            "  wire bytes per device (median, both ways, BOOT to LOCK): {median_bytes} → {:.1} ms on the wire per device",
            wire * 1e3
        );
        println!(
            "  wire limit with {} slots: {:.0} devices/hour; achieved/limit = {:.3} over the whole batch",
            args.slots,
            limit_per_hour,
            (n * 3600.0 / wall) / limit_per_hour
        );
        if steady > 0.0 {
            // What a running line sustains: no start-up (key store, ledger) and no enrollment drain.
            let sustained = n * 3600.0 / steady;
            println!(
                "  steady state: {:.0} devices/hour; achieved/limit = {:.3}",
                sustained,
                sustained / limit_per_hour
            );
        }
    }
    drop(workspace);
    demo::remove_softhsm_dir();
    Ok(if f.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_thread_name_and_its_cpu_seconds() {
        let line = "4242 (slot-S1 (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("slot-S1 (x)".to_string(), 3.0)));
        assert_eq!(owner("slot-S12"), "station");
        assert_eq!(owner("issue"), "station");
        assert_eq!(owner("sim-device-17"), "simulator");
        assert_eq!(owner("dps-emulator"), "emulator");
        assert_eq!(owner("dps-station"), "bench");
        assert_eq!(owner("tokio-runtime-w"), "other");
    }
}
