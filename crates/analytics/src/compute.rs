//! Where polars work runs: on the blocking pool, a bounded number at a time, and replays of the
//! store one at a time. The engine owns one [`Computations`] and hands it to what computes for
//! it (the answers kept for polling dashboards), instead of a process-wide static.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::AnalyticsError;
use crate::frame::QueryError;

/// The slots computations and replays take.
#[derive(Clone)]
pub(crate) struct Computations {
    /// At most one computation per core: polars parallelises each one already, and many at once
    /// would only add up their memory.
    permits: Arc<Semaphore>,
    /// A replay reads every event up to its moment and holds a whole state: one at a time.
    replays: Arc<Semaphore>,
}

impl Default for Computations {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            replays: Arc::new(Semaphore::new(1)),
        }
    }
}

impl Computations {
    /// Runs polars work on the blocking pool: it is CPU-bound, and polars must not run on a
    /// current-thread runtime (HTTP workers are).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, QueryError> + Send + 'static,
    ) -> Result<R, AnalyticsError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| engine_error(format!("no computation slot: {e}")))?;
        // The permit goes with the work: a caller that goes away does not free its slot while
        // the computation still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| engine_error(format!("the computation panicked: {e}")))?
        .map_err(AnalyticsError::from)
    }

    /// Waits for the replay slot; the replay holds it while the returned permit lives.
    pub(crate) async fn replay_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, AnalyticsError> {
        Arc::clone(&self.replays)
            .acquire_owned()
            .await
            .map_err(|e| engine_error(format!("no replay slot: {e}")))
    }
}

fn engine_error(message: String) -> AnalyticsError {
    AnalyticsError::Query(QueryError::Engine(message))
}
