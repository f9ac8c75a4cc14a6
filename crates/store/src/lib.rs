//! Durability for nigrani: everything received and the roster it is read against.
//!
//! This crate owns the [`Store`] trait and its two backends — embedded SQLite (the default, a file
//! in the data folder) and PostgreSQL (production, with a connection pool) — their numbered SQL
//! migrations, and the change feed ([`Store::events_after`]) that readers follow by sequence
//! number. It stores and returns domain types; it must not validate wire formats (that is
//! `nigrani-ingest`) nor know about HTTP.
//!
//! Modules:
//! - `decode`: stored rows back into domain values, the same way on both backends.
//! - [`migrations`]: the numbered SQL files of each backend and what has been applied.
//! - [`sqlite`]: the embedded backend.
//! - [`postgres`]: the PostgreSQL backend.
//! - `sql`: the statements both backends run with the same text.
//! - [`adapters`]: what the standard feeds keep — xAPI statements (and their filter), the course
//!   mapping, the pull connectors' state.
//! - `testing`: throw-away PostgreSQL databases for the tests of this and other crates; only with
//!   the `testing` feature, which test code alone enables, so that production never compiles it.
//!
//! Events are append-only and keyed by `(source, event_id)`: writing an event a second time with
//! the same content is a duplicate and changes nothing; with other content it is a conflict,
//! recorded as a rejection, and the stored event is kept. A batch is written in one transaction,
//! so when [`Store::write_batch`] returns, every outcome it reports is durable.

pub mod adapters;
mod decode;
pub mod migrations;
pub mod postgres;
mod roster_change;
mod sql;
pub mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nigrani_domain::{
    Cohort, Discipline, Institution, Learner, LearningEvent, Rejection, TrackPlan,
};
use serde::Serialize;

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend's name, as in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What went wrong in the store, sorted by what a caller can do about it. Each carries a
/// [`Cause`]: what happened in words, and the database's own error as its source, so the log
/// can show the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is not accepting work right now; retrying later may help.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The connection failed while a transaction was being committed: the database may or may
    /// not have committed it. Resending is safe (writes are idempotent) and tells which.
    #[error("the outcome of the commit is unknown: {0}")]
    OutcomeUnknown(#[source] Cause),
    /// The data broke a rule of the schema (e.g. a learner naming an unknown cohort) or is
    /// text the database cannot hold.
    #[error("the data was refused by the database: {0}")]
    Invalid(#[source] Cause),
    /// Applying migrations failed.
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        version: u32,
        name: &'static str,
        reason: String,
    },
    /// Anything else: a bug or a corrupted database.
    #[error("database error: {0}")]
    Internal(#[source] Cause),
}

impl StoreError {
    /// [`StoreError::Unavailable`] from words alone.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(Cause::new(message))
    }

    /// [`StoreError::Invalid`] from words alone.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(Cause::new(message))
    }

    /// [`StoreError::Internal`] from words alone.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(Cause::new(message))
    }
}

/// What went wrong, in words for people and the log, and the error that caused it.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// Words alone.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// Words, and the error they describe.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Folder of the embedded SQLite database, used when `database_url` is not set.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`postgres://user:password@host:port/db`); when set, PostgreSQL is used.
    pub database_url: Option<String>,
    /// Most connections the PostgreSQL pool opens.
    pub pool_size: usize,
    /// How long to wait for a connection (to open one, or for one from the pool).
    pub connect_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What writing one event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventWrite {
    /// Stored now, at `seq`. `matched` tells whether the roster knows the learner; an unmatched
    /// event is kept and attributed as soon as the roster learns that learner.
    Accepted { seq: i64, matched: bool },
    /// Stored before with the same content, at `seq`; nothing changed.
    Duplicate { seq: i64 },
    /// Stored before at `seq` with other content; the stored event was kept and this one was
    /// recorded as a rejection with reason `conflict`.
    Conflict { seq: i64 },
}

