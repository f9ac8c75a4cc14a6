//! The normalised learning event and the reasons an incoming event can be refused.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LearnerRef;
use crate::roster::hex;

/// How far in the future an `occurred_at` may lie before the event is refused. Platforms' clocks
/// drift and time zones get mislabelled; a day covers both without admitting nonsense.
pub const MAX_CLOCK_SKEW: Duration = Duration::days(1);

/// What happened to a learner in a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Enrolled,
    Started,
    Progressed,
    ModuleCompleted,
    AssessmentPassed,
    AssessmentFailed,
    CourseCompleted,
    CertificateEarned,
    Withdrawn,
    SessionAttended,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [EventKind] = &[
        EventKind::Enrolled,
        EventKind::Started,
        EventKind::Progressed,
        EventKind::ModuleCompleted,
        EventKind::AssessmentPassed,
        EventKind::AssessmentFailed,
        EventKind::CourseCompleted,
        EventKind::CertificateEarned,
        EventKind::Withdrawn,
        EventKind::SessionAttended,
    ];

    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enrolled => "enrolled",
            EventKind::Started => "started",
            EventKind::Progressed => "progressed",
            EventKind::ModuleCompleted => "module_completed",
            EventKind::AssessmentPassed => "assessment_passed",
            EventKind::AssessmentFailed => "assessment_failed",
            EventKind::CourseCompleted => "course_completed",
            EventKind::CertificateEarned => "certificate_earned",
            EventKind::Withdrawn => "withdrawn",
            EventKind::SessionAttended => "session_attended",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = crate::UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| crate::UnknownName {
                what: "event kind",
                value: value.to_owned(),
                expected: EventKind::ALL
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A learning event after validation, in nigrani's normalised form.
///
/// `(source, event_id)` is the idempotency key; `content_hash` tells a replay (same hash) from a
/// conflict (same key, other content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningEvent {
    /// The platform or feed that sent the event, e.g. `coursera`.
    pub source: String,
    /// The sender's id for the event, unique within `source`.
    pub event_id: String,
    /// Who the event is about.
    pub learner: LearnerRef,
    /// The course the event concerns.
    pub course_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Share of the course done, 0-1.
    pub progress: Option<f64>,
    /// Assessment score, 0-1.
    pub score: Option<f64>,
    /// Time spent, in seconds.
    pub duration_seconds: Option<i64>,
    /// When it happened, by the platform's clock.
    pub occurred_at: DateTime<Utc>,
    /// The payload as received, kept for audit and re-processing.
    pub raw: String,
    /// SHA-256 (hex) of the payload's canonical JSON.
    pub content_hash: String,
}

/// SHA-256 (hex) of a payload's canonical JSON: object keys sorted, no insignificant whitespace,
/// so that re-sending the same event with its fields in another order is still a replay.
pub fn content_hash(payload: &serde_json::Value) -> String {
    content_hash_of_canonical(&canonical_json(payload))
}

/// The canonical JSON text of a payload: keys sorted, no insignificant whitespace.
pub fn canonical_json(payload: &serde_json::Value) -> String {
    // serde_json's map is a BTreeMap (no `preserve_order`), so serialising sorts keys.
    payload.to_string()
}

/// SHA-256 (hex) of text that is already canonical JSON (see [`canonical_json`]).
pub fn content_hash_of_canonical(canonical: &str) -> String {
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// Why an incoming event was refused. The wire name is the machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The line or body is not JSON.
    MalformedJson,
    /// A field is missing or has the wrong JSON type.
    InvalidField,
    /// `kind` is not one of the known event kinds.
    UnknownKind,
    /// `progress` or `score` lies outside 0-1, or `duration_seconds` is negative.
    OutOfRange,
    /// `occurred_at` has no time zone or offset.
    TimestampWithoutZone,
    /// `occurred_at` is not an RFC 3339 timestamp.
    InvalidTimestamp,
    /// `occurred_at` lies more than a day in the future.
    TimestampInFuture,
    /// The learner reference is not usable.
    InvalidLearner,
    /// The event id was seen before with other content; the stored event was kept.
    Conflict,
    /// The event's `source` is not the one the sending ingest key is bound to.
    SourceMismatch,
}

impl RejectReason {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::TimestampWithoutZone => "timestamp_without_zone",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::InvalidLearner => "invalid_learner",
            RejectReason::Conflict => "conflict",
            RejectReason::SourceMismatch => "source_mismatch",
        }
    }
}

impl std::str::FromStr for RejectReason {
    type Err = crate::UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        const ALL: &[RejectReason] = &[
            RejectReason::MalformedJson,
            RejectReason::InvalidField,
            RejectReason::UnknownKind,
            RejectReason::OutOfRange,
            RejectReason::TimestampWithoutZone,
            RejectReason::InvalidTimestamp,
            RejectReason::TimestampInFuture,
            RejectReason::InvalidLearner,
            RejectReason::Conflict,
            RejectReason::SourceMismatch,
        ];
        ALL.iter()
            .copied()
            .find(|reason| reason.code() == value)
            .ok_or_else(|| crate::UnknownName {
                what: "rejection reason",
                value: value.to_owned(),
                expected: ALL.iter().map(|r| r.code()).collect::<Vec<_>>().join(", "),
            })
    }
}

/// Something received that could not become an event. Kept, with its reason, for an admin to
/// list: nothing received is ever dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Why it was refused.
    pub reason: RejectReason,
    /// A sentence for people: which field, what was wrong.
    pub message: String,
    /// The `source` field, when it could be read.
    pub source: Option<String>,
    /// The `event_id` field, when it could be read.
    pub event_id: Option<String>,
    /// What was received, as text.
    pub raw: String,
}

impl LearningEvent {
    /// Checks the rules that do not depend on the wire format: ranges and the clock.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), (RejectReason, String)> {
        for (name, value) in [("progress", self.progress), ("score", self.score)] {
            if let Some(value) = value
                && !(0.0..=1.0).contains(&value)
            {
                return Err((
                    RejectReason::OutOfRange,
                    format!("`{name}` must lie between 0 and 1, got {value}"),
                ));
            }
        }
        if let Some(seconds) = self.duration_seconds
            && seconds < 0
        {
            return Err((
                RejectReason::OutOfRange,
                format!("`duration_seconds` must not be negative, got {seconds}"),
            ));
        }
        if self.occurred_at > now + MAX_CLOCK_SKEW {
            return Err((
                RejectReason::TimestampInFuture,
                format!(
                    "`occurred_at` {} lies more than a day after the server's clock ({})",
                    self.occurred_at.to_rfc3339(),
                    now.to_rfc3339()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str("{ \"b\": [1, 2],\n \"a\": 1 }").unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":[1,2]}"#).unwrap();
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn kind_and_reason_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(
            "timestamp_in_future".parse::<RejectReason>(),
            Ok(RejectReason::TimestampInFuture)
        );
    }
}
