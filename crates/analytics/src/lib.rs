//! The program's figures, computed from what the store holds, with polars.
//!
//! This crate owns the metric and dimension definitions, the per-learner state kept current from
//! the store's change feed, and the queries over it (breakdowns by any dimensions, as of any
//! moment), plus the disclosure control of partner views. It reads through the
//! [`nigrani_store::Store`] trait and must not know about HTTP or wire formats.
//!
//! Modules:
//! - [`definitions`]: metrics and dimensions — names and meanings, in one place.
//! - [`state`]: the roster as codes, and per-learner / per-course state built from events.
//! - `frame`: the learner frame's and the cells' column names, and the error of a query —
//!   shared below `query` and `live`, so that neither imports the other in a circle.
//! - [`query`]: the learner frame (polars) and breakdowns over it.
//! - [`live`]: the learner frame and its cells, kept current row by row as batches arrive.
//! - [`period`]: days, weeks, months, quarters and fiscal years in Pakistan time; relative periods.
//! - [`series`]: time series of a metric, with target trajectories.
//! - [`funnel`]: the funnel and time-to-completion distribution.
//! - [`targets`]: attainment, pace and projections against track and cohort targets.
//! - [`summary`]: figures with their targets, from one snapshot.
//! - [`engine`]: [`engine::Engine`], which follows the store's change feed by sequence number
//!   (each committed event once, in commit order) and answers queries.
//! - `roster_sync`: roster changes read from the store's roster log and taken in without a
//!   rebuild.
//! - `checkpoint`: the applied events in a compact local file, so that a restart reads them at
//!   disk speed rather than through the database.
//! - [`snapshot`]: the published, immutable view of the state that queries read.
//! - `compute`: where polars work runs — the blocking pool, one computation per core, one
//!   replay at a time.
//! - `error`: [`AnalyticsError`].
//! - [`answers`]: the latest answer per query for polling dashboards, refreshed in the
//!   background.
//! - [`record_key`]: each learner's permanent random key, and a cell's key from its members'.
//! - [`perturbation`]: the cell key method's perturbation table (true count and cell key to the
//!   count a partner sees).
//! - [`disclosure`]: what a partner may see of every answer — the one place that decides it.

pub mod answers;
mod checkpoint;
mod compute;
pub mod definitions;
pub mod disclosure;
pub mod engine;
mod error;
mod frame;
pub mod funnel;
pub mod live;
pub mod period;
pub mod perturbation;
pub mod query;
pub mod record_key;
mod roster_sync;
pub mod series;
pub mod snapshot;
pub mod state;
pub mod summary;
pub mod targets;

pub use definitions::{Dimension, Metric};
pub use engine::{AnalyticsError, Clock, Engine, EngineOptions, Started};
pub use query::{Breakdown, BreakdownQuery, BreakdownRow};
pub use summary::Summary;
