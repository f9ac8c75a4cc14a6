//! Caliper 1.1 envelopes as platforms send them (fixtures under `fixtures/caliper/`), through
//! [`read_envelope`] and on into the batch pipeline; and properties that hold for any body.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use nigrani_domain::EventKind;
use nigrani_ingest::caliper::{DATA_VERSION, EnvelopeError, Mapped, read_envelope};
use nigrani_ingest::{CourseMap, Ingestor, Limits};
use nigrani_store::sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/caliper/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn read(name: &str, source: &str) -> Result<Mapped, EnvelopeError> {
    read_envelope(&fixture(name), source, &CourseMap::default())
}

fn mapped(name: &str, source: &str) -> Mapped {
    read(name, source).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_canvas_grade_is_the_students_with_its_score() {
    let mapped = mapped("canvas_grade_event", "canvas");
    assert_eq!(mapped.ignored, 0);
    let [event] = &mapped.events[..] else {
        panic!("one event expected: {mapped:?}");
    };
    assert_eq!(
        event.event_id,
        "urn:uuid:5f0c2a9e-7d41-4b8a-9c36-e2a17b04d5c1"
    );
    assert_eq!(event.kind, EventKind::Progressed);
    // The actor graded; the learner is the Attempt's assignee.
    assert_eq!(
        event.learner.as_str(),
        "canvas:urn:canvas:example.edu.pk:user:11000000000000433"
    );
    assert_eq!(
        event.course_id,
        "urn:canvas:example.edu.pk:course:11000000000000565"
    );
    assert_eq!(event.score, Some(0.85));
    assert_eq!(event.duration_seconds, Some(72 * 60));
    assert_eq!(event.progress, None);
    assert_eq!(
        event.occurred_at,
        Utc.with_ymd_and_hms(2026, 3, 4, 11, 19, 58).unwrap() + chrono::Duration::milliseconds(6)
    );
    // The raw payload is the event object, not the envelope.
    let raw: Value = serde_json::from_str(&event.raw).unwrap();
    assert_eq!(raw["type"], "GradeEvent");
    assert!(raw.get("sensor").is_none());
}

#[test]
fn an_open_edx_page_view_resolves_its_course_through_the_mapping() {
    let courses = CourseMap::new([(
        "openedx".to_owned(),
        "course-v1:HEC+GENAI101+2026_T1".to_owned(),
        "genai-teaching-learning".to_owned(),
    )]);
    let mapped = read_envelope(&fixture("openedx_navigation_event"), "openedx", &courses).unwrap();
    let [event] = &mapped.events[..] else {
        panic!("one event expected: {mapped:?}");
    };
    assert_eq!(event.kind, EventKind::Started);
    assert_eq!(event.course_id, "genai-teaching-learning");
    // Open edX names people by opaque ids, not IRIs; they are kept as sent.
    assert_eq!(
        event.learner.as_str(),
        "openedx:3f9b1c2e-8a47-4d6f-b05e-c1d2e3f4a5b6"
    );
}

#[test]
fn an_assessment_start_and_submission_become_started_and_progressed() {
    let mapped = mapped("assessment_submitted", "moodle");
    let kinds: Vec<_> = mapped.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Started, EventKind::Progressed]);
    let submitted = &mapped.events[1];
    assert_eq!(submitted.duration_seconds, Some(34 * 60 + 38));
    assert_eq!(submitted.score, None, "a submission carries no score");
    for event in &mapped.events {
        assert_eq!(
            event.learner.as_str(),
            "moodle:https://moodle.example.edu.pk/user/profile.php?id=2291"
        );
        assert_eq!(
            event.course_id,
            "https://moodle.example.edu.pk/course/view.php?id=37"
        );
    }
}

#[test]
fn a_tool_use_is_activity_in_its_course_section() {
    let mapped = mapped("tool_use_event", "sandbox");
    let [event] = &mapped.events[..] else {
        panic!("one event expected: {mapped:?}");
    };
    assert_eq!(event.kind, EventKind::Started);
    assert_eq!(
        event.course_id,
        "https://lms.example.edu.pk/courses/llama-cert-prep/sections/1"
    );
    assert_eq!(
        event.learner.as_str(),
        "sandbox:https://lms.example.edu.pk/users/554433"
    );
}

#[test]
fn unknown_types_entities_and_other_profiles_are_counted_not_mapped() {
    let mapped = mapped("unknown_event_type", "moodle");
    assert_eq!(
        mapped.ignored, 4,
        "a Person, an unknown event type, a login, a pause"
    );
    let ids: Vec<_> = mapped.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["urn:uuid:2b3c4d5e-6f70-4812-a3b4-c5d6e7f8091a"]);
}

