//! IMS Caliper 1.1 envelopes and the events in them, mapped to normalised events.
//!
//! A sensor posts one envelope per request (`POST /caliper/v1p1/events`):
//! ```json
//! {"sensor": "https://lms.example.edu.pk/caliper/sensor", "sendTime": "2026-03-02T05:00:01.000Z",
//!  "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1",
//!  "data": [{"@context": "http://purl.imsglobal.org/ctx/caliper/v1p1",
//!            "id": "urn:uuid:…", "type": "NavigationEvent", "action": "NavigatedTo",
//!            "actor": "https://lms.example.edu.pk/users/554433", "object": "…",
//!            "eventTime": "2026-03-02T04:59:58.120Z"}]}
//! ```
//! [`read_envelope`] checks the envelope and every item of `data` and maps the events that mean
//! something to the program; the others are counted in [`Mapped::ignored`]. The envelope is one
//! unit: one invalid item refuses it whole, with a sentence naming `data[i]` and the field, and
//! the API answers 400 ([`EnvelopeError::Malformed`]) or 422
//! ([`EnvelopeError::UnsupportedVersion`]). This module knows no HTTP; the route decides
//! statuses, the content type (with [`is_caliper_content_type`]) and the body size.
//!
//! # The envelope
//! - It holds exactly `sensor`, `sendTime`, `dataVersion` and `data`, each once. The
//!   specification permits no custom envelope properties (an event's `extensions` is Caliper's
//!   place for them), so another key is refused. A key repeated in any object of the body is
//!   refused too ("each property MUST be referenced only once"): which `actor` was meant?
//! - `dataVersion` must be [`DATA_VERSION`]. Any other value is unsupported, and it is checked
//!   before the rest, so a Caliper 1.0 or 1.2 sensor is told what is wrong rather than that its
//!   envelope is broken. Caliper 1.0 envelopes had no `dataVersion`: one without it whose items
//!   name another Caliper context is unsupported as well; without it otherwise, malformed.
//! - `sensor` is a non-empty string (an IRI is recommended, not required); `sendTime` an
//!   ISO 8601 time with an offset (Caliper writes `Z`); `data` an array of *one or more* items.
//! - The body must be UTF-8 JSON; a leading byte-order mark is tolerated.
//!
//! # Items of `data`
//! An item whose `type` ends in `Event` is an event; any other is an entity *describe* (a
//! `Person`, a `CourseSection` sent on its own), which needs an `id` and is counted as ignored.
//! Where an item has `@context`, it must be the Caliper 1.1 context IRI, or an array whose last
//! member is. An event needs:
//! - `id`: a UUID URN, `urn:uuid:<UUID>` (any UUID version); it becomes the `event_id`;
//! - `type`, and `action` among the actions Caliper 1.1 defines for that type (deprecated ones
//!   included: they are discouraged, not forbidden); the generic `Event` takes any action of the
//!   vocabulary, and an event type Caliper does not define takes any action;
//! - `actor` and `object`: an id string, or an entity object with `id` and `type`;
//! - `eventTime`: ISO 8601 with an offset, stored in UTC;
//! - `extensions`, when present, an object; the other entity-valued properties (`group`,
//!   `generated`, `target`, `edApp`, `referrer`, `membership`, `session`, `federatedSession`),
//!   when present, an id string or an object.
//!
//! Entity ids are checked for what nigrani stores (1-2,048 characters, no control characters,
//! no surrounding spaces), not for IRI syntax: real sensors send opaque ids (Open edX sends bare
//! UUIDs for people) and an opaque id names a learner as well as an IRI does. Properties the
//! model does not define are kept in `raw` and otherwise ignored.
//!
//! # Mapping
//! | `type` | `action` | kind | score, duration |
//! |---|---|---|---|
//! | `GradeEvent` | `Graded` | `progressed` | `generated.scoreGiven / maxScore`; `object.duration` |
//! | `AssessmentEvent` | `Started`, `Restarted`, `Resumed` | `started` | `generated.duration` |
//! | `AssessmentEvent` | `Submitted` | `progressed` | `generated.duration` |
//! | `AssessmentItemEvent` | `Started` | `started` | `generated.duration` |
//! | `AssessmentItemEvent` | `Completed` | `progressed` | `generated.duration` |
//! | `NavigationEvent` | `NavigatedTo` | `started` | — |
//! | `ToolUseEvent` | `Used` | `started` | — |
//! | anything else | | ignored (counted) | |
//!
//! The rule: an event becomes the weakest kind that is surely true of it. `started` says "the
//! learner was at work in the course then" (the program's *started* and *active* need no more);
//! `progressed` says a piece of work was handed in or scored. Caliper carries no pass mark and no
//! pass/fail verdict, so a grade is never `assessment_passed` or `assessment_failed`: inventing
//! a threshold would mislabel every course whose pass mark differs. The score is kept instead
//! (the learner's best score is what the metrics use), and a pass mark, once the program sets
//! one per course, can be applied to it. Caliper has no share-of-course figure, so `progress` is
//! never set. `Paused`, `Reset` and `Skipped` are not learning, and the other profiles (media,
//! reading, forums, sessions, annotation, assignable) are left out for now.
//!
//! A grade's score is `scoreGiven / maxScore` of the generated `Score` (`maxScore` falling back
//! to the graded Attempt's `assignable.maxScore`), held to 0-1: credit above the maximum counts
//! as full marks (Canvas sends `scoreGiven` 5 of `maxScore` 1), a penalty below zero as none.
//! Without both numbers, or with a maximum of zero, the grade has no score. A duration is an
//! ISO 8601 duration (`PT40M12S`); one counting years or months, which have no fixed length in
//! seconds, is left unset.
//!
//! **Learner**: the `actor`'s id, as `source:id` ([`LearnerRef::on_platform`], at most 200
//! characters) — except for a `GradeEvent`, whose actor is the grader: there it is the graded
//! Attempt's `assignee` (or, failing that, the generated Score's `attempt.assignee`); a grade
//! naming neither is refused, since it cannot be anyone's. **Course**: the event's `group` (a
//! `CourseSection` or `CourseOffering`) when present, otherwise the outermost `isPartOf` of the
//! object (of a grade's `assignable`), otherwise the object itself, resolved through the
//! [`CourseMap`]. **Raw**: the event object's canonical JSON; its hash is the content hash.

use chrono::{DateTime, NaiveDateTime, Utc};
use nigrani_domain::event::{canonical_json, content_hash_of_canonical, normalise_numbers};
use nigrani_domain::{EventKind, LearnerRef, LearningEvent};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::course_map::CourseMap;
use crate::native::{Item, json_type};

/// The one `dataVersion` (and event `@context`) taken: the Caliper 1.1 JSON-LD context IRI.
pub const DATA_VERSION: &str = "http://purl.imsglobal.org/ctx/caliper/v1p1";

/// What every Caliper context IRI starts with, whatever its version.
const CONTEXT_PREFIX: &str = "http://purl.imsglobal.org/ctx/caliper/";

/// The properties of an envelope; the specification allows no others.
const ENVELOPE_KEYS: [&str; 4] = ["sensor", "sendTime", "dataVersion", "data"];

/// Longest entity id kept: the specification's minimum supported length for ids.
const MAX_ID_CHARS: usize = 2048;

/// How far up an `isPartOf` chain the course is looked for.
const MAX_PART_OF_DEPTH: usize = 16;

/// Event properties that hold an entity, beyond `actor` and `object`.
const OPTIONAL_ENTITIES: [&str; 8] = [
    "target",
    "generated",
    "edApp",
    "referrer",
    "group",
    "membership",
    "session",
    "federatedSession",
];

