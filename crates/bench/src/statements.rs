//! The demo's events as the xAPI statements a platform would send for them, for the xAPI runs
//! of `nigrani-bench ingest`: the same learners, courses, kinds and times, so that the two
//! endpoints do the same work downstream.

use serde_json::{Value, json};

/// The platform's course IRI for a program course (the course mapping maps it back).
pub(crate) fn course_iri(course_id: &str) -> String {
    format!("https://www.coursera.org/learn/{course_id}")
}

/// The statement for demo event `index` of run `run` (ids are unique per run and index).
pub(crate) fn statement_of(event: &Value, run: u32, index: usize) -> Value {
    let learner = match &event["learner"] {
        Value::String(reference) => reference
            .split_once(':')
            .map_or(reference.as_str(), |(_, id)| id)
            .to_owned(),
        // A learner known only by a hashed address: an account nobody on the roster has.
        other => format!("hashed-{}", other["email_sha256"].as_str().unwrap_or("x")),
    };
    let course = event["course_id"].as_str().unwrap_or_default();
    let kind = event["kind"].as_str().unwrap_or_default();
    let (verb, object, result) = match kind {
        "enrolled" => ("registered", course_iri(course), None),
        "started" => ("launched", course_iri(course), None),
        "progressed" => (
            "progressed",
            course_iri(course),
            Some(json!({"extensions": {
                "https://w3id.org/xapi/cmi5/result/extensions/progress":
                    (event["progress"].as_f64().unwrap_or(0.0) * 100.0).round()
            }})),
        ),
        "module_completed" => (
            "completed",
            format!("{}/module/{index}", course_iri(course)),
            None,
        ),
        "assessment_passed" | "assessment_failed" => (
            if kind == "assessment_passed" {
                "passed"
            } else {
                "failed"
            },
            format!("{}/quiz/{index}", course_iri(course)),
            Some(json!({"score": {"scaled": event["score"].as_f64().unwrap_or(0.5)}})),
        ),
        "course_completed" => (
            "completed",
            course_iri(course),
            Some(json!({"completion": true})),
        ),
        "certificate_earned" => ("earned", course_iri(course), None),
        "session_attended" => ("attended", course_iri(course), None),
        _ => ("exited", course_iri(course), None),
    };
    let mut statement = json!({
        "id": format!("{run:08x}-0000-4000-8000-{index:012x}"),
        "actor": {"objectType": "Agent",
                  "account": {"homePage": "https://www.coursera.org", "name": learner}},
        "verb": {"id": format!("http://adlnet.gov/expapi/verbs/{verb}"), "display": {"en-US": verb}},
        "object": {"objectType": "Activity", "id": object,
                   "definition": {"name": {"en-US": course}}},
        "context": {"contextActivities": {"parent": [{"id": course_iri(course)}]},
                    "platform": "Coursera"},
        "timestamp": event["occurred_at"].clone(),
    });
    if let Some(result) = result {
        statement["result"] = result;
    }
    statement
}
