//! Answers kept per query for polling dashboards.
//!
//! Dashboards ask the same few queries over and over while new data keeps arriving, and every
//! snapshot (a few a second under ingest) makes the previous answers out of date. Recomputing on
//! the request path would make every poller that arrives after a snapshot wait for — and
//! duplicate — the same computation. Instead each query keeps its latest answer, stamped with the
//! snapshot it came from:
//! - an answer from the current snapshot (and the same "now") is returned as is;
//! - an out-of-date answer younger than the allowed staleness is returned at once while one
//!   background task computes its successor (never more than one per query);
//! - otherwise the caller computes the answer itself — one caller per query: others asking the
//!   same meanwhile wait for its answer instead of computing it again.
//!
//! With a staleness of zero (the default) answers are always exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::compute::Computations;
use crate::error::AnalyticsError;
use crate::query::QueryError;
use crate::snapshot::Snapshot;

/// Most queries kept; beyond it the table starts afresh (dashboards ask a few dozen).
const MAX_QUERIES: usize = 512;

/// An answer and the data it reflects.
#[derive(Debug, Clone)]
pub struct Stamped<T> {
    pub value: T,
    /// The snapshot it was computed from: when it was published and its change-feed position.
    pub data_as_of: DateTime<Utc>,
    pub last_seq: i64,
    /// The moment the figures are as of.
    pub as_of: DateTime<Utc>,
}

struct Slot<T> {
    answer: Option<Arc<Stamped<T>>>,
    refreshing: bool,
    /// Held by the caller computing this query's answer on the request path.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            answer: None,
            refreshing: false,
            gate: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// The latest answer per query.
pub(crate) struct Answers<K, T> {
    slots: Arc<Mutex<HashMap<K, Slot<T>>>>,
    max_staleness: Duration,
    computations: Computations,
}

/// What a lookup decided.
enum Plan<T> {
    Done(Arc<Stamped<T>>),
    /// Return this one and refresh in the background.
    Stale(Arc<Stamped<T>>),
    /// Compute it here, behind the query's gate.
    Compute(Arc<tokio::sync::Mutex<()>>),
}

/// What a query is known by: its own value (the query itself), never a rendering of it.
pub(crate) trait Key: Clone + Eq + std::hash::Hash + Send + Sync + 'static {}

impl<K: Clone + Eq + std::hash::Hash + Send + Sync + 'static> Key for K {}

impl<K: Key, T: Send + Sync + 'static> Answers<K, T> {
    pub(crate) fn new(max_staleness: Duration, computations: Computations) -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
            max_staleness,
            computations,
        }
    }

    /// The answer to `key` as of `as_of` on `snapshot`, computed by `work` when needed.
    pub(crate) async fn get<F>(
        &self,
        key: K,
        snapshot: Arc<Snapshot>,
        as_of: DateTime<Utc>,
        work: F,
    ) -> Result<Arc<Stamped<T>>, AnalyticsError>
    where
        F: Fn(&Snapshot) -> Result<T, QueryError> + Send + Sync + 'static,
    {
        match self.plan(&key, &snapshot, as_of, false) {
            Plan::Done(answer) => Ok(answer),
            Plan::Stale(answer) => {
                tokio::spawn(refresh(
                    Arc::clone(&self.slots),
                    self.computations.clone(),
                    key,
                    snapshot,
                    as_of,
                    work,
                ));
                Ok(answer)
            }
            Plan::Compute(gate) => {
                // In a task of its own: a caller that goes away (a closed connection) must not
                // leave the query marked as being computed.
                let slots = Arc::clone(&self.slots);
                let computations = self.computations.clone();
                let task = tokio::spawn(async move {
                    let _computing = gate.lock_owned().await;
                    // Whoever held the gate before may have just computed it.
                    if let Some(answer) = current(&slots, &key, &snapshot, as_of) {
                        return Ok(answer);
                    }
                    refresh(slots, computations, key, snapshot, as_of, work).await
                });
                task.await.map_err(|e| {
                    AnalyticsError::Query(QueryError::Engine(format!(
                        "the computation of an answer failed: {e}"
                    )))
                })?
            }
        }
    }

    /// Decides how to answer; `exact_only` after waiting at the gate (only an answer from this
    /// very snapshot will do).
    fn plan(
        &self,
        key: &K,
        snapshot: &Snapshot,
        as_of: DateTime<Utc>,
        exact_only: bool,
    ) -> Plan<T> {
        let Ok(mut slots) = self.slots.lock() else {
            return Plan::Compute(Arc::default());
        };
        if slots.len() >= MAX_QUERIES && !slots.contains_key(key) {
            slots.clear();
        }
        let slot = slots.entry(key.clone()).or_default();
        let gate = Arc::clone(&slot.gate);
        let Some(answer) = slot.answer.clone() else {
            return Plan::Compute(gate);
        };
        if answer.data_as_of >= snapshot.published_at && answer.as_of == as_of {
            return Plan::Done(answer);
        }
        if self.max_staleness.is_zero() || exact_only {
            return Plan::Compute(gate);
        }
        let age = (Utc::now() - answer.data_as_of)
            .to_std()
            .unwrap_or(Duration::ZERO);
        if slot.refreshing {
            // Someone is computing the successor: everyone else takes the previous answer.
            return Plan::Done(answer);
        }
        slot.refreshing = true;
        if age <= self.max_staleness {
            Plan::Stale(answer)
        } else {
            Plan::Compute(gate)
        }
    }
}

