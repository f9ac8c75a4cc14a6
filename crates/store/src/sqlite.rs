//! The embedded backend: one SQLite file in the data folder, in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through one connection behind a mutex and
//! reads through another (WAL lets them run beside the writer). Every call runs on tokio's
//! blocking pool. `synchronous = FULL` makes a committed batch survive a power cut, which the
//! rule "acknowledged only once durable" needs. Bulk writes pass the whole batch as one JSON
//! array parameter and expand it with `json_each` — SQLite's counterpart of PostgreSQL's
//! `unnest` — so a batch is one statement, not a statement per row.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nigrani_domain::{
    Cohort, Discipline, Institution, Learner, LearnerRef, LearningEvent, Rejection, TrackPlan,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde_json::{Value, json};

use crate::adapters::{
    self, Bound, ConnectorState, CourseMapping, StatementBatch, StatementFilter, StatementsWrite,
    StoredStatement,
};
use crate::decode::{
    self, ApiKeyRow, AuditRow, CohortRow, DecodeError, EventRow, FeedRow, InstitutionRow,
    LearnerRow, RejectionRow, TrackPlanRow,
};
use crate::migrations::{self, Migration};
use crate::roster_change;
use crate::sql;
use crate::{
    ApiKeyRecord, AuditEntry, Backend, Cause, EventWrite, FeedEvent, Page, RosterChange,
    RosterLogEntry, RosterPart, Store, StoreError, StoreStats, StoredEvent, StoredRejection,
    UnmatchedSource, classify,
};

/// File name of the database inside the data folder.
pub const FILE_NAME: &str = "nigrani.sqlite3";

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Connections>,
}

