//! What the enrollment screen shows, read from the ledger: the queue by DPS target and state,
//! and DPS's answers over time (enrolled, throttled 429, server errors 5xx/408, no answer,
//! refused), classified from what the ledger recorded with each answer.

use std::collections::BTreeMap;

use crate::ledger::{EnrollmentAnswer, Ledger, LedgerError};

use super::report_data::parse_ledger_time;

/// What an answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnswerKind {
    /// DPS confirmed the enrollment.
    Enrolled,
    /// HTTP 429: over the quota, retried later.
    Throttled,
    /// HTTP 5xx or 408: DPS's trouble, retried later.
    ServerError,
    /// No HTTP answer (network, TLS, timeout), or another reason to retry later.
    NoAnswer,
    /// DPS refused it for good.
    Refused,
}

impl AnswerKind {
    /// Every kind, in the order plots and tables show them.
    pub const ALL: [AnswerKind; 5] = [
        AnswerKind::Enrolled,
        AnswerKind::Throttled,
        AnswerKind::ServerError,
        AnswerKind::NoAnswer,
        AnswerKind::Refused,
    ];

    /// Its message key suffix (`enrollment.answer.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            AnswerKind::Enrolled => "enrolled",
            AnswerKind::Throttled => "throttled",
            AnswerKind::ServerError => "server",
            AnswerKind::NoAnswer => "no_answer",
            AnswerKind::Refused => "refused",
        }
    }

    /// Whether it is abnormal (drawn in the alarm colour, with a mark).
    pub fn abnormal(self) -> bool {
        self != AnswerKind::Enrolled
    }
}

/// The HTTP status in a recorded DPS error (`… HTTP 429, errorCode …`), if any.
fn http_status(error: &str) -> Option<u16> {
    let rest = &error[error.find("HTTP ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Classifies one recorded answer.
pub fn classify(answer: &EnrollmentAnswer) -> AnswerKind {
    match answer.action.as_str() {
        "enrollment.enrolled" => AnswerKind::Enrolled,
        "enrollment.failed" => AnswerKind::Refused,
        _ => match answer.error.as_deref().and_then(http_status) {
            Some(429) => AnswerKind::Throttled,
            Some(s) if s >= 500 || s == 408 => AnswerKind::ServerError,
            _ => AnswerKind::NoAnswer,
        },
    }
}

/// One DPS target's queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetQueue {
    /// Waiting for DPS.
    pub pending: u64,
    /// Confirmed by DPS.
    pub enrolled: u64,
    /// Refused or cancelled (revoked identity).
    pub failed: u64,
}

/// The answers of one hour, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerHour {
    /// The hour's start, seconds since the Unix epoch (UTC).
    pub start_unix: i64,
    /// Answers by kind.
    pub counts: BTreeMap<AnswerKind, u64>,
}

/// The enrollment screen's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentOverview {
    /// By DPS target.
    pub queue: BTreeMap<String, TargetQueue>,
    /// Hours with answers, oldest first (hours without any are left out).
    pub hours: Vec<AnswerHour>,
    /// Every answer of the period, by kind.
    pub totals: BTreeMap<AnswerKind, u64>,
}

impl EnrollmentOverview {
    /// Reads the queue and the answers of the `hours` hours before `now_unix`.
    pub fn read(ledger: &Ledger, now_unix: i64, hours: i64) -> Result<Self, LedgerError> {
        let mut queue: BTreeMap<String, TargetQueue> = BTreeMap::new();
        for row in ledger.enrollment_queue()? {
            let q = queue.entry(row.dps_target).or_default();
            match row.state.as_str() {
                "pending" => q.pending += row.count,
                "enrolled" => q.enrolled += row.count,
                _ => q.failed += row.count,
            }
        }
        let since = time::OffsetDateTime::from_unix_timestamp(now_unix - hours * 3600)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
        let answers = ledger.enrollment_answers(&since)?;
        let (hours, totals) = by_hour(&answers);
        Ok(Self {
            queue,
            hours,
            totals,
        })
    }
}

/// Answers by hour and kind, and the totals.
pub fn by_hour(answers: &[EnrollmentAnswer]) -> (Vec<AnswerHour>, BTreeMap<AnswerKind, u64>) {
    let mut hours: BTreeMap<i64, BTreeMap<AnswerKind, u64>> = BTreeMap::new();
    let mut totals = BTreeMap::new();
    for a in answers {
        let Some(t) = parse_ledger_time(&a.at) else {
            continue;
        };
        let kind = classify(a);
        *hours
            .entry(t.div_euclid(3600) * 3600)
            .or_default()
            .entry(kind)
            .or_default() += 1;
        *totals.entry(kind).or_default() += 1;
    }
    let hours = hours
        .into_iter()
        .map(|(start_unix, counts)| AnswerHour { start_unix, counts })
        .collect();
    (hours, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(at: &str, action: &str, error: Option<&str>) -> EnrollmentAnswer {
        EnrollmentAnswer {
            at: at.into(),
            action: action.into(),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn answers_are_classified_from_what_the_ledger_recorded() {
        let throttled =
            "DPS refused to bulk enroll dps: HTTP 429, errorCode 429001: slow down. Retry later.";
        let server = "DPS refused to bulk enroll dps: HTTP 503: busy";
        let answers = vec![
            a("2025-12-03T08:01:00.000Z", "enrollment.enrolled", None),
            a(
                "2025-12-03T08:02:00.000Z",
                "enrollment.retry_later",
                Some(throttled),
            ),
            a(
                "2025-12-03T09:02:00.000Z",
                "enrollment.retry_later",
                Some(server),
            ),
            a(
                "2025-12-03T09:03:00.000Z",
                "enrollment.retry_later",
                Some("connection refused"),
            ),
            a(
                "2025-12-03T09:04:00.000Z",
                "enrollment.failed",
                Some("HTTP 400: bad cert"),
            ),
            a("not a time", "enrollment.enrolled", None),
        ];
        let kinds: Vec<AnswerKind> = answers.iter().map(classify).collect();
        assert_eq!(
            kinds[..5],
            [
                AnswerKind::Enrolled,
                AnswerKind::Throttled,
                AnswerKind::ServerError,
                AnswerKind::NoAnswer,
                AnswerKind::Refused
            ]
        );
        let (hours, totals) = by_hour(&answers);
        assert_eq!(hours.len(), 2, "08:00 and 09:00");
        assert_eq!(hours[0].counts.get(&AnswerKind::Throttled), Some(&1));
        assert_eq!(hours[1].counts.get(&AnswerKind::Refused), Some(&1));
        assert_eq!(
            totals.values().sum::<u64>(),
            5,
            "the unreadable time is left out"
        );
    }
}
