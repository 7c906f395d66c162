//! The figures behind a report's plots, per batch or per day: yield, throughput per hour, time
//! per device (histogram, median, 95th percentile), failures by stage and by slot, and which
//! slot fails more than the others (a fixture fault hint). Built from the ledger's device runs
//! (every run of a batch, or a day) or from one run's summary; drawn by the SVG writer
//! ([`super::report_plots`]) and by the reports screen.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::engine::RunSummary;
use super::report::quantile;
use crate::ledger::DeviceRunRecord;

/// One device as a report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPoint {
    /// When it left its slot, seconds since the Unix epoch (UTC).
    pub finished_unix: i64,
    /// The slot.
    pub slot: String,
    /// The failing stage; `None` when it passed.
    pub failed_stage: Option<String>,
    /// Time spent on it.
    pub elapsed_ms: u64,
}

/// Devices that left their slots during one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBucket {
    /// Its start, seconds since the Unix epoch (UTC), on a whole hour.
    pub start_unix: i64,
    /// Passed in it.
    pub passed: usize,
    /// Failed in it.
    pub failed: usize,
}

/// One bar of the time-per-device histogram: passed devices that took `lo_ms..hi_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBin {
    /// Lower bound (included), milliseconds.
    pub lo_ms: u64,
    /// Upper bound (excluded), milliseconds.
    pub hi_ms: u64,
    /// Devices.
    pub count: usize,
}

/// One slot's devices and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFigures {
    /// The slot.
    pub slot: String,
    /// Devices it took.
    pub devices: usize,
    /// Of which failed.
    pub failed: usize,
}

impl SlotFigures {
    /// failed / devices.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failed, self.devices)
    }
}

/// A slot whose failure rate stands out from the other slots': look at its fixture (pogo pins,
/// cable, port) before the devices.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureHint {
    /// The slot.
    pub slot: String,
    /// Its failure rate.
    pub rate: f64,
    /// The failure rate of every other slot together.
    pub others_rate: f64,
}

/// Everything a report plots, and its figures in text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// Devices taken.
    pub devices: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// passed / devices (0 when none).
    pub yield_ratio: f64,
    /// Width of a throughput bucket, seconds (an hour, wider for runs over many weeks).
    pub bucket_secs: i64,
    /// Throughput from the first device's hour to the last's, empty buckets included.
    pub throughput: Vec<TimeBucket>,
    /// Time per passed device.
    pub histogram: Vec<TimeBin>,
    /// Median time per passed device.
    pub median: Duration,
    /// 95th percentile time per passed device.
    pub p95: Duration,
    /// Failures per stage.
    pub failures_by_stage: BTreeMap<String, usize>,
    /// Every slot, in natural order (S2 before S10).
    pub slots: Vec<SlotFigures>,
    /// The slot that fails more than the others, if one does.
    pub fixture_hint: Option<FixtureHint>,
}

/// At most this many throughput buckets: a batch that ran over months gets wider ones.
const MAX_BUCKETS: i64 = 1000;
/// Bars of the time histogram, about.
const HISTOGRAM_BINS: u64 = 20;
/// A slot needs this many failures before it is named: two bad devices are not a fixture.
const HINT_MIN_FAILURES: usize = 3;

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Seconds since the epoch of a ledger time (`2026-12-03T08:45:12.345Z`), `None` if unreadable.
pub fn parse_ledger_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

impl RunPoint {
    /// From the ledger; a row whose time cannot be read is left out (and logged).
    pub fn from_records(records: &[DeviceRunRecord]) -> Vec<RunPoint> {
        records
            .iter()
            .filter_map(|r| {
                let Some(t) = parse_ledger_time(&r.finished_at) else {
                    tracing::warn!(time = %r.finished_at, "a device run with an unreadable time is left out of the report");
                    return None;
                };
                Some(RunPoint {
                    finished_unix: t,
                    slot: r.slot.clone(),
                    failed_stage: r.failed_stage.clone(),
                    elapsed_ms: r.elapsed_ms,
                })
            })
            .collect()
    }

    /// From one run's summary.
    pub fn from_summary(summary: &RunSummary) -> Vec<RunPoint> {
        summary
            .outcomes
            .iter()
            .map(|o| RunPoint {
                finished_unix: o
                    .finished_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                    .unwrap_or(0),
                slot: o.slot.clone(),
                failed_stage: o.failure.as_ref().map(|(s, _)| s.as_str().to_string()),
                elapsed_ms: u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }
}

/// S2 before S10: by the text with its digit runs compared as numbers.
fn natural_key(s: &str) -> Vec<(u8, u64, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let digit = c.is_ascii_digit();
        let mut part = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() != digit {
                break;
            }
            part.push(c);
            chars.next();
        }
        if digit {
            out.push((0, part.parse().unwrap_or(u64::MAX), part));
        } else {
            out.push((1, 0, part));
        }
    }
    out
}