/// Every action term of Caliper 1.1 (its Appendix A), for the generic `Event`. Where the
/// specification spells a term two ways, both are taken.
const ACTIONS: &[&str] = &[
    "Abandoned",
    "Activated",
    "Added",
    "Attached",
    "Bookmarked",
    "ChangedResolution",
    "ChangedSize",
    "ChangedSpeed",
    "ChangedVolume",
    "Classified",
    "ClosedPopout",
    "Commented",
    "Completed",
    "Created",
    "Deactivated",
    "Deleted",
    "Described",
    "DisabledClosedCaptioning",
    "Disliked",
    "EnabledClosedCaptioning",
    "Ended",
    "EnteredFullScreen",
    "EnteredFullscreen",
    "ExitedFullScreen",
    "ExitedFullscreen",
    "ForwardedTo",
    "Graded",
    "Hid",
    "Highlighted",
    "Identified",
    "JumpedTo",
    "Liked",
    "Linked",
    "LoggedIn",
    "LoggedOut",
    "MarkedAsRead",
    "MarkedAsUnread",
    "MarkedAsUnRead",
    "Modified",
    "Muted",
    "NavigatedTo",
    "OpenedPopout",
    "Paused",
    "Posted",
    "Questioned",
    "Ranked",
    "Recommended",
    "Removed",
    "Reset",
    "Restarted",
    "Resumed",
    "Retrieved",
    "Reviewed",
    "Rewound",
    "Searched",
    "Shared",
    "Showed",
    "Skipped",
    "Started",
    "Submitted",
    "Subscribed",
    "Tagged",
    "TimedOut",
    "Unmuted",
    "Unsubscribed",
    "Used",
    "Viewed",
];

/// The actions Caliper 1.1 allows for each event type it defines, deprecated ones included.
fn actions_of(event_type: &str) -> Option<&'static [&'static str]> {
    Some(match event_type {
        "Event" => ACTIONS,
        "AnnotationEvent" => &[
            "Bookmarked",
            "Highlighted",
            "Shared",
            "Tagged",
            "Attached",
            "Classified",
            "Commented",
            "Described",
            "Disliked",
            "Identified",
            "Liked",
            "Linked",
            "Questioned",
            "Ranked",
            "Recommended",
            "Subscribed",
        ],
        "AssessmentEvent" => &[
            "Started",
            "Paused",
            "Resumed",
            "Restarted",
            "Reset",
            "Submitted",
        ],
        "AssessmentItemEvent" => &["Started", "Skipped", "Completed", "Reviewed", "Viewed"],
        "AssignableEvent" => &[
            "Activated",
            "Deactivated",
            "Started",
            "Completed",
            "Submitted",
            "Reviewed",
            "Abandoned",
            "Hid",
            "Showed",
        ],
        "ForumEvent" => &["Subscribed", "Unsubscribed"],
        "GradeEvent" | "OutcomeEvent" => &["Graded"],
        "MediaEvent" => &[
            "Started",
            "Ended",
            "Paused",
            "Resumed",
            "Restarted",
            "ForwardedTo",
            "JumpedTo",
            "ChangedResolution",
            "ChangedSize",
            "ChangedSpeed",
            "ChangedVolume",
            "EnabledClosedCaptioning",
            "DisabledClosedCaptioning",
            "EnteredFullScreen",
            "EnteredFullscreen",
            "ExitedFullScreen",
            "ExitedFullscreen",
            "Muted",
            "Unmuted",
            "OpenedPopout",
            "ClosedPopout",
            "Rewound",
        ],
        "MessageEvent" | "ThreadEvent" => {
            &["MarkedAsRead", "MarkedAsUnread", "MarkedAsUnRead", "Posted"]
        }
        "NavigationEvent" => &["NavigatedTo"],
        "ReadingEvent" => &["NavigatedTo", "Searched", "Viewed"],
        "SessionEvent" => &["LoggedIn", "LoggedOut", "TimedOut"],
        "ToolUseEvent" => &["Used"],
        "ViewEvent" => &["Viewed"],
        _ => return None,
    })
}

/// What an event means to the program; `None` when nothing (see the module's table).
fn kind_for(event_type: &str, action: &str) -> Option<EventKind> {
    match (event_type, action) {
        ("GradeEvent", "Graded")
        | ("AssessmentEvent", "Submitted")
        | ("AssessmentItemEvent", "Completed") => Some(EventKind::Progressed),
        ("AssessmentEvent", "Started" | "Restarted" | "Resumed")
        | ("AssessmentItemEvent", "Started")
        | ("NavigationEvent", "NavigatedTo")
        | ("ToolUseEvent", "Used") => Some(EventKind::Started),
        _ => None,
    }
}

/// Why an envelope was refused as a whole. The message is a sentence for the sensor's
/// developers; an item's fault names it as `data[i]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not a Caliper 1.1 envelope of valid events and entities (the API answers
    /// 400 Bad Request).
    #[error("{0}")]
    Malformed(String),
    /// The envelope is of a Caliper version other than 1.1 (the API answers 422 Unprocessable
    /// Entity, as the specification asks).
    #[error("{0}")]
    UnsupportedVersion(String),
}

impl EnvelopeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Malformed(_) => "malformed_caliper_envelope",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_caliper_version",
        }
    }

    /// The sentence saying what is wrong.
    pub fn message(&self) -> &str {
        match self {
            EnvelopeError::Malformed(message) | EnvelopeError::UnsupportedVersion(message) => {
                message
            }
        }
    }
}

/// What an envelope held, mapped. `events` may be empty — an envelope of entity describes,
/// logins and the like — and the batch pipeline refuses an empty batch, so a route answers such
/// an envelope as received without handing it on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// The events that mean something to the program, in envelope order.
    pub events: Vec<LearningEvent>,
    /// Valid items with no program meaning: entity describes, and events of other types or
    /// actions.
    pub ignored: usize,
}

impl Mapped {
    /// The events as items for the batch pipeline ([`crate::Ingestor::ingest_items`]).
    pub fn into_items(self) -> Vec<Item<'static>> {
        self.events
            .into_iter()
            .map(|event| Item::Event(Box::new(event)))
            .collect()
    }
}