/// An event as stored, with what the store added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Position in the change feed; grows with commit order.
    pub seq: i64,
    /// When nigrani committed it.
    pub received_at: DateTime<Utc>,
    /// The roster learner the event is attributed to, if the roster knows its learner reference.
    pub learner_id: Option<String>,
    /// The event.
    pub event: LearningEvent,
}

/// What analytics reads of an event: the change feed without the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Position in the change feed.
    pub seq: i64,
    /// The roster learner, if the roster knows the event's learner.
    pub learner_id: Option<String>,
    pub course_id: String,
    pub kind: nigrani_domain::EventKind,
    pub progress: Option<f64>,
    pub score: Option<f64>,
    pub occurred_at: DateTime<Utc>,
}

/// An API key as stored: never the key itself, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// The public part of the key (`nk_` and 8 hex digits), shown in lists and logs.
    pub key_id: String,
    /// What the key is for, e.g. `meta-dashboard`.
    pub name: String,
    pub role: nigrani_domain::AccessRole,
    /// Ingest keys: the only `source` they may send.
    pub source: Option<String>,
    /// SHA-256 (hex) of the whole key.
    #[serde(skip)]
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id (ignored when appending).
    pub id: i64,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// A rejection as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRejection {
    /// Increasing id, for paging.
    pub id: i64,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// What was refused and why. `raw` is what was kept of the payload: all of it, or its first
    /// [`MAX_KEPT_PAYLOAD_BYTES`] when it was larger (`raw_truncated`).
    #[serde(flatten)]
    pub rejection: Rejection,
    /// Size of the payload as received, in bytes.
    pub raw_bytes: u64,
    /// SHA-256 (hex) of the whole payload as received; absent on rows stored before it was kept.
    pub raw_sha256: Option<String>,
    /// Whether `raw` is a prefix of the payload rather than all of it.
    pub raw_truncated: bool,
}

/// Most bytes of a rejected payload that are kept; past this, a prefix is kept along with the
/// payload's size and hash. Rejections are evidence for a person to read, and without a cap a
/// flood of large malformed bodies would fill the disk.
pub const MAX_KEPT_PAYLOAD_BYTES: usize = 64 * 1024;

/// What is stored of a rejected payload.
pub(crate) struct KeptPayload<'a> {
    /// The payload, or its first [`MAX_KEPT_PAYLOAD_BYTES`] (cut at a character boundary).
    pub(crate) text: &'a str,
    /// The payload's size as received.
    pub(crate) bytes: i64,
    /// SHA-256 (hex) of the whole payload.
    pub(crate) sha256: String,
}

impl<'a> KeptPayload<'a> {
    pub(crate) fn of(raw: &'a str) -> Self {
        Self {
            text: &raw[..kept_len(raw)],
            bytes: i64::try_from(raw.len()).unwrap_or(i64::MAX),
            sha256: nigrani_domain::roster::sha256_hex(raw.as_bytes()),
        }
    }
}

/// How much of a payload is kept: all of it, or its first [`MAX_KEPT_PAYLOAD_BYTES`], cut at a
/// character boundary.
pub(crate) fn kept_len(raw: &str) -> usize {
    let mut end = raw.len().min(MAX_KEPT_PAYLOAD_BYTES);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The effect of a roster upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RosterChange {
    /// Learners inserted or updated.
    pub learners: u64,
    /// Events that were unmatched before and now belong to a learner on the roster.
    pub attributed_events: u64,
}

/// Counts that show what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Events whose learner the roster does not know yet.
    pub unmatched_events: u64,
    /// Learners on the roster.
    pub learners: u64,
    /// Rejections kept.
    pub rejections: u64,
    /// The highest `seq` committed, 0 when there are no events.
    pub last_seq: i64,
}

/// Activity the roster cannot attribute yet, from one source: events whose learner reference no
/// learner's identities hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedSource {
    /// The source (platform) that sent them.
    pub source: String,
    /// Distinct learner references among them.
    pub learner_refs: u64,
    /// The events.
    pub events: u64,
}

