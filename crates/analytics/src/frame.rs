//! What the learner frame and its cells are made of, shared by the queries over them
//! ([`crate::query`]) and the code that keeps them current ([`crate::live`]): column names, and
//! the error of a query.

use polars::prelude::PolarsError;

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("the computation failed: {0}")]
    Engine(String),
}

impl From<PolarsError> for QueryError {
    fn from(e: PolarsError) -> Self {
        QueryError::Engine(e.to_string())
    }
}

/// Column names of the learner frame.
pub(crate) mod columns {
    pub(crate) const ENROLLED_AT: &str = "enrolled_at";
    pub(crate) const STARTED_AT: &str = "started_at";
    pub(crate) const COMPLETED_AT: &str = "completed_at";
    pub(crate) const CERTIFIED_AT: &str = "certified_at";
    pub(crate) const WITHDRAWN_AT: &str = "withdrawn_at";
    pub(crate) const LAST_ACTIVITY: &str = "last_activity";
    pub(crate) const PROGRESS: &str = "progress";
    pub(crate) const SCORE: &str = "score";
    pub(crate) const DAYS_TO_COMPLETE: &str = "days_to_complete";
    pub(crate) const SOFT: &str = "soft";
    /// The learner's record key (see [`crate::record_key`]).
    pub(crate) const RECORD_KEY: &str = "record_key";
}

/// Column names of the cells.
pub(crate) mod cell {
    pub(crate) const LEARNERS: &str = "c_learners";
    pub(crate) const STARTED: &str = "c_started";
    pub(crate) const COMPLETED: &str = "c_completed";
    pub(crate) const CERTIFIED: &str = "c_certified";
    pub(crate) const TRAINED: &str = "c_trained";
    pub(crate) const WITHDRAWN: &str = "c_withdrawn";
    pub(crate) const PROGRESS: &str = "c_progress_sum";
    pub(crate) const SCORE: &str = "c_score_sum";
    pub(crate) const SCORED: &str = "c_scored";
    // The sums of record keys of the members each count above counts.
    pub(crate) const LEARNERS_KEY: &str = "k_learners";
    pub(crate) const STARTED_KEY: &str = "k_started";
    pub(crate) const COMPLETED_KEY: &str = "k_completed";
    pub(crate) const CERTIFIED_KEY: &str = "k_certified";
    pub(crate) const TRAINED_KEY: &str = "k_trained";
    pub(crate) const WITHDRAWN_KEY: &str = "k_withdrawn";
    pub(crate) const SCORED_KEY: &str = "k_scored";
}
