//! nigrani's native event format: a JSON array of event objects, or NDJSON (one object a line).
//!
//! ```json
//! {"source": "coursera", "event_id": "c-1", "learner": "coursera:8f3a",
//!  "course_id": "genai-teaching-learning", "kind": "progressed", "progress": 0.4,
//!  "occurred_at": "2026-03-01T10:00:00+05:00"}
//! ```
//! `learner` is `"platform:id"`, or an object `{"platform": "coursera", "id": "8f3a"}`,
//! `{"email": "someone@uni.edu.pk"}` (hashed on arrival) or `{"email_sha256": "<hex>"}`.
//! Optional: `progress` and `score` (0-1), `duration_seconds` (≥ 0). Other fields are kept in the
//! raw payload and otherwise ignored.

use chrono::{DateTime, NaiveDateTime, Utc};
use nigrani_domain::event::{canonical_json, content_hash_of_canonical};
use nigrani_domain::roster::is_valid_key;
use nigrani_domain::{EventKind, LearnerRef, LearningEvent, RejectReason, Rejection};
use serde_json::{Map, Value};

/// How a request body lays out its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of event objects (a single object counts as a batch of one).
    JsonArray,
    /// Newline-delimited JSON: one event object per line; blank lines are ignored.
    Ndjson,
}

/// One item of a batch, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A JSON value, built by a program (the demo, an adapter).
    Json(Value),
    /// One event's text in a request body, parsed only when its turn comes so that a batch
    /// never holds more than one parsed event at a time: an element of a JSON array (known to
    /// be JSON) or an NDJSON line (numbered from 1; it may not be JSON).
    Text { text: &'a [u8], line: Option<usize> },
    /// An event an adapter (xAPI, Caliper, Coursera) already mapped from its wire format; only
    /// the format-free rules ([`LearningEvent::check`]) remain to be checked.
    Event(Box<LearningEvent>),
}

impl Item<'_> {
    /// The item as a JSON value, or what was received and why it is not JSON.
    pub fn into_value(self) -> Result<Value, (String, String)> {
        match self {
            Item::Json(value) => Ok(value),
            Item::Event(event) => serde_json::from_str(&event.raw).map_err(|e| {
                (
                    event.raw.clone(),
                    format!("the event is not valid JSON: {e}"),
                )
            }),
            Item::Text { text, line } => serde_json::from_slice(text).map_err(|e| {
                let message = match line {
                    Some(line) => format!("line {line} is not valid JSON: {e}"),
                    None => format!("the event is not valid JSON: {e}"),
                };
                (String::from_utf8_lossy(text).into_owned(), message)
            }),
        }
    }

    /// The item as text, for a rejection.
    pub fn lossy_text(&self) -> String {
        match self {
            Item::Json(value) => value.to_string(),
            Item::Event(event) => event.raw.clone(),
            Item::Text { text, .. } => String::from_utf8_lossy(text).into_owned(),
        }
    }

    /// Size of the item's text, when it came as text.
    pub fn text_len(&self) -> Option<usize> {
        match self {
            Item::Json(_) | Item::Event(_) => None,
            Item::Text { text, .. } => Some(text.len()),
        }
    }
}

/// Why a whole body could not be split into items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON array of event objects (or one object), not {0}")]
    NotAnArray(&'static str),
    /// More events than one batch may hold; counted while splitting, before any is parsed.
    #[error("the batch holds {count} events; at most {max} are allowed per request")]
    TooManyEvents { count: usize, max: usize },
}