/// A page of a list ordered by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<K> {
    /// Return rows whose key is greater than this one.
    pub after: Option<K>,
    /// At most this many rows.
    pub limit: usize,
}

/// Durable storage of the roster, events and rejections. Both backends pass the same test suite
/// (`tests/store_suite.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts or replaces institutions by `hec_id`; returns how many rows were written.
    async fn upsert_institutions(&self, rows: &[Institution]) -> Result<u64, StoreError>;
    /// All institutions, by `hec_id`.
    async fn institutions(&self) -> Result<Vec<Institution>, StoreError>;

    /// Inserts or replaces disciplines by `code`.
    async fn upsert_disciplines(&self, rows: &[Discipline]) -> Result<u64, StoreError>;
    /// All disciplines, by `code`.
    async fn disciplines(&self) -> Result<Vec<Discipline>, StoreError>;

    /// Inserts or replaces track plans by `track`.
    async fn upsert_track_plans(&self, rows: &[TrackPlan]) -> Result<u64, StoreError>;
    /// All track plans.
    async fn track_plans(&self) -> Result<Vec<TrackPlan>, StoreError>;

    /// Inserts or replaces cohorts by `cohort_id`.
    async fn upsert_cohorts(&self, rows: &[Cohort]) -> Result<u64, StoreError>;
    /// All cohorts, by `cohort_id`.
    async fn cohorts(&self) -> Result<Vec<Cohort>, StoreError>;

    /// Inserts or replaces learners by `learner_id`, replacing their identities. Institutions,
    /// disciplines and cohorts they name must exist.
    async fn upsert_learners(&self, rows: &[Learner]) -> Result<RosterChange, StoreError>;
    /// Learners ordered by `learner_id`, a page at a time.
    async fn learners(&self, page: Page<String>) -> Result<Vec<Learner>, StoreError>;
    /// The same without their identities (left empty): what analytics needs, read faster.
    async fn learner_dimensions(&self, page: Page<String>) -> Result<Vec<Learner>, StoreError>;

    /// Writes a batch in one transaction: the events (idempotently, by `(source, event_id)`) and
    /// the rejections. Returns one outcome per event, in order. Events must have distinct keys
    /// within a batch.
    async fn write_batch(
        &self,
        events: &[LearningEvent],
        rejections: &[Rejection],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<EventWrite>, StoreError>;

    /// Writes xAPI statements and the events they map to in one transaction, and applies the
    /// voiding statements among them (see [`adapters`]). A statement stored before with other
    /// content makes the whole batch a conflict, and nothing is written. `received_at` is the
    /// events' receipt time; the statements' `stored` time is the store's own, taken while
    /// writes are serialised, so that statements commit in `stored` order. A voiding statement
    /// voids statements of its own source only.
    async fn write_statements(
        &self,
        batch: adapters::StatementBatch<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<adapters::StatementsWrite, StoreError>;

    /// A moment every statement stored up to is visible to reads from now on (for
    /// `X-Experience-API-Consistent-Through`): the latest `stored` committed; a write in
    /// progress, and any later one, is stored after it.
    async fn statements_consistent_through(&self) -> Result<DateTime<Utc>, StoreError>;

    /// One statement by id, voided or not.
    async fn statement(
        &self,
        statement_id: &str,
    ) -> Result<Option<adapters::StoredStatement>, StoreError>;

    /// The statements a filter selects, voided ones left out, in the order it asks.
    async fn statements(
        &self,
        filter: &adapters::StatementFilter,
    ) -> Result<Vec<adapters::StoredStatement>, StoreError>;

    /// The course mapping, by source and platform id.
    async fn course_map(&self) -> Result<Vec<adapters::CourseMapping>, StoreError>;
    /// Sets mappings (replacing those of the same source and platform id). Events stored under
    /// a platform id before it was mapped move to its course, and their learners are restated
    /// through the roster log.
    async fn upsert_course_mappings(
        &self,
        rows: &[adapters::CourseMapping],
    ) -> Result<u64, StoreError>;
    /// Removes one mapping; false when there was none.
    async fn delete_course_mapping(
        &self,
        source: &str,
        platform_course_id: &str,
    ) -> Result<bool, StoreError>;

    /// Every pull connector's state, by name.
    async fn connector_states(&self) -> Result<Vec<adapters::ConnectorState>, StoreError>;
    /// Writes a connector's state (after each page it delivered, and at the end of a run).
    async fn save_connector_state(
        &self,
        state: &adapters::ConnectorState,
    ) -> Result<(), StoreError>;

    /// The change feed: events with `seq` greater than `after_seq`, in `seq` order.
    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The change feed as analytics reads it: like [`Store::events_after`] without the payload
    /// and ids, which keeps a rebuild over millions of events light.
    async fn feed_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FeedEvent>, StoreError>;

    /// Rejections, newest last, a page at a time.
    async fn rejections(&self, page: Page<i64>) -> Result<Vec<StoredRejection>, StoreError>;

    /// Deletes the rejections received before `before` (the retention period); returns how many.
    async fn purge_rejections(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Counts of what the store holds.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Unmatched activity per source, by source name; sources with none are left out.
    async fn unmatched_by_source(&self) -> Result<Vec<UnmatchedSource>, StoreError>;

    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Every API key, revoked ones included, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes a key; false when there is no such key or it was revoked before.
    async fn revoke_api_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Appends to the audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The audit log, oldest first, a page at a time.
    async fn audit(&self, page: Page<i64>) -> Result<Vec<AuditEntry>, StoreError>;

    /// A number that grows with every change to the roster or its reference data (institutions,
    /// disciplines, track plans, cohorts, learners); readers reload the roster when it moves.
    async fn roster_version(&self) -> Result<i64, StoreError>;

    /// The secret learners' record keys are derived from (drawn when the database was made;
    /// see the disclosure control of the analytics crate). Never to be exported.
    async fn record_key_secret(&self) -> Result<String, StoreError>;

    /// The roster changes after `version`, oldest first (empty when there are none); `None`
    /// when the log no longer reaches back to `version` (see [`ROSTER_LOG_KEPT`]).
    async fn roster_log_after(
        &self,
        version: i64,
    ) -> Result<Option<Vec<RosterLogEntry>>, StoreError>;

    /// These learners, without their identities, in `learner_id` order; ids not on the roster
    /// are left out.
    async fn learners_by_id(&self, ids: &[String]) -> Result<Vec<Learner>, StoreError>;

    /// The change feed of these learners (through their identities), up to and including
    /// `up_to_seq`, in `seq` order.
    async fn feed_of_learners(
        &self,
        ids: &[String],
        up_to_seq: i64,
    ) -> Result<Vec<FeedEvent>, StoreError>;
}

/// Roster versions the log keeps: a reader further behind than this reads the roster anew.
pub const ROSTER_LOG_KEPT: i64 = 1_000;

/// The part of the roster a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RosterPart {
    Institutions,
    Disciplines,
    TrackPlans,
    Cohorts,
    Learners,
}

impl RosterPart {
    pub const ALL: [RosterPart; 5] = [
        RosterPart::Institutions,
        RosterPart::Disciplines,
        RosterPart::TrackPlans,
        RosterPart::Cohorts,
        RosterPart::Learners,
    ];

    /// The name the log stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RosterPart::Institutions => "institutions",
            RosterPart::Disciplines => "disciplines",
            RosterPart::TrackPlans => "track_plans",
            RosterPart::Cohorts => "cohorts",
            RosterPart::Learners => "learners",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|part| part.as_str() == name)
    }
}

