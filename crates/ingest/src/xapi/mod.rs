//! xAPI (Experience API 1.0.3 and IEEE 9274.1.1, "2.0.0"): statements as a learning record
//! store takes them.
//!
//! - [`validate`]: the specification's rules for a statement, an agent and the formats inside.
pub mod validate;