/// The kept answer of `key` when it reflects `snapshot` (or later data) as of `as_of`.
fn current<K: Key, T>(
    slots: &Mutex<HashMap<K, Slot<T>>>,
    key: &K,
    snapshot: &Snapshot,
    as_of: DateTime<Utc>,
) -> Option<Arc<Stamped<T>>> {
    let slots = slots.lock().ok()?;
    let answer = slots.get(key)?.answer.clone()?;
    (answer.data_as_of >= snapshot.published_at && answer.as_of == as_of).then_some(answer)
}

/// Computes `key`'s answer and keeps it — unless a newer one was kept meanwhile — and marks the
/// query as no longer being computed, whatever the outcome.
async fn refresh<K: Key, T: Send + Sync + 'static>(
    slots: Arc<Mutex<HashMap<K, Slot<T>>>>,
    computations: Computations,
    key: K,
    snapshot: Arc<Snapshot>,
    as_of: DateTime<Utc>,
    work: impl Fn(&Snapshot) -> Result<T, QueryError> + Send + 'static,
) -> Result<Arc<Stamped<T>>, AnalyticsError> {
    let outcome = run(&computations, snapshot, as_of, work).await;
    if let Ok(mut slots) = slots.lock() {
        let slot = slots.entry(key).or_default();
        slot.refreshing = false;
        match &outcome {
            Ok(fresh) => {
                if slot
                    .answer
                    .as_ref()
                    .is_none_or(|kept| kept.data_as_of <= fresh.data_as_of)
                {
                    slot.answer = Some(Arc::clone(fresh));
                }
            }
            Err(e) => tracing::warn!(error = %e, "An answer could not be computed."),
        }
    }
    outcome
}

async fn run<T: Send + Sync + 'static>(
    computations: &Computations,
    snapshot: Arc<Snapshot>,
    as_of: DateTime<Utc>,
    work: impl Fn(&Snapshot) -> Result<T, QueryError> + Send + 'static,
) -> Result<Arc<Stamped<T>>, AnalyticsError> {
    let stamped = computations
        .run(move || {
            Ok(Stamped {
                value: work(&snapshot)?,
                data_as_of: snapshot.published_at,
                last_seq: snapshot.last_seq,
                as_of,
            })
        })
        .await?;
    Ok(Arc::new(stamped))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn snapshot(last_seq: i64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            roster: Arc::default(),
            frame: polars::prelude::DataFrame::empty(),
            cells: polars::prelude::DataFrame::empty(),
            last_seq,
            latest_event: 0,
            held_until: 0,
            waiting_from: i64::MAX,
            published_at: Utc::now(),
        })
    }

    /// A computation that counts its runs and answers the snapshot's position.
    fn counted(
        runs: &Arc<AtomicUsize>,
    ) -> impl Fn(&Snapshot) -> Result<i64, QueryError> + Send + Sync + 'static {
        let runs = Arc::clone(runs);
        move |snapshot| {
            runs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            Ok(snapshot.last_seq)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_answer_stands_in_while_one_task_refreshes_it() {
        let answers = Answers::new(Duration::from_secs(1), Computations::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let as_of = Utc::now();
        let first = snapshot(1);
        let answer = answers.get("q", Arc::clone(&first), as_of, counted(&runs));
        assert_eq!(answer.await.unwrap().value, 1);
        let again = answers.get("q", first, as_of, counted(&runs)).await;
        assert_eq!((again.unwrap().value, runs.load(Ordering::SeqCst)), (1, 1));

        let second = snapshot(2);
        for _ in 0..5 {
            let stale = answers.get("q", Arc::clone(&second), as_of, counted(&runs));
            assert_eq!(
                stale.await.unwrap().value,
                1,
                "the previous answer, at once"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fresh = answers.get("q", second, as_of, counted(&runs)).await;
        assert_eq!(fresh.unwrap().value, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one background refresh");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_does_not_freeze_the_answer() {
        let answers = Answers::new(Duration::from_millis(1), Computations::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let as_of = Utc::now();
        let first = answers.get("q", snapshot(1), as_of, counted(&runs));
        assert_eq!(first.await.unwrap().value, 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = snapshot(2);
        // Too old to stand in: this caller computes, and gives up before the end.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(5),
            answers.get("q", Arc::clone(&second), as_of, counted(&runs)),
        )
        .await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = answers.get("q", second, as_of, counted(&runs)).await;
        assert_eq!(
            later.unwrap().value,
            2,
            "the computation finished without its caller"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_asking_the_same_at_once_share_one_computation() {
        let answers = Arc::new(Answers::new(Duration::ZERO, Computations::default()));
        let runs = Arc::new(AtomicUsize::new(0));
        let current = snapshot(7);
        let as_of = Utc::now();
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (answers, current, work) =
                    (Arc::clone(&answers), Arc::clone(&current), counted(&runs));
                tokio::spawn(async move { answers.get("q", current, as_of, work).await })
            })
            .collect();
        for task in waiting {
            assert_eq!(task.await.unwrap().unwrap().value, 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