/// One roster change, as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterLogEntry {
    /// The roster version the change made.
    pub version: i64,
    pub part: RosterPart,
    /// For [`RosterPart::Learners`]: the learners whose row or events changed — those upserted,
    /// and those an identity moved away from. Empty for the other parts.
    pub learner_ids: Vec<String>,
    /// Those of `learner_ids` whose state must be read again from their events: new to the
    /// roster, given another track, or with other identities. The others only moved.
    pub restated: Vec<String>,
}

impl RosterLogEntry {
    /// Decodes a log row.
    pub(crate) fn decode(
        version: i64,
        part: &str,
        learner_ids: Option<&str>,
        restated_ids: Option<&str>,
    ) -> Result<Self, decode::DecodeError> {
        let part = RosterPart::parse(part)
            .ok_or_else(|| decode::DecodeError::new(format!("unknown roster part {part:?}")))?;
        let touched = match learner_ids {
            Some(ids) => roster_change::Touched::from_columns(ids, restated_ids)
                .map_err(|e| decode::DecodeError::new(format!("roster log row {version}: {e}")))?,
            None => roster_change::Touched::default(),
        };
        Ok(Self {
            version,
            part,
            learner_ids: touched.changed,
            restated: touched.restated,
        })
    }
}

/// The log's rows after `version`, when they reach back to it: `None` when the change at
/// `version + 1` is no longer (or was never) logged.
pub(crate) fn contiguous_log(
    version: i64,
    entries: Vec<RosterLogEntry>,
) -> Option<Vec<RosterLogEntry>> {
    let contiguous = entries
        .iter()
        .zip(version + 1..)
        .all(|(entry, expected)| entry.version == expected);
    contiguous.then_some(entries)
}

