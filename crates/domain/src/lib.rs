//! The vocabulary of the AI Upskilling Program, shared by every other crate.
//!
//! This crate owns the program's types — tracks, provinces, institutions, disciplines, cohorts,
//! learners and the normalised [`LearningEvent`] — together with their validation rules, stable
//! wire names and Urdu labels. It must not know about storage, HTTP or any wire format other than
//! the normalised one: adapters live in `nigrani-ingest`, durability in `nigrani-store`.
//!
//! Modules:
//! - [`clock`]: where "now" comes from — the system clock, or one a test sets.
//! - [`program`]: enumerations with fixed members (track, province, sector, role, gender, and
//!   the access role of an API key).
//! - [`roster`]: reference data and the roster (institutions, disciplines, track plans, cohorts,
//!   learners) and the [`LearnerRef`] by which platforms name a learner.
//! - [`event`]: the normalised learning event, its kinds and its validation.

pub mod clock;
pub mod event;
pub mod program;
pub mod roster;

pub use clock::{Clock, SharedClock};
pub use event::{EventKind, LearningEvent, RejectReason, Rejection};
pub use program::{AccessRole, Gender, Province, Role, Sector, Track};
pub use roster::{Cohort, Discipline, Institution, Learner, LearnerRef, TrackPlan};

/// A value was not one of the names a fixed enumeration accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct UnknownName {
    /// What kind of value was looked up, e.g. `province`.
    pub what: &'static str,
    /// The value that was given.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: String,
}