/// Whether a `Content-Type` header is one a Caliper 1.1 endpoint takes: `application/json`,
/// with or without parameters. The specification requires exactly that media type of sensors
/// and asks endpoints to answer any other with 415, so `application/ld+json` is not taken.
pub fn is_caliper_content_type(header: &str) -> bool {
    let essence = header
        .split_once(';')
        .map_or(header, |(essence, _)| essence);
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// Reads a Caliper 1.1 envelope: its events mapped to normalised events of `source`, with
/// course ids resolved through `courses`, and a count of the valid items that mean nothing to
/// the program. Any invalid item refuses the envelope.
pub fn read_envelope(
    body: &[u8],
    source: &str,
    courses: &CourseMap,
) -> Result<Mapped, EnvelopeError> {
    use EnvelopeError::Malformed;

    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value =
        parse_strict(body).map_err(|e| Malformed(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(envelope) = value else {
        return Err(Malformed(format!(
            "the body is {}, not a Caliper envelope: send events and entities inside \
             {{\"sensor\": …, \"sendTime\": …, \"dataVersion\": \"{DATA_VERSION}\", \"data\": [ … ]}}",
            json_type(&value)
        )));
    };
    let looks_like_an_event = ["actor", "action", "eventTime"]
        .iter()
        .any(|key| envelope.contains_key(*key));
    if looks_like_an_event && !envelope.contains_key("data") {
        return Err(Malformed(format!(
            "the body is a Caliper event, not an envelope: send it inside \
             {{\"sensor\": …, \"sendTime\": …, \"dataVersion\": \"{DATA_VERSION}\", \"data\": [ … ]}}"
        )));
    }
    check_version(&envelope)?;

    let unknown: Vec<String> = envelope
        .keys()
        .filter(|key| !ENVELOPE_KEYS.contains(&key.as_str()))
        .take(5)
        .map(|key| format!("`{}`", shown(key)))
        .collect();
    if !unknown.is_empty() {
        return Err(Malformed(format!(
            "the envelope has properties Caliper does not define ({}); an envelope holds only \
             `sensor`, `sendTime`, `dataVersion` and `data`, and custom attributes belong in an \
             event's `extensions`",
            unknown.join(", ")
        )));
    }
    match envelope.get("sensor") {
        Some(Value::String(sensor)) if !sensor.trim().is_empty() => {}
        Some(Value::String(_)) => return Err(Malformed("`sensor` is empty".into())),
        None | Some(Value::Null) => {
            return Err(Malformed(
                "the envelope has no `sensor`, the id of the sending application".into(),
            ));
        }
        Some(other) => {
            return Err(Malformed(format!(
                "`sensor` must be a string, not {}",
                json_type(other)
            )));
        }
    }
    match envelope.get("sendTime") {
        Some(Value::String(text)) => {
            timestamp(text, "sendTime").map_err(Malformed)?;
        }
        None | Some(Value::Null) => {
            return Err(Malformed("the envelope has no `sendTime`".into()));
        }
        Some(other) => {
            return Err(Malformed(format!(
                "`sendTime` must be an ISO 8601 string, not {}",
                json_type(other)
            )));
        }
    }
    let data = match envelope.get("data") {
        Some(Value::Array(data)) if !data.is_empty() => data,
        Some(Value::Array(_)) => {
            return Err(Malformed(
                "`data` is empty; an envelope carries one or more events or entities".into(),
            ));
        }
        None | Some(Value::Null) => return Err(Malformed("the envelope has no `data`".into())),
        Some(other) => {
            return Err(Malformed(format!(
                "`data` must be an array of events and entities, not {}",
                json_type(other)
            )));
        }
    };

    let mut mapped = Mapped::default();
    for (index, item) in data.iter().enumerate() {
        match read_item(item, source, courses) {
            Ok(Some(event)) => mapped.events.push(event),
            Ok(None) => mapped.ignored += 1,
            Err(message) => {
                return Err(Malformed(format!(
                    "data[{index}]{}: {message}",
                    id_hint(item)
                )));
            }
        }
    }
    Ok(mapped)
}

/// Checks `dataVersion` first of all, so that another version is told as such.
fn check_version(envelope: &Map<String, Value>) -> Result<(), EnvelopeError> {
    match envelope.get("dataVersion") {
        Some(Value::String(version)) if version == DATA_VERSION => Ok(()),
        Some(Value::String(version)) => Err(EnvelopeError::UnsupportedVersion(format!(
            "`dataVersion` is `{}`{}; this endpoint takes Caliper 1.1 envelopes only, with \
             `dataVersion` `{DATA_VERSION}`",
            shown(version),
            version_label(version)
        ))),
        Some(other) => Err(EnvelopeError::Malformed(format!(
            "`dataVersion` must be the string `{DATA_VERSION}`, not {}",
            json_type(other)
        ))),
        None => match other_caliper_context(envelope.get("data")) {
            Some(context) => Err(EnvelopeError::UnsupportedVersion(format!(
                "the envelope has no `dataVersion` and its events use the context `{}`{}, as \
                 Caliper 1.0 sensors send; this endpoint takes Caliper 1.1 envelopes only, with \
                 `dataVersion` `{DATA_VERSION}`",
                shown(context),
                version_label(context)
            ))),
            None => Err(EnvelopeError::Malformed(format!(
                "the envelope has no `dataVersion`; set it to `{DATA_VERSION}`"
            ))),
        },
    }
}

/// The Caliper version a context IRI belongs to, when it is one of Caliper's.
fn version_name(context: &str) -> Option<&'static str> {
    let rest = context.strip_prefix(CONTEXT_PREFIX)?;
    if rest.starts_with("v1/") || rest.starts_with("v1p0") {
        Some("Caliper 1.0")
    } else if rest.starts_with("v1p2") {
        Some("Caliper 1.2")
    } else if rest.starts_with("v1p1") {
        Some("a Caliper 1.1 extension context")
    } else {
        Some("a Caliper version nigrani does not know")
    }
}

fn version_label(context: &str) -> String {
    version_name(context).map_or_else(String::new, |name| format!(" ({name})"))
}

/// The first Caliper context other than 1.1's that an item of `data` names.
fn other_caliper_context(data: Option<&Value>) -> Option<&str> {
    let Some(Value::Array(items)) = data else {
        return None;
    };
    items
        .iter()
        .filter_map(|item| item.get("@context"))
        .flat_map(|context| match context {
            Value::Array(contexts) => contexts.iter().collect(),
            single => vec![single],
        })
        .filter_map(Value::as_str)
        .find(|context| context.starts_with(CONTEXT_PREFIX) && *context != DATA_VERSION)
}

/// One item of `data`: `Some` event that means something, `None` for a valid item that does
/// not, or the sentence saying what is wrong with it.
fn read_item(
    item: &Value,
    source: &str,
    courses: &CourseMap,
) -> Result<Option<LearningEvent>, String> {
    let Value::Object(fields) = item else {
        return Err(format!(
            "an item of `data` must be an event or entity object, not {}",
            json_type(item)
        ));
    };
    check_context(fields)?;
    let item_type = match fields.get("type") {
        None | Some(Value::Null) if fields.contains_key("@type") => {
            return Err("`type` is required (Caliper 1.1 replaced `@type` with `type`)".into());
        }
        _ => required_text(fields, "type")?,
    };
    if item_type.ends_with("Event") {
        read_event(item_type, fields, item, source, courses)
    } else {
        // An entity describe: nothing to map, but it must be an entity.
        let id = required_text(fields, "id")?;
        check_id(id, "id")?;
        Ok(None)
    }
}

fn read_event(
    event_type: &str,
    fields: &Map<String, Value>,
    item: &Value,
    source: &str,
    courses: &CourseMap,
) -> Result<Option<LearningEvent>, String> {
    let event_id = required_text(fields, "id")?;
    if !is_uuid_urn(event_id) {
        return Err(format!(
            "`id` `{}` is not a UUID URN of the form `urn:uuid:<UUID>`, as Caliper requires of \
             every event",
            shown(event_id)
        ));
    }
    let action = required_text(fields, "action")?;
    if let Some(actions) = actions_of(event_type)
        && !actions.contains(&action)
    {
        return Err(format!(
            "`action` `{}` is not an action of {event_type} in Caliper 1.1; it takes {}",
            shown(action),
            actions.join(", ")
        ));
    }
    let actor = Entity::required(fields, "actor")?;
    let object = Entity::required(fields, "object")?;
    let occurred_at = match fields.get("eventTime") {
        Some(Value::String(text)) => timestamp(text, "eventTime")?,
        None | Some(Value::Null) => return Err("`eventTime` is required".into()),
        Some(other) => {
            return Err(format!(
                "`eventTime` must be an ISO 8601 string, not {}",
                json_type(other)
            ));
        }
    };
    for name in OPTIONAL_ENTITIES {
        match fields.get(name) {
            None | Some(Value::Null | Value::String(_) | Value::Object(_)) => {}
            Some(other) => {
                return Err(format!(
                    "`{name}` must be an id string or an entity object, not {}",
                    json_type(other)
                ));
            }
        }
    }
    if let Some(extensions) = fields.get("extensions")
        && !matches!(extensions, Value::Null | Value::Object(_))
    {
        return Err(format!(
            "`extensions` must be an object, not {}",
            json_type(extensions)
        ));
    }

    let Some(kind) = kind_for(event_type, action) else {
        return Ok(None);
    };
    let graded = event_type == "GradeEvent";
    let learner = if graded {
        graded_learner(fields, &object)?
    } else {
        actor
    };
    let learner_ref = LearnerRef::on_platform(source, learner.id).map_err(|e| {
        format!(
            "`{}` `{}` cannot name a learner: {e}",
            learner.path,
            shown(learner.id)
        )
    })?;
    // The resource the event is about: for a grade, what the graded Attempt was an attempt at.
    let resource = if graded {
        object.part("assignable")?.unwrap_or_else(|| object.clone())
    } else {
        object.clone()
    };
    let course = match Entity::optional(fields, "group")? {
        Some(group) => group,
        None => resource.outermost()?,
    };
    let score = if graded {
        grade_score(fields, &resource)?
    } else {
        None
    };
    let duration_seconds = match event_type {
        "GradeEvent" => duration_of(object.fields, "object")?,
        "AssessmentEvent" | "AssessmentItemEvent" => match fields.get("generated") {
            Some(Value::Object(generated)) => duration_of(Some(generated), "generated")?,
            _ => None,
        },
        _ => None,
    };

    let mut value = item.clone();
    normalise_numbers(&mut value);
    let raw = canonical_json(&value);
    Ok(Some(LearningEvent {
        source: source.to_owned(),
        event_id: event_id.to_owned(),
        learner: learner_ref,
        course_id: courses.course_for(source, course.id),
        kind,
        progress: None,
        score,
        duration_seconds,
        occurred_at,
        content_hash: content_hash_of_canonical(&raw),
        earlier_content_hash: None,
        raw,
    }))
}

/// A GradeEvent's learner: the graded Attempt's `assignee`, else the generated Score's
/// `attempt.assignee`. Its `actor` is whoever graded.
fn graded_learner<'a>(
    fields: &'a Map<String, Value>,
    object: &Entity<'a>,
) -> Result<Entity<'a>, String> {
    if let Some(assignee) = object.part("assignee")? {
        return Ok(assignee);
    }
    if let Some(score) = Entity::optional(fields, "generated")?
        && let Some(attempt) = score.part("attempt")?
        && let Some(assignee) = attempt.part("assignee")?
    {
        return Ok(assignee);
    }
    Err(
        "the graded `object` (an Attempt) names no `assignee`, and a GradeEvent's `actor` is \
         the grader, not the learner: send the Attempt as an object with its `assignee`"
            .into(),
    )
}

