//! Paged, searchable reads of the identities table for the ledger browser: a screen that stays
//! smooth over a million identities may hold only the page it shows, so every query here is
//! answered from an index and pages by key (the last row's `(created_at, id)`), never by OFFSET,
//! whose cost grows with the page number.
//!
//! Search is a case-insensitive prefix of the registration ID or the device's serial number. The
//! user's text is bound as a value, never pasted into SQL: `%`, `_`, `\` and quotes are taken
//! literally (the range bounds compare text, and the `LIKE` patterns escape them).
//!
//! Two plans for a search, chosen by how many rows match (counted from the NOCASE indexes, up to
//! [`SPARSE_LIMIT`]): few matches are fetched by id and sorted (cheap: at most that many rows);
//! many matches are found by walking the time index and testing each row, which reaches a page's
//! worth of matches quickly precisely because they are many.

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::queries::parse_col;
use super::types::{AttestationKind, EnrollmentState, IdentityId, IdentityState};

/// Up to this many search matches are fetched by id and sorted; more are found on the time index.
pub const SPARSE_LIMIT: u64 = 1_000;

/// What the browser shows: a search and filters, all optional, and the order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowseQuery {
    /// A prefix of the registration ID or the serial number, case-insensitive; blank = all.
    pub search: String,
    pub state: Option<IdentityState>,
    /// A batch by name.
    pub batch: Option<String>,
    /// The attestation mode.
    pub mode: Option<AttestationKind>,
    /// Made at or after this time (RFC 3339 text, or a prefix of it such as `2026-12-03`).
    pub from: Option<String>,
    /// Made before this time (exclusive; same form as `from`).
    pub until: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

/// Where a page ends: the next page starts after this row in the query's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub created_at: String,
    pub id: i64,
}

/// One row of the browser's table (what the table shows, not the whole identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseRow {
    pub id: IdentityId,
    pub registration_id: String,
    pub serial_number: Option<String>,
    pub model: Option<String>,
    pub mode: AttestationKind,
    pub state: IdentityState,
    pub batch: Option<String>,
    pub operator: Option<String>,
    pub created_at: String,
    /// The state of its newest enrollment, if it was ever queued.
    pub enrollment: Option<EnrollmentState>,
}

impl BrowseRow {
    /// The key that makes the next page start after this row.
    pub fn key(&self) -> PageKey {
        PageKey {
            created_at: self.created_at.clone(),
            id: self.id.0,
        }
    }
}

/// How many rows match: exact up to the cap asked for, "more than" beyond it (counting a
/// million rows to print one number is not worth a second of the user's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchCount {
    Exactly(u64),
    MoreThan(u64),
}

/// `LIKE` escapes for a literal prefix: the user's `%`, `_` and `\` match only themselves.
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The half-open NOCASE range `[lo, hi)` holding every text that starts with `prefix`: `hi` is the
/// prefix followed by the greatest code point, which no registration ID or serial contains.
fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_string(), format!("{prefix}\u{10FFFF}"))
}

/// The ids of the rows whose registration ID or serial starts with the search (through the NOCASE
/// indexes, up to `limit` + 1 of them).
const MATCH_IDS: &str =
    "SELECT id FROM identities WHERE registration_id >= :lo AND registration_id < :hi
    UNION SELECT i.id FROM devices d JOIN identities i ON i.device_id = d.id
        WHERE d.serial_number COLLATE NOCASE >= :lo AND d.serial_number COLLATE NOCASE < :hi";

