//! Queries with paging: `x-ms-max-item-count` asks for a page size, `x-ms-continuation` carries the
//! opaque token of the next page, and its absence marks the last page. A page may be empty while
//! a token still follows (the service says so), so callers iterate pages, not count items.

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::client::{DpsClient, Op, decode, to_body};
use super::error::DpsError;
use super::model::{
    DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment, QuerySpecification,
};
use super::sas::percent_encode;
use super::transport::Request;

/// Most pages one query walks before giving up: a service that keeps sending tokens must not
/// keep a worker busy forever (100,000 pages of even 10 items is a million enrollments).
const MAX_PAGES: usize = 100_000;

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage<T> {
    /// The items of this page (possibly none).
    pub items: Vec<T>,
    /// The token for the next page; `None` on the last.
    pub continuation: Option<String>,
}

/// Which query.
#[derive(Debug, Clone)]
enum QueryKind {
    Enrollments(String),
    Groups(String),
    Registrations(String),
}

impl QueryKind {
    fn path(&self) -> String {
        match self {
            Self::Enrollments(_) => "/enrollments/query".into(),
            Self::Groups(_) => "/enrollmentGroups/query".into(),
            Self::Registrations(group) => format!("/registrations/{}/query", percent_encode(group)),
        }
    }

    fn target(&self) -> String {
        match self {
            Self::Enrollments(q) => format!("individual enrollments ({q})"),
            Self::Groups(q) => format!("enrollment groups ({q})"),
            Self::Registrations(g) => format!("registration states of enrollment group '{g}'"),
        }
    }

    fn body(&self) -> QuerySpecification {
        match self {
            Self::Enrollments(q) | Self::Groups(q) => QuerySpecification { query: q.clone() },
            // The swagger declares no body here; Node and C# send this one anyway.
            Self::Registrations(_) => QuerySpecification {
                query: "SELECT * FROM deviceRegistrations".into(),
            },
        }
    }
}

/// An iterator over the pages of a query; each step is one operation.
pub struct Pages<'c, T> {
    client: &'c DpsClient,
    kind: QueryKind,
    page_size: Option<u32>,
    next: Option<Option<String>>,
    pages: usize,
    _items: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Iterator for Pages<'_, T> {
    type Item = Result<Vec<T>, DpsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let continuation = self.next.take()?;
        if self.pages >= MAX_PAGES {
            return None;
        }
        self.pages += 1;
        match self
            .client
            .query_page::<T>(&self.kind, self.page_size, continuation.as_deref())
        {
            Ok(page) => {
                self.next = page.continuation.map(Some);
                Some(Ok(page.items))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl DpsClient {
    /// Pages of `SELECT * FROM enrollments` (or another query the service accepts).
    pub fn query_enrollments(
        &self,
        query: &str,
        page_size: Option<u32>,
    ) -> Pages<'_, IndividualEnrollment> {
        self.pages(QueryKind::Enrollments(query.to_string()), page_size)
    }

    /// Pages of `SELECT * FROM enrollmentGroups`.
    pub fn query_groups(&self, query: &str, page_size: Option<u32>) -> Pages<'_, EnrollmentGroup> {
        self.pages(QueryKind::Groups(query.to_string()), page_size)
    }

    /// Pages of the registration states of one enrollment group.
    pub fn query_registration_states(
        &self,
        group_id: &str,
        page_size: Option<u32>,
    ) -> Pages<'_, DeviceRegistrationState> {
        self.pages(QueryKind::Registrations(group_id.to_string()), page_size)
    }

    /// One page of individual enrollments, for callers that keep the token themselves.
    pub fn query_enrollments_page(
        &self,
        query: &str,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<IndividualEnrollment>, DpsError> {
        self.query_page(
            &QueryKind::Enrollments(query.to_string()),
            page_size,
            continuation,
        )
    }

    fn pages<T>(&self, kind: QueryKind, page_size: Option<u32>) -> Pages<'_, T> {
        Pages {
            client: self,
            kind,
            page_size,
            next: Some(None),
            pages: 0,
            _items: std::marker::PhantomData,
        }
    }

    fn query_page<T: DeserializeOwned>(
        &self,
        kind: &QueryKind,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<T>, DpsError> {
        let target = kind.target();
        let op = Op {
            operation: "query",
            target: &target,
        };
        let req = Request {
            method: Method::POST,
            path: kind.path(),
            if_match: None,
            max_item_count: page_size,
            continuation,
            json_body: Some(to_body(&op, &kind.body())?),
        };
        // Queries change nothing, so a re-send needs no check.
        let answer = match self.execute(&op, &req, None)? {
            super::client::Executed::Answer(a) => a,
            super::client::Executed::AlreadyApplied => {
                return Ok(QueryPage {
                    items: Vec::new(),
                    continuation: None,
                });
            }
        };
        let items = decode(&op, &answer)?;
        let continuation = answer
            .header("x-ms-continuation")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok(QueryPage {
            items,
            continuation,
        })
    }
}