/// A bin width of 1, 2 or 5 × 10^k ms giving about [`HISTOGRAM_BINS`] bars over `span`.
fn nice_width(span: u64) -> u64 {
    let raw = (span / HISTOGRAM_BINS).max(1);
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| magnitude.saturating_mul(m))
        .find(|w| *w >= raw)
        .unwrap_or(raw)
}

fn histogram(sorted_ms: &[u64]) -> Vec<TimeBin> {
    let (Some(&min), Some(&max)) = (sorted_ms.first(), sorted_ms.last()) else {
        return Vec::new();
    };
    let width = nice_width(max - min);
    let start = min / width * width;
    let n = ((max - start) / width + 1) as usize;
    let mut bins: Vec<TimeBin> = (0..n as u64)
        .map(|i| TimeBin {
            lo_ms: start + i * width,
            hi_ms: start + (i + 1) * width,
            count: 0,
        })
        .collect();
    for &ms in sorted_ms {
        let i = ((ms - start) / width) as usize;
        if let Some(bin) = bins.get_mut(i) {
            bin.count += 1;
        }
    }
    bins
}

fn throughput(points: &[RunPoint]) -> (i64, Vec<TimeBucket>) {
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.finished_unix).min(),
        points.iter().map(|p| p.finished_unix).max(),
    ) else {
        return (3600, Vec::new());
    };
    let first_hour = first.div_euclid(3600) * 3600;
    let hours = (last - first_hour) / 3600 + 1;
    let bucket_secs = 3600 * ((hours + MAX_BUCKETS - 1) / MAX_BUCKETS).max(1);
    let n = ((last - first_hour) / bucket_secs + 1) as usize;
    let mut buckets: Vec<TimeBucket> = (0..n as i64)
        .map(|i| TimeBucket {
            start_unix: first_hour + i * bucket_secs,
            passed: 0,
            failed: 0,
        })
        .collect();
    for p in points {
        let i = ((p.finished_unix - first_hour) / bucket_secs) as usize;
        if let Some(b) = buckets.get_mut(i) {
            if p.failed_stage.is_some() {
                b.failed += 1;
            } else {
                b.passed += 1;
            }
        }
    }
    (bucket_secs, buckets)
}

/// The slot with the highest failure rate among those with at least [`HINT_MIN_FAILURES`]
/// failures, a rate at least twice the other slots' together and 10 points above it.
fn fixture_hint(slots: &[SlotFigures]) -> Option<FixtureHint> {
    let (all_devices, all_failed) = slots
        .iter()
        .fold((0, 0), |(d, f), s| (d + s.devices, f + s.failed));
    slots
        .iter()
        .filter(|s| s.failed >= HINT_MIN_FAILURES && s.devices < all_devices)
        .map(|s| {
            let others = ratio(all_failed - s.failed, all_devices - s.devices);
            (s, s.failure_rate(), others)
        })
        .filter(|(_, rate, others)| *rate >= 2.0 * others && rate - others >= 0.1)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, rate, others_rate)| FixtureHint {
            slot: s.slot.clone(),
            rate,
            others_rate,
        })
}

impl ReportData {
    /// Computes every figure of these devices.
    pub fn of(points: &[RunPoint]) -> Self {
        let devices = points.len();
        let failed = points.iter().filter(|p| p.failed_stage.is_some()).count();
        let passed = devices - failed;
        let mut times: Vec<u64> = points
            .iter()
            .filter(|p| p.failed_stage.is_none())
            .map(|p| p.elapsed_ms)
            .collect();
        times.sort_unstable();
        let durations: Vec<Duration> = times.iter().map(|&ms| Duration::from_millis(ms)).collect();
        let mut failures_by_stage = BTreeMap::new();
        let mut by_slot: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for p in points {
            let slot = by_slot.entry(p.slot.as_str()).or_default();
            slot.0 += 1;
            if let Some(stage) = &p.failed_stage {
                slot.1 += 1;
                *failures_by_stage.entry(stage.clone()).or_insert(0) += 1;
            }
        }
        let mut slots: Vec<SlotFigures> = by_slot
            .into_iter()
            .map(|(slot, (devices, failed))| SlotFigures {
                slot: slot.to_string(),
                devices,
                failed,
            })
            .collect();
        slots.sort_by_cached_key(|s| natural_key(&s.slot));
        let (bucket_secs, throughput) = throughput(points);
        let fixture_hint = fixture_hint(&slots);
        Self {
            devices,
            passed,
            failed,
            yield_ratio: ratio(passed, devices),
            bucket_secs,
            throughput,
            histogram: histogram(&times),
            median: quantile(&durations, 0.5),
            p95: quantile(&durations, 0.95),
            failures_by_stage,
            slots,
            fixture_hint,
        }
    }

    /// The busiest bucket's devices per hour (passed and failed).
    pub fn peak_per_hour(&self) -> f64 {
        let hours = self.bucket_secs as f64 / 3600.0;
        self.throughput
            .iter()
            .map(|b| (b.passed + b.failed) as f64 / hours)
            .fold(0.0, f64::max)
    }
}