/// Counts the rows whose registration ID or serial starts with `search`, up to `cap` (+1 to know
/// there are more) on each side, from the indexes alone. Each side is capped on its own: a UNION
/// would be built whole before its LIMIT (a third of a second for a prefix matching a million).
/// The sum may count a row twice (its ID and its serial match); it only chooses the plan.
fn count_search(conn: &Connection, search: &str, cap: u64) -> rusqlite::Result<u64> {
    let (lo, hi) = prefix_range(search);
    let mut stmt = conn.prepare_cached(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM identities
                     WHERE registration_id >= :lo AND registration_id < :hi LIMIT :cap))
              + (SELECT count(*) FROM (SELECT 1 FROM devices d JOIN identities i ON i.device_id = d.id
                     WHERE d.serial_number COLLATE NOCASE >= :lo
                       AND d.serial_number COLLATE NOCASE < :hi LIMIT :cap))",
    )?;
    stmt.query_row(
        rusqlite::named_params! { ":lo": lo, ":hi": hi, ":cap": (cap + 1) as i64 },
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

/// The SQL conditions and their values for `query`'s filters (not the search).
struct Conditions {
    sql: Vec<String>,
    values: Vec<(String, Value)>,
}

impl Conditions {
    fn of(query: &BrowseQuery) -> Conditions {
        let mut c = Conditions {
            sql: Vec::new(),
            values: Vec::new(),
        };
        if let Some(state) = query.state {
            c.add("i.state = :state", ":state", state.as_str().to_string());
        }
        if let Some(batch) = &query.batch {
            c.add(
                "i.batch_id = (SELECT id FROM batches WHERE name = :batch)",
                ":batch",
                batch.clone(),
            );
        }
        if let Some(mode) = query.mode {
            // Unary `+`: a filter, never the index to walk (modes are few and dense).
            c.add("+i.attestation = :mode", ":mode", mode.as_str().to_string());
        }
        if let Some(from) = &query.from {
            c.add("i.created_at >= :from", ":from", from.clone());
        }
        if let Some(until) = &query.until {
            c.add("i.created_at < :until", ":until", until.clone());
        }
        c
    }

    fn add(&mut self, sql: &str, name: &str, value: String) {
        self.sql.push(sql.to_string());
        self.values.push((name.to_string(), Value::Text(value)));
    }

    fn push_value(&mut self, name: &str, value: Value) {
        self.values.push((name.to_string(), value));
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }

    fn params(&self) -> Vec<(&str, &dyn rusqlite::ToSql)> {
        self.values
            .iter()
            .map(|(n, v)| (n.as_str(), v as &dyn rusqlite::ToSql))
            .collect()
    }
}

/// Adds the search to `c`: by id from the indexes when the matches are few, else as a per-row test
/// (the planner then walks the time index).
fn add_search(conn: &Connection, query: &BrowseQuery, c: &mut Conditions) -> rusqlite::Result<()> {
    if query.search.is_empty() {
        return Ok(());
    }
    if count_search(conn, &query.search, SPARSE_LIMIT)? <= SPARSE_LIMIT {
        let (lo, hi) = prefix_range(&query.search);
        c.sql.push(format!("i.id IN ({MATCH_IDS})"));
        c.push_value(":lo", Value::Text(lo));
        c.push_value(":hi", Value::Text(hi));
    } else {
        // LIKE is case-insensitive for ASCII, as NOCASE is. Unary `+` keeps it off any index.
        c.sql.push(
            "(+i.registration_id LIKE :pattern ESCAPE '\\' OR EXISTS (SELECT 1 FROM devices d \
             WHERE d.id = i.device_id AND d.serial_number LIKE :pattern ESCAPE '\\'))"
                .to_string(),
        );
        c.push_value(":pattern", Value::Text(like_prefix(&query.search)));
    }
    Ok(())
}

const ROW_SELECT: &str =
    "SELECT i.id, i.registration_id, d.serial_number, d.model, i.attestation, i.state,
       b.name, o.name, i.created_at,
       (SELECT e.state FROM enrollments e WHERE e.identity_id = i.id ORDER BY e.id DESC LIMIT 1)
FROM identities i
LEFT JOIN devices d ON d.id = i.device_id
LEFT JOIN batches b ON b.id = i.batch_id
LEFT JOIN operators o ON o.id = i.operator_id";

fn row_from(r: &Row<'_>) -> rusqlite::Result<BrowseRow> {
    let enrollment: Option<String> = r.get(9)?;
    Ok(BrowseRow {
        id: IdentityId(r.get(0)?),
        registration_id: r.get(1)?,
        serial_number: r.get(2)?,
        model: r.get(3)?,
        mode: parse_col(r, 4)?,
        state: parse_col(r, 5)?,
        batch: r.get(6)?,
        operator: r.get(7)?,
        created_at: r.get(8)?,
        enrollment: match enrollment {
            Some(_) => Some(parse_col(r, 9)?),
            None => None,
        },
    })
}

/// Up to `limit` rows matching `query` in its time order, starting after `after` (the previous
/// page's last row) or at the start, skipping `skip` rows first (a jump a little ahead of the
/// last known key; the cost grows with `skip`, so keep it to a few pages).
pub fn page(
    conn: &Connection,
    query: &BrowseQuery,
    after: Option<&PageKey>,
    skip: u32,
    limit: u32,
) -> rusqlite::Result<Vec<BrowseRow>> {
    let mut c = Conditions::of(query);
    add_search(conn, query, &mut c)?;
    let (cmp, dir) = if query.oldest_first {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(key) = after {
        c.sql
            .push(format!("(i.created_at, i.id) {cmp} (:after_at, :after_id)"));
        c.push_value(":after_at", Value::Text(key.created_at.clone()));
        c.push_value(":after_id", Value::Integer(key.id));
    }
    c.push_value(":limit", Value::Integer(i64::from(limit)));
    c.push_value(":skip", Value::Integer(i64::from(skip)));
    let sql = format!(
        "{ROW_SELECT} {} ORDER BY i.created_at {dir}, i.id {dir} LIMIT :limit OFFSET :skip",
        c.where_clause()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(c.params().as_slice(), row_from)?;
    rows.collect()
}

/// How many rows match `query`, exact up to `cap`.
pub fn count(conn: &Connection, query: &BrowseQuery, cap: u64) -> rusqlite::Result<MatchCount> {
    let mut c = Conditions::of(query);
    add_search(conn, query, &mut c)?;
    c.push_value(":cap", Value::Integer((cap + 1) as i64));
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM identities i {} LIMIT :cap)",
        c.where_clause()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let n = stmt
        .query_row(c.params().as_slice(), |r| r.get::<_, i64>(0))?
        .max(0) as u64;
    Ok(if n > cap {
        MatchCount::MoreThan(cap)
    } else {
        MatchCount::Exactly(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_prefix("a%b_c\\d'e"), "a\\%b\\_c\\\\d'e%");
    }

    #[test]
    fn the_prefix_range_holds_every_extension() {
        let (lo, hi) = prefix_range("dev-0");
        assert!(lo.as_str() <= "dev-0" && "dev-0zzz" < hi.as_str());
        assert!("dev-1" > hi.as_str());
    }
}
