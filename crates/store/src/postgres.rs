//! The PostgreSQL backend: tokio-postgres behind a deadpool pool with explicit size and timeouts.
//!
//! Bulk writes pass each column as an array and expand them with `unnest`, so a batch of any
//! size is one statement. Event inserts take a transaction-scoped advisory lock first: sequence
//! numbers are handed out in the order transactions start, and holding the lock until commit
//! makes them visible in that same order, so a reader following `seq` never skips an event that
//! commits late.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use nigrani_domain::{
    Cohort, Discipline, Institution, Learner, LearningEvent, Rejection, TrackPlan,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::adapters::{
    self, Bound, ConnectorState, CourseMapping, StatementBatch, StatementFilter, StatementRecord,
    StatementsWrite, StoredStatement,
};
use crate::decode::{
    ApiKeyRow, AuditRow, CohortRow, EventRow, FeedRow, InstitutionRow, LearnerRow, RejectionRow,
    TrackPlanRow,
};
use crate::migrations::{self, Migration};
use crate::roster_change;
use crate::sql;
use crate::{
    ApiKeyRecord, AuditEntry, Backend, Cause, EventWrite, FeedEvent, Page, RosterChange,
    RosterLogEntry, RosterPart, Store, StoreConfig, StoreError, StoreStats, StoredEvent,
    StoredRejection, UnmatchedSource, classify,
};

/// Key of the advisory lock that orders event inserts (any constant unique to nigrani).
const EVENTS_LOCK: i64 = 0x6e69_6772_616e_6901;
/// Key of the advisory lock held while migrating, so replicas starting together take turns.
const MIGRATION_LOCK: i64 = 0x6e69_6772_616e_6902;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Builds the pool and checks that one connection can be made. Does not migrate.
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::invalid(format!("database URL is not valid: {e}")))?;
        pg.connect_timeout(config.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("nigrani");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::internal(format!("cannot build the pool: {e}")))?;
        let store = Self { pool };
        store.ping().await?;
        Ok(store)
    }

    /// Applies pending migrations; returns those applied now.
    pub async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_error)?;
        let result = migrations::run(&mut Migrator(&mut client), migrations::POSTGRES).await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_error)?;
        result
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => map_error(e),
            other => StoreError::unavailable(format!("no database connection: {other}")),
        })
    }
}

/// Runs the shared migration runner's SQL on one connection (the one holding the migration
/// lock). A migration that fails to run, to be recorded or to commit is reported as
/// [`StoreError::Migration`]; other failures like any other PostgreSQL error.
struct Migrator<'a>(&'a mut Object);

#[async_trait]
impl migrations::Executor for Migrator<'_> {
    async fn execute(&mut self, sql: &'static str) -> Result<(), StoreError> {
        self.0.batch_execute(sql).await.map_err(map_error)
    }

    async fn versions(&mut self, sql: &'static str) -> Result<Vec<i64>, StoreError> {
        let rows = self.0.query(sql, &[]).await.map_err(map_error)?;
        Ok(rows
            .iter()
            .map(|row| i64::from(row.get::<_, i32>(0)))
            .collect())
    }

    async fn apply(
        &mut self,
        migration: Migration,
        record: &'static str,
        applied_at: String,
    ) -> Result<(), StoreError> {
        let failed = |e: tokio_postgres::Error| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            reason: e.to_string(),
        };
        let tx = self.0.transaction().await.map_err(map_error)?;
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            record,
            &[&sql_int(migration.version), &migration.name, &applied_at],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// Sorts PostgreSQL errors by what the caller can do: connection trouble is `Unavailable`,
/// integrity violations are `Invalid`, anything else is `Internal`.
fn map_error(e: tokio_postgres::Error) -> StoreError {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed.
        return StoreError::Unavailable(Cause::caused_by(e.to_string(), e));
    };
    let class = &code.code()[..2];
    // The database's message is what a client may read; its SQLSTATE and detail (which can
    // quote values) stay in the source error, which the log shows.
    let described = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned());
    // 23: integrity constraints; 22: data the column cannot hold (e.g. a NUL in text).
    if class == "23" || class == "22" {
        return StoreError::Invalid(Cause::caused_by(described, e));
    }
    let unavailable = class == "08"
        || class == "53"
        || class == "57"
        || *code == SqlState::INVALID_CATALOG_NAME
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED;
    if unavailable {
        StoreError::Unavailable(Cause::caused_by(described, e))
    } else {
        StoreError::Internal(Cause::caused_by(described, e))
    }
}

fn sql_int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A learner from the first seven columns of `row`, with these identities.
fn learner(row: &Row, identities: Vec<String>) -> Result<Learner, StoreError> {
    let row = LearnerRow {
        learner_id: row.get(0),
        institution: row.get(1),
        discipline: row.get(2),
        track: row.get(3),
        cohort: row.get(4),
        role: row.get(5),
        gender: row.get(6),
        identities,
    };
    Ok(row.decode()?)
}

