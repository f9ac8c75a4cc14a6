//! xAPI (Experience API 1.0.3 and IEEE 9274.1.1, "2.0.0"): statements as a learning record
//! store takes them, and what they mean to the program.
//!
//! - [`validate`]: the specification's rules for a statement, an agent and the formats inside.
//! - [`mapping`]: a statement to the normalised event it becomes (verb, learner, course).
//! - [`refs`]: the agents and activities a statement names, for the statement filters.
//! - [`write`]: a batch validated, completed (id, timestamp, authority, version) and stored
//!   whole or not at all.
//! - [`read`]: the statement queries: one id, or filters with paging, in three formats.

pub mod mapping;
pub mod read;
pub mod refs;
pub mod validate;
pub mod write;