struct Connections {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`. Does not migrate.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir).map_err(|e| {
                StoreError::unavailable(format!(
                    "cannot create data folder {}: {e}",
                    data_dir.display()
                ))
            })?;
            let path = data_dir.join(FILE_NAME);
            let writer = connect(&path)?;
            let reader = connect(&path)?;
            Ok(Self {
                inner: Arc::new(Connections {
                    writer: Mutex::new(writer),
                    reader: Mutex::new(reader),
                    path,
                }),
            })
        })
        .await
        .map_err(|e| StoreError::internal(format!("blocking task failed: {e}")))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies pending migrations; returns those applied now.
    pub async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        migrations::run(&mut Migrator(self), migrations::SQLITE).await
    }

    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, WorkError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::internal("writer connection poisoned"))?;
            work(&mut conn).map_err(WorkError::into_store_error)
        })
        .await
        .map_err(|e| StoreError::internal(format!("blocking task failed: {e}")))?
    }

    /// Runs one `INSERT … SELECT … FROM json_each(?1)` over `rows`, passed as one JSON array.
    async fn upsert_rows(
        &self,
        part: RosterPart,
        sql: &'static str,
        rows: Vec<Value>,
    ) -> Result<u64, StoreError> {
        let batch = Value::Array(rows).to_string();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let written = tx.execute(sql, [batch])? as u64;
            record_roster_change(&tx, part, None)?;
            tx.commit()?;
            Ok(written)
        })
        .await
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, WorkError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .reader
                .lock()
                .map_err(|_| StoreError::internal("reader connection poisoned"))?;
            work(&conn).map_err(WorkError::into_store_error)
        })
        .await
        .map_err(|e| StoreError::internal(format!("blocking task failed: {e}")))?
    }
}

/// Runs the shared migration runner's SQL on the writer connection; failures are reported
/// like any other SQLite error.
struct Migrator<'a>(&'a SqliteStore);

#[async_trait]
impl migrations::Executor for Migrator<'_> {
    async fn execute(&mut self, sql: &'static str) -> Result<(), StoreError> {
        self.0.write(move |conn| Ok(conn.execute_batch(sql)?)).await
    }

    async fn versions(&mut self, sql: &'static str) -> Result<Vec<i64>, StoreError> {
        self.0
            .write(move |conn| all(conn, sql, [], |row| Ok(row.get(0)?)))
            .await
    }

    async fn apply(
        &mut self,
        migration: Migration,
        record: &'static str,
        applied_at: String,
    ) -> Result<(), StoreError> {
        self.0
            .write(move |conn| {
                let tx = conn.transaction()?;
                tx.execute_batch(migration.sql)?;
                tx.execute(
                    record,
                    params![migration.version, migration.name, applied_at],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(map_error)?;
    Ok(conn)
}

/// Work on a connection failed in SQL, or while turning a row back into a domain value.
enum WorkError {
    Sql(rusqlite::Error),
    Decode(String),
}

impl WorkError {
    fn into_store_error(self) -> StoreError {
        match self {
            WorkError::Sql(e) => map_error(e),
            WorkError::Decode(message) => StoreError::internal(message),
        }
    }
}

impl From<rusqlite::Error> for WorkError {
    fn from(e: rusqlite::Error) -> Self {
        WorkError::Sql(e)
    }
}

impl From<DecodeError> for WorkError {
    fn from(e: DecodeError) -> Self {
        WorkError::Decode(e.into_message())
    }
}

fn map_error(e: rusqlite::Error) -> StoreError {
    let code = e.sqlite_error_code();
    let cause = Cause::caused_by(e.to_string(), e);
    match code {
        Some(ErrorCode::ConstraintViolation) => StoreError::Invalid(cause),
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => StoreError::Unavailable(cause),
        _ => StoreError::Internal(cause),
    }
}

/// The `stored` time of a statement written now (in microseconds): the clock, but always after
/// the latest `stored`, so that every write is stored after any consistent-through moment
/// handed out before it.
fn next_stored(conn: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
    let latest: Option<i64> =
        conn.query_row("SELECT max(stored) FROM xapi_statements", [], |row| {
            row.get(0)
        })?;
    Ok(micros(Utc::now()).max(latest.map_or(i64::MIN, |latest| latest + 1)))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(value: i64) -> Result<DateTime<Utc>, WorkError> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| WorkError::Decode(format!("timestamp {value} out of range")))
}

/// Runs a query and reads each of its rows with `read`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut read: impl FnMut(&rusqlite::Row<'_>) -> Result<T, WorkError>,
) -> Result<Vec<T>, WorkError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(row)?);
    }
    Ok(out)
}

impl SqliteStore {
    /// A page of learners, with their identities or without (cheaper: no subquery).
    async fn learners_page(
        &self,
        page: Page<String>,
        with_identities: bool,
    ) -> Result<Vec<Learner>, StoreError> {
        self.read(move |conn| {
            let after = page.after.unwrap_or_default();
            let limit = page.limit as i64;
            if !with_identities {
                return all(
                    conn,
                    sql::LEARNER_DIMENSIONS,
                    params![after, limit],
                    |row| learner(row, Vec::new()),
                );
            }
            all(
                conn,
                "SELECT l.learner_id, l.institution, l.discipline, l.track, l.cohort, l.role,
                        l.gender,
                        (SELECT json_group_array(learner_ref) FROM
                            (SELECT learner_ref FROM learner_identities i
                             WHERE i.learner_id = l.learner_id ORDER BY learner_ref))
                 FROM learners l WHERE l.learner_id > ?1 ORDER BY l.learner_id LIMIT ?2",
                params![after, limit],
                |row| learner(row, decode::json_list(&row.get::<_, String>(7)?)?),
            )
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row(sql::PING, [], |_| Ok(()))?))
            .await
    }

    async fn upsert_institutions(&self, rows: &[Institution]) -> Result<u64, StoreError> {
        let batch: Vec<Value> = rows
            .iter()
            .map(|i| {
                json!([
                    i.hec_id,
                    i.name,
                    i.name_ur,
                    i.province.as_str(),
                    i.city,
                    i.sector.as_str()
                ])
            })
            .collect();
        self.upsert_rows(
            RosterPart::Institutions,
            "INSERT INTO institutions (hec_id, name, name_ur, province, city, sector)
             SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5
             FROM json_each(?1) WHERE true
             ON CONFLICT (hec_id) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, province = excluded.province,
                 city = excluded.city, sector = excluded.sector",
            batch,
        )
        .await
    }

    async fn institutions(&self) -> Result<Vec<Institution>, StoreError> {
        self.read(|conn| {
            all(conn, sql::INSTITUTIONS, [], |row| {
                let row = InstitutionRow {
                    hec_id: row.get(0)?,
                    name: row.get(1)?,
                    name_ur: row.get(2)?,
                    province: row.get(3)?,
                    city: row.get(4)?,
                    sector: row.get(5)?,
                };
                Ok(row.decode()?)
            })
        })
        .await
    }

    async fn upsert_disciplines(&self, rows: &[Discipline]) -> Result<u64, StoreError> {
        let batch: Vec<Value> = rows
            .iter()
            .map(|d| json!([d.code, d.name, d.name_ur, i64::from(d.stem)]))
            .collect();
        self.upsert_rows(
            RosterPart::Disciplines,
            "INSERT INTO disciplines (code, name, name_ur, stem)
             SELECT value->>0, value->>1, value->>2, value->>3
             FROM json_each(?1) WHERE true
             ON CONFLICT (code) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, stem = excluded.stem",
            batch,
        )
        .await
    }

    async fn disciplines(&self) -> Result<Vec<Discipline>, StoreError> {
        self.read(|conn| {
            all(conn, sql::DISCIPLINES, [], |row| {
                Ok(Discipline {
                    code: row.get(0)?,
                    name: row.get(1)?,
                    name_ur: row.get(2)?,
                    stem: row.get::<_, i64>(3)? != 0,
                })
            })
        })
        .await
    }

    async fn upsert_track_plans(&self, rows: &[TrackPlan]) -> Result<u64, StoreError> {
        let batch: Vec<Value> = rows
            .iter()
            .map(|t| {
                json!([
                    t.track.as_str(),
                    Value::from(t.required_courses.clone()).to_string(),
                    t.target,
                    t.stretch_target
                ])
            })
            .collect();
        self.upsert_rows(
            RosterPart::TrackPlans,
            "INSERT INTO track_plans (track, required_courses, target, stretch_target)
             SELECT value->>0, value->>1, value->>2, value->>3
             FROM json_each(?1) WHERE true
             ON CONFLICT (track) DO UPDATE SET required_courses = excluded.required_courses,
                 target = excluded.target, stretch_target = excluded.stretch_target",
            batch,
        )
        .await
    }

    async fn track_plans(&self) -> Result<Vec<TrackPlan>, StoreError> {
        self.read(|conn| {
            all(conn, sql::TRACK_PLANS, [], |row| {
                let row = TrackPlanRow {
                    track: row.get(0)?,
                    required_courses: decode::json_list(&row.get::<_, String>(1)?)?,
                    target: row.get(2)?,
                    stretch_target: row.get(3)?,
                };
                Ok(row.decode()?)
            })
        })
        .await
    }

    async fn upsert_cohorts(&self, rows: &[Cohort]) -> Result<u64, StoreError> {
        let batch: Vec<Value> = rows
            .iter()
            .map(|c| {
                json!([
                    c.cohort_id,
                    c.name,
                    c.name_ur,
                    c.track.as_str(),
                    c.starts_on.to_string(),
                    c.ends_on.to_string(),
                    c.target
                ])
            })
            .collect();
        self.upsert_rows(
            RosterPart::Cohorts,
            "INSERT INTO cohorts (cohort_id, name, name_ur, track, starts_on, ends_on, target)
             SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6
             FROM json_each(?1) WHERE true
             ON CONFLICT (cohort_id) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, track = excluded.track,
                 starts_on = excluded.starts_on, ends_on = excluded.ends_on,
                 target = excluded.target",
            batch,
        )
        .await
    }

    async fn cohorts(&self) -> Result<Vec<Cohort>, StoreError> {
        self.read(|conn| {
            all(conn, sql::COHORTS, [], |row| {
                let row = CohortRow {
                    cohort_id: row.get(0)?,
                    name: row.get(1)?,
                    name_ur: row.get(2)?,
                    track: row.get(3)?,
                    starts_on: decode::parse(&row.get::<_, String>(4)?)?,
                    ends_on: decode::parse(&row.get::<_, String>(5)?)?,
                    target: row.get(6)?,
                };
                Ok(row.decode()?)
            })
        })
        .await
    }

    async fn upsert_learners(&self, rows: &[Learner]) -> Result<RosterChange, StoreError> {
        let learners: Vec<Value> = rows
            .iter()
            .map(|l| {
                json!([
                    l.learner_id,
                    l.institution,
                    l.discipline,
                    l.track.as_str(),
                    l.cohort,
                    l.role.as_str(),
                    l.gender.map(|g| g.as_str())
                ])
            })
            .collect();
        let ids: Vec<&str> = rows.iter().map(|l| l.learner_id.as_str()).collect();
        let identities: Vec<Value> = rows
            .iter()
            .flat_map(|l| {
                l.identities
                    .iter()
                    .map(|r| json!([r.as_str(), l.learner_id]))
            })
            .collect();
        let refs: Vec<&str> = rows
            .iter()
            .flat_map(|l| l.identities.iter().map(LearnerRef::as_str))
            .collect();
        let learners = Value::Array(learners).to_string();
        let upload = rows.to_vec();
        let ids = json!(ids).to_string();
        let identities = Value::Array(identities).to_string();
        let refs = json!(refs).to_string();
        let count = rows.len() as u64;
        self.write(move |conn| {
            let tx = conn.transaction()?;
            // Identities the roster learns now: events already stored under them become
            // attributed by this very upsert.
            let new_refs: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT value FROM json_each(?1)
                     WHERE value NOT IN (SELECT learner_ref FROM learner_identities)",
                )?;
                stmt.query_map([&refs], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            // What the upload touches (see `roster_change`), from what the store holds now.
            let pairs = |sql: &str, values: &str| -> rusqlite::Result<Vec<(String, String)>> {
                let mut stmt = tx.prepare_cached(sql)?;
                stmt.query_map([values], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            };
            let before = roster_change::Before {
                tracks: pairs(
                    "SELECT learner_id, track FROM learners
                     WHERE learner_id IN (SELECT value FROM json_each(?1))",
                    &ids,
                )?
                .into_iter()
                .collect(),
                identities: pairs(
                    "SELECT learner_id, learner_ref FROM learner_identities
                     WHERE learner_id IN (SELECT value FROM json_each(?1))",
                    &ids,
                )?,
                owners: pairs(
                    "SELECT learner_ref, learner_id FROM learner_identities
                     WHERE learner_ref IN (SELECT value FROM json_each(?1))",
                    &refs,
                )?,
            };
            let touched = roster_change::touched(&upload, &before);
            tx.execute(
                "INSERT INTO learners (learner_id, institution, discipline, track, cohort, role, gender)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6
                 FROM json_each(?1) WHERE true
                 ON CONFLICT (learner_id) DO UPDATE SET institution = excluded.institution,
                     discipline = excluded.discipline, track = excluded.track,
                     cohort = excluded.cohort, role = excluded.role, gender = excluded.gender",
                [&learners],
            )?;
            tx.execute(
                "DELETE FROM learner_identities
                 WHERE learner_id IN (SELECT value FROM json_each(?1))",
                [&ids],
            )?;
            tx.execute(
                "INSERT INTO learner_identities (learner_ref, learner_id)
                 SELECT value->>0, value->>1 FROM json_each(?1) WHERE true
                 ON CONFLICT (learner_ref) DO UPDATE SET learner_id = excluded.learner_id",
                [&identities],
            )?;
            let attributed: i64 = tx.query_row(
                "SELECT count(*) FROM events WHERE learner_ref IN (SELECT value FROM json_each(?1))",
                [json!(new_refs).to_string()],
                |row| row.get(0),
            )?;
            record_roster_change(&tx, RosterPart::Learners, Some(&touched))?;
            tx.commit()?;
            Ok(RosterChange {
                learners: count,
                attributed_events: attributed as u64,
            })
        })
        .await
    }

    async fn learners(&self, page: Page<String>) -> Result<Vec<Learner>, StoreError> {
        self.learners_page(page, true).await
    }

    async fn learner_dimensions(&self, page: Page<String>) -> Result<Vec<Learner>, StoreError> {
        self.learners_page(page, false).await
    }

    async fn write_batch(
        &self,
        events: &[LearningEvent],
        rejections: &[Rejection],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<EventWrite>, StoreError> {
        let events = events.to_vec();
        let mut rejections = rejections.to_vec();
        let received = micros(received_at);
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let outcomes = write_events(&tx, &events, &mut rejections, received)?;
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }

    async fn write_statements(
        &self,
        batch: StatementBatch<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<StatementsWrite, StoreError> {
        let statements = batch.statements.to_vec();
        let events = batch.events.to_vec();
        let received = micros(received_at);
        self.write(move |conn| {
            let tx = conn.transaction()?;
            // Writes are serialised: `stored` is read here and never goes back, so statements
            // commit in `stored` order (see `statements_consistent_through`).
            let stored = next_stored(&tx)?;
            let mut stored_now = Vec::with_capacity(statements.len());
            for record in &statements {
                let before: Option<String> = tx
                    .query_row(
                        "SELECT content_hash FROM xapi_statements WHERE statement_id = ?1",
                        [&record.statement_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                match before {
                    Some(hash) if hash != record.content_hash => {
                        return Ok(StatementsWrite::Conflict {
                            statement_id: record.statement_id.clone(),
                        });
                    }
                    Some(_) => stored_now.push(false),
                    None => stored_now.push(true),
                }
            }
            let mut new_ids: HashSet<&str> = HashSet::new();
            for (record, _) in statements.iter().zip(&stored_now).filter(|(_, new)| **new) {
                let seq: i64 = tx.query_row(
                    "INSERT INTO xapi_statements (statement_id, source, stored, verb_id,
                         registration, voids, content_hash, statement)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
                    params![
                        record.statement_id,
                        record.source,
                        stored,
                        record.verb_id,
                        record.registration,
                        record.voids,
                        record.content_hash,
                        record.statement
                    ],
                    |row| row.get(0),
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO xapi_statement_refs (ref, seq, direct)
                     VALUES (?1, ?2, ?3)",
                )?;
                for (reference, direct) in &record.refs {
                    insert.execute(params![reference, seq, direct])?;
                }
                new_ids.insert(record.statement_id.as_str());
            }
            let events: Vec<LearningEvent> = events
                .into_iter()
                .filter(|e| new_ids.contains(e.event_id.as_str()))
                .collect();
            let mut rejections = Vec::new();
            let outcomes = write_events(&tx, &events, &mut rejections, received)?;

            let mut retracted: Vec<String> = Vec::new();
            for record in statements
                .iter()
                .filter(|r| new_ids.contains(r.statement_id.as_str()))
            {
                // A voiding statement voids a statement of its own source only.
                let pair = match &record.voids {
                    Some(target) => Some((record.statement_id.clone(), target.clone())),
                    None => tx
                        .query_row(
                            "SELECT statement_id FROM xapi_statements
                             WHERE voids = ?1 AND source = ?2 ORDER BY seq LIMIT 1",
                            [&record.statement_id, &record.source],
                            |row| row.get(0),
                        )
                        .optional()?
                        .map(|voider: String| (voider, record.statement_id.clone())),
                };
                let Some((voider, target)) = pair else {
                    continue;
                };
                let source: Option<String> = tx
                    .query_row(
                        "UPDATE xapi_statements SET voided_by = ?1
                         WHERE statement_id = ?2 AND source = ?3 AND voids IS NULL
                             AND voided_by IS NULL
                         RETURNING source",
                        params![voider, target, record.source],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(source) = source else { continue };
                let learner: Option<Option<String>> = tx
                    .query_row(
                        "UPDATE events SET voided_at = ?1
                         WHERE source = ?2 AND event_id = ?3 AND voided_at IS NULL
                         RETURNING (SELECT learner_id FROM learner_identities i
                                    WHERE i.learner_ref = events.learner_ref)",
                        params![received, source, target],
                        |row| row.get(0),
                    )
                    .optional()?;
                retracted.extend(learner.flatten());
            }
            record_restated(&tx, retracted)?;
            tx.commit()?;
            Ok(StatementsWrite::Written {
                statements: stored_now,
                events: outcomes,
            })
        })
        .await
    }

    async fn statements_consistent_through(&self) -> Result<DateTime<Utc>, StoreError> {
        // The latest `stored` committed: a write in flight is stored after it (writes are
        // serialised, and each is stored after the latest before it).
        let at = self
            .read(|conn| {
                let latest: Option<i64> =
                    conn.query_row("SELECT max(stored) FROM xapi_statements", [], |row| {
                        row.get(0)
                    })?;
                Ok(latest.unwrap_or_else(|| micros(Utc::now())))
            })
            .await?;
        DateTime::from_timestamp_micros(at)
            .ok_or_else(|| StoreError::internal(format!("no such time: {at} µs")))
    }

    async fn statement(&self, statement_id: &str) -> Result<Option<StoredStatement>, StoreError> {
        let id = statement_id.to_owned();
        self.read(move |conn| {
            conn.query_row(adapters::STATEMENT_BY_ID, [id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()?
            .map(|(seq, stored, voided, statement)| {
                stored_statement(seq, stored, voided, statement)
            })
            .transpose()
        })
        .await
    }

    async fn statements(
        &self,
        filter: &StatementFilter,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let (query, values) = adapters::filter_query(filter);
        self.read(move |conn| {
            let values: Vec<rusqlite::types::Value> = values
                .into_iter()
                .map(|value| match value {
                    Bound::Text(text) => rusqlite::types::Value::Text(text),
                    Bound::Time(at) => rusqlite::types::Value::Integer(micros(at)),
                    Bound::Int(n) => rusqlite::types::Value::Integer(n),
                })
                .collect();
            let mut stmt = conn.prepare_cached(&query)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(stored_statement(
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn course_map(&self) -> Result<Vec<CourseMapping>, StoreError> {
        self.read(|conn| {
            all(conn, adapters::COURSE_MAP, [], |row| {
                Ok(CourseMapping {
                    source: row.get(0)?,
                    platform_course_id: row.get(1)?,
                    course_id: row.get(2)?,
                })
            })
        })
        .await
    }

    async fn upsert_course_mappings(&self, rows: &[CourseMapping]) -> Result<u64, StoreError> {
        let rows = rows.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let mut restated: Vec<String> = Vec::new();
            for row in &rows {
                tx.execute(
                    adapters::UPSERT_COURSE_MAPPING,
                    params![row.source, row.platform_course_id, row.course_id],
                )?;
                if row.platform_course_id == row.course_id {
                    continue;
                }
                let mut remap = tx.prepare_cached(adapters::REMAP_UNMAPPED_EVENTS_SQLITE)?;
                let learners = remap.query_map(
                    params![row.source, row.platform_course_id, row.course_id],
                    |r| r.get::<_, Option<String>>(0),
                )?;
                for learner in learners {
                    restated.extend(learner?);
                }
            }
            record_restated(&tx, restated)?;
            tx.commit()?;
            Ok(rows.len() as u64)
        })
        .await
    }

    async fn delete_course_mapping(
        &self,
        source: &str,
        platform_course_id: &str,
    ) -> Result<bool, StoreError> {
        let (source, platform) = (source.to_owned(), platform_course_id.to_owned());
        self.write(move |conn| {
            Ok(conn.execute(adapters::DELETE_COURSE_MAPPING, params![source, platform])? > 0)
        })
        .await
    }

    async fn connector_states(&self) -> Result<Vec<ConnectorState>, StoreError> {
        self.read(|conn| {
            all(conn, adapters::CONNECTOR_STATES, [], |row| {
                let at = |value: Option<i64>| value.map(from_micros).transpose();
                Ok(ConnectorState {
                    name: row.get(0)?,
                    cursor: row.get(1)?,
                    last_run_at: at(row.get(2)?)?,
                    last_success_at: at(row.get(3)?)?,
                    rows_total: row.get(4)?,
                    last_error: row.get(5)?,
                })
            })
        })
        .await
    }

    async fn save_connector_state(&self, state: &ConnectorState) -> Result<(), StoreError> {
        let state = state.clone();
        self.write(move |conn| {
            conn.execute(
                adapters::SAVE_CONNECTOR_STATE,
                params![
                    state.name,
                    state.cursor,
                    state.last_run_at.map(micros),
                    state.last_success_at.map(micros),
                    state.rows_total,
                    state.last_error
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            all(
                conn,
                sql::EVENTS_AFTER,
                params![after_seq, limit as i64],
                |row| {
                    let row = EventRow {
                        seq: row.get(0)?,
                        received_at: from_micros(row.get(1)?)?,
                        learner_id: row.get(2)?,
                        source: row.get(3)?,
                        event_id: row.get(4)?,
                        learner_ref: row.get(5)?,
                        course_id: row.get(6)?,
                        kind: row.get(7)?,
                        progress: row.get(8)?,
                        score: row.get(9)?,
                        duration_seconds: row.get(10)?,
                        occurred_at: from_micros(row.get(11)?)?,
                        content_hash: row.get(12)?,
                        raw: row.get(13)?,
                    };
                    Ok(row.decode()?)
                },
            )
        })
        .await
    }

    async fn feed_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        self.read(move |conn| {
            all(
                conn,
                sql::FEED_AFTER,
                params![after_seq, limit as i64],
                feed_event,
            )
        })
        .await
    }

    async fn rejections(&self, page: Page<i64>) -> Result<Vec<StoredRejection>, StoreError> {
        self.read(move |conn| {
            all(
                conn,
                // Rows from before the cap may hold whole bodies: read no more than the cap
                // (in characters here; `RejectionRow::decode` cuts to bytes).
                "SELECT id, received_at, source, event_id, reason, message,
                        substr(raw, 1, 65536),
                        coalesce(raw_bytes, length(CAST(raw AS BLOB))), raw_sha256
                 FROM rejections WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![page.after.unwrap_or(0), page.limit as i64],
                |row| {
                    let row = RejectionRow {
                        id: row.get(0)?,
                        received_at: from_micros(row.get(1)?)?,
                        source: row.get(2)?,
                        event_id: row.get(3)?,
                        reason: row.get(4)?,
                        message: row.get(5)?,
                        raw: row.get(6)?,
                        raw_bytes: row.get(7)?,
                        raw_sha256: row.get(8)?,
                    };
                    Ok(row.decode()?)
                },
            )
        })
        .await
    }

    async fn purge_rejections(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = micros(before);
        self.write(move |conn| {
            let deleted = conn.execute(sql::PURGE_REJECTIONS, [before])?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|conn| {
            let stats = conn.query_row(sql::STATS, [], |row| {
                Ok(StoreStats {
                    events: row.get::<_, i64>(0)? as u64,
                    unmatched_events: row.get::<_, i64>(1)? as u64,
                    learners: row.get::<_, i64>(2)? as u64,
                    rejections: row.get::<_, i64>(3)? as u64,
                    last_seq: row.get(4)?,
                })
            })?;
            Ok(stats)
        })
        .await
    }

    async fn unmatched_by_source(&self) -> Result<Vec<UnmatchedSource>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(sql::UNMATCHED_BY_SOURCE)?;
            let rows = statement.query_map([], |row| {
                Ok(UnmatchedSource {
                    source: row.get(0)?,
                    learner_refs: row.get::<_, i64>(1)? as u64,
                    events: row.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn roster_version(&self) -> Result<i64, StoreError> {
        self.read(|conn| Ok(conn.query_row(sql::ROSTER_VERSION, [], |row| row.get(0))?))
            .await
    }

    async fn record_key_secret(&self) -> Result<String, StoreError> {
        self.read(|conn| Ok(conn.query_row(sql::RECORD_KEY_SECRET, [], |row| row.get(0))?))
            .await
    }

    async fn roster_log_after(
        &self,
        version: i64,
    ) -> Result<Option<Vec<RosterLogEntry>>, StoreError> {
        self.read(move |conn| {
            let entries = all(conn, sql::ROSTER_LOG_AFTER, [version], |row| {
                let part: String = row.get(1)?;
                let ids: Option<String> = row.get(2)?;
                let restated: Option<String> = row.get(3)?;
                Ok(RosterLogEntry::decode(
                    row.get(0)?,
                    &part,
                    ids.as_deref(),
                    restated.as_deref(),
                )?)
            })?;
            Ok(crate::contiguous_log(version, entries))
        })
        .await
    }

    async fn learners_by_id(&self, ids: &[String]) -> Result<Vec<Learner>, StoreError> {
        let ids = json!(ids).to_string();
        self.read(move |conn| {
            all(
                conn,
                "SELECT learner_id, institution, discipline, track, cohort, role, gender
                 FROM learners WHERE learner_id IN (SELECT value FROM json_each(?1))
                 ORDER BY learner_id",
                [&ids],
                |row| learner(row, Vec::new()),
            )
        })
        .await
    }

    async fn feed_of_learners(
        &self,
        ids: &[String],
        up_to_seq: i64,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        let ids = json!(ids).to_string();
        self.read(move |conn| {
            all(
                conn,
                "SELECT e.seq, i.learner_id, e.course_id, e.kind, e.progress, e.score,
                        e.occurred_at
                 FROM learner_identities i JOIN events e ON e.learner_ref = i.learner_ref
                 WHERE i.learner_id IN (SELECT value FROM json_each(?1)) AND e.seq <= ?2
                     AND e.voided_at IS NULL
                 ORDER BY e.seq",
                params![ids, up_to_seq],
                feed_event,
            )
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| {
            conn.execute(
                sql::CREATE_API_KEY,
                params![
                    key.key_id,
                    key.name,
                    key.role.as_str(),
                    key.source,
                    key.key_hash,
                    micros(key.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(|conn| {
            all(conn, sql::API_KEYS, [], |row| {
                let row = ApiKeyRow {
                    key_id: row.get(0)?,
                    name: row.get(1)?,
                    role: row.get(2)?,
                    source: row.get(3)?,
                    key_hash: row.get(4)?,
                    created_at: from_micros(row.get(5)?)?,
                    revoked_at: row.get::<_, Option<i64>>(6)?.map(from_micros).transpose()?,
                };
                Ok(row.decode()?)
            })
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            Ok(conn.execute(sql::REVOKE_API_KEY, params![micros(at), key_id])? == 1)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.write(move |conn| {
            conn.execute(
                sql::APPEND_AUDIT,
                params![
                    micros(entry.at),
                    entry.key_id,
                    entry.method,
                    entry.path,
                    entry.query,
                    entry.status
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn audit(&self, page: Page<i64>) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| {
            all(
                conn,
                sql::AUDIT,
                params![page.after.unwrap_or(0), page.limit as i64],
                |row| {
                    let row = AuditRow {
                        id: row.get(0)?,
                        at: from_micros(row.get(1)?)?,
                        key_id: row.get(2)?,
                        method: row.get(3)?,
                        path: row.get(4)?,
                        query: row.get(5)?,
                        status: row.get(6)?,
                    };
                    Ok(row.decode()?)
                },
            )
        })
        .await
    }
}

fn rejection_row(r: &Rejection) -> Value {
    let kept = crate::KeptPayload::of(&r.raw);
    json!([
        r.source,
        r.event_id,
        r.reason.code(),
        r.message,
        kept.text,
        kept.bytes,
        kept.sha256
    ])
}

/// Writes events and rejections in `tx` (see [`Store::write_batch`]); conflicts are added to
/// `rejections` and written with them.
fn write_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[LearningEvent],
    rejections: &mut Vec<Rejection>,
    received: i64,
) -> Result<Vec<EventWrite>, WorkError> {
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!([
                e.source,
                e.event_id,
                e.learner.as_str(),
                e.course_id,
                e.kind.as_str(),
                e.progress,
                e.score,
                e.duration_seconds,
                micros(e.occurred_at),
                e.content_hash,
                e.raw
            ])
        })
        .collect();
    let refs = json!(
        events
            .iter()
            .map(|e| e.learner.as_str())
            .collect::<Vec<_>>()
    );

    let mut inserted: HashMap<(String, String), i64> = HashMap::with_capacity(events.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO events (source, event_id, learner_ref, course_id, kind, progress,
                     score, duration_seconds, occurred_at, received_at, content_hash, raw)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5,
                     value->>6, value->>7, value->>8, ?2, value->>9, value->>10
                 FROM json_each(?1) WHERE true
                 ON CONFLICT (source, event_id) DO NOTHING
                 RETURNING seq, source, event_id",
        )?;
        let mut out = stmt.query(params![Value::Array(rows).to_string(), received])?;
        while let Some(row) = out.next()? {
            inserted.insert((row.get(1)?, row.get(2)?), row.get(0)?);
        }
    }
    let already_stored: Vec<Value> = events
        .iter()
        .filter(|e| !inserted.contains_key(&(e.source.clone(), e.event_id.clone())))
        .map(|e| json!([e.source, e.event_id]))
        .collect();
    let mut existing: HashMap<(String, String), (i64, String)> = HashMap::new();
    if !already_stored.is_empty() {
        let mut stmt = tx.prepare_cached(
            "SELECT e.source, e.event_id, e.seq, e.content_hash
                 FROM json_each(?1) j
                 JOIN events e ON e.source = j.value->>0 AND e.event_id = j.value->>1",
        )?;
        let mut out = stmt.query([Value::Array(already_stored).to_string()])?;
        while let Some(row) = out.next()? {
            existing.insert((row.get(0)?, row.get(1)?), (row.get(2)?, row.get(3)?));
        }
    }
    let known: HashSet<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT learner_ref FROM learner_identities
                 WHERE learner_ref IN (SELECT value FROM json_each(?1))",
        )?;
        stmt.query_map([refs.to_string()], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };

    let outcomes =
        classify(events, &inserted, &existing, &known, rejections).map_err(WorkError::Decode)?;
    if !rejections.is_empty() {
        let rows: Vec<Value> = rejections.iter().map(rejection_row).collect();
        tx.execute(
            "INSERT INTO rejections (received_at, source, event_id, reason, message, raw,
                     raw_bytes, raw_sha256)
                 SELECT ?2, value->>0, value->>1, value->>2, value->>3, value->>4,
                     value->>5, value->>6
                 FROM json_each(?1)",
            params![Value::Array(rows).to_string(), received],
        )?;
    }
    Ok(outcomes)
}

/// A statement row as the store returns it.
fn stored_statement(
    seq: i64,
    stored: i64,
    voided: bool,
    statement: String,
) -> Result<StoredStatement, WorkError> {
    Ok(StoredStatement {
        seq,
        stored: from_micros(stored)?,
        voided,
        statement,
    })
}

/// Records a roster change in its transaction (see [`sql::RECORD_ROSTER_CHANGE`]).
/// Records that these learners' state must be read again from their events (a statement voided,
/// events moved to a newly mapped course); nothing when there are none.
fn record_restated(tx: &rusqlite::Transaction<'_>, learners: Vec<String>) -> rusqlite::Result<()> {
    if learners.is_empty() {
        return Ok(());
    }
    record_roster_change(
        tx,
        RosterPart::Learners,
        Some(&roster_change::Touched::restating(learners)),
    )
}

fn record_roster_change(
    tx: &rusqlite::Transaction<'_>,
    part: RosterPart,
    learners: Option<&roster_change::Touched>,
) -> rusqlite::Result<()> {
    let [bump, log, prune] = sql::RECORD_ROSTER_CHANGE;
    let (changed, restated) = learners.map(roster_change::Touched::columns).unzip();
    tx.execute(bump, [])?;
    tx.execute(log, params![part.as_str(), changed, restated])?;
    tx.execute(prune, [])?;
    Ok(())
}

/// A learner from the first seven columns of `row`, with these identities.
fn learner(row: &rusqlite::Row<'_>, identities: Vec<String>) -> Result<Learner, WorkError> {
    let row = LearnerRow {
        learner_id: row.get(0)?,
        institution: row.get(1)?,
        discipline: row.get(2)?,
        track: row.get(3)?,
        cohort: row.get(4)?,
        role: row.get(5)?,
        gender: row.get(6)?,
        identities,
    };
    Ok(row.decode()?)
}

/// A change-feed row: seq, learner id, course, kind, progress, score, occurred_at.
fn feed_event(row: &rusqlite::Row<'_>) -> Result<FeedEvent, WorkError> {
    let row = FeedRow {
        seq: row.get(0)?,
        learner_id: row.get(1)?,
        course_id: row.get(2)?,
        kind: row.get(3)?,
        progress: row.get(4)?,
        score: row.get(5)?,
        occurred_at: from_micros(row.get(6)?)?,
    };
    Ok(row.decode()?)
}
