//! `bench gui --ledger`: the ledger browser over a large ledger (a million identities by
//! default). Drawn headless like `bench gui`: the UI thread's CPU time per frame while the table
//! scrolls (pages fetched from the screen's worker as rows come into view), the time from a typed
//! search to its first rows on screen, the rows held in memory, and the process's peak memory.

use std::path::Path;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use crate::gui::bench::{NoDevices, peak_rss, station, thread_cpu_time};
use crate::gui::i18n::{Language, Messages};
use crate::gui::screen::{Desk, PickerState, Screen};
use crate::gui::theme::Palette;
use crate::ledger::bench::{BenchError, fill, sample_registration_id};
use crate::ledger::{Ledger, LedgerError, WriterIdentity};
use crate::station::operator::StationHandle;

use super::ledger::{LedgerScreen, ROW_HEIGHT};

/// What was measured.
#[derive(Debug, Clone)]
pub struct LedgerBenchReport {
    pub identities: u64,
    /// Seconds spent making the ledger (0 when an existing one was reused).
    pub fill_seconds: f64,
    pub frames: usize,
    /// Rows scrolled past.
    pub rows_scrolled: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Typed search → first rows drawn: median and worst of the searches.
    pub search_median: Duration,
    pub search_max: Duration,
    pub searches: usize,
    /// Most table rows the screen held at once.
    pub rows_held_max: usize,
    pub peak_rss: u64,
}

/// Makes (or reuses) a ledger of `identities` sample identities at `path`, then measures.
pub fn run(
    path: &Path,
    identities: u64,
    frames: usize,
    mut progress: impl FnMut(&str),
) -> Result<LedgerBenchReport, BenchError> {
    let fill_start = Instant::now();
    let have = match Ledger::open_read_only(path) {
        Ok(l) => l.stats()?.identities as u64,
        Err(LedgerError::NotFound { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    if have < identities {
        progress(&format!(
            "filling {} with {} identities (once; later runs reuse it)",
            path.display(),
            identities - have
        ));
        let mut ledger = Ledger::open(
            path,
            &WriterIdentity {
                station: "bench".into(),
                operator: "bench".into(),
            },
        )?;
        fill(&mut ledger, have..identities, 20_000, |n| {
            if n.is_multiple_of(100_000) {
                progress(&format!("  {n} identities"));
            }
        })?;
        ledger.checkpoint()?;
    }
    let fill_seconds = if have < identities {
        fill_start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let mut config = station(1);
    config.ledger = path.to_path_buf();
    let handle = StationHandle::open(config, Box::new(NoDevices));
    let _ = handle.sign_in("bench");
    let (view, _events) = handle.subscribe(None);
    let tr = Messages::new(Language::En);
    let picker = PickerState::default();
    let (send, _commands) = channel();
    let mut screen = LedgerScreen::new();
    let ctx = egui::Context::default();
    let size = egui::vec2(1920.0, 1080.0);
    let mut frame_no = 0usize;
    let mut draw = |screen: &mut LedgerScreen, events: Vec<egui::Event>| -> Duration {
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, size)),
            time: Some(frame_no as f64 / 60.0),
            events,
            ..Default::default()
        };
        frame_no += 1;
        let start = thread_cpu_time();
        let mut output = ctx.run_ui(input, |ui| {
            screen.logic(ui.ctx(), &handle, &tr);
            let desk = Desk {
                view: &view,
                tr: &tr,
                palette: Palette::DARK,
                now: std::time::SystemTime::now(),
                picker: &picker,
                highlight: None,
                station: &handle,
                send: &send,
            };
            screen.ui(ui, &desk);
        });
        let primitives = ctx.tessellate(output.shapes, output.pixels_per_point);
        std::hint::black_box(&primitives);
        // No renderer takes the font atlas: say so (a debug build checks it).
        output.textures_delta.clear();
        thread_cpu_time().saturating_sub(start)
    };

    progress("opening the table");
    let open = Instant::now();
    while !screen.has_rows() {
        draw(&mut screen, Vec::new());
        std::thread::sleep(Duration::from_millis(2));
        if open.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Setup("the first page never came".into()));
        }
    }
    for _ in 0..10 {
        draw(&mut screen, Vec::new());
    }

    progress(&format!(
        "scrolling: {frames} frames at 60 Hz, 12 rows a frame"
    ));
    let pointer = egui::pos2(400.0, 600.0);
    let mut times = Vec::with_capacity(frames);
    let mut rows_held_max = 0;
    for _ in 0..frames {
        let events = vec![
            egui::Event::PointerMoved(pointer),
            egui::Event::MouseWheel {
                unit: egui::MouseWheelUnit::Point,
                delta: egui::vec2(0.0, -12.0 * ROW_HEIGHT),
                phase: egui::TouchPhase::Move,
                modifiers: egui::Modifiers::NONE,
                source: egui::MouseWheelSource::Wheel,
            },
        ];
        times.push(draw(&mut screen, events));
        rows_held_max = rows_held_max.max(screen.rows_held());
        // Real frames come every 16.7 ms; the worker fetches pages meanwhile.
        std::thread::sleep(Duration::from_millis(16));
    }

    progress("searching: 20 registration IDs, 5 serial prefixes, 1 prefix matching all");
    let mut searches: Vec<String> = (0..20u64)
        .map(|k| sample_registration_id((k * 7919 * 6151) % identities.max(1)).to_uppercase())
        .collect();
    searches.extend((0..5u64).map(|k| format!("{:06}", (k * 104_729) % identities.max(1) / 100)));
    searches.push("bench-".into());
    let mut search_times = Vec::new();
    for text in &searches {
        screen.type_search("");
        let clear = Instant::now();
        while !screen.has_rows() && clear.elapsed() < Duration::from_secs(30) {
            draw(&mut screen, Vec::new());
            std::thread::sleep(Duration::from_millis(1));
        }
        screen.type_search(text);
        let start = Instant::now();
        loop {
            draw(&mut screen, Vec::new());
            if screen.has_rows() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Setup(format!(
                    "the search {text:?} never answered"
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        search_times.push(start.elapsed());
        progress(&format!(
            "  {text:?}: {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        ));
    }

    let rows_scrolled = frames * 12;
    let warm = times.len().min(10);
    let mut steady: Vec<Duration> = times[warm..].to_vec();
    steady.sort();
    search_times.sort();
    let q = |v: &[Duration], p: f64| crate::station::report::quantile(v, p);
    Ok(LedgerBenchReport {
        identities,
        fill_seconds,
        frames,
        rows_scrolled,
        median: q(&steady, 0.5),
        p99: q(&steady, 0.99),
        max: times.iter().copied().max().unwrap_or_default(),
        search_median: q(&search_times, 0.5),
        search_max: search_times.last().copied().unwrap_or_default(),
        searches: search_times.len(),
        rows_held_max,
        peak_rss: peak_rss(),
    })
}
