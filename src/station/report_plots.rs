//! A report's plots as SVG files next to its Markdown, so that a report can be mailed and read
//! anywhere: throughput per hour, time per device, failures by stage, failures by slot.
//!
//! A small writer of its own (axes, ticks, bars, a line, labels) rather than a plotting crate:
//! four plain charts do not need one. Every series is a `<g class="series" id="series-NAME">`
//! whose marks carry their value in `data-value`, so a test (or a script) reads the numbers back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::report_data::{ReportData, hour_label};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 64.0;
/// Grey marks, one accent for what is abnormal (failures), as on the screens.
const BAR: &str = "#6b7280";
const FAIL: &str = "#b91c1c";

/// What kind of marks a series draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// One bar per category.
    Bars,
    /// A line through the categories' values, with a dot on each.
    Line,
}

/// One series of a chart: a value per category.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its id (`passed`, `failed`...): `series-<id>` in the SVG.
    pub id: &'static str,
    /// Its name in the legend.
    pub name: String,
    /// One value per category.
    pub values: Vec<f64>,
    /// Bars or a line.
    pub marks: Marks,
    /// Its colour.
    pub colour: &'static str,
}

/// A chart over categories (hours, time bins, stages, slots).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Its file name part and id (`throughput`).
    pub id: &'static str,
    /// The title over it.
    pub title: String,
    /// What the categories are.
    pub x_label: String,
    /// What the values are.
    pub y_label: String,
    /// The categories' labels.
    pub categories: Vec<String>,
    /// Its series (bars side by side when there are several).
    pub series: Vec<Series>,
}

/// XML text and attribute escaping.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A tick step of 1, 2 or 5 × 10^k giving at most about six ticks up to `max`.
pub fn tick_step(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max);
        let step = tick_step(max);
        let top = (max / step).ceil().max(1.0) * step;
        let y = |v: f64| TOP + ph - v / top * ph;
        let n = self.categories.len().max(1);
        let slot_w = pw / n as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, "<title>{}</title>", esc(&self.title));
        let _ = writeln!(
            s,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            esc(&self.title)
        );
        // Y axis: ticks, grid lines, label.
        let _ = writeln!(s, r#"<g id="y-axis">"#);
        let mut v = 0.0;
        while v <= top + step / 2.0 {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y(v) + 4.0,
                number(v),
                yy = y(v),
            );
            v += step;
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        // X axis: every k-th category labelled so labels do not overlap.
        let every = (n as f64 / (pw / 90.0)).ceil().max(1.0) as usize;
        let _ = writeln!(s, r#"<g id="x-axis">"#);
        for (i, label) in self.categories.iter().enumerate() {
            if i % every == 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    LEFT + (i as f64 + 0.5) * slot_w,
                    TOP + ph + 16.0,
                    esc(label)
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{b}" y2="{b}" stroke="#111827"/><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#111827"/>"##,
            LEFT + pw,
            b = TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"#,
            LEFT + pw / 2.0,
            HEIGHT - 12.0,
            esc(&self.x_label)
        );
        let bar_series = self
            .series
            .iter()
            .filter(|s| s.marks == Marks::Bars)
            .count()
            .max(1);
        let bar_w = slot_w * 0.8 / bar_series as f64;
        let mut bar_index = 0;
        for series in &self.series {
            let _ = writeln!(
                s,
                r#"<g class="series" id="series-{}" data-name="{}" fill="{c}" stroke="{c}">"#,
                series.id,
                esc(&series.name),
                c = series.colour
            );
            match series.marks {
                Marks::Bars => {
                    for (i, &value) in series.values.iter().enumerate() {
                        let x = LEFT + i as f64 * slot_w + slot_w * 0.1 + bar_index as f64 * bar_w;
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" data-value="{}"><title>{}: {}</title></rect>"#,
                            y(value),
                            TOP + ph - y(value),
                            number(value),
                            esc(self.categories.get(i).map_or("", String::as_str)),
                            number(value)
                        );
                    }
                    bar_index += 1;
                }
                Marks::Line => {
                    let points: Vec<String> = series
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            format!("{:.1},{:.1}", LEFT + (i as f64 + 0.5) * slot_w, y(v))
                        })
                        .collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke-width="2" points="{}"/>"#,
                        points.join(" ")
                    );
                    for (i, &v) in series.values.iter().enumerate() {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="3" data-value="{}"/>"#,
                            LEFT + (i as f64 + 0.5) * slot_w,
                            y(v),
                            number(v)
                        );
                    }
                }
            }
            s += "</g>\n";
        }
        // Legend, top right, one entry per series.
        for (i, series) in self.series.iter().enumerate() {
            let ly = TOP + 4.0 + i as f64 * 16.0;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{ly:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT - 10.0,
                series.colour,
                WIDTH - RIGHT - 14.0,
                ly + 9.0,
                esc(&series.name)
            );
        }
        s += "</svg>\n";
        s
    }
}