impl PostgresStore {
    /// Runs a query on a pooled connection and reads each of its rows with `read`.
    async fn all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(sql, params).await.map_err(map_error)?;
        rows.iter().map(read).collect()
    }

    /// Runs one bulk upsert of reference data and records the roster change, in one
    /// transaction; returns how many rows were written.
    async fn upsert_rows(
        &self,
        part: RosterPart,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let written = tx.execute(sql, params).await.map_err(map_error)?;
        record_roster_change(&tx, part, None).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(written)
    }

    /// A page of learners, with their identities or without (cheaper: no join).
    async fn learners_page(
        &self,
        page: Page<String>,
        with_identities: bool,
    ) -> Result<Vec<Learner>, StoreError> {
        let after = page.after.unwrap_or_default();
        let limit = page.limit as i64;
        if !with_identities {
            return self
                .all(sql::LEARNER_DIMENSIONS, &[&after, &limit], |row| {
                    learner(row, Vec::new())
                })
                .await;
        }
        self.all(
            "SELECT l.learner_id, l.institution, l.discipline, l.track, l.cohort, l.role,
                    l.gender,
                    coalesce(array_agg(i.learner_ref ORDER BY i.learner_ref)
                             FILTER (WHERE i.learner_ref IS NOT NULL), '{}')
             FROM learners l LEFT JOIN learner_identities i USING (learner_id)
             WHERE l.learner_id > $1
             GROUP BY l.learner_id ORDER BY l.learner_id LIMIT $2",
            &[&after, &limit],
            |row| learner(row, row.get(7)),
        )
        .await
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute(sql::PING, &[]).await.map_err(map_error)?;
        Ok(())
    }

    async fn upsert_institutions(&self, rows: &[Institution]) -> Result<u64, StoreError> {
        let hec_id: Vec<&str> = rows.iter().map(|r| r.hec_id.as_str()).collect();
        let name: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let name_ur: Vec<&str> = rows.iter().map(|r| r.name_ur.as_str()).collect();
        let province: Vec<&str> = rows.iter().map(|r| r.province.as_str()).collect();
        let city: Vec<&str> = rows.iter().map(|r| r.city.as_str()).collect();
        let sector: Vec<&str> = rows.iter().map(|r| r.sector.as_str()).collect();
        self.upsert_rows(
            RosterPart::Institutions,
            "INSERT INTO institutions (hec_id, name, name_ur, province, city, sector)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                  $5::text[], $6::text[])
             ON CONFLICT (hec_id) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, province = excluded.province,
                 city = excluded.city, sector = excluded.sector",
            &[&hec_id, &name, &name_ur, &province, &city, &sector],
        )
        .await
    }

    async fn institutions(&self) -> Result<Vec<Institution>, StoreError> {
        self.all(sql::INSTITUTIONS, &[], |row| {
            let row = InstitutionRow {
                hec_id: row.get(0),
                name: row.get(1),
                name_ur: row.get(2),
                province: row.get(3),
                city: row.get(4),
                sector: row.get(5),
            };
            Ok(row.decode()?)
        })
        .await
    }

    async fn upsert_disciplines(&self, rows: &[Discipline]) -> Result<u64, StoreError> {
        let code: Vec<&str> = rows.iter().map(|r| r.code.as_str()).collect();
        let name: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let name_ur: Vec<&str> = rows.iter().map(|r| r.name_ur.as_str()).collect();
        let stem: Vec<bool> = rows.iter().map(|r| r.stem).collect();
        self.upsert_rows(
            RosterPart::Disciplines,
            "INSERT INTO disciplines (code, name, name_ur, stem)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[])
             ON CONFLICT (code) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, stem = excluded.stem",
            &[&code, &name, &name_ur, &stem],
        )
        .await
    }

    async fn disciplines(&self) -> Result<Vec<Discipline>, StoreError> {
        self.all(sql::DISCIPLINES, &[], |row| {
            Ok(Discipline {
                code: row.get(0),
                name: row.get(1),
                name_ur: row.get(2),
                stem: row.get(3),
            })
        })
        .await
    }

    async fn upsert_track_plans(&self, rows: &[TrackPlan]) -> Result<u64, StoreError> {
        let track: Vec<&str> = rows.iter().map(|r| r.track.as_str()).collect();
        // Arrays of arrays do not survive `unnest`, so each course list travels as JSON text.
        let courses: Vec<String> = rows
            .iter()
            .map(|r| serde_json::Value::from(r.required_courses.clone()).to_string())
            .collect();
        let target: Vec<i32> = rows.iter().map(|r| sql_int(r.target)).collect();
        let stretch: Vec<Option<i32>> =
            rows.iter().map(|r| r.stretch_target.map(sql_int)).collect();
        self.upsert_rows(
            RosterPart::TrackPlans,
            "INSERT INTO track_plans (track, required_courses, target, stretch_target)
             SELECT t.track, ARRAY(SELECT jsonb_array_elements_text(t.courses::jsonb)),
                    t.target, t.stretch
             FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[])
                  AS t(track, courses, target, stretch)
             ON CONFLICT (track) DO UPDATE SET required_courses = excluded.required_courses,
                 target = excluded.target, stretch_target = excluded.stretch_target",
            &[&track, &courses, &target, &stretch],
        )
        .await
    }

    async fn track_plans(&self) -> Result<Vec<TrackPlan>, StoreError> {
        self.all(sql::TRACK_PLANS, &[], |row| {
            let row = TrackPlanRow {
                track: row.get(0),
                required_courses: row.get(1),
                target: row.get::<_, i32>(2).into(),
                stretch_target: row.get::<_, Option<i32>>(3).map(i64::from),
            };
            Ok(row.decode()?)
        })
        .await
    }

    async fn upsert_cohorts(&self, rows: &[Cohort]) -> Result<u64, StoreError> {
        let id: Vec<&str> = rows.iter().map(|r| r.cohort_id.as_str()).collect();
        let name: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let name_ur: Vec<&str> = rows.iter().map(|r| r.name_ur.as_str()).collect();
        let track: Vec<&str> = rows.iter().map(|r| r.track.as_str()).collect();
        let starts_on: Vec<chrono::NaiveDate> = rows.iter().map(|r| r.starts_on).collect();
        let ends_on: Vec<chrono::NaiveDate> = rows.iter().map(|r| r.ends_on).collect();
        let target: Vec<i32> = rows.iter().map(|r| sql_int(r.target)).collect();
        self.upsert_rows(
            RosterPart::Cohorts,
            "INSERT INTO cohorts (cohort_id, name, name_ur, track, starts_on, ends_on, target)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                  $5::date[], $6::date[], $7::int4[])
             ON CONFLICT (cohort_id) DO UPDATE SET name = excluded.name,
                 name_ur = excluded.name_ur, track = excluded.track,
                 starts_on = excluded.starts_on, ends_on = excluded.ends_on,
                 target = excluded.target",
            &[&id, &name, &name_ur, &track, &starts_on, &ends_on, &target],
        )
        .await
    }

    async fn cohorts(&self) -> Result<Vec<Cohort>, StoreError> {
        self.all(sql::COHORTS, &[], |row| {
            let row = CohortRow {
                cohort_id: row.get(0),
                name: row.get(1),
                name_ur: row.get(2),
                track: row.get(3),
                starts_on: row.get(4),
                ends_on: row.get(5),
                target: row.get::<_, i32>(6).into(),
            };
            Ok(row.decode()?)
        })
        .await
    }

    async fn upsert_learners(&self, rows: &[Learner]) -> Result<RosterChange, StoreError> {
        let id: Vec<&str> = rows.iter().map(|r| r.learner_id.as_str()).collect();
        let institution: Vec<&str> = rows.iter().map(|r| r.institution.as_str()).collect();
        let discipline: Vec<&str> = rows.iter().map(|r| r.discipline.as_str()).collect();
        let track: Vec<&str> = rows.iter().map(|r| r.track.as_str()).collect();
        let cohort: Vec<&str> = rows.iter().map(|r| r.cohort.as_str()).collect();
        let role: Vec<&str> = rows.iter().map(|r| r.role.as_str()).collect();
        let gender: Vec<Option<&str>> = rows.iter().map(|r| r.gender.map(|g| g.as_str())).collect();
        let (refs, owners): (Vec<&str>, Vec<&str>) = rows
            .iter()
            .flat_map(|l| {
                l.identities
                    .iter()
                    .map(|r| (r.as_str(), l.learner_id.as_str()))
            })
            .unzip();

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        // The version row's lock orders concurrent uploads (SQLite has one writer): what this one
        // reads of the roster before writing — to tell restated learners from moved ones — is
        // then what the upload before it left.
        tx.execute(LOCK_ROSTER, &[]).await.map_err(map_error)?;
        // Identities the roster learns now: events already stored under them become attributed
        // by this very upsert.
        let new_refs: Vec<String> = tx
            .query(
                "SELECT r FROM unnest($1::text[]) AS r
                 WHERE NOT EXISTS (SELECT 1 FROM learner_identities i WHERE i.learner_ref = r)",
                &[&refs],
            )
            .await
            .map_err(map_error)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // What the upload touches (see `roster_change`), from what the store holds now.
        let before = roster_change::Before {
            tracks: text_pairs(
                &tx,
                "SELECT learner_id, track FROM learners WHERE learner_id = ANY($1)",
                &id,
            )
            .await?
            .into_iter()
            .collect(),
            identities: text_pairs(
                &tx,
                "SELECT learner_id, learner_ref FROM learner_identities WHERE learner_id = ANY($1)",
                &id,
            )
            .await?,
            owners: text_pairs(
                &tx,
                "SELECT learner_ref, learner_id FROM learner_identities WHERE learner_ref = ANY($1)",
                &refs,
            )
            .await?,
        };
        let touched = roster_change::touched(rows, &before);
        tx.execute(
            "INSERT INTO learners (learner_id, institution, discipline, track, cohort, role, gender)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[])
             ON CONFLICT (learner_id) DO UPDATE SET institution = excluded.institution,
                 discipline = excluded.discipline, track = excluded.track,
                 cohort = excluded.cohort, role = excluded.role, gender = excluded.gender",
            &[&id, &institution, &discipline, &track, &cohort, &role, &gender],
        )
        .await
        .map_err(map_error)?;
        tx.execute(
            "DELETE FROM learner_identities WHERE learner_id = ANY($1)",
            &[&id],
        )
        .await
        .map_err(map_error)?;
        tx.execute(
            "INSERT INTO learner_identities (learner_ref, learner_id)
             SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (learner_ref) DO UPDATE SET learner_id = excluded.learner_id",
            &[&refs, &owners],
        )
        .await
        .map_err(map_error)?;
        let attributed: i64 = tx
            .query_one(
                "SELECT count(*) FROM events WHERE learner_ref = ANY($1)",
                &[&new_refs],
            )
            .await
            .map_err(map_error)?
            .get(0);
        record_roster_change(&tx, RosterPart::Learners, Some(&touched)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(RosterChange {
            learners: rows.len() as u64,
            attributed_events: attributed as u64,
        })
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENTS_LOCK])
            .await
            .map_err(map_error)?;
        let mut rejections = rejections.to_vec();
        let outcomes = write_events(&tx, events, &mut rejections, received_at).await?;
        commit(tx).await?;
        Ok(outcomes)
    }

    async fn write_statements(
        &self,
        batch: StatementBatch<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<StatementsWrite, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENTS_LOCK])
            .await
            .map_err(map_error)?;
        // `stored` is read under the lock, from the database's clock, and never goes back:
        // statements commit in `stored` order, which `statements_consistent_through` relies on.
        let stored: DateTime<Utc> = tx
            .query_one(adapters::NEXT_STORED_POSTGRES, &[])
            .await
            .map_err(map_error)?
            .get(0);
        let ids: Vec<&str> = batch
            .statements
            .iter()
            .map(|r| r.statement_id.as_str())
            .collect();
        let before: HashMap<String, String> = tx
            .query(
                "SELECT statement_id, content_hash FROM xapi_statements
                 WHERE statement_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(map_error)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut stored_now = Vec::with_capacity(batch.statements.len());
        for record in batch.statements {
            match before.get(&record.statement_id) {
                Some(hash) if *hash != record.content_hash => {
                    return Ok(StatementsWrite::Conflict {
                        statement_id: record.statement_id.clone(),
                    });
                }
                Some(_) => stored_now.push(false),
                None => stored_now.push(true),
            }
        }
        let new: Vec<&StatementRecord> = batch
            .statements
            .iter()
            .zip(&stored_now)
            .filter_map(|(record, new)| new.then_some(record))
            .collect();
        let column = |pick: fn(&StatementRecord) -> Option<&str>| -> Vec<Option<&str>> {
            new.iter().map(|record| pick(record)).collect()
        };
        let rows = tx
            .query(
                "INSERT INTO xapi_statements (statement_id, source, stored, verb_id,
                     registration, voids, content_hash, statement)
                 SELECT i, s, $1, v, r, vo, h, st
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::text[], $8::text[]) AS t(i, s, v, r, vo, h, st)
                 RETURNING seq, statement_id",
                &[
                    &stored,
                    &column(|r| Some(r.statement_id.as_str())),
                    &column(|r| Some(r.source.as_str())),
                    &column(|r| Some(r.verb_id.as_str())),
                    &column(|r| r.registration.as_deref()),
                    &column(|r| r.voids.as_deref()),
                    &column(|r| Some(r.content_hash.as_str())),
                    &column(|r| Some(r.statement.as_str())),
                ],
            )
            .await
            .map_err(map_error)?;
        let seq_of: HashMap<String, i64> =
            rows.iter().map(|row| (row.get(1), row.get(0))).collect();
        let (mut reference, mut seq, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for record in &new {
            let at = seq_of.get(&record.statement_id).copied().ok_or_else(|| {
                StoreError::internal(format!(
                    "statement {} was not inserted",
                    record.statement_id
                ))
            })?;
            for (name, is_direct) in &record.refs {
                reference.push(name.as_str());
                seq.push(at);
                direct.push(*is_direct);
            }
        }
        if !reference.is_empty() {
            tx.execute(
                "INSERT INTO xapi_statement_refs (ref, seq, direct)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::bool[])
                 ON CONFLICT DO NOTHING",
                &[&reference, &seq, &direct],
            )
            .await
            .map_err(map_error)?;
        }
        let events: Vec<LearningEvent> = batch
            .events
            .iter()
            .filter(|e| seq_of.contains_key(&e.event_id))
            .cloned()
            .collect();
        let mut rejections = Vec::new();
        let outcomes = write_events(&tx, &events, &mut rejections, received_at).await?;

        // Voiding: the batch's voiding statements, and voiding statements stored before that
        // name a statement stored now.
        let new_ids: Vec<&str> = new.iter().map(|r| r.statement_id.as_str()).collect();
        let mut voider: Vec<String> = Vec::new();
        let mut target: Vec<String> = Vec::new();
        let mut voider_source: Vec<String> = Vec::new();
        for record in &new {
            if let Some(voided) = &record.voids {
                voider.push(record.statement_id.clone());
                target.push(voided.clone());
                voider_source.push(record.source.clone());
            }
        }
        for row in tx
            .query(
                "SELECT statement_id, voids, source FROM xapi_statements WHERE voids = ANY($1)",
                &[&new_ids],
            )
            .await
            .map_err(map_error)?
        {
            voider.push(row.get(0));
            target.push(row.get(1));
            voider_source.push(row.get(2));
        }
        let mut retracted: Vec<String> = Vec::new();
        if !voider.is_empty() {
            let voided = tx
                .query(
                    "UPDATE xapi_statements s SET voided_by = p.voider
                     FROM (SELECT DISTINCT ON (target, source) voider, target, source
                           FROM unnest($1::text[], $2::text[], $3::text[])
                               AS p(voider, target, source)
                           ORDER BY target, source, voider) p
                     WHERE s.statement_id = p.target AND s.source = p.source
                         AND s.voids IS NULL AND s.voided_by IS NULL
                     RETURNING s.source, s.statement_id",
                    &[&voider, &target, &voider_source],
                )
                .await
                .map_err(map_error)?;
            let (source, event_id): (Vec<String>, Vec<String>) =
                voided.iter().map(|row| (row.get(0), row.get(1))).unzip();
            if !source.is_empty() {
                for row in tx
                    .query(
                        "UPDATE events e SET voided_at = $3
                         FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
                         WHERE e.source = k.source AND e.event_id = k.event_id
                             AND e.voided_at IS NULL
                         RETURNING (SELECT i.learner_id FROM learner_identities i
                                    WHERE i.learner_ref = e.learner_ref)",
                        &[&source, &event_id, &received_at],
                    )
                    .await
                    .map_err(map_error)?
                {
                    retracted.extend(row.get::<_, Option<String>>(0));
                }
            }
        }
        record_restated(&tx, retracted).await?;
        commit(tx).await?;
        Ok(StatementsWrite::Written {
            statements: stored_now,
            events: outcomes,
        })
    }

    async fn statements_consistent_through(&self) -> Result<DateTime<Utc>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one(adapters::CONSISTENT_THROUGH_POSTGRES, &[])
            .await
            .map_err(map_error)?
            .get(0))
    }

    async fn statement(&self, statement_id: &str) -> Result<Option<StoredStatement>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(adapters::STATEMENT_BY_ID, &[&statement_id])
            .await
            .map_err(map_error)?;
        Ok(row.map(|row| stored_statement(&row)))
    }

    async fn statements(
        &self,
        filter: &StatementFilter,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let (query, values) = adapters::filter_query(filter);
        let bound: Vec<Box<dyn ToSql + Sync + Send>> = values
            .into_iter()
            .map(|value| -> Box<dyn ToSql + Sync + Send> {
                match value {
                    Bound::Text(text) => Box::new(text),
                    Bound::Time(at) => Box::new(at),
                    Bound::Int(n) => Box::new(n),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let rows = client.query(&query, &params).await.map_err(map_error)?;
        Ok(rows.iter().map(stored_statement).collect())
    }

    async fn course_map(&self) -> Result<Vec<CourseMapping>, StoreError> {
        self.all(adapters::COURSE_MAP, &[], |row| {
            Ok(CourseMapping {
                source: row.get(0),
                platform_course_id: row.get(1),
                course_id: row.get(2),
            })
        })
        .await
    }

    async fn upsert_course_mappings(&self, rows: &[CourseMapping]) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        // Events are moved under the events' lock, as they are written and voided under it.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENTS_LOCK])
            .await
            .map_err(map_error)?;
        for row in rows {
            tx.execute(
                adapters::UPSERT_COURSE_MAPPING,
                &[&row.source, &row.platform_course_id, &row.course_id],
            )
            .await
            .map_err(map_error)?;
        }
        let remapped: Vec<&CourseMapping> = rows
            .iter()
            .filter(|r| r.platform_course_id != r.course_id)
            .collect();
        let column = |pick: fn(&CourseMapping) -> &str| -> Vec<&str> {
            remapped.iter().map(|r| pick(r)).collect()
        };
        let restated: Vec<String> = tx
            .query(
                adapters::REMAP_UNMAPPED_EVENTS_POSTGRES,
                &[
                    &column(|r| r.source.as_str()),
                    &column(|r| r.platform_course_id.as_str()),
                    &column(|r| r.course_id.as_str()),
                ],
            )
            .await
            .map_err(map_error)?
            .iter()
            .filter_map(|row| row.get::<_, Option<String>>(0))
            .collect();
        record_restated(&tx, restated).await?;
        commit(tx).await?;
        Ok(rows.len() as u64)
    }

    async fn delete_course_mapping(
        &self,
        source: &str,
        platform_course_id: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                adapters::DELETE_COURSE_MAPPING,
                &[&source, &platform_course_id],
            )
            .await
            .map_err(map_error)?;
        Ok(deleted > 0)
    }

    async fn connector_states(&self) -> Result<Vec<ConnectorState>, StoreError> {
        self.all(adapters::CONNECTOR_STATES, &[], |row| {
            Ok(ConnectorState {
                name: row.get(0),
                cursor: row.get(1),
                last_run_at: row.get(2),
                last_success_at: row.get(3),
                rows_total: row.get(4),
                last_error: row.get(5),
            })
        })
        .await
    }

    async fn save_connector_state(&self, state: &ConnectorState) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                adapters::SAVE_CONNECTOR_STATE,
                &[
                    &state.name,
                    &state.cursor,
                    &state.last_run_at,
                    &state.last_success_at,
                    &state.rows_total,
                    &state.last_error,
                ],
            )
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = limit as i64;
        self.all(sql::EVENTS_AFTER, &[&after_seq, &limit], |row| {
            let row = EventRow {
                seq: row.get(0),
                received_at: row.get(1),
                learner_id: row.get(2),
                source: row.get(3),
                event_id: row.get(4),
                learner_ref: row.get(5),
                course_id: row.get(6),
                kind: row.get(7),
                progress: row.get(8),
                score: row.get(9),
                duration_seconds: row.get(10),
                occurred_at: row.get(11),
                content_hash: row.get(12),
                raw: row.get(13),
            };
            Ok(row.decode()?)
        })
        .await
    }

    async fn feed_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let client = self.client().await?;
        let limit = limit as i64;
        let statement = client
            .prepare_cached(sql::FEED_AFTER)
            .await
            .map_err(map_error)?;
        let rows = client
            .query(&statement, &[&after_seq, &limit])
            .await
            .map_err(map_error)?;
        rows.iter().map(feed_event).collect()
    }

    async fn rejections(&self, page: Page<i64>) -> Result<Vec<StoredRejection>, StoreError> {
        let after = page.after.unwrap_or(0);
        let limit = page.limit as i64;
        self.all(
            // Rows from before the cap may hold whole bodies: read no more than the cap
            // (in characters here; `RejectionRow::decode` cuts to bytes).
            "SELECT id, received_at, source, event_id, reason, message, left(raw, 65536),
                        coalesce(raw_bytes, octet_length(raw)::int8), raw_sha256
                 FROM rejections WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
            |row| {
                let row = RejectionRow {
                    id: row.get(0),
                    received_at: row.get(1),
                    source: row.get(2),
                    event_id: row.get(3),
                    reason: row.get(4),
                    message: row.get(5),
                    raw: row.get(6),
                    raw_bytes: row.get(7),
                    raw_sha256: row.get(8),
                };
                Ok(row.decode()?)
            },
        )
        .await
    }

    async fn purge_rejections(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(sql::PURGE_REJECTIONS, &[&before])
            .await
            .map_err(map_error)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.client().await?;
        let row = client.query_one(sql::STATS, &[]).await.map_err(map_error)?;
        Ok(StoreStats {
            events: row.get::<_, i64>(0) as u64,
            unmatched_events: row.get::<_, i64>(1) as u64,
            learners: row.get::<_, i64>(2) as u64,
            rejections: row.get::<_, i64>(3) as u64,
            last_seq: row.get(4),
        })
    }

    async fn unmatched_by_source(&self) -> Result<Vec<UnmatchedSource>, StoreError> {
        self.all(sql::UNMATCHED_BY_SOURCE, &[], |row| {
            Ok(UnmatchedSource {
                source: row.get(0),
                learner_refs: row.get::<_, i64>(1) as u64,
                events: row.get::<_, i64>(2) as u64,
            })
        })
        .await
    }

    async fn roster_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(sql::ROSTER_VERSION, &[])
            .await
            .map_err(map_error)?;
        Ok(row.get(0))
    }

    async fn record_key_secret(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(sql::RECORD_KEY_SECRET, &[])
            .await
            .map_err(map_error)?;
        Ok(row.get(0))
    }

    async fn roster_log_after(
        &self,
        version: i64,
    ) -> Result<Option<Vec<RosterLogEntry>>, StoreError> {
        let entries = self
            .all(sql::ROSTER_LOG_AFTER, &[&version], |row| {
                Ok(RosterLogEntry::decode(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                )?)
            })
            .await?;
        Ok(crate::contiguous_log(version, entries))
    }

    async fn learners_by_id(&self, ids: &[String]) -> Result<Vec<Learner>, StoreError> {
        self.all(
            "SELECT learner_id, institution, discipline, track, cohort, role, gender
                 FROM learners WHERE learner_id = ANY($1) ORDER BY learner_id",
            &[&ids],
            |row| learner(row, Vec::new()),
        )
        .await
    }

    async fn feed_of_learners(
        &self,
        ids: &[String],
        up_to_seq: i64,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        self.all(
            "SELECT e.seq, i.learner_id, e.course_id, e.kind, e.progress, e.score, e.occurred_at
                 FROM learner_identities i JOIN events e USING (learner_ref)
                 WHERE i.learner_id = ANY($1) AND e.seq <= $2 AND e.voided_at IS NULL
                 ORDER BY e.seq",
            &[&ids, &up_to_seq],
            feed_event,
        )
        .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                sql::CREATE_API_KEY,
                &[
                    &key.key_id,
                    &key.name,
                    &key.role.as_str(),
                    &key.source,
                    &key.key_hash,
                    &key.created_at,
                ],
            )
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.all(sql::API_KEYS, &[], |row| {
            let row = ApiKeyRow {
                key_id: row.get(0),
                name: row.get(1),
                role: row.get(2),
                source: row.get(3),
                key_hash: row.get(4),
                created_at: row.get(5),
                revoked_at: row.get(6),
            };
            Ok(row.decode()?)
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(sql::REVOKE_API_KEY, &[&at, &key_id])
            .await
            .map_err(map_error)?;
        Ok(n == 1)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                sql::APPEND_AUDIT,
                &[
                    &entry.at,
                    &entry.key_id,
                    &entry.method,
                    &entry.path,
                    &entry.query,
                    &i32::from(entry.status),
                ],
            )
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn audit(&self, page: Page<i64>) -> Result<Vec<AuditEntry>, StoreError> {
        self.all(
            sql::AUDIT,
            &[&page.after.unwrap_or(0), &(page.limit as i64)],
            |row| {
                let row = AuditRow {
                    id: row.get(0),
                    at: row.get(1),
                    key_id: row.get(2),
                    method: row.get(3),
                    path: row.get(4),
                    query: row.get(5),
                    status: row.get::<_, i32>(6).into(),
                };
                Ok(row.decode()?)
            },
        )
        .await
    }
}

