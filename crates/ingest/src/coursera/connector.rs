//! A program's pull connector: one run of [`pull_program`] with each page written durably
//! before its cursor is kept, and the connector's health kept in the store beside the cursor.
//!
//! The pull is blocking HTTP (the client waits out backoffs with `sleep`), so a run goes to
//! tokio's blocking pool; each delivered page comes back to the runtime for its writes. The
//! order of writes is the whole guarantee: a page's events and rejections first, then the state
//! naming the cursor after that page. A run that dies between the two reads that page again next
//! time, which changes nothing (its events are duplicates).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use nigrani_store::adapters::ConnectorState;
use serde::Serialize;

use super::client::{Client, PullError};
use super::import::{ImportSummary, import_rows};
use super::pull::{Cursor, PullSummary, pull_program};
use crate::{CourseMap, Ingestor};

/// The source Coursera's events are stored under.
pub const SOURCE: &str = "coursera";

/// The name a program's connector is kept under.
pub fn connector_name(program_id: &str) -> String {
    format!("coursera/{program_id}")
}

/// What one run came to, as the scheduler logs it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub connector: String,
    pub pages: u64,
    pub rows: u64,
    pub finished: bool,
    /// The rows' events and rejections, as written.
    pub imported: ImportSummary,
    /// Why the run stopped early (its machine-readable code and message), if it did.
    pub error: Option<String>,
}

/// Runs program `program_id`'s connector once: resumes a stopped pass or starts a new one,
/// writes every page, and keeps the state after each page and at the end. The client is handed
/// back for the next run (it keeps its token), unless the run panicked. Errors of the store are
/// errors of the run; errors of Coursera are kept in the state (`last_error`) and reported.
/// Once `stop` is set, the run writes no further page and ends.
pub async fn run_once(
    ingestor: &Ingestor,
    client: Client,
    program_id: &str,
    stop: Arc<AtomicBool>,
) -> (Option<Client>, Result<RunReport, String>) {
    let store = Arc::clone(ingestor.store());
    let name = connector_name(program_id);
    let loaded = async {
        let states = store.connector_states().await.map_err(|e| e.to_string())?;
        let courses = CourseMap::from_rows(store.course_map().await.map_err(|e| e.to_string())?);
        Ok::<_, String>((states.into_iter().find(|s| s.name == name), courses))
    };
    let (previous, courses) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => {
            return (
                Some(client),
                Err(format!("cannot read the connector's state: {e}")),
            );
        }
    };
    let mut state = previous.unwrap_or_else(|| ConnectorState {
        name: name.clone(),
        cursor: String::new(),
        last_run_at: None,
        last_success_at: None,
        rows_total: 0,
        last_error: None,
    });
    let cursor: Cursor = if state.cursor.is_empty() {
        Cursor::default()
    } else {
        serde_json::from_str(&state.cursor).unwrap_or_else(|e| {
            tracing::warn!(connector = %name, error = %e, "The stored cursor is unreadable; the connector starts a new pass.");
            Cursor::default()
        })
    };

    let handle = tokio::runtime::Handle::current();
    let worker = ingestor.clone();
    let program = program_id.to_owned();
    let mut running = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut client = client;
        let mut imported = ImportSummary::default();
        let result = pull_program(&mut client, &program, cursor, &mut |rows, cursor| {
            if stop.load(Ordering::Relaxed) {
                return Err("the server is stopping; the next run resumes here".to_owned());
            }
            let count = rows.len() as i64;
            let now = Utc::now();
            handle.block_on(async {
                let summary = import_rows(&worker, rows, SOURCE, &courses, now)
                    .await
                    .map_err(|e| format!("the page's rows could not be stored: {e}"))?;
                imported.add(summary);
                running.cursor = serde_json::to_string(&cursor).map_err(|e| e.to_string())?;
                running.rows_total += count;
                running.last_run_at = Some(now);
                worker
                    .store()
                    .save_connector_state(&running)
                    .await
                    .map_err(|e| format!("the connector's state could not be stored: {e}"))
            })
        });
        (client, result, imported, running)
    })
    .await;
    let (client, result, imported, running) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            // The blocking task panicked: the client is gone with it; the caller makes another.
            return (None, Err(format!("the connector's run failed: {e}")));
        }
    };
    state = running;
    let now = Utc::now();
    state.last_run_at = Some(now);
    let report = match result {
        Ok(summary) => {
            let error = summary.stopped_by.as_ref().map(describe);
            if summary.finished {
                state.last_success_at = Some(now);
            }
            state.last_error.clone_from(&error);
            report(&name, &summary, imported, error)
        }
        Err(error) => {
            state.last_error = Some(describe(&error));
            RunReport {
                connector: name.clone(),
                pages: 0,
                rows: 0,
                finished: false,
                imported,
                error: state.last_error.clone(),
            }
        }
    };
    if let Err(e) = store.save_connector_state(&state).await {
        return (
            Some(client),
            Err(format!("the connector's state could not be stored: {e}")),
        );
    }
    (Some(client), Ok(report))
}

fn describe(error: &PullError) -> String {
    format!("{}: {error}", error.code())
}

fn report(
    name: &str,
    summary: &PullSummary,
    imported: ImportSummary,
    error: Option<String>,
) -> RunReport {
    RunReport {
        connector: name.to_owned(),
        pages: summary.pages,
        rows: summary.rows,
        finished: summary.finished,
        imported,
        error,
    }
}

/// A connector's health, as `/metrics` and `GET /api/v1/status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub connector: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Rows read over the connector's life.
    pub rows_total: i64,
    /// Seconds since the last complete pass (`None` before the first).
    pub lag_seconds: Option<i64>,
    /// How fresh the data is by Coursera's clock: the newest `updatedAt` read.
    pub data_as_of: Option<DateTime<Utc>>,
    /// Seconds from `data_as_of` to now: the platform's lag and the connector's together.
    pub data_lag_seconds: Option<i64>,
    /// Whether a pass is under way (a run stopped in its middle, or one is running).
    pub in_pass: bool,
    pub last_error: Option<String>,
}

impl Health {
    /// The health a stored state shows at `now`.
    pub fn of(state: &ConnectorState, now: DateTime<Utc>) -> Health {
        let cursor: Cursor = serde_json::from_str(&state.cursor).unwrap_or_default();
        let data_as_of = cursor
            .max_updated_at
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        Health {
            connector: state.name.clone(),
            last_run_at: state.last_run_at,
            last_success_at: state.last_success_at,
            rows_total: state.rows_total,
            lag_seconds: state
                .last_success_at
                .map(|at| (now - at).num_seconds().max(0)),
            data_as_of,
            data_lag_seconds: data_as_of.map(|at| (now - at).num_seconds().max(0)),
            in_pass: cursor.in_pass(),
            last_error: state.last_error.clone(),
        }
    }
}