/// The four charts of a report, in English (reports are mailed as written).
pub fn charts(data: &ReportData) -> Vec<Chart> {
    let hours = data.bucket_secs as f64 / 3600.0;
    let per_hour = |n: usize| n as f64 / hours;
    let stages: Vec<(&String, &usize)> = data.failures_by_stage.iter().collect();
    vec![
        Chart {
            id: "throughput",
            title: "Throughput".into(),
            x_label: "hour starting (UTC)".into(),
            y_label: "devices per hour".into(),
            categories: data
                .throughput
                .iter()
                .map(|b| hour_label(b.start_unix))
                .collect(),
            series: vec![
                Series {
                    id: "passed",
                    name: "passed".into(),
                    values: data.throughput.iter().map(|b| per_hour(b.passed)).collect(),
                    marks: Marks::Line,
                    colour: BAR,
                },
                Series {
                    id: "failed",
                    name: "failed".into(),
                    values: data.throughput.iter().map(|b| per_hour(b.failed)).collect(),
                    marks: Marks::Line,
                    colour: FAIL,
                },
            ],
        },
        Chart {
            id: "time",
            title: format!(
                "Time per passed device (median {} ms, 95th percentile {} ms)",
                data.median.as_millis(),
                data.p95.as_millis()
            ),
            x_label: "milliseconds".into(),
            y_label: "devices".into(),
            categories: data
                .histogram
                .iter()
                .map(|b| format!("{}–{}", b.lo_ms, b.hi_ms))
                .collect(),
            series: vec![Series {
                id: "devices",
                name: "devices".into(),
                values: data.histogram.iter().map(|b| b.count as f64).collect(),
                marks: Marks::Bars,
                colour: BAR,
            }],
        },
        Chart {
            id: "stages",
            title: "Failures by stage".into(),
            x_label: "stage".into(),
            y_label: "devices".into(),
            categories: stages.iter().map(|(s, _)| (*s).clone()).collect(),
            series: vec![Series {
                id: "failed",
                name: "failed".into(),
                values: stages.iter().map(|(_, n)| **n as f64).collect(),
                marks: Marks::Bars,
                colour: FAIL,
            }],
        },
        Chart {
            id: "slots",
            title: match &data.fixture_hint {
                Some(h) => format!(
                    "Failures by slot (slot {} fails more than the others: check its fixture)",
                    h.slot
                ),
                None => "Failures by slot".into(),
            },
            x_label: "slot".into(),
            y_label: "devices".into(),
            categories: data.slots.iter().map(|s| s.slot.clone()).collect(),
            series: vec![
                Series {
                    id: "passed",
                    name: "passed".into(),
                    values: data
                        .slots
                        .iter()
                        .map(|s| (s.devices - s.failed) as f64)
                        .collect(),
                    marks: Marks::Bars,
                    colour: BAR,
                },
                Series {
                    id: "failed",
                    name: "failed".into(),
                    values: data.slots.iter().map(|s| s.failed as f64).collect(),
                    marks: Marks::Bars,
                    colour: FAIL,
                },
            ],
        },
    ]
}

/// Writes `<dir>/<base>-<chart>.svg` for each chart; returns (title, path) of each.
pub fn write_plots(
    dir: &Path,
    base: &str,
    data: &ReportData,
) -> Result<Vec<(String, PathBuf)>, std::io::Error> {
    charts(data)
        .into_iter()
        .map(|chart| {
            let path = dir.join(format!("{base}-{}.svg", chart.id));
            std::fs::write(&path, chart.svg())?;
            Ok((chart.title, path))
        })
        .collect()
}

/// The report's section of figures and plots, linking the SVG files by name (they sit next to
/// the Markdown file).
pub fn markdown_section(data: &ReportData, plots: &[(String, PathBuf)]) -> String {
    let mut out = String::from("\n## Plots\n\n");
    let _ = writeln!(
        out,
        "- Throughput: peak {:.0} devices per hour",
        data.peak_per_hour()
    );
    match &data.fixture_hint {
        Some(h) => {
            let _ = writeln!(
                out,
                "- ▲ Slot {} fails {:.0}% of its devices, the other slots {:.0}%: check its fixture (pins, cable, port)",
                h.slot,
                h.rate * 100.0,
                h.others_rate * 100.0
            );
        }
        None => out += "- No slot fails more than the others.\n",
    }
    out += "\n";
    for (title, path) in plots {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(out, "![{}]({name})\n", title.replace(['[', ']'], ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::report_data::RunPoint;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(7.0), 2.0);
        assert_eq!(tick_step(1000.0), 200.0);
        assert_eq!(tick_step(0.0), 1.0);
        assert_eq!(tick_step(f64::NAN), 1.0);
    }

    #[test]
    fn a_chart_escapes_its_labels_and_carries_its_values() {
        let chart = Chart {
            id: "slots",
            title: "a <b> & \"c\"".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            categories: vec!["S<1>".into(), "S2".into()],
            series: vec![Series {
                id: "failed",
                name: "failed".into(),
                values: vec![3.0, 0.5],
                marks: Marks::Bars,
                colour: FAIL,
            }],
        };
        let svg = chart.svg();
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"), "{svg}");
        assert!(svg.contains("S&lt;1&gt;"));
        assert!(svg.contains(r#"id="series-failed""#));
        assert!(svg.contains(r#"data-value="3""#) && svg.contains(r#"data-value="0.50""#));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn an_empty_report_still_draws_axes() {
        let data = ReportData::of(&[]);
        for chart in charts(&data) {
            let svg = chart.svg();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("NaN"), "{}", chart.id);
        }
    }

    #[test]
    fn plots_are_written_and_linked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let points = vec![RunPoint {
            finished_unix: 1_764_748_800,
            slot: "S1".into(),
            failed_stage: None,
            elapsed_ms: 800,
        }];
        let data = ReportData::of(&points);
        let plots = write_plots(dir.path(), "night-20261203T084512Z", &data).unwrap();
        assert_eq!(plots.len(), 4);
        assert!(plots.iter().all(|(_, p)| p.exists()));
        let md = markdown_section(&data, &plots);
        assert!(
            md.contains("(night-20261203T084512Z-throughput.svg)"),
            "{md}"
        );
        assert!(md.contains("No slot fails more than the others."));
    }
}