/// A grade's score, 0-1, from the generated Score; `None` when it cannot be computed.
fn grade_score(
    fields: &Map<String, Value>,
    assignable: &Entity<'_>,
) -> Result<Option<f64>, String> {
    let Some(Value::Object(score)) = fields.get("generated") else {
        return Ok(None);
    };
    let given = number(score, "scoreGiven", "generated")?;
    let max = match number(score, "maxScore", "generated")? {
        Some(max) => Some(max),
        None => match assignable.fields {
            Some(resource) => number(resource, "maxScore", &assignable.path)?,
            None => None,
        },
    };
    Ok(match (given, max) {
        (Some(given), Some(max)) if max > 0.0 => Some((given / max).clamp(0.0, 1.0)),
        _ => None,
    })
}

fn number(fields: &Map<String, Value>, name: &str, path: &str) -> Result<Option<f64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|value| value.is_finite())),
        Some(other) => Err(format!(
            "`{path}.{name}` must be a number, not {}",
            json_type(other)
        )),
    }
}

/// The `duration` of an entity, in whole seconds.
fn duration_of(fields: Option<&Map<String, Value>>, path: &str) -> Result<Option<i64>, String> {
    match fields.and_then(|fields| fields.get("duration")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_duration(text).map_err(|()| {
            format!(
                "`{path}.duration` `{}` is not an ISO 8601 duration such as `PT40M12S`",
                shown(text)
            )
        }),
        Some(other) => Err(format!(
            "`{path}.duration` must be an ISO 8601 duration string, not {}",
            json_type(other)
        )),
    }
}

/// Seconds in an ISO 8601 duration — `PT40M12S`, `P1DT2H`, `PT3000S`, `P2W`, `PT1.5S` (rounded
/// to the second) — or `None` when it counts years or months, which have no fixed length. A
/// decimal fraction is allowed on the last component only.
fn parse_duration(text: &str) -> Result<Option<i64>, ()> {
    // Designators in the order they must appear, with their length (none for the calendar's).
    const DATE_UNITS: &[(char, Option<f64>)] = &[
        ('Y', None),
        ('M', None),
        ('W', Some(604_800.0)),
        ('D', Some(86_400.0)),
    ];
    const TIME_UNITS: &[(char, Option<f64>)] =
        &[('H', Some(3_600.0)), ('M', Some(60.0)), ('S', Some(1.0))];
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());

    let rest = text.strip_prefix('P').ok_or(())?;
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(()),
        Some((date, time)) => (date, time),
        None => (rest, ""),
    };
    let mut seconds = 0.0_f64;
    let mut calendar = false;
    let mut components = 0;
    let mut fraction_seen = false;
    for (part, mut units) in [(date, DATE_UNITS), (time, TIME_UNITS)] {
        let mut rest = part;
        while !rest.is_empty() {
            if fraction_seen {
                return Err(());
            }
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .ok_or(())?;
            let (number, after) = rest.split_at(end);
            let mut after = after.chars();
            let designator = after.next().ok_or(())?;
            let (whole, fraction) = match number.split_once(['.', ',']) {
                Some((whole, fraction)) if digits(fraction) => (whole, fraction),
                Some(_) => return Err(()),
                None => (number, "0"),
            };
            if !digits(whole) {
                return Err(());
            }
            fraction_seen = number.len() > whole.len();
            let value: f64 = format!("{whole}.{fraction}").parse().map_err(|_| ())?;
            let position = units
                .iter()
                .position(|(unit, _)| *unit == designator)
                .ok_or(())?;
            match units[position].1 {
                Some(unit_seconds) => seconds += value * unit_seconds,
                None => calendar |= value != 0.0,
            }
            units = &units[position + 1..];
            components += 1;
            rest = after.as_str();
        }
    }
    if components == 0 || !seconds.is_finite() || seconds > i64::MAX as f64 / 2.0 {
        return Err(());
    }
    Ok((!calendar).then(|| seconds.round() as i64))
}

/// An entity as an event refers to it: by id, and by its fields when given as an object.
#[derive(Debug, Clone)]
struct Entity<'a> {
    /// Where it sits in the event, for messages: `object.assignee`.
    path: String,
    id: &'a str,
    fields: Option<&'a Map<String, Value>>,
}

