//! What queries read: an immutable view of the learner state, published by the engine after
//! each refresh and shared by every query until the next.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use polars::prelude::DataFrame;

use crate::query::{self, Breakdown, BreakdownQuery, QueryError};
use crate::state::Roster;

/// A published, immutable view that queries read.
pub struct Snapshot {
    /// The roster the frame was built on.
    pub roster: Arc<Roster>,
    /// One row per learner.
    pub frame: DataFrame,
    /// The learners added up per combination of dimensions ([`query::cells`]).
    pub cells: DataFrame,
    /// The last change-feed sequence number included.
    pub last_seq: i64,
    /// The latest `occurred_at` included (microseconds), `i64::MIN` when none.
    pub latest_event: i64,
    /// The state holds no event dated after this moment (the refresh that published it).
    pub held_until: i64,
    /// The earliest event held back because it is dated after `held_until`; `i64::MAX` when
    /// none. A query as of this moment or later needs that event, so a replay.
    pub waiting_from: i64,
    /// When the snapshot was published.
    pub published_at: DateTime<Utc>,
}

impl Snapshot {
    /// Whether the snapshot holds every event dated up to `as_of` and none dated later, so that
    /// figures as of `as_of` can be read from it.
    pub fn holds_all_until(&self, as_of: i64) -> bool {
        self.latest_event <= as_of && as_of < self.waiting_from
    }

    /// A breakdown of this snapshot's data: from its cells when they can answer it, else from
    /// its learners.
    pub fn breakdown(&self, query: &BreakdownQuery) -> Result<Breakdown, QueryError> {
        if query::cells_answer(query) {
            query::breakdown_from_cells(&self.cells, &self.roster, query)
        } else {
            query::breakdown(&self.frame, &self.roster, query, self.held_until)
        }
    }
}
