//! From the wire to the store: everything nigrani receives is turned into domain types here.
//!
//! This crate owns the adapters from each wire format to [`nigrani_domain::LearningEvent`]
//! (native JSON/NDJSON, xAPI, IMS Caliper, Coursera reports), the batch pipeline that validates, de-duplicates and
//! writes a batch with one answer per event, and the roster files (CSV and JSON) with their
//! checks. It writes through the [`nigrani_store::Store`] trait and must not know about HTTP:
//! the API crate maps its errors to statuses.
//!
//! Modules:
//! - [`native`]: the native event format; body splitting and per-event validation.
//! - [`batch`]: [`Ingestor`], limits, per-event outcomes.
//! - [`roster`]: reference data and learner files, parsing, checks, upserts, CSV export.
//! - [`demo`]: a realistic, deterministic demo program (roster and events).
//! - [`course_map`]: platforms' course ids to the program's courses.
//! - [`xapi`]: xAPI statements: validation, and mapping to normalised events.
//! - [`caliper`]: IMS Caliper 1.1 envelopes.
//! - [`coursera`]: Coursera's enrollment reports (API pull and CSV).
//! - [`seed`]: the universities, disciplines and track plans shipped with nigrani.

pub mod batch;
pub mod caliper;
pub mod course_map;
pub mod coursera;
pub mod demo;
pub mod native;
pub mod roster;
pub mod seed;
pub mod xapi;

pub use batch::{BatchReport, EventResult, IngestError, Ingestor, Limits, Outcome};
pub use course_map::CourseMap;
pub use native::BodyFormat;