/// Splits a body into at most `max_events` items without parsing the events themselves. A JSON
/// body that does not parse is an error for the whole body (there is no way to tell its events
/// apart); in NDJSON, each line is an item, and a bad line is refused alone later. More than
/// `max_events` items is an error, found while counting, so a body of millions of tiny events
/// costs no more memory than its own bytes.
pub fn split_body(
    body: &[u8],
    format: BodyFormat,
    max_events: usize,
) -> Result<Vec<Item<'_>>, BodyError> {
    let too_many = |count| BodyError::TooManyEvents {
        count,
        max: max_events,
    };
    match format {
        BodyFormat::JsonArray => {
            // One pass checks the syntax without building anything; the elements are then
            // borrowed from the body.
            let whole: &serde_json::value::RawValue = serde_json::from_slice(body)
                .map_err(|e| BodyError::MalformedJson(e.to_string()))?;
            let text = whole.get();
            match text.as_bytes().first() {
                Some(b'[') => {
                    let mut deserializer = serde_json::Deserializer::from_str(text);
                    let (elements, count) = serde::de::DeserializeSeed::deserialize(
                        Elements(max_events),
                        &mut deserializer,
                    )
                    .map_err(|e| BodyError::MalformedJson(e.to_string()))?;
                    if count > max_events {
                        return Err(too_many(count));
                    }
                    Ok(elements
                        .into_iter()
                        .map(|raw| Item::Text {
                            text: raw.get().as_bytes(),
                            line: None,
                        })
                        .collect())
                }
                Some(b'{') => Ok(vec![Item::Text {
                    text: text.as_bytes(),
                    line: None,
                }]),
                Some(b'"') => Err(BodyError::NotAnArray("a string")),
                Some(b't' | b'f') => Err(BodyError::NotAnArray("a boolean")),
                Some(b'n') => Err(BodyError::NotAnArray("null")),
                _ => Err(BodyError::NotAnArray("a number")),
            }
        }
        BodyFormat::Ndjson => {
            let lines = body
                .split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
            let count = lines.clone().count();
            if count > max_events {
                return Err(too_many(count));
            }
            Ok(lines
                .map(|(index, line)| Item::Text {
                    text: line,
                    line: Some(index + 1),
                })
                .collect())
        }
    }
}