/// The two text columns of each row `sql` selects for the values `$1`.
async fn text_pairs(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    values: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = tx.query(sql, &[&values]).await.map_err(map_error)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Writes events and rejections in `tx`, which holds the events' lock (see
/// [`Store::write_batch`]); conflicts are added to `rejections` and written with them.
async fn write_events(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[LearningEvent],
    rejections: &mut Vec<Rejection>,
    received_at: DateTime<Utc>,
) -> Result<Vec<EventWrite>, StoreError> {
    let source: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let event_id: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let learner: Vec<&str> = events.iter().map(|e| e.learner.as_str()).collect();
    let course: Vec<&str> = events.iter().map(|e| e.course_id.as_str()).collect();
    let kind: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let progress: Vec<Option<f64>> = events.iter().map(|e| e.progress).collect();
    let score: Vec<Option<f64>> = events.iter().map(|e| e.score).collect();
    let duration: Vec<Option<i64>> = events.iter().map(|e| e.duration_seconds).collect();
    let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let hash: Vec<&str> = events.iter().map(|e| e.content_hash.as_str()).collect();
    let raw: Vec<&str> = events.iter().map(|e| e.raw.as_str()).collect();

    let insert = tx
        .prepare_cached(
            "INSERT INTO events (source, event_id, learner_ref, course_id, kind, progress,
                 score, duration_seconds, occurred_at, received_at, content_hash, raw)
             SELECT s, i, l, c, k, p, sc, d, o, $12, h, r
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::float8[], $7::float8[], $8::int8[], $9::timestamptz[],
                         $10::text[], $11::text[]) AS t(s, i, l, c, k, p, sc, d, o, h, r)
             ON CONFLICT (source, event_id) DO NOTHING
             RETURNING seq, source, event_id, learner_ref,
                 EXISTS (SELECT 1 FROM learner_identities i
                         WHERE i.learner_ref = events.learner_ref)",
        )
        .await
        .map_err(map_error)?;
    let rows = tx
        .query(
            &insert,
            &[
                &source,
                &event_id,
                &learner,
                &course,
                &kind,
                &progress,
                &score,
                &duration,
                &occurred,
                &hash,
                &raw,
                &received_at,
            ],
        )
        .await
        .map_err(map_error)?;
    let mut inserted: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
    // Learner references of the inserted events that the roster knows.
    let mut known: HashSet<String> = HashSet::new();
    for row in &rows {
        if row.get::<_, bool>(4) {
            known.insert(row.get(3));
        }
        inserted.insert((row.get(1), row.get(2)), row.get(0));
    }

    let mut existing: HashMap<(String, String), (i64, String)> = HashMap::new();
    if inserted.len() < events.len() {
        let (old_source, old_id): (Vec<&str>, Vec<&str>) = events
            .iter()
            .filter(|e| !inserted.contains_key(&(e.source.clone(), e.event_id.clone())))
            .map(|e| (e.source.as_str(), e.event_id.as_str()))
            .unzip();
        let rows = tx
            .query(
                "SELECT e.source, e.event_id, e.seq, e.content_hash
                 FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
                 JOIN events e USING (source, event_id)",
                &[&old_source, &old_id],
            )
            .await
            .map_err(map_error)?;
        for row in rows {
            existing.insert((row.get(0), row.get(1)), (row.get(2), row.get(3)));
        }
    }
    let outcomes =
        classify(events, &inserted, &existing, &known, rejections).map_err(StoreError::internal)?;
    if !rejections.is_empty() {
        let source: Vec<Option<&str>> = rejections.iter().map(|r| r.source.as_deref()).collect();
        let event_id: Vec<Option<&str>> =
            rejections.iter().map(|r| r.event_id.as_deref()).collect();
        let reason: Vec<&str> = rejections.iter().map(|r| r.reason.code()).collect();
        let message: Vec<&str> = rejections.iter().map(|r| r.message.as_str()).collect();
        let kept: Vec<crate::KeptPayload<'_>> = rejections
            .iter()
            .map(|r| crate::KeptPayload::of(&r.raw))
            .collect();
        let raw: Vec<&str> = kept.iter().map(|k| k.text).collect();
        let raw_bytes: Vec<i64> = kept.iter().map(|k| k.bytes).collect();
        let raw_sha256: Vec<&str> = kept.iter().map(|k| k.sha256.as_str()).collect();
        tx.execute(
            "INSERT INTO rejections (received_at, source, event_id, reason, message, raw,
                 raw_bytes, raw_sha256)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::int8[], $8::text[])",
            &[
                &received_at,
                &source,
                &event_id,
                &reason,
                &message,
                &raw,
                &raw_bytes,
                &raw_sha256,
            ],
        )
        .await
        .map_err(map_error)?;
    }
    Ok(outcomes)
}

