//! Certificate profiles: the station's policy for what it signs. Every field that matters (validity,
//! CA flag, path length, key usages) is set here explicitly, because rcgen's defaults (validity
//! 1975–4096, serial derived from the key, no key usage) and a device's CSR are not a policy.

use time::{Duration, OffsetDateTime};

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant of validity (whole seconds: X.509 times have no fractions).
    pub not_before: OffsetDateTime,
    /// Last instant of validity.
    pub not_after: OffsetDateTime,
}

/// How far `not_before` is set back from now: DPS and device clocks may lag the station's, and a
/// certificate that is "not yet valid" on arrival fails registration for no visible reason.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// Why a validity period cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidityError {
    /// Zero or negative days.
    #[error("a validity of {0} days is not possible; give at least 1 day")]
    TooShort(i64),
    /// More than any sane certificate lifetime (and beyond what X.509 times can hold).
    #[error("a validity of {0} days is too long; the station allows at most {max} days (100 years)", max = MAX_VALIDITY_DAYS)]
    TooLong(i64),
    /// `not_after` is not after `not_before`.
    #[error("the validity ends ({not_after}) before it starts ({not_before})")]
    EndsBeforeStart {
        /// Start.
        not_before: OffsetDateTime,
        /// End.
        not_after: OffsetDateTime,
    },
}

/// The longest validity the station issues: 100 years.
pub const MAX_VALIDITY_DAYS: i64 = 36_525;

impl Validity {
    /// From now (less [`CLOCK_SKEW_ALLOWANCE`]) for `days` days.
    pub fn days_from_now(days: i64) -> Result<Self, ValidityError> {
        Self::days_from(OffsetDateTime::now_utc(), days)
    }

    /// From `start` (less [`CLOCK_SKEW_ALLOWANCE`]) for `days` days; a batch fixes `start` once so
    /// that all its devices carry the same validity.
    pub fn days_from(start: OffsetDateTime, days: i64) -> Result<Self, ValidityError> {
        if days < 1 {
            return Err(ValidityError::TooShort(days));
        }
        if days > MAX_VALIDITY_DAYS {
            return Err(ValidityError::TooLong(days));
        }
        let start = whole_seconds(start);
        Self::between(start - CLOCK_SKEW_ALLOWANCE, start + Duration::days(days))
    }

    /// An explicit period, e.g. from a batch definition.
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, ValidityError> {
        let not_before = whole_seconds(not_before);
        let not_after = whole_seconds(not_after);
        if not_after <= not_before {
            return Err(ValidityError::EndsBeforeStart {
                not_before,
                not_after,
            });
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }
}

fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at)
}

/// Subject attributes of a CA certificate (the device leaf's subject is its registration ID).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaSubject {
    /// CN, e.g. `Contoso Factory Root CA`.
    pub common_name: String,
    /// O, e.g. `Contoso`.
    pub organization: Option<String>,
    /// OU, e.g. `Line 3`.
    pub organizational_unit: Option<String>,
    /// C, two letters, e.g. `US`.
    pub country: Option<String>,
}

/// The policy for a device (leaf) certificate: one per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The batch's validity period.
    pub validity: Validity,
    /// An optional O in the device subject (the CN is always the registration ID).
    pub organization: Option<String>,
}

impl DeviceProfile {
    /// A device profile valid for `days` from now, subject CN only.
    pub fn valid_for_days(days: i64) -> Result<Self, ValidityError> {
        Ok(Self {
            validity: Validity::days_from_now(days)?,
            organization: None,
        })
    }
}

/// The policy for a root or intermediate CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaProfile {
    /// Its subject.
    pub subject: CaSubject,
    /// Its validity.
    pub validity: Validity,
    /// basicConstraints pathLenConstraint: how many intermediates may follow below it
    /// (`Some(0)`: it signs only device certificates; `None`: unlimited).
    pub path_len: Option<u8>,
}

impl CaProfile {
    /// A root CA for development or a factory: 10 years, one intermediate level below it.
    pub fn root(common_name: impl Into<String>) -> Result<Self, ValidityError> {
        Ok(Self {
            subject: CaSubject {
                common_name: common_name.into(),
                ..CaSubject::default()
            },
            validity: Validity::days_from_now(3_652)?,
            path_len: Some(1),
        })
    }

    /// An intermediate CA that signs device certificates only: 5 years, path length 0.
    pub fn intermediate(common_name: impl Into<String>) -> Result<Self, ValidityError> {
        Ok(Self {
            subject: CaSubject {
                common_name: common_name.into(),
                ..CaSubject::default()
            },
            validity: Validity::days_from_now(1_826)?,
            path_len: Some(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_backdated_and_whole_seconds() {
        let start = OffsetDateTime::now_utc();
        let v = Validity::days_from(start, 30).unwrap();
        assert_eq!(v.not_before.nanosecond(), 0);
        assert!(v.not_before < start - Duration::minutes(4));
        assert!(v.not_after > start + Duration::days(29));
        assert!(Validity::days_from_now(0).is_err());
        assert!(Validity::days_from_now(MAX_VALIDITY_DAYS + 1).is_err());
        assert!(Validity::between(start, start).is_err());
    }
}
