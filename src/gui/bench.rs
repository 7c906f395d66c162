//! `bench gui`: the desk's cost per frame with a full fixture busy. A 32-slot line screen is fed
//! engine events at a fixed rate through the station handle (as the engine would send them) and
//! drawn headless: egui's layout and tessellation, which is all the CPU work of a frame except
//! the GPU upload. Reports the UI thread's CPU time per frame (median, p99) and the process's
//! peak resident memory.

use std::path::PathBuf;
use std::time::Duration;

use crate::device::FixtureMap;
use crate::station::config::{KeyStoreConfig, StationConfig};
use crate::station::events::{Event, Stage};
use crate::station::operator::settings::DeskSettings;
use crate::station::operator::{BatchProvider, StationError, StationEvent, StationHandle};

use super::{DeskApp, DeskOptions};

/// What was measured.
#[derive(Debug, Clone)]
pub struct GuiBenchReport {
    /// Frames drawn.
    pub frames: usize,
    /// Events fed.
    pub events: u64,
    /// Median CPU time per frame.
    pub median: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Worst frame.
    pub max: Duration,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_rss: u64,
}

/// A provider that starts no batch: benchmarks feed the desk themselves.
pub struct NoDevices;

impl BatchProvider for NoDevices {
    fn setup(
        &self,
        _station: &StationConfig,
        _batch: crate::station::config::BatchConfig,
    ) -> Result<crate::station::engine::EngineSetup, StationError> {
        Err(StationError::Provider(
            "the GUI benchmark feeds events; it starts no batch".into(),
        ))
    }
}

/// CPU time of the calling thread (the UI thread: workers are not counted).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident memory of this process, from /proc (0 where there is none).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A station of `slots` slots whose files live in a temp folder.
pub fn station(slots: usize) -> StationConfig {
    let dir = std::env::temp_dir().join("dps-station-bench-gui");
    let mut fixture = FixtureMap::default();
    for i in 0..slots {
        let name = format!("{}{}", (b'A' + (i / 8) as u8) as char, i % 8 + 1);
        fixture.slots.insert(
            name.clone(),
            PathBuf::from(format!("/dev/serial/by-id/bench-{name}")),
        );
    }
    let path = dir.join("station.toml");
    StationConfig {
        desk: DeskSettings::resolve(&path, &Default::default(), &Default::default()),
        path,
        name: "bench-station".into(),
        operator: "bench".into(),
        ledger: dir.join("ledger.db"),
        reports: dir.join("reports"),
        fixture,
        keystore: KeyStoreConfig::Software {
            dir: dir.join("keys"),
        },
        dps: Default::default(),
        officer: Default::default(),
        central: None,
    }
}

/// Feeds `rate` events per second to a desk of `slots` tiles for `frames` frames at 60 Hz of
/// simulated time, and measures each frame.
pub fn run(slots: usize, rate: f64, frames: usize) -> GuiBenchReport {
    let config = station(slots);
    let names: Vec<String> = config.fixture.slots.keys().cloned().collect();
    let handle = StationHandle::open(config, Box::new(NoDevices));
    let mut app = DeskApp::new(
        handle.clone(),
        DeskOptions {
            kiosk: false,
            sounds: Some(false),
            language: None,
        },
    );
    let _ = handle.sign_in("bench");
    handle.inject(StationEvent::BatchStarted {
        name: "bench".into(),
        target: Some(1_000_000),
        slots: names.clone(),
    });
    let ctx = egui::Context::default();
    let frame_dt = 1.0 / 60.0;
    let mut owed = 0.0;
    let mut fed = 0u64;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut times = Vec::with_capacity(frames);
    let stages = [
        Stage::Identify,
        Stage::Key,
        Stage::Issue,
        Stage::Record,
        Stage::Write,
        Stage::Verify,
        Stage::Lock,
    ];
    for frame in 0..frames {
        owed += rate * frame_dt;
        while owed >= 1.0 {
            owed -= 1.0;
            // Each slot cycles: seen, seven stages, a result (one in 20 fails), progress.
            let slot = names[(fed as usize) % names.len()].clone();
            let step = (fed as usize / names.len()) % (stages.len() + 3);
            let event = match step {
                0 => Event::DeviceSeen {
                    slot,
                    serial: format!("SN{fed:08}"),
                    model: "bench".into(),
                },
                s if s <= stages.len() => Event::StageStarted {
                    slot,
                    stage: stages[s - 1],
                },
                s if s == stages.len() + 1 => {
                    if fed.is_multiple_of(20) {
                        failed += 1;
                        Event::Failed {
                            slot,
                            serial: Some(format!("SN{fed:08}")),
                            stage: Stage::Write,
                            reason: "the device stopped answering (timeout after 2 s)".into(),
                        }
                    } else {
                        passed += 1;
                        Event::Passed {
                            slot,
                            serial: format!("SN{fed:08}"),
                            registration_id: format!("bench-sn{fed:08}"),
                            elapsed: Duration::from_millis(900 + fed % 300),
                        }
                    }
                }
                _ => Event::Progress {
                    passed,
                    failed,
                    target: Some(1_000_000),
                },
            };
            handle.inject(StationEvent::Engine(event));
            fed += 1;
        }
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1920.0, 1080.0),
            )),
            time: Some(frame as f64 * frame_dt),
            ..Default::default()
        };
        let start = thread_cpu_time();
        let mut output = ctx.run_ui(input, |ui| {
            app.logic(ui.ctx());
            app.draw(ui);
        });
        let primitives = ctx.tessellate(output.shapes, output.pixels_per_point);
        std::hint::black_box(&primitives);
        // No renderer takes the font atlas: say so (a debug build checks it).
        output.textures_delta.clear();
        times.push(thread_cpu_time().saturating_sub(start));
    }
    // The first frames build font atlases: reported in max, left out of the percentiles.
    let warm = times.len().min(10);
    let mut steady: Vec<Duration> = times[warm..].to_vec();
    steady.sort();
    let q = |p: f64| crate::station::report::quantile(&steady, p);
    GuiBenchReport {
        frames,
        events: fed,
        median: q(0.5),
        p99: q(0.99),
        max: times.iter().copied().max().unwrap_or_default(),
        peak_rss: peak_rss(),
    }
}