impl<'a> Entity<'a> {
    fn read(value: &'a Value, path: String) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(id) => {
                check_id(id, &path)?;
                Ok(Some(Self {
                    path,
                    id,
                    fields: None,
                }))
            }
            Value::Object(fields) => {
                let id = match fields.get("id") {
                    Some(Value::String(id)) => id,
                    None | Some(Value::Null) => {
                        return Err(format!(
                            "`{path}.id` is required: an entity given as an object needs `id` \
                             and `type`"
                        ));
                    }
                    Some(other) => {
                        return Err(format!(
                            "`{path}.id` must be a string, not {}",
                            json_type(other)
                        ));
                    }
                };
                check_id(id, &format!("{path}.id"))?;
                match fields.get("type") {
                    Some(Value::String(kind)) if !kind.is_empty() => {}
                    _ => {
                        return Err(format!(
                            "`{path}.type` is required and must be a string: an entity given \
                             as an object needs `id` and `type`"
                        ));
                    }
                }
                Ok(Some(Self {
                    path,
                    id,
                    fields: Some(fields),
                }))
            }
            other => Err(format!(
                "`{path}` must be an id string or an entity object, not {}",
                json_type(other)
            )),
        }
    }

    fn optional(fields: &'a Map<String, Value>, name: &str) -> Result<Option<Self>, String> {
        match fields.get(name) {
            Some(value) => Self::read(value, name.to_owned()),
            None => Ok(None),
        }
    }

    fn required(fields: &'a Map<String, Value>, name: &str) -> Result<Self, String> {
        Self::optional(fields, name)?.ok_or_else(|| format!("`{name}` is required"))
    }

    /// A property of this entity that holds an entity, when it was given as an object.
    fn part(&self, name: &str) -> Result<Option<Entity<'a>>, String> {
        match self.fields.and_then(|fields| fields.get(name)) {
            Some(value) => Self::read(value, format!("{}.{name}", self.path)),
            None => Ok(None),
        }
    }

    /// The outermost entity of this one's `isPartOf` chain, or this one.
    fn outermost(&self) -> Result<Entity<'a>, String> {
        let mut current = self.clone();
        for _ in 0..MAX_PART_OF_DEPTH {
            match current.part("isPartOf")? {
                Some(parent) => current = parent,
                None => break,
            }
        }
        Ok(current)
    }
}

/// Checks that an entity id is one nigrani can keep.
fn check_id(id: &str, path: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("`{path}` is empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!("`{path}` is longer than {MAX_ID_CHARS} characters"));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(format!(
            "`{path}` `{}` holds control characters or surrounding spaces",
            shown(id)
        ));
    }
    Ok(())
}

/// Checks an item's `@context`, when it has one.
fn check_context(fields: &Map<String, Value>) -> Result<(), String> {
    match fields.get("@context") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(context)) => caliper_context(context),
        Some(Value::Array(contexts)) => {
            for (index, context) in contexts.iter().enumerate() {
                if !matches!(context, Value::String(_) | Value::Object(_)) {
                    return Err(format!(
                        "`@context[{index}]` must be a context IRI or an object, not {}",
                        json_type(context)
                    ));
                }
            }
            match contexts.last() {
                Some(Value::String(last)) if last == DATA_VERSION => Ok(()),
                Some(Value::String(last)) if last.starts_with(CONTEXT_PREFIX) => {
                    caliper_context(last)
                }
                Some(_) => Err(format!(
                    "the last `@context` must be the Caliper context `{DATA_VERSION}`, so that \
                     Caliper's terms keep their meaning"
                )),
                None => Err(format!(
                    "`@context` is an empty array; it must name `{DATA_VERSION}`"
                )),
            }
        }
        Some(other) => Err(format!(
            "`@context` must be the Caliper context `{DATA_VERSION}` or an array ending with \
             it, not {}",
            json_type(other)
        )),
    }
}

fn caliper_context(context: &str) -> Result<(), String> {
    if context == DATA_VERSION {
        return Ok(());
    }
    match version_name(context) {
        Some(name) => Err(format!(
            "`@context` `{}` is {name}'s, but the envelope is Caliper 1.1: its items must use \
             `{DATA_VERSION}`",
            shown(context)
        )),
        None => Err(format!(
            "`@context` `{}` is not the Caliper 1.1 context `{DATA_VERSION}`",
            shown(context)
        )),
    }
}

/// Whether an event id is `urn:uuid:` and a UUID in its hyphenated form.
fn is_uuid_urn(id: &str) -> bool {
    let (Some(scheme), Some(uuid)) = (id.get(..9), id.get(9..)) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("urn:uuid:")
        && uuid.len() == 36
        && uuid.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// An ISO 8601 time with an offset, in UTC.
fn timestamp(text: &str, name: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let without_offset = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok());
    if without_offset {
        Err(format!(
            "`{name}` `{}` has no offset; Caliper times are UTC, written with `Z`, e.g. \
             `2026-03-02T05:00:00.000Z`",
            shown(text)
        ))
    } else {
        Err(format!(
            "`{name}` `{}` is not an ISO 8601 date and time such as `2026-03-02T05:00:00.000Z`",
            shown(text)
        ))
    }
}

fn required_text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match fields.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(format!("`{name}` is empty")),
        None | Some(Value::Null) => Err(format!("`{name}` is required")),
        Some(other) => Err(format!(
            "`{name}` must be a string, not {}",
            json_type(other)
        )),
    }
}

/// ` (`urn:uuid:…`)` when an item carries a readable id, for messages.
fn id_hint(item: &Value) -> String {
    match item.get("id") {
        Some(Value::String(id)) if !id.is_empty() => format!(" (`{}`)", shown(id)),
        _ => String::new(),
    }
}

