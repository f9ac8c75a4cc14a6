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
    /// The hash the payload had before numbers were canonical (`1.0` and `1` told apart), when
    /// that differs: an event stored then with this hash is the same event, not a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_content_hash: Option<String>,
}

/// SHA-256 (hex) of a payload's canonical JSON: object keys sorted, no insignificant whitespace,
/// so that re-sending the same event with its fields in another order is still a replay.
pub fn content_hash(payload: &serde_json::Value) -> String {
    content_hash_of_canonical(&canonical_json(payload))
}

/// The canonical JSON text of a payload: keys sorted, no insignificant whitespace, and a number
/// written the same way whatever its spelling — `1`, `1.0` and `1e0` are all `1` — so that a
/// platform re-sending an event with its numbers formatted differently is still a replay.
pub fn canonical_json(payload: &serde_json::Value) -> String {
    // serde_json's map is a BTreeMap (no `preserve_order`), so serialising sorts keys.
    if has_integral_float(payload) {
        let mut normalised = payload.clone();
        normalise_numbers(&mut normalised);
        normalised.to_string()
    } else {
        payload.to_string()
    }
}

/// The hash a payload had before numbers were canonical, when its text differed then: events
/// stored by earlier versions carry it.
pub fn earlier_content_hash(payload: &serde_json::Value) -> Option<String> {
    has_integral_float(payload).then(|| content_hash_of_canonical(&payload.to_string()))
}

/// Floats up to this magnitude are integers exactly (2^53).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

fn integral(number: &serde_json::Number) -> Option<i64> {
    let value = number.as_f64().filter(|_| number.is_f64())?;
    (value.fract() == 0.0 && value.abs() <= EXACT_INTEGER_LIMIT).then_some(value as i64)
}

fn has_integral_float(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => integral(n).is_some(),
        Value::Array(items) => items.iter().any(has_integral_float),
        Value::Object(fields) => fields.values().any(has_integral_float),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// Writes every float that is an exact integer (`1.0`, `1e0`) as that integer, as canonical JSON
/// does, so that the event's fields read the same as its canonical text.
pub fn normalise_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(whole) = integral(n) {
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_numbers),
        Value::Object(fields) => fields.values_mut().for_each(normalise_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// Whether any text of a payload (a string or an object key) holds the NUL character, which
/// PostgreSQL cannot store in text: such an event is refused on every backend alike.
pub fn contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
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
    /// One event's text is larger than the per-event limit.
    EventTooLarge,
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
            RejectReason::EventTooLarge => "event_too_large",
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
            RejectReason::EventTooLarge,
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

impl Rejection {
    /// The rejection with every NUL character replaced by U+FFFD: what was received is kept on
    /// every backend, and PostgreSQL cannot hold NUL in text. Canonical JSON already escapes
    /// NUL; this is for text that is not JSON (a malformed line, a field quoted in a message).
    pub fn storable(mut self) -> Self {
        fn clean(text: &mut String) {
            if text.contains('\0') {
                *text = text.replace('\0', "\u{FFFD}");
            }
        }
        clean(&mut self.message);
        clean(&mut self.raw);
        if let Some(source) = &mut self.source {
            clean(source);
        }
        if let Some(event_id) = &mut self.event_id {
            clean(event_id);
        }
        self
    }
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
    fn numbers_are_canonical_whatever_their_spelling() {
        let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let one = content_hash(&parse(r#"{"progress":1,"n":[2]}"#));
        for spelling in [
            r#"{"progress":1.0,"n":[2.0]}"#,
            r#"{"progress":1e0,"n":[2]}"#,
            r#"{"progress":10e-1,"n":[0.2e1]}"#,
        ] {
            assert_eq!(content_hash(&parse(spelling)), one, "{spelling}");
        }
        assert_ne!(content_hash(&parse(r#"{"progress":0.5,"n":[2]}"#)), one);
        assert_eq!(
            canonical_json(&parse(r#"{"a":-0.0,"b":0.25}"#)),
            r#"{"a":0,"b":0.25}"#
        );
        // Past 2^53 a float is not an exact integer; it keeps its float form.
        assert_eq!(canonical_json(&parse("[1e300]")), "[1e+300]");
    }

    #[test]
    fn the_earlier_hash_is_that_of_the_text_as_sent() {
        let sent: serde_json::Value = serde_json::from_str(r#"{"progress":1.0}"#).unwrap();
        assert_eq!(
            earlier_content_hash(&sent),
            Some(content_hash_of_canonical(r#"{"progress":1.0}"#))
        );
        assert_ne!(earlier_content_hash(&sent), Some(content_hash(&sent)));
        let plain: serde_json::Value = serde_json::from_str(r#"{"progress":0.5}"#).unwrap();
        assert_eq!(earlier_content_hash(&plain), None);
    }

    #[test]
    fn nul_characters_are_found_and_made_storable() {
        let value = serde_json::json!({"a": [{"b\u{0}": 1}]});
        assert!(contains_nul(&value));
        assert!(contains_nul(&serde_json::json!(["x\u{0}y"])));
        assert!(!contains_nul(&serde_json::json!({"a": "b"})));
        let rejection = Rejection {
            reason: RejectReason::MalformedJson,
            message: "bad \0".into(),
            source: Some("s\0".into()),
            event_id: None,
            raw: "\0{".into(),
        }
        .storable();
        assert!(!format!("{rejection:?}").contains("\\0"));
        assert_eq!(rejection.raw, "\u{FFFD}{");
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
