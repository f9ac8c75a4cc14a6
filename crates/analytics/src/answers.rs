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
//! - otherwise the caller computes the answer itself.
//!
//! With a staleness of zero (the default) answers are always exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::{AnalyticsError, Snapshot};
use crate::query::QueryError;

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
}

/// The latest answer per query.
pub(crate) struct Answers<T> {
    slots: Arc<Mutex<HashMap<String, Slot<T>>>>,
    max_staleness: Duration,
}

/// What a lookup decided.
enum Plan<T> {
    Done(Arc<Stamped<T>>),
    /// Return this one and refresh in the background.
    Stale(Arc<Stamped<T>>),
    Compute,
}

impl<T: Send + Sync + 'static> Answers<T> {
    pub(crate) fn new(max_staleness: Duration) -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
            max_staleness,
        }
    }

    /// The answer to `key` as of `as_of` on `snapshot`, computed by `work` when needed.
    pub(crate) async fn get<F>(
        &self,
        key: String,
        snapshot: Arc<Snapshot>,
        as_of: DateTime<Utc>,
        work: F,
    ) -> Result<Arc<Stamped<T>>, AnalyticsError>
    where
        F: Fn(&Snapshot) -> Result<T, QueryError> + Send + Sync + 'static,
    {
        let plan = self.plan(&key, &snapshot, as_of);
        match plan {
            Plan::Done(answer) => Ok(answer),
            Plan::Stale(answer) => {
                let slots = Arc::clone(&self.slots);
                tokio::spawn(async move {
                    let outcome = run(Arc::clone(&snapshot), as_of, work).await;
                    let Ok(mut slots) = slots.lock() else { return };
                    if let Some(slot) = slots.get_mut(&key) {
                        slot.refreshing = false;
                        match outcome {
                            Ok(fresh) => slot.answer = Some(fresh),
                            Err(e) => tracing::warn!(error = %e, "A background answer failed."),
                        }
                    }
                });
                Ok(answer)
            }
            Plan::Compute => {
                let outcome = run(snapshot, as_of, work).await;
                if let Ok(mut slots) = self.slots.lock() {
                    if slots.len() >= MAX_QUERIES && !slots.contains_key(&key) {
                        slots.clear();
                    }
                    let slot = slots.entry(key).or_insert(Slot {
                        answer: None,
                        refreshing: false,
                    });
                    slot.refreshing = false;
                    if let Ok(fresh) = &outcome {
                        slot.answer = Some(Arc::clone(fresh));
                    }
                }
                outcome
            }
        }
    }

    fn plan(&self, key: &str, snapshot: &Snapshot, as_of: DateTime<Utc>) -> Plan<T> {
        let Ok(mut slots) = self.slots.lock() else {
            return Plan::Compute;
        };
        let Some(slot) = slots.get_mut(key) else {
            return Plan::Compute;
        };
        let Some(answer) = slot.answer.clone() else {
            return Plan::Compute;
        };
        if answer.data_as_of == snapshot.published_at && answer.as_of == as_of {
            return Plan::Done(answer);
        }
        if self.max_staleness.is_zero() {
            return Plan::Compute;
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
            Plan::Compute
        }
    }
}

async fn run<T: Send + Sync + 'static>(
    snapshot: Arc<Snapshot>,
    as_of: DateTime<Utc>,
    work: impl Fn(&Snapshot) -> Result<T, QueryError> + Send + 'static,
) -> Result<Arc<Stamped<T>>, AnalyticsError> {
    let stamped = crate::engine::compute(move || {
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
