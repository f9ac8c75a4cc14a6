//! The xAPI validator on statements as platforms emit them (fixtures under `fixtures/xapi/`),
//! and properties that hold for any statement: a valid one stays valid whatever its key order,
//! and any one rule broken anywhere is refused with the path of what broke it.

use nigrani_ingest::xapi::validate::{
    Version, duration_seconds, is_language_tag, parse_timestamp, validate_statement,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/xapi/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn statements_from_real_platforms_pass() {
    for name in ["coursera_completed", "moodle_progressed_cmi5"] {
        for version in [Version::V1_0_3, Version::V2_0_0] {
            validate_statement(&fixture(name), version).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    validate_statement(&fixture("openedx_passed_2_0"), Version::V2_0_0).unwrap();
    let refused = validate_statement(&fixture("openedx_passed_2_0"), Version::V1_0_3).unwrap_err();
    assert!(refused.to_string().contains("context"), "{refused}");
}

/// Every place in a valid statement where a value can be replaced, with a replacement that
/// breaks a rule there.
fn breakages() -> Vec<(&'static str, Value)> {
    vec![
        ("/id", json!("2b1c6a57-1f0e-4f4e-9d2b-6f1c0e7a3d4")),
        ("/id", json!(17)),
        ("/actor", json!({"name": "no identifier"})),
        (
            "/actor",
            json!({"mbox": "mailto:a@b.pk", "mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}),
        ),
        (
            "/actor/account",
            json!({"homePage": "www.coursera.org", "name": "x"}),
        ),
        (
            "/actor/account",
            json!({"homePage": "https://www.coursera.org"}),
        ),
        ("/actor/objectType", json!("agent")),
        ("/actor/name", Value::Null),
        ("/verb/id", json!("completed")),
        ("/verb/display", json!({"en_US": "completed"})),
        ("/verb/display", json!({"en-US": 3})),
        ("/object/id", json!("ai-for-everyone")),
        ("/object/objectType", json!("Course")),
        ("/object/definition/type", json!("course")),
        ("/object/definition/name", json!("AI For Everyone")),
        ("/result/score/scaled", json!(-1.01)),
        ("/result/score/raw", json!(-1)),
        ("/result/score/min", json!(100)),
        ("/result/completion", json!("true")),
        ("/result/success", Value::Null),
        ("/context/language", json!("en_US")),
        (
            "/context/contextActivities/grouping",
            json!([{"id": "no scheme"}]),
        ),
        ("/context/contextActivities", json!({"Grouping": []})),
        ("/context/registration", json!("not-a-registration")),
        ("/timestamp", json!("2026-11-28T04:12:55-00:00")),
        ("/timestamp", json!("2026-11-28 04:12")),
        ("/timestamp", json!("28/11/2026")),
    ]
}

#[test]
fn each_broken_rule_is_refused_where_it_broke() {
    for (pointer, bad) in breakages() {
        let mut statement = fixture("coursera_completed");
        *statement.pointer_mut(pointer).unwrap() = bad.clone();
        let error = validate_statement(&statement, Version::V1_0_3)
            .err()
            .unwrap_or_else(|| panic!("{pointer} = {bad} was accepted"));
        let at = pointer.trim_start_matches('/').replace('/', ".");
        let parent = at.rsplit_once('.').map_or("", |(p, _)| p);
        assert!(
            error.path.starts_with(&at) || at.starts_with(&error.path) || error.path == parent,
            "{pointer} = {bad}: reported at `{}`: {error}",
            error.path
        );
    }
}

#[test]
fn unknown_and_miscased_keys_are_refused_at_every_level() {
    for pointer in [
        "",
        "/actor",
        "/verb",
        "/object",
        "/object/definition",
        "/result",
        "/result/score",
        "/context",
    ] {
        for key in ["extra", "ID", "Verb", "objecttype"] {
            let mut statement = fixture("coursera_completed");
            let Some(Value::Object(map)) = statement.pointer_mut(pointer) else {
                panic!("{pointer}");
            };
            map.insert(key.to_owned(), json!("x"));
            assert!(
                validate_statement(&statement, Version::V2_0_0).is_err(),
                "{key} at `{pointer}` was accepted"
            );
        }
    }
}

#[test]
fn a_voiding_statement_names_a_statement() {
    let voiding = json!({
        "actor": {"mbox": "mailto:admin@hec.gov.pk"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
        "object": {"objectType": "StatementRef", "id": "2b1c6a57-1f0e-4f4e-9d2b-6f1c0e7a3d41"}
    });
    validate_statement(&voiding, Version::V1_0_3).unwrap();
    let mut of_activity = voiding.clone();
    of_activity["object"] = json!({"id": "https://www.coursera.org/learn/ai-for-everyone"});
    assert!(validate_statement(&of_activity, Version::V1_0_3).is_err());
}

#[test]
fn sub_statements_nest_once() {
    let mut statement = fixture("coursera_completed");
    statement.as_object_mut().unwrap().remove("context");
    let inner = statement.clone();
    let mut sub = json!({"objectType": "SubStatement"});
    for key in ["actor", "verb", "object"] {
        sub[key] = inner[key].clone();
    }
    statement["object"] = sub.clone();
    validate_statement(&statement, Version::V1_0_3).unwrap();
    let mut nested = statement.clone();
    nested["object"]["object"] = sub;
    assert!(validate_statement(&nested, Version::V1_0_3).is_err());
    let mut with_id = statement;
    with_id["object"]["id"] = json!("2b1c6a57-1f0e-4f4e-9d2b-6f1c0e7a3d41");
    assert!(validate_statement(&with_id, Version::V1_0_3).is_err());
}

/// A JSON value with arbitrary keys and nulls, as a sender's extension might hold.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-zA-Z ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn extensions_take_any_values(value in any_json()) {
        let mut statement = fixture("coursera_completed");
        statement["result"]["extensions"] = json!({"https://nigrani.example/ext/any": value});
        prop_assert!(validate_statement(&statement, Version::V2_0_0).is_ok());
    }

    #[test]
    fn one_breakage_anywhere_is_refused(index in 0..27usize, version in prop_oneof![Just(Version::V1_0_3), Just(Version::V2_0_0)]) {
        let breakages = breakages();
        let (pointer, bad) = &breakages[index % breakages.len()];
        let mut statement = fixture("coursera_completed");
        *statement.pointer_mut(pointer).unwrap() = bad.clone();
        prop_assert!(validate_statement(&statement, version).is_err());
    }

    #[test]
    fn scores_are_refused_exactly_when_out_of_range(
        scaled in -2.0f64..2.0, raw in -50.0f64..150.0, min in -10.0f64..10.0, max in 90.0f64..110.0,
    ) {
        let mut statement = fixture("coursera_completed");
        statement["result"]["score"] = json!({"scaled": scaled, "raw": raw, "min": min, "max": max});
        let valid = (-1.0..=1.0).contains(&scaled) && raw >= min && raw <= max;
        prop_assert_eq!(validate_statement(&statement, Version::V1_0_3).is_ok(), valid);
    }

    #[test]
    fn rfc3339_timestamps_with_an_offset_parse(
        secs in 0i64..4_102_444_800, offset_minutes in -720i32..=840, millis in 0u32..1000,
    ) {
        let at = chrono::DateTime::from_timestamp(secs, millis * 1_000_000).unwrap();
        let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let text = at.with_timezone(&zone).to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        let parsed = parse_timestamp(&text);
        if text.ends_with("-00:00") {
            prop_assert!(parsed.is_none());
        } else {
            prop_assert_eq!(parsed, Some(at));
        }
        // Without its offset the same time is refused.
        prop_assert!(parse_timestamp(&text[..text.len() - 6]).is_none());
    }

    #[test]
    fn durations_read_back(h in 0u32..1000, m in 0u32..60, s in 0u32..60) {
        let text = format!("PT{h}H{m}M{s}S");
        prop_assert_eq!(duration_seconds(&text), Some(f64::from(h * 3600 + m * 60 + s)));
    }

    #[test]
    fn well_formed_language_tags_pass(
        language in "[a-z]{2,3}", script in proptest::option::of("[A-Z][a-z]{3}"),
        region in proptest::option::of("[A-Z]{2}|[0-9]{3}"),
    ) {
        let mut tag = language;
        for part in [script, region].into_iter().flatten() {
            tag = format!("{tag}-{part}");
        }
        prop_assert!(is_language_tag(&tag), "{}", tag);
        let broken = format!("{tag}-");
        prop_assert!(!is_language_tag(&broken));
    }

    #[test]
    fn the_validator_never_panics(value in any_json()) {
        let _ = validate_statement(&value, Version::V1_0_3);
        let _ = validate_statement(&json!({"actor": value.clone(), "verb": value.clone(), "object": value}), Version::V2_0_0);
    }
}