/// Text received, as a message may quote it: at most 80 characters, control characters shown
/// as U+FFFD.
fn shown(text: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Parses JSON as [`serde_json::from_slice`] does, but refuses an object that names a key
/// twice: Caliper requires each property once, and which of two `actor`s counts is a guess.
fn parse_strict(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a [`Value`], refusing duplicate keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{}` appears twice in one object",
                    shown(&key)
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    const SOURCE: &str = "moodle";

    fn envelope(data: Vec<Value>) -> Value {
        json!({
            "sensor": "https://lms.example.edu.pk/caliper/sensor",
            "sendTime": "2026-03-02T05:00:01.000Z",
            "dataVersion": DATA_VERSION,
            "data": data,
        })
    }

    fn navigation() -> Value {
        json!({
            "@context": DATA_VERSION,
            "id": "urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70",
            "type": "NavigationEvent",
            "actor": {"id": "https://lms.example.edu.pk/users/554433", "type": "Person"},
            "action": "NavigatedTo",
            "object": {
                "id": "https://lms.example.edu.pk/mod/page/view.php?id=71",
                "type": "WebPage",
                "isPartOf": {
                    "id": "https://lms.example.edu.pk/course/view.php?id=7#section-2",
                    "type": "DigitalResourceCollection",
                    "isPartOf": {
                        "id": "https://lms.example.edu.pk/course/view.php?id=7",
                        "type": "CourseOffering"
                    }
                }
            },
            "eventTime": "2026-03-02T04:59:58.120Z"
        })
    }

    fn grade() -> Value {
        json!({
            "@context": DATA_VERSION,
            "id": "urn:uuid:9d1e2f3a-4b5c-4d6e-8f70-1a2b3c4d5e6f",
            "type": "GradeEvent",
            "actor": {"id": "https://lms.example.edu.pk/users/1001", "type": "Person"},
            "action": "Graded",
            "object": {
                "id": "https://lms.example.edu.pk/mod/quiz/attempt/88",
                "type": "Attempt",
                "assignee": {"id": "https://lms.example.edu.pk/users/554433", "type": "Person"},
                "assignable": {
                    "id": "https://lms.example.edu.pk/mod/quiz/view.php?id=12",
                    "type": "Assessment",
                    "maxScore": 20.0
                },
                "duration": "PT25M30S"
            },
            "generated": {
                "id": "https://lms.example.edu.pk/mod/quiz/attempt/88/score",
                "type": "Score",
                "scoreGiven": 15.0,
                "maxScore": 20.0
            },
            "group": {"id": "https://lms.example.edu.pk/course/view.php?id=7", "type": "CourseSection"},
            "eventTime": "2026-03-03T09:00:00.000Z"
        })
    }

    fn read(value: &Value) -> Result<Mapped, EnvelopeError> {
        read_envelope(value.to_string().as_bytes(), SOURCE, &CourseMap::default())
    }

    fn one(event: Value) -> LearningEvent {
        let mut mapped = read(&envelope(vec![event])).unwrap();
        assert_eq!(mapped.events.len(), 1, "{mapped:?}");
        mapped.events.remove(0)
    }

    fn malformed(value: &Value) -> String {
        match read(value) {
            Err(EnvelopeError::Malformed(message)) => message,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn event_error(event: Value) -> String {
        malformed(&envelope(vec![navigation(), event]))
    }

    fn changed(mut event: Value, change: impl FnOnce(&mut Map<String, Value>)) -> Value {
        change(event.as_object_mut().unwrap());
        event
    }

    #[test]
    fn a_navigation_event_is_mapped() {
        let event = one(navigation());
        assert_eq!(event.source, SOURCE);
        assert_eq!(
            event.event_id,
            "urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70"
        );
        assert_eq!(event.kind, EventKind::Started);
        assert_eq!(
            event.learner.as_str(),
            "moodle:https://lms.example.edu.pk/users/554433"
        );
        // No group: the outermost `isPartOf` of the object.
        assert_eq!(
            event.course_id,
            "https://lms.example.edu.pk/course/view.php?id=7"
        );
        assert_eq!(
            event.occurred_at,
            Utc.with_ymd_and_hms(2026, 3, 2, 4, 59, 58).unwrap()
                + chrono::Duration::milliseconds(120)
        );
        assert_eq!(
            (event.progress, event.score, event.duration_seconds),
            (None, None, None)
        );
        assert_eq!(event.raw, canonical_json(&navigation()));
        assert_eq!(event.content_hash, content_hash_of_canonical(&event.raw));
        assert_eq!(event.earlier_content_hash, None);
    }

    #[test]
    fn a_grade_is_the_assignees_with_a_score() {
        let event = one(grade());
        assert_eq!(event.kind, EventKind::Progressed);
        assert_eq!(
            event.learner.as_str(),
            "moodle:https://lms.example.edu.pk/users/554433",
            "the learner is the assignee, not the grading actor"
        );
        assert_eq!(event.score, Some(0.75));
        assert_eq!(event.duration_seconds, Some(25 * 60 + 30));
        assert_eq!(
            event.course_id,
            "https://lms.example.edu.pk/course/view.php?id=7"
        );
    }

    #[test]
    fn grade_scores_are_held_to_zero_one_or_left_unset() {
        let scored = |score: Value| {
            let mut event = grade();
            event["generated"] = score;
            one(event).score
        };
        let score = |given: Value, max: Value| json!({"id": "https://x.example/s/1", "type": "Score", "scoreGiven": given, "maxScore": max});
        assert_eq!(scored(score(json!(5), json!(1))), Some(1.0), "extra credit");
        assert_eq!(scored(score(json!(-2), json!(10))), Some(0.0), "a penalty");
        assert_eq!(scored(score(json!(3), json!(0))), None, "no maximum");
        assert_eq!(
            scored(score(json!(3), Value::Null)),
            Some(0.15),
            "the assignable's maximum"
        );
        assert_eq!(
            scored(json!({"id": "https://x.example/s/1", "type": "Score"})),
            None
        );
        assert_eq!(scored(json!("https://x.example/s/1")), None);
        let mut no_max = grade();
        no_max["generated"] =
            json!({"id": "https://x.example/s/1", "type": "Score", "scoreGiven": 3});
        no_max["object"]["assignable"] =
            json!("https://lms.example.edu.pk/mod/quiz/view.php?id=12");
        assert_eq!(one(no_max).score, None);

        let mut text = grade();
        text["generated"]["scoreGiven"] = json!("15");
        let message = event_error(text);
        assert!(
            message.contains("`generated.scoreGiven` must be a number"),
            "{message}"
        );
    }

    #[test]
    fn a_grade_without_an_assignee_is_refused_unless_the_score_names_one() {
        let mut bare = grade();
        bare["object"] = json!("https://lms.example.edu.pk/mod/quiz/attempt/88");
        let message = event_error(bare.clone());
        assert!(message.starts_with("data[1] (`urn:uuid:9d1e"), "{message}");
        assert!(message.contains("`assignee`"), "{message}");

        bare["generated"]["attempt"] = json!({
            "id": "https://lms.example.edu.pk/mod/quiz/attempt/88",
            "type": "Attempt",
            "assignee": "https://lms.example.edu.pk/users/778899"
        });
        bare.as_object_mut().unwrap().remove("group");
        let event = one(bare);
        assert_eq!(
            event.learner.as_str(),
            "moodle:https://lms.example.edu.pk/users/778899"
        );
        // Without a group, and with the Attempt given by id only, the course is the Attempt.
        assert_eq!(
            event.course_id,
            "https://lms.example.edu.pk/mod/quiz/attempt/88"
        );
    }

    #[test]
    fn the_course_is_the_group_then_is_part_of_then_the_object() {
        let mut with_group = navigation();
        with_group["group"] = json!("https://lms.example.edu.pk/sections/7-A");
        assert_eq!(
            one(with_group).course_id,
            "https://lms.example.edu.pk/sections/7-A"
        );

        let mut bare = navigation();
        bare["object"] = json!("https://lms.example.edu.pk/mod/page/view.php?id=71");
        assert_eq!(
            one(bare).course_id,
            "https://lms.example.edu.pk/mod/page/view.php?id=71"
        );

        let courses = CourseMap::new([(
            SOURCE.to_owned(),
            "https://lms.example.edu.pk/course/view.php?id=7".to_owned(),
            "genai-foundations".to_owned(),
        )]);
        let body = envelope(vec![navigation()]).to_string();
        let mapped = read_envelope(body.as_bytes(), SOURCE, &courses).unwrap();
        assert_eq!(mapped.events[0].course_id, "genai-foundations");

        // A grade without a group: what the graded Attempt was an attempt at, and what that is
        // part of — not the Attempt's own `isPartOf`, its parent attempt.
        let mut graded = grade();
        graded.as_object_mut().unwrap().remove("group");
        graded["object"]["isPartOf"] = json!("https://lms.example.edu.pk/mod/quiz/attempt/80");
        assert_eq!(
            one(graded.clone()).course_id,
            "https://lms.example.edu.pk/mod/quiz/view.php?id=12"
        );
        graded["object"]["assignable"]["isPartOf"] = json!({"id": "https://lms.example.edu.pk/course/view.php?id=9", "type": "CourseSection"});
        assert_eq!(
            one(graded).course_id,
            "https://lms.example.edu.pk/course/view.php?id=9"
        );
    }

    #[test]
    fn every_mapped_pair_has_its_kind_and_the_rest_are_ignored() {
        let cases = [
            ("GradeEvent", "Graded", Some(EventKind::Progressed)),
            ("AssessmentEvent", "Started", Some(EventKind::Started)),
            ("AssessmentEvent", "Restarted", Some(EventKind::Started)),
            ("AssessmentEvent", "Resumed", Some(EventKind::Started)),
            ("AssessmentEvent", "Submitted", Some(EventKind::Progressed)),
            ("AssessmentEvent", "Paused", None),
            ("AssessmentEvent", "Reset", None),
            ("AssessmentItemEvent", "Started", Some(EventKind::Started)),
            (
                "AssessmentItemEvent",
                "Completed",
                Some(EventKind::Progressed),
            ),
            ("AssessmentItemEvent", "Skipped", None),
            ("NavigationEvent", "NavigatedTo", Some(EventKind::Started)),
            ("ToolUseEvent", "Used", Some(EventKind::Started)),
            ("MediaEvent", "Started", None),
            ("SessionEvent", "LoggedIn", None),
            ("AssignableEvent", "Submitted", None),
            ("Event", "Created", None),
            ("ReadingEvent", "Viewed", None),
            ("LabSimulationEvent", "Calibrated", None),
        ];
        for (event_type, action, kind) in cases {
            let mut event = grade();
            event["type"] = json!(event_type);
            event["action"] = json!(action);
            let mapped = read(&envelope(vec![event])).unwrap();
            assert_eq!(
                mapped.events.first().map(|e| e.kind),
                kind,
                "{event_type} {action}"
            );
            assert_eq!(
                mapped.ignored,
                usize::from(kind.is_none()),
                "{event_type} {action}"
            );
        }
    }

    #[test]
    fn an_action_must_be_one_of_its_types() {
        let message = event_error(changed(navigation(), |f| {
            f.insert("action".into(), json!("Viewed"));
        }));
        assert!(message.starts_with("data[1]"), "{message}");
        assert!(
            message.contains("`action` `Viewed` is not an action of NavigationEvent"),
            "{message}"
        );
        let message = event_error(changed(navigation(), |f| {
            f.insert("type".into(), json!("Event"));
            f.insert("action".into(), json!("Teleported"));
        }));
        assert!(message.contains("of Event"), "{message}");
        // The specification spells a few terms two ways; both are taken.
        let mut media = navigation();
        media["type"] = json!("MediaEvent");
        for action in ["EnteredFullScreen", "EnteredFullscreen"] {
            media["action"] = json!(action);
            assert_eq!(read(&envelope(vec![media.clone()])).unwrap().ignored, 1);
        }
    }

    #[test]
    fn each_missing_or_bad_field_is_named() {
        type Change = Box<dyn FnOnce(&mut Map<String, Value>)>;
        let remove = |name: &'static str| -> Change {
            Box::new(move |f| {
                f.remove(name);
            })
        };
        let set = |name: &'static str, value: Value| -> Change {
            Box::new(move |f| {
                f.insert(name.into(), value);
            })
        };
        let cases: Vec<(&str, Change)> = vec![
            ("`id` is required", remove("id")),
            ("`type` is required", remove("type")),
            ("`action` is required", remove("action")),
            ("`actor` is required", remove("actor")),
            ("`object` is required", remove("object")),
            ("`eventTime` is required", remove("eventTime")),
            (
                "is not a UUID URN",
                set("id", json!("0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70")),
            ),
            ("is not a UUID URN", set("id", json!("urn:uuid:not-a-uuid"))),
            (
                "is not a UUID URN",
                set("id", json!("https://lms.example.edu.pk/events/1")),
            ),
            ("`id` must be a string", set("id", json!(42))),
            (
                "has no offset",
                set("eventTime", json!("2026-03-02T04:59:58.120")),
            ),
            (
                "is not an ISO 8601 date",
                set("eventTime", json!("yesterday")),
            ),
            (
                "`actor.id` is required",
                set("actor", json!({"type": "Person"})),
            ),
            (
                "`actor.type` is required",
                set("actor", json!({"id": "https://x.example/u/1"})),
            ),
            (
                "`actor` must be an id string",
                set("actor", json!(["https://x.example/u/1"])),
            ),
            (
                "`object.isPartOf.id` is required",
                set(
                    "object",
                    json!({
                        "id": "https://x.example/p/1", "type": "WebPage", "isPartOf": {"type": "CourseSection"}
                    }),
                ),
            ),
            ("`group` must be an id string", set("group", json!(7))),
            (
                "`extensions` must be an object",
                set("extensions", json!("x")),
            ),
            (
                "`@context` `http://purl.imsglobal.org/ctx/caliper/v1p2` is Caliper 1.2's",
                set(
                    "@context",
                    json!("http://purl.imsglobal.org/ctx/caliper/v1p2"),
                ),
            ),
            (
                "is not the Caliper 1.1 context",
                set("@context", json!("https://schema.org/")),
            ),
            (
                "the last `@context` must be",
                set("@context", json!([DATA_VERSION, "https://schema.org/"])),
            ),
            ("`@context` is an empty array", set("@context", json!([]))),
            (
                "`@context` must be the Caliper context",
                set("@context", json!({"query": "http://schema.org/query"})),
            ),
            (
                "`type` is required (Caliper 1.1 replaced `@type`",
                Box::new(|f| {
                    let kind = f.remove("type").unwrap();
                    f.insert("@type".into(), kind);
                }),
            ),
        ];
        for (expected, change) in cases {
            let message = event_error(changed(navigation(), change));
            assert!(message.starts_with("data[1]"), "{message}");
            assert!(
                message.contains(expected),
                "expected `{expected}` in: {message}"
            );
        }
        // A context array is fine when Caliper's comes last.
        let mut event = navigation();
        event["@context"] = json!([{"query": "http://schema.org/query"}, DATA_VERSION]);
        one(event);
        // Without `@context` the event is read as Caliper 1.1.
        let mut event = navigation();
        event.as_object_mut().unwrap().remove("@context");
        one(event);
    }

    #[test]
    fn a_learner_id_nigrani_cannot_keep_is_refused() {
        let long = format!("https://lms.example.edu.pk/users/{}", "9".repeat(180));
        let message = event_error(changed(navigation(), |f| {
            f.insert("actor".into(), json!(long));
        }));
        assert!(message.contains("cannot name a learner"), "{message}");
        assert!(
            message.contains('…'),
            "a long id is shortened in the message: {message}"
        );
        let message = event_error(changed(navigation(), |f| {
            f.insert(
                "actor".into(),
                json!("https://lms.example.edu.pk/users/5\u{7}"),
            );
        }));
        assert!(message.contains("control characters"), "{message}");
        // An ignored event's long actor id is valid Caliper: nothing is kept of it.
        let mut session = navigation();
        session["type"] = json!("SessionEvent");
        session["action"] = json!("LoggedIn");
        session["actor"] = json!(format!(
            "https://lms.example.edu.pk/users/{}",
            "9".repeat(300)
        ));
        assert_eq!(read(&envelope(vec![session])).unwrap().ignored, 1);
    }

    #[test]
    fn entity_describes_are_ignored_and_must_have_an_id() {
        let person = json!({"@context": DATA_VERSION, "id": "https://lms.example.edu.pk/users/554433", "type": "Person"});
        let mapped = read(&envelope(vec![person, navigation()])).unwrap();
        assert_eq!((mapped.events.len(), mapped.ignored), (1, 1));
        let message = malformed(&envelope(vec![
            json!({"type": "CourseSection", "name": "AI 101"}),
        ]));
        assert_eq!(message, "data[0]: `id` is required");
        let message = malformed(&envelope(vec![json!(
            "urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70"
        )]));
        assert!(
            message.contains("must be an event or entity object, not a string"),
            "{message}"
        );
    }

    #[test]
    fn the_envelope_needs_its_four_properties_and_no_others() {
        let cases: Vec<(&str, Value)> = vec![
            (
                "no `sensor`",
                json!({"sendTime": "2026-03-02T05:00:01Z", "dataVersion": DATA_VERSION, "data": [navigation()]}),
            ),
            (
                "`sensor` is empty",
                json!({"sensor": " ", "sendTime": "2026-03-02T05:00:01Z", "dataVersion": DATA_VERSION, "data": [navigation()]}),
            ),
            (
                "no `sendTime`",
                json!({"sensor": "s", "dataVersion": DATA_VERSION, "data": [navigation()]}),
            ),
            (
                "`sendTime` `2026-03-02T05:00:01` has no offset",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01", "dataVersion": DATA_VERSION, "data": [navigation()]}),
            ),
            (
                "no `data`",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01Z", "dataVersion": DATA_VERSION}),
            ),
            ("`data` is empty", envelope(vec![])),
            (
                "`data` must be an array",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01Z", "dataVersion": DATA_VERSION, "data": navigation()}),
            ),
            (
                "properties Caliper does not define (`extensions`)",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01Z", "dataVersion": DATA_VERSION, "data": [navigation()], "extensions": {}}),
            ),
            (
                "no `dataVersion`",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01Z", "data": [navigation()]}),
            ),
            (
                "`dataVersion` must be the string",
                json!({"sensor": "s", "sendTime": "2026-03-02T05:00:01Z", "dataVersion": 1.1, "data": [navigation()]}),
            ),
            (
                "the body is an array, not a Caliper envelope",
                json!([navigation()]),
            ),
            ("the body is a Caliper event, not an envelope", navigation()),
        ];
        for (expected, body) in cases {
            let message = malformed(&body);
            assert!(
                message.contains(expected),
                "expected `{expected}` in: {message}"
            );
        }
    }

    #[test]
    fn other_versions_are_unsupported_not_malformed() {
        let mut newer = envelope(vec![navigation()]);
        newer["dataVersion"] = json!("http://purl.imsglobal.org/ctx/caliper/v1p2");
        newer["extensions"] = json!({"new": "in 1.2"});
        let error = read(&newer).unwrap_err();
        assert_eq!(error.code(), "unsupported_caliper_version");
        assert!(error.message().contains("(Caliper 1.2)"), "{error}");

        let older = json!({
            "sensor": "https://lms.example.edu.pk/sensor",
            "sendTime": "2016-11-15T11:05:01.000Z",
            "data": [{"@context": "http://purl.imsglobal.org/ctx/caliper/v1/Context",
                      "@type": "http://purl.imsglobal.org/caliper/v1/NavigationEvent"}]
        });
        let error = read(&older).unwrap_err();
        assert!(
            matches!(error, EnvelopeError::UnsupportedVersion(_)),
            "{error:?}"
        );
        assert!(error.message().contains("Caliper 1.0"), "{error}");

        let mut named = envelope(vec![navigation()]);
        named["dataVersion"] = json!("1.1");
        assert!(matches!(
            read(&named),
            Err(EnvelopeError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn bodies_that_are_not_json_or_repeat_a_key_are_malformed() {
        let courses = CourseMap::default();
        for body in [&b""[..], b"{", b"\xff\xfe{}", b"{} {}", b"nul"] {
            let error = read_envelope(body, SOURCE, &courses).unwrap_err();
            assert_eq!(error.code(), "malformed_caliper_envelope");
            assert!(
                error.message().starts_with("the body is not valid JSON"),
                "{error}"
            );
        }
        let event = navigation().to_string();
        let twice = event.replacen(
            "\"action\":\"NavigatedTo\"",
            "\"action\":\"NavigatedTo\",\"action\":\"Used\"",
            1,
        );
        assert_ne!(twice, event);
        let body = envelope(vec![])
            .to_string()
            .replace("[]", &format!("[{twice}]"));
        let message = read_envelope(body.as_bytes(), SOURCE, &courses)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("the key `action` appears twice"),
            "{message}"
        );
        // A byte-order mark is tolerated.
        let mut marked = b"\xEF\xBB\xBF".to_vec();
        marked.extend_from_slice(envelope(vec![navigation()]).to_string().as_bytes());
        assert_eq!(
            read_envelope(&marked, SOURCE, &courses)
                .unwrap()
                .events
                .len(),
            1
        );
    }

    #[test]
    fn deeply_nested_bodies_are_refused_not_overflowed() {
        let courses = CourseMap::default();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = read_envelope(deep.as_bytes(), SOURCE, &courses).unwrap_err();
        assert!(error.message().contains("recursion limit"), "{error}");
        let nested = format!(
            "{{\"sensor\":\"s\",\"data\":{}1{}}}",
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(read_envelope(nested.as_bytes(), SOURCE, &courses).is_err());
    }

    #[test]
    fn numbers_spelled_otherwise_keep_the_content_hash() {
        let first = one(grade());
        let mut other = grade()
            .to_string()
            .replace("15.0", "15")
            .replace("20.0", "2e1");
        other = other.replace("\"type\":\"GradeEvent\"", "\"type\" : \"GradeEvent\"");
        let body = envelope(vec![serde_json::from_str(&other).unwrap()]);
        let second = read(&body).unwrap().events.remove(0);
        assert_eq!(first.content_hash, second.content_hash);
        assert_eq!(first.raw, second.raw);
        let mut changed = grade();
        changed["generated"]["scoreGiven"] = json!(16);
        assert_ne!(one(changed).content_hash, first.content_hash);
    }

    #[test]
    fn durations_are_read_in_seconds() {
        let cases = [
            ("PT40M12S", Ok(Some(2412))),
            ("PT3000S", Ok(Some(3000))),
            ("P1DT2H", Ok(Some(93_600))),
            ("P2W", Ok(Some(1_209_600))),
            ("PT1.5S", Ok(Some(2))),
            ("PT0,25H", Ok(Some(900))),
            ("P0D", Ok(Some(0))),
            ("P0Y0M0DT0H5M0S", Ok(Some(300))),
            ("P1M", Ok(None)),
            ("P1Y2M3D", Ok(None)),
            ("PT", Err(())),
            ("P", Err(())),
            ("P1DT", Err(())),
            ("PT5", Err(())),
            ("PT1.5M30S", Err(())),
            ("PT2M1H", Err(())),
            ("PT1H1H", Err(())),
            ("-PT5M", Err(())),
            ("pt5m", Err(())),
            ("PT.5S", Err(())),
            ("PT5.S", Err(())),
            ("5 minutes", Err(())),
            ("PT99999999999999999999999S", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
        let mut event = grade();
        event["object"]["duration"] = json!("40 minutes");
        let message = event_error(event);
        assert!(
            message.contains("`object.duration` `40 minutes` is not an ISO 8601 duration"),
            "{message}"
        );
        let mut submitted = grade();
        submitted["type"] = json!("AssessmentEvent");
        submitted["action"] = json!("Submitted");
        submitted["generated"] =
            json!({"id": "https://x.example/a/1", "type": "Attempt", "duration": "PT10M"});
        assert_eq!(one(submitted).duration_seconds, Some(600));
    }

    #[test]
    fn uuid_urns_are_checked_by_shape() {
        assert!(is_uuid_urn("urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70"));
        assert!(is_uuid_urn("URN:UUID:0B6C1F3E-52A9-4D1C-9A57-3F2E8D1C4B70"));
        assert!(!is_uuid_urn("urn:uuid:0b6c1f3e52a94d1c9a573f2e8d1c4b70"));
        assert!(!is_uuid_urn(
            "urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b7g"
        ));
        assert!(!is_uuid_urn(
            "urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b700"
        ));
        assert!(!is_uuid_urn(
            "urn:uüid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70"
        ));
        assert!(!is_uuid_urn(""));
    }

    #[test]
    fn content_types_are_application_json() {
        for header in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_caliper_content_type(header), "{header}");
        }
        for header in [
            "application/ld+json",
            "text/json",
            "application/jsonx",
            "",
            "text/plain; application/json",
        ] {
            assert!(!is_caliper_content_type(header), "{header}");
        }
    }

    #[test]
    fn mapped_events_become_batch_items() {
        let mapped = read(&envelope(vec![navigation(), grade()])).unwrap();
        let ids: Vec<String> = mapped.events.iter().map(|e| e.event_id.clone()).collect();
        let items = mapped.into_items();
        assert_eq!(items.len(), 2);
        for (item, id) in items.iter().zip(&ids) {
            assert!(matches!(item, Item::Event(event) if &event.event_id == id));
        }
    }

    #[test]
    fn messages_quote_received_text_safely() {
        assert_eq!(shown("a\u{0}b"), "a\u{FFFD}b");
        assert_eq!(shown(&"x".repeat(81)).chars().count(), 81);
        assert!(shown(&"x".repeat(81)).ends_with('…'));
        assert_eq!(shown(&"x".repeat(80)), "x".repeat(80));
    }
}