#[test]
fn caliper_one_zero_and_one_two_envelopes_are_unsupported() {
    for name in ["caliper_1p0_envelope", "caliper_1p2_envelope"] {
        let error = read(name, "moodle").unwrap_err();
        assert!(
            matches!(error, EnvelopeError::UnsupportedVersion(_)),
            "{name}: {error:?}"
        );
        assert_eq!(error.code(), "unsupported_caliper_version");
        assert!(error.message().contains(DATA_VERSION), "{name}: {error}");
    }
}

#[test]
fn malformed_envelopes_name_the_item_and_the_field() {
    let cases = [
        (
            "malformed_event_time_without_offset",
            "data[1] (`urn:uuid:7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e`): `eventTime` `2026-03-06 12:30:10` has no offset",
        ),
        (
            "malformed_event_id",
            "data[0] (`evt-2026-03-07-000184`): `id` `evt-2026-03-07-000184` is not a UUID URN",
        ),
        (
            "malformed_action",
            "data[0] (`urn:uuid:3c4d5e6f-7081-4923-b4c5-d6e7f8091a2b`): `action` `Launched` is not an action of ToolUseEvent",
        ),
        (
            "malformed_missing_actor",
            "data[2] (`urn:uuid:5e6f7081-92a3-4b45-96e7-f8091a2b3c4d`): `actor` is required",
        ),
        (
            "malformed_envelope_extra_key",
            "properties Caliper does not define (`institution`)",
        ),
        ("malformed_empty_data", "`data` is empty"),
        (
            "malformed_bare_event",
            "the body is a Caliper event, not an envelope",
        ),
    ];
    for (name, expected) in cases {
        match read(name, "moodle") {
            Err(EnvelopeError::Malformed(message)) => {
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name}: expected Malformed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn mapped_events_are_stored_once_and_replays_change_nothing() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(folder.path()).await.unwrap();
    store.migrate().await.unwrap();
    let ingestor = Ingestor::new(Arc::new(store), Limits::default()).bound_to(Some("canvas"));
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();

    let first = ingestor
        .ingest_items(mapped("canvas_grade_event", "canvas").into_items(), now)
        .await
        .unwrap();
    // No roster yet: stored, awaiting its learner.
    assert_eq!(first.counts.unmatched, 1, "{first:?}");

    // The same envelope again, its keys in another order and its numbers spelled otherwise.
    let mut body: Value = serde_json::from_slice(&fixture("canvas_grade_event")).unwrap();
    body["data"][0]["generated"]["maxScore"] = json!(10.0);
    let resent =
        read_envelope(body.to_string().as_bytes(), "canvas", &CourseMap::default()).unwrap();
    let second = ingestor
        .ingest_items(resent.into_items(), now)
        .await
        .unwrap();
    assert_eq!(second.counts.duplicate, 1, "{second:?}");
    assert_eq!(second.results[0].seq, first.results[0].seq);

    // Another source's key may not send them.
    let other = ingestor
        .bound_to(Some("moodle"))
        .ingest_items(mapped("canvas_grade_event", "canvas").into_items(), now)
        .await
        .unwrap();
    assert_eq!(other.counts.rejected, 1, "{other:?}");
}

// ---- Properties ----

/// Strings that steer arbitrary JSON towards Caliper's shapes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(DATA_VERSION.to_owned()),
        Just("http://purl.imsglobal.org/ctx/caliper/v1p2".to_owned()),
        Just("urn:uuid:0b6c1f3e-52a9-4d1c-9a57-3f2e8d1c4b70".to_owned()),
        Just("2026-03-02T05:00:01.000Z".to_owned()),
        Just("2026-03-02T05:00:01".to_owned()),
        Just("PT40M12S".to_owned()),
        Just("P1Y".to_owned()),
        Just("https://lms.example.edu.pk/users/554433".to_owned()),
        prop::sample::select(vec![
            "GradeEvent",
            "AssessmentEvent",
            "AssessmentItemEvent",
            "NavigationEvent",
            "ToolUseEvent",
            "MediaEvent",
            "Event",
            "Person",
            "Attempt",
            "Score",
            "Graded",
            "Started",
            "Submitted",
            "Completed",
            "NavigatedTo",
            "Used",
        ])
        .prop_map(str::to_owned),
        ".{0,24}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "@context",
            "id",
            "type",
            "actor",
            "action",
            "object",
            "eventTime",
            "group",
            "generated",
            "isPartOf",
            "assignee",
            "assignable",
            "attempt",
            "scoreGiven",
            "maxScore",
            "duration",
            "extensions",
            "sensor",
            "sendTime",
            "dataVersion",
            "data",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z@]{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn envelope(data: Vec<Value>) -> Value {
    json!({
        "sensor": "https://lms.example.edu.pk/caliper",
        "sendTime": "2026-03-02T05:00:01.000Z",
        "dataVersion": DATA_VERSION,
        "data": data,
    })
}

/// A valid event of a mapped type, with the given UUID and learner.
fn valid_event(uuid: u128, learner: u32, template: usize) -> Value {
    let id = format!(
        "urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        uuid >> 96,
        (uuid >> 80) & 0xffff,
        (uuid >> 64) & 0xffff,
        (uuid >> 48) & 0xffff,
        uuid & 0xffff_ffff_ffff
    );
    let actor = format!("https://lms.example.edu.pk/users/{learner}");
    let mut event = match template % 5 {
        0 => json!({"type": "NavigationEvent", "action": "NavigatedTo",
                    "object": {"id": "https://lms.example.edu.pk/pages/1", "type": "WebPage"}}),
        1 => {
            json!({"type": "ToolUseEvent", "action": "Used", "object": "https://sandbox.example.edu.pk"})
        }
        2 => json!({"type": "AssessmentEvent", "action": "Submitted",
                    "object": "https://lms.example.edu.pk/quiz/1",
                    "generated": {"id": "https://lms.example.edu.pk/quiz/1/attempts/1",
                                  "type": "Attempt", "duration": "PT12M"}}),
        3 => json!({"type": "AssessmentItemEvent", "action": "Completed",
                    "object": "https://lms.example.edu.pk/quiz/1/items/2"}),
        _ => json!({"type": "GradeEvent", "action": "Graded",
                    "object": {"id": "https://lms.example.edu.pk/quiz/1/attempts/1", "type": "Attempt",
                               "assignee": actor.clone()},
                    "generated": {"id": "https://lms.example.edu.pk/quiz/1/attempts/1/score",
                                  "type": "Score", "scoreGiven": learner % 11, "maxScore": 10}}),
    };
    event["@context"] = json!(DATA_VERSION);
    event["id"] = json!(id);
    if event.get("actor").is_none() {
        event["actor"] = json!(if template % 5 == 4 {
            "https://lms.example.edu.pk/users/grader".to_owned()
        } else {
            actor
        });
    }
    event["eventTime"] = json!("2026-03-02T04:59:58.120Z");
    event["group"] = json!("https://lms.example.edu.pk/courses/7");
    event
}

proptest! {
    #[test]
    fn no_bytes_make_it_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_envelope(&body, "moodle", &CourseMap::default());
    }

    #[test]
    fn no_json_value_makes_it_panic(value in json_value()) {
        let _ = read_envelope(value.to_string().as_bytes(), "moodle", &CourseMap::default());
    }

    #[test]
    fn no_items_of_data_make_it_panic(items in prop::collection::vec(json_value(), 0..6)) {
        let body = envelope(items).to_string();
        let _ = read_envelope(body.as_bytes(), "moodle", &CourseMap::default());
    }

    #[test]
    fn no_field_of_a_valid_event_makes_it_panic(
        template in 0usize..5,
        field in key(),
        value in json_value(),
    ) {
        let mut event = valid_event(7, 1, template);
        event[&field] = value.clone();
        let mut nested = valid_event(7, 1, template);
        if let Some(Value::Object(object)) = nested.get_mut("object") {
            object.insert(field, value);
        }
        for event in [event, nested] {
            let body = envelope(vec![event]).to_string();
            let _ = read_envelope(body.as_bytes(), "moodle", &CourseMap::default());
        }
    }

    #[test]
    fn valid_envelopes_keep_their_events_ids_and_count(
        events in prop::collection::vec((any::<u128>(), 0u32..1_000_000, 0usize..5), 1..40),
        entities in 0usize..4,
    ) {
        let mut data: Vec<Value> = events
            .iter()
            .map(|(uuid, learner, template)| valid_event(*uuid, *learner, *template))
            .collect();
        let ids: Vec<String> = data.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
        for n in 0..entities {
            data.insert(
                n * 2 % (data.len() + 1),
                json!({"id": format!("https://lms.example.edu.pk/users/{n}"), "type": "Person"}),
            );
        }
        let body = envelope(data).to_string();
        let mapped = read_envelope(body.as_bytes(), "moodle", &CourseMap::default()).unwrap();
        prop_assert_eq!(mapped.ignored, entities);
        let mapped_ids: Vec<String> = mapped.events.iter().map(|e| e.event_id.clone()).collect();
        prop_assert_eq!(mapped_ids, ids);
        for event in &mapped.events {
            prop_assert_eq!(&event.source, "moodle");
            prop_assert_eq!(&event.course_id, "https://lms.example.edu.pk/courses/7");
            prop_assert!(event.score.is_none_or(|s| (0.0..=1.0).contains(&s)));
            prop_assert!(!event.learner.as_str().ends_with("grader"));
        }
    }
}
