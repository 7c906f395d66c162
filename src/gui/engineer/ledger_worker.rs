//! The ledger screen's worker thread: it alone touches the ledger file (read-only for browsing),
//! so the screen never waits on SQLite while it draws. Requests carry the query's generation; an
//! answer for an older generation (the user typed on) is dropped by the screen.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use crate::ledger::browse::{BrowseQuery, BrowseRow, MatchCount, PageKey};
use crate::ledger::{AuditRecord, EnrollmentRecord, IdentityId, IdentityRecord, Ledger};

/// Rows per page: a few screens' worth, so that scrolling asks the worker rarely.
pub const PAGE_ROWS: u32 = 100;
/// Counts stop here ("10,000+"): counting a million rows is not worth a second.
pub const COUNT_CAP: u64 = 10_000;

/// What the screen asks.
#[derive(Debug, Clone)]
pub enum Request {
    /// Page `page` of `query`: the rows after `start` (the end of a known page, or the beginning),
    /// skipping `skip` pages (a jump past pages not fetched yet).
    Page {
        generation: u64,
        query: BrowseQuery,
        page: usize,
        start: Option<PageKey>,
        skip: u32,
    },
    /// How many rows match `query` (up to [`COUNT_CAP`]).
    Count { generation: u64, query: BrowseQuery },
    /// Everything the detail pane shows about one identity.
    Detail {
        id: IdentityId,
        registration_id: String,
    },
    /// Recompute the audit chain (once, when the screen first opens the ledger).
    Verify,
}

/// The detail pane's content.
#[derive(Debug, Clone)]
pub struct Detail {
    pub identity: IdentityRecord,
    pub enrollments: Vec<EnrollmentRecord>,
    pub audit: Vec<AuditRecord>,
}

/// What the worker answers.
#[derive(Debug)]
pub enum Answer {
    Page {
        generation: u64,
        page: usize,
        rows: Result<Vec<BrowseRow>, String>,
    },
    Count {
        generation: u64,
        count: Result<MatchCount, String>,
    },
    Detail(IdentityId, Result<Box<Detail>, String>),
    /// `Ok(None)`: the chain holds; `Ok(Some(why))`: it is broken there.
    Verified(Result<Option<String>, String>),
}

/// The worker and its channels.
pub struct Worker {
    requests: Sender<Request>,
    answers: Receiver<Answer>,
    _thread: JoinHandle<()>,
}

impl Worker {
    /// Starts a worker over the ledger at `path`, waking `ctx` when an answer lands.
    pub fn start(path: PathBuf, ctx: egui::Context) -> std::io::Result<Worker> {
        let (requests, rx) = channel();
        let (tx, answers) = channel();
        let thread = std::thread::Builder::new()
            .name("ledger-screen".into())
            .spawn(move || run(path, rx, tx, ctx))?;
        Ok(Worker {
            requests,
            answers,
            _thread: thread,
        })
    }

    /// Queues a request; false when the worker is gone.
    pub fn send(&self, request: Request) -> bool {
        self.requests.send(request).is_ok()
    }

    /// The answers that arrived since the last call.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.try_iter().collect()
    }
}

fn run(path: PathBuf, requests: Receiver<Request>, answers: Sender<Answer>, ctx: egui::Context) {
    let mut ledger: Option<Ledger> = None;
    while let Ok(first) = requests.recv() {
        // Only the newest page request of each kind matters after a burst of typing or scrolling:
        // drop pages and counts of generations the screen has moved past.
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let newest = batch
            .iter()
            .filter_map(|r| match r {
                Request::Page { generation, .. } | Request::Count { generation, .. } => {
                    Some(*generation)
                }
                _ => None,
            })
            .max();
        for request in batch {
            let stale = match &request {
                Request::Page { generation, .. } | Request::Count { generation, .. } => {
                    Some(*generation) != newest
                }
                _ => false,
            };
            if stale {
                continue;
            }
            if matches!(request, Request::Verify) {
                // A million-row chain takes seconds: check it beside the pages, not before them.
                let (p, a, c) = (path.clone(), answers.clone(), ctx.clone());
                let spawned = std::thread::Builder::new()
                    .name("ledger-verify".into())
                    .spawn(move || {
                        if a.send(answer(&p, &mut None, Request::Verify)).is_ok() {
                            c.request_repaint();
                        }
                    });
                if let Err(e) = spawned {
                    let _ = answers.send(Answer::Verified(Err(e.to_string())));
                }
                continue;
            }
            let answer = answer(&path, &mut ledger, request);
            if answers.send(answer).is_err() {
                return;
            }
            ctx.request_repaint();
        }
    }
}

/// The open read-only ledger, opened on first use (and again after an error).
fn reader<'a>(
    path: &std::path::Path,
    ledger: &'a mut Option<Ledger>,
) -> Result<&'a Ledger, String> {
    if ledger.is_none() {
        *ledger = Some(Ledger::open_read_only(path).map_err(|e| e.to_string())?);
    }
    ledger
        .as_ref()
        .ok_or_else(|| format!("the ledger {} is not open", path.display()))
}

fn answer(path: &std::path::Path, ledger: &mut Option<Ledger>, request: Request) -> Answer {
    let result = match request {
        Request::Page {
            generation,
            query,
            page,
            start,
            skip,
        } => Answer::Page {
            generation,
            page,
            rows: reader(path, ledger).and_then(|l| {
                l.browse_page_skipping(&query, start.as_ref(), skip * PAGE_ROWS, PAGE_ROWS)
                    .map_err(|e| e.to_string())
            }),
        },
        Request::Count { generation, query } => Answer::Count {
            generation,
            count: reader(path, ledger)
                .and_then(|l| l.browse_count(&query, COUNT_CAP).map_err(|e| e.to_string())),
        },
        Request::Detail {
            id,
            registration_id,
        } => Answer::Detail(
            id,
            reader(path, ledger).and_then(|l| detail(l, id, &registration_id)),
        ),
        Request::Verify => Answer::Verified(reader(path, ledger).and_then(|l| {
            let report = l.verify_audit_chain().map_err(|e| e.to_string())?;
            Ok(report
                .first_broken
                .map(|b| format!("row {}: {}", b.id, b.problem)))
        })),
    };
    // A failed read may mean the file changed under us (a migration): reopen next time.
    let failed = match &result {
        Answer::Page { rows, .. } => rows.is_err(),
        Answer::Count { count, .. } => count.is_err(),
        Answer::Detail(_, d) => d.is_err(),
        Answer::Verified(v) => v.is_err(),
    };
    if failed {
        *ledger = None;
    }
    result
}

fn detail(ledger: &Ledger, id: IdentityId, registration_id: &str) -> Result<Box<Detail>, String> {
    let identity = ledger
        .identity_history(registration_id)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| format!("{registration_id} is no longer in the ledger"))?;
    // Enrollments belong to the live identity of a registration ID; a revoked one keeps none.
    let enrollments = ledger
        .enrollments_for(registration_id)
        .map_err(|e| e.to_string())?;
    let audit = ledger
        .audit_for(registration_id)
        .map_err(|e| e.to_string())?;
    Ok(Box::new(Detail {
        identity,
        enrollments,
        audit,
    }))
}