/// Reads a JSON array as borrowed elements, keeping at most `.0` of them and counting the rest
/// without building them.
struct Elements(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Elements {
    type Value = (Vec<&'de serde_json::value::RawValue>, usize);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Elements {
    type Value = (Vec<&'de serde_json::value::RawValue>, usize);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0));
        let mut count = 0;
        while kept.len() < self.0 {
            match seq.next_element::<&'de serde_json::value::RawValue>()? {
                Some(raw) => kept.push(raw),
                None => {
                    let count = kept.len();
                    return Ok((kept, count));
                }
            }
            count += 1;
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok((kept, count))
    }
}

/// What a JSON value is, for messages ("must be a string, not a number").
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns one JSON value into a normalised event, or a rejection saying why not.
pub fn parse_event(mut value: Value, now: DateTime<Utc>) -> Result<LearningEvent, Rejection> {
    // `1.0` and `1` are the same number: the fields read as the canonical text does.
    let earlier_content_hash = nigrani_domain::event::earlier_content_hash(&value);
    nigrani_domain::event::normalise_numbers(&mut value);
    // The canonical text is both what is kept and what is hashed: serialised once.
    let raw = canonical_json(&value);
    let reject = |reason: RejectReason, message: String, fields: Option<&Map<String, Value>>| {
        let text = |name: &str| {
            fields
                .and_then(|f| f.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Rejection {
            reason,
            message,
            source: text("source"),
            event_id: text("event_id"),
            raw: raw.clone(),
        }
    };
    let Value::Object(fields) = &value else {
        return Err(reject(
            RejectReason::InvalidField,
            format!("an event must be a JSON object, not {}", json_type(&value)),
            None,
        ));
    };
    let invalid = |message: String| reject(RejectReason::InvalidField, message, Some(fields));
    if nigrani_domain::event::contains_nul(&value) {
        return Err(invalid(
            "text in the event holds the NUL character (U+0000), which nigrani does not store"
                .into(),
        ));
    }

    let source = required_key(fields, "source").map_err(&invalid)?;
    let event_id = required_text(fields, "event_id", 200).map_err(&invalid)?;
    let course_id = required_key(fields, "course_id").map_err(&invalid)?;
    let kind_name = required_text(fields, "kind", 64).map_err(&invalid)?;
    let kind: EventKind = kind_name
        .parse()
        .map_err(|e: nigrani_domain::UnknownName| {
            reject(RejectReason::UnknownKind, e.to_string(), Some(fields))
        })?;
    let learner = parse_learner(fields.get("learner"))
        .map_err(|(reason, message)| reject(reason, message, Some(fields)))?;
    let progress = optional_number(fields, "progress").map_err(&invalid)?;
    let score = optional_number(fields, "score").map_err(&invalid)?;
    let duration_seconds = match fields.get("duration_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
            invalid(format!(
                "`duration_seconds` must be a whole number, got {n}"
            ))
        })?),
        Some(other) => {
            return Err(invalid(format!(
                "`duration_seconds` must be a number, not {}",
                json_type(other)
            )));
        }
    };
    let occurred_at = match fields.get("occurred_at") {
        Some(Value::String(text)) => parse_timestamp(text)
            .map_err(|(reason, message)| reject(reason, message, Some(fields)))?,
        None | Some(Value::Null) => return Err(invalid("`occurred_at` is required".into())),
        Some(other) => {
            return Err(invalid(format!(
                "`occurred_at` must be an RFC 3339 string, not {}",
                json_type(other)
            )));
        }
    };

    let event = LearningEvent {
        source,
        event_id,
        learner,
        course_id,
        kind,
        progress,
        score,
        duration_seconds,
        occurred_at,
        content_hash: content_hash_of_canonical(&raw),
        earlier_content_hash,
        raw: raw.clone(),
    };
    event
        .check(now)
        .map_err(|(reason, message)| reject(reason, message, Some(fields)))?;
    Ok(event)
}

fn required_text(fields: &Map<String, Value>, name: &str, max: usize) -> Result<String, String> {
    match fields.get(name) {
        Some(Value::String(text)) if !text.is_empty() && text.len() <= max => Ok(text.clone()),
        Some(Value::String(_)) => Err(format!("`{name}` must be 1-{max} characters")),
        None | Some(Value::Null) => Err(format!("`{name}` is required")),
        Some(other) => Err(format!(
            "`{name}` must be a string, not {}",
            json_type(other)
        )),
    }
}

fn required_key(fields: &Map<String, Value>, name: &str) -> Result<String, String> {
    let text = required_text(fields, name, 100)?;
    if is_valid_key(&text) {
        Ok(text)
    } else {
        Err(format!(
            "`{name}` must be letters, digits, `-`, `_` or `.`, got `{text}`"
        ))
    }
}

fn optional_number(fields: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` is not a finite number")),
        Some(other) => Err(format!(
            "`{name}` must be a number, not {}",
            json_type(other)
        )),
    }
}

fn parse_learner(value: Option<&Value>) -> Result<LearnerRef, (RejectReason, String)> {
    let invalid = |message: String| (RejectReason::InvalidLearner, message);
    match value {
        Some(Value::String(text)) => LearnerRef::parse(text).map_err(|e| invalid(e.to_string())),
        Some(Value::Object(fields)) => {
            let text = |name: &str| fields.get(name).and_then(Value::as_str);
            if let Some(email) = text("email") {
                if !email.contains('@') {
                    return Err(invalid("`learner.email` is not an e-mail address".into()));
                }
                Ok(LearnerRef::from_email(email))
            } else if let Some(hash) = text("email_sha256") {
                LearnerRef::from_email_sha256(hash).map_err(|e| invalid(e.to_string()))
            } else if let (Some(platform), Some(id)) = (text("platform"), text("id")) {
                LearnerRef::on_platform(platform, id).map_err(|e| invalid(e.to_string()))
            } else {
                Err(invalid(
                    "`learner` needs `platform` and `id`, `email` or `email_sha256`".into(),
                ))
            }
        }
        None | Some(Value::Null) => {
            Err((RejectReason::InvalidField, "`learner` is required".into()))
        }
        Some(other) => Err((
            RejectReason::InvalidField,
            format!(
                "`learner` must be a string or an object, not {}",
                json_type(other)
            ),
        )),
    }
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, (RejectReason, String)> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let without_zone = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok());
    if without_zone {
        Err((
            RejectReason::TimestampWithoutZone,
            format!(
                "`occurred_at` `{text}` has no time zone; add `Z` or an offset such as `+05:00`"
            ),
        ))
    } else {
        Err((
            RejectReason::InvalidTimestamp,
            format!("`occurred_at` `{text}` is not an RFC 3339 timestamp"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
    }

    fn valid() -> Value {
        json!({
            "source": "coursera", "event_id": "c-1", "learner": "coursera:8f3a",
            "course_id": "genai-teaching-learning", "kind": "progressed", "progress": 0.4,
            "occurred_at": "2026-03-01T10:00:00+05:00"
        })
    }

    fn rejected(change: impl FnOnce(&mut Map<String, Value>)) -> Rejection {
        let mut value = valid();
        change(value.as_object_mut().unwrap());
        parse_event(value, now()).unwrap_err()
    }

    #[test]
    fn a_valid_event_is_normalised() {
        let event = parse_event(valid(), now()).unwrap();
        assert_eq!(event.kind, EventKind::Progressed);
        assert_eq!(
            event.occurred_at,
            Utc.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).unwrap()
        );
        assert_eq!(event.learner.as_str(), "coursera:8f3a");
        assert_eq!(event.progress, Some(0.4));
    }

    #[test]
    fn learner_forms_are_accepted() {
        for learner in [
            json!({"platform": "coursera", "id": "8f3a"}),
            json!("coursera:8f3a"),
        ] {
            let mut value = valid();
            value["learner"] = learner;
            assert_eq!(
                parse_event(value, now()).unwrap().learner.as_str(),
                "coursera:8f3a"
            );
        }
        let mut value = valid();
        value["learner"] = json!({"email": "A@Uni.edu.pk"});
        let by_email = parse_event(value, now()).unwrap().learner;
        assert_eq!(by_email, LearnerRef::from_email("a@uni.edu.pk"));
    }

    #[test]
    fn each_bad_field_has_its_reason() {
        type Change = Box<dyn FnOnce(&mut Map<String, Value>)>;
        let cases: Vec<(RejectReason, Change)> = vec![
            (
                RejectReason::UnknownKind,
                Box::new(|f| {
                    f.insert("kind".into(), json!("graduated"));
                }),
            ),
            (
                RejectReason::OutOfRange,
                Box::new(|f| {
                    f.insert("progress".into(), json!(1.5));
                }),
            ),
            (
                RejectReason::OutOfRange,
                Box::new(|f| {
                    f.insert("score".into(), json!(-0.1));
                }),
            ),
            (
                RejectReason::OutOfRange,
                Box::new(|f| {
                    f.insert("duration_seconds".into(), json!(-5));
                }),
            ),
            (
                RejectReason::InvalidField,
                Box::new(|f| {
                    f.insert("progress".into(), json!("half"));
                }),
            ),
            (
                RejectReason::InvalidField,
                Box::new(|f| {
                    f.remove("source");
                }),
            ),
            (
                RejectReason::InvalidField,
                Box::new(|f| {
                    f.insert("course_id".into(), json!("has space"));
                }),
            ),
            (
                RejectReason::TimestampWithoutZone,
                Box::new(|f| {
                    f.insert("occurred_at".into(), json!("2026-03-01T10:00:00"));
                }),
            ),
            (
                RejectReason::InvalidTimestamp,
                Box::new(|f| {
                    f.insert("occurred_at".into(), json!("yesterday"));
                }),
            ),
            (
                RejectReason::TimestampInFuture,
                Box::new(|f| {
                    f.insert("occurred_at".into(), json!("2026-03-12T12:00:00Z"));
                }),
            ),
            (
                RejectReason::InvalidLearner,
                Box::new(|f| {
                    f.insert("learner".into(), json!("no-platform"));
                }),
            ),
            (
                RejectReason::InvalidField,
                Box::new(|f| {
                    f.remove("learner");
                }),
            ),
        ];
        for (reason, change) in cases {
            let rejection = rejected(change);
            assert_eq!(rejection.reason, reason, "{}", rejection.message);
            assert_eq!(rejection.event_id.as_deref(), Some("c-1"));
        }
    }

    #[test]
    fn an_unreadable_event_id_is_left_out_of_the_rejection() {
        let rejection = rejected(|f| {
            f.insert("event_id".into(), json!(17));
        });
        assert_eq!(rejection.reason, RejectReason::InvalidField);
        assert_eq!(rejection.event_id, None);
        assert_eq!(rejection.source.as_deref(), Some("coursera"));
    }

    #[test]
    fn a_timestamp_within_a_day_ahead_is_accepted() {
        let mut value = valid();
        value["occurred_at"] = json!("2026-03-11T11:00:00Z");
        assert!(parse_event(value, now()).is_ok());
    }

    #[test]
    fn ndjson_keeps_good_lines_beside_bad_ones() {
        let body = b"{\"a\":1}\n\n{oops\n  \n[1]\n";
        let items = split_body(body, BodyFormat::Ndjson, 10).unwrap();
        assert_eq!(items.len(), 3);
        let values: Vec<_> = items.into_iter().map(Item::into_value).collect();
        assert!(
            matches!(&values[1], Err((raw, message)) if raw == "{oops" && message.starts_with("line 3"))
        );
        assert!(matches!(&values[2], Ok(Value::Array(_))));
        assert!(parse_event(json!([1]), now()).is_err());
    }

    #[test]
    fn json_bodies_must_be_arrays_or_objects() {
        let items = split_body(b"[{}, {\"a\": [1, 2]}]", BodyFormat::JsonArray, 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].text_len(), Some(13));
        assert_eq!(
            split_body(b" {} ", BodyFormat::JsonArray, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            split_body(b"[{}", BodyFormat::JsonArray, 10),
            Err(BodyError::MalformedJson(_))
        ));
        for (body, kind) in [
            (&b"42"[..], "a number"),
            (b"-1", "a number"),
            (b"\"x\"", "a string"),
            (b"true", "a boolean"),
            (b"null", "null"),
        ] {
            assert_eq!(
                split_body(body, BodyFormat::JsonArray, 10),
                Err(BodyError::NotAnArray(kind))
            );
        }
    }

    #[test]
    fn the_event_limit_is_counted_while_splitting() {
        let array = format!("[{}{{}}]", "{},".repeat(11));
        assert_eq!(
            split_body(array.as_bytes(), BodyFormat::JsonArray, 10),
            Err(BodyError::TooManyEvents { count: 12, max: 10 })
        );
        assert_eq!(
            split_body(array.as_bytes(), BodyFormat::JsonArray, 12)
                .unwrap()
                .len(),
            12
        );
        let lines = "{}\n".repeat(11);
        assert_eq!(
            split_body(lines.as_bytes(), BodyFormat::Ndjson, 10),
            Err(BodyError::TooManyEvents { count: 11, max: 10 })
        );
        assert_eq!(
            split_body(b"[]", BodyFormat::JsonArray, 10).unwrap().len(),
            0
        );
    }

    #[test]
    fn nul_characters_are_refused_as_a_field_error() {
        let mut value = valid();
        value["course_id"] = json!("ai\u{0}x");
        let rejection = parse_event(value, now()).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::InvalidField);
        assert!(rejection.message.contains("NUL"), "{}", rejection.message);
        let mut value = valid();
        value["extra"] = json!({"note": "\u{0}"});
        assert!(parse_event(value, now()).is_err());
    }

    #[test]
    fn a_resent_event_with_numbers_spelled_otherwise_has_the_same_hash() {
        let first = parse_event(valid(), now()).unwrap();
        let mut value = valid();
        value["progress"] = json!(0.4);
        value["duration_seconds"] = json!(60);
        let mut other = valid();
        other["duration_seconds"] = json!(60.0);
        assert_ne!(
            parse_event(value.clone(), now()).unwrap().content_hash,
            first.content_hash
        );
        assert_eq!(
            parse_event(value, now()).unwrap().content_hash,
            parse_event(other, now()).unwrap().content_hash
        );
    }
}