/// Opens the store the configuration names — PostgreSQL when a URL is set, otherwise SQLite in
/// the data folder — and applies pending migrations, returning those applied now.
pub async fn open(
    config: &StoreConfig,
) -> Result<(Arc<dyn Store>, Vec<migrations::Migration>), StoreError> {
    match &config.database_url {
        Some(url) => {
            let store = postgres::PostgresStore::connect(url, config).await?;
            let applied = store.migrate().await?;
            Ok((Arc::new(store), applied))
        }
        None => {
            let store = sqlite::SqliteStore::open(&config.data_dir).await?;
            let applied = store.migrate().await?;
            Ok((Arc::new(store), applied))
        }
    }
}

/// Decides each event's outcome once the batch's insert ran: inserted now (matched or not),
/// stored before with the same content (duplicate) or with other content (conflict, which is
/// added to `rejections` so it is kept). Shared by both backends so they cannot disagree.
pub(crate) fn classify(
    events: &[LearningEvent],
    inserted: &std::collections::HashMap<(String, String), i64>,
    existing: &std::collections::HashMap<(String, String), (i64, String)>,
    known_refs: &std::collections::HashSet<String>,
    rejections: &mut Vec<Rejection>,
) -> Result<Vec<EventWrite>, String> {
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let key = (event.source.clone(), event.event_id.clone());
        if let Some(&seq) = inserted.get(&key) {
            outcomes.push(EventWrite::Accepted {
                seq,
                matched: known_refs.contains(event.learner.as_str()),
            });
            continue;
        }
        let (seq, stored_hash) = existing.get(&key).ok_or_else(|| {
            format!(
                "event {}/{} was neither inserted nor found",
                event.source, event.event_id
            )
        })?;
        // Stored by an earlier version, the same event may carry the hash of its earlier text.
        let same = *stored_hash == event.content_hash
            || event.earlier_content_hash.as_ref() == Some(stored_hash);
        if same {
            outcomes.push(EventWrite::Duplicate { seq: *seq });
        } else {
            outcomes.push(EventWrite::Conflict { seq: *seq });
            rejections.push(Rejection {
                reason: nigrani_domain::RejectReason::Conflict,
                message: format!(
                    "event `{}` from source `{}` was stored before (seq {seq}) with other \
                     content; the stored event was kept",
                    event.event_id, event.source
                ),
                source: Some(event.source.clone()),
                event_id: Some(event.event_id.clone()),
                raw: event.raw.clone(),
            });
        }
    }
    Ok(outcomes)
}