/// A bucket's start as `2026-12-03 08:00` (UTC), for axes and tables.
pub fn hour_label(start_unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(start_unix).unwrap_or(0));
    let t: time::OffsetDateTime = SystemTime::into(t);
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, slot: &str, stage: Option<&str>, ms: u64) -> RunPoint {
        RunPoint {
            finished_unix: t,
            slot: slot.into(),
            failed_stage: stage.map(Into::into),
            elapsed_ms: ms,
        }
    }

    #[test]
    fn yield_times_and_failures_of_known_devices() {
        // 20 passed devices of 1..=20 ms × 100, two failures, over three hours.
        let t0 = 1_764_748_800; // 2025-12-03 08:00 UTC
        let mut points: Vec<RunPoint> = (1..=20)
            .map(|i| p(t0 + i * 300, "S1", None, i as u64 * 100))
            .collect();
        points.push(p(t0 + 2 * 3600 + 10, "S2", Some("write"), 50));
        points.push(p(t0 + 2 * 3600 + 20, "S2", Some("verify"), 50));
        let d = ReportData::of(&points);
        assert_eq!((d.devices, d.passed, d.failed), (22, 20, 2));
        assert!((d.yield_ratio - 20.0 / 22.0).abs() < 1e-9);
        assert_eq!(d.median, Duration::from_millis(1000));
        assert_eq!(d.p95, Duration::from_millis(1900));
        assert_eq!(d.failures_by_stage.get("write"), Some(&1));
        assert_eq!(d.failures_by_stage.get("verify"), Some(&1));
        // 300 s apart: 11 in the first hour (300..3300), 9 in the second, 2 failures in the third.
        assert_eq!(d.bucket_secs, 3600);
        let counts: Vec<(usize, usize)> =
            d.throughput.iter().map(|b| (b.passed, b.failed)).collect();
        assert_eq!(counts, vec![(11, 0), (9, 0), (0, 2)]);
        assert_eq!(d.throughput[0].start_unix, t0);
        assert_eq!(hour_label(t0), "2025-12-03 08:00");
        assert_eq!(d.peak_per_hour(), 11.0);
        // 100..2000 ms in bins of 100 ms: one device each, none lost.
        assert_eq!(d.histogram.iter().map(|b| b.count).sum::<usize>(), 20);
        assert_eq!(d.histogram[0].lo_ms, 100);
        assert_eq!(d.histogram[0].hi_ms - d.histogram[0].lo_ms, 100);
    }

    #[test]
    fn a_slot_failing_more_than_the_others_is_named() {
        let mut points = Vec::new();
        for slot in ["S1", "S2", "S10", "S3"] {
            for i in 0..20 {
                let fails = if slot == "S10" { i < 6 } else { i == 0 };
                points.push(p(i, slot, fails.then_some("write"), 900));
            }
        }
        let d = ReportData::of(&points);
        let order: Vec<&str> = d.slots.iter().map(|s| s.slot.as_str()).collect();
        assert_eq!(order, vec!["S1", "S2", "S3", "S10"]);
        let hint = d.fixture_hint.expect("S10 fails 30 %, the others 5 %");
        assert_eq!(hint.slot, "S10");
        assert!((hint.rate - 0.3).abs() < 1e-9 && (hint.others_rate - 0.05).abs() < 1e-9);

        // Failures spread evenly name no slot.
        let even: Vec<RunPoint> = (0..40)
            .map(|i| {
                p(
                    i,
                    if i % 2 == 0 { "S1" } else { "S2" },
                    (i % 5 == 0).then_some("write"),
                    1,
                )
            })
            .collect();
        assert_eq!(ReportData::of(&even).fixture_hint, None);
    }

    #[test]
    fn no_devices_give_empty_figures_not_a_panic() {
        let d = ReportData::of(&[]);
        assert_eq!((d.devices, d.yield_ratio), (0, 0.0));
        assert!(d.throughput.is_empty() && d.histogram.is_empty() && d.slots.is_empty());
        assert_eq!(d.median, Duration::ZERO);
    }

    #[test]
    fn a_batch_over_months_gets_wider_buckets() {
        let d = ReportData::of(&[p(0, "S1", None, 1), p(3600 * 5000, "S1", None, 1)]);
        assert!(d.throughput.len() as i64 <= MAX_BUCKETS);
        assert_eq!(
            d.bucket_secs,
            3600 * 6,
            "5,001 hours in at most 1,000 buckets"
        );
        assert_eq!(d.throughput.iter().map(|b| b.passed).sum::<usize>(), 2);
    }

    #[test]
    fn ledger_times_are_read() {
        assert_eq!(
            parse_ledger_time("2025-12-03T08:00:00.000Z"),
            Some(1_764_748_800)
        );
        assert_eq!(parse_ledger_time("yesterday"), None);
    }
}