/// A statement row: seq, stored, voided, statement.
fn stored_statement(row: &Row) -> StoredStatement {
    StoredStatement {
        seq: row.get(0),
        stored: row.get(1),
        voided: row.get(2),
        statement: row.get(3),
    }
}

/// Commits; a connection lost meanwhile leaves the outcome unknown: the server may have
/// committed.
async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.commit().await.map_err(|e| match map_error(e) {
        StoreError::Unavailable(cause) => StoreError::OutcomeUnknown(cause),
        other => other,
    })
}

/// Taken first by a learner upload (see `upsert_learners`).
const LOCK_ROSTER: &str = "SELECT version FROM roster_version WHERE id = 1 FOR UPDATE";

/// Records a roster change in its transaction (see [`sql::RECORD_ROSTER_CHANGE`]).
/// Records that these learners' state must be read again from their events (a statement voided,
/// events moved to a newly mapped course); nothing when there are none.
async fn record_restated(
    tx: &tokio_postgres::Transaction<'_>,
    learners: Vec<String>,
) -> Result<(), StoreError> {
    if learners.is_empty() {
        return Ok(());
    }
    record_roster_change(
        tx,
        RosterPart::Learners,
        Some(&roster_change::Touched::restating(learners)),
    )
    .await
}

async fn record_roster_change(
    tx: &tokio_postgres::Transaction<'_>,
    part: RosterPart,
    learners: Option<&roster_change::Touched>,
) -> Result<(), StoreError> {
    let [bump, log, prune] = sql::RECORD_ROSTER_CHANGE;
    let (changed, restated) = learners.map(roster_change::Touched::columns).unzip();
    tx.execute(bump, &[]).await.map_err(map_error)?;
    tx.execute(log, &[&part.as_str(), &changed, &restated])
        .await
        .map_err(map_error)?;
    tx.execute(prune, &[]).await.map_err(map_error)?;
    Ok(())
}

/// A change-feed row: seq, learner id, course, kind, progress, score, occurred_at.
fn feed_event(row: &Row) -> Result<FeedEvent, StoreError> {
    let row = FeedRow {
        seq: row.get(0),
        learner_id: row.get(1),
        course_id: row.get(2),
        kind: row.get(3),
        progress: row.get(4),
        score: row.get(5),
        occurred_at: row.get(6),
    };
    Ok(row.decode()?)
}
