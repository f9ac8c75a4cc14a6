//! What an xAPI statement means to the program: the normalised event it becomes, if any.
//!
//! | verb (last segment, in the ADL, ADL-w3id or Tin Can vocabularies) | event kind |
//! |---|---|
//! | `completed` | `course_completed` (the object is a program course) or `module_completed` |
//! | `passed`, `failed` | `assessment_passed`, `assessment_failed` |
//! | `progressed` | `progressed`, share from the cmi5 progress extension (`http` or `https`) |
//! | `earned` | `certificate_earned` |
//! | `registered` | `enrolled` |
//! | `launched`, `initialized` | `started` |
//! | `attended` | `session_attended` |
//! | `satisfied`, any other verb | none: stored and counted, no figure changes |
//!
//! The learner is the actor: `account` (its `name`, as the sending platform knows the learner:
//! `<source>:<name>`), `mbox` (hashed, as the roster keeps e-mail addresses), `mbox_sha1sum`
//! (`mbox-sha1:<hex>`, which the roster may list) or `openid` (`openid:<IRI>`). A group as actor
//! names no one learner, so its statements change no figure.
//!
//! The course is the object's activity id, through the course mapping; when the object itself is
//! not mapped, the first mapped `parent` or `grouping` activity (a module inside a course). The
//! track and cohort are the roster's: `grouping` activities stay in the statement, for audit.

use chrono::{DateTime, Utc};
use nigrani_domain::event::canonical_json;
use nigrani_domain::{EventKind, LearnerRef, LearningEvent};
use serde_json::Value;

use crate::CourseMap;
use crate::xapi::validate;

/// The vocabularies whose verbs carry program meaning, by IRI prefix (scheme left out).
const VOCABULARIES: &[&str] = &[
    "adlnet.gov/expapi/verbs/",
    "w3id.org/xapi/adl/verbs/",
    "id.tincanapi.com/verb/",
];

/// The cmi5 result extension holding progress (0-100), without its scheme: platforms send both
/// the `http` and the `https` form.
const CMI5_PROGRESS: &str = "w3id.org/xapi/cmi5/result/extensions/progress";

/// The IRI of the voiding verb.
pub const VOIDED: &str = "http://adlnet.gov/expapi/verbs/voided";

/// The verb's name in a known vocabulary (`completed`), if it is one.
fn verb_name(verb_id: &str) -> Option<&str> {
    let rest = verb_id
        .strip_prefix("https://")
        .or_else(|| verb_id.strip_prefix("http://"))?;
    VOCABULARIES
        .iter()
        .find_map(|prefix| rest.strip_prefix(prefix))
        .filter(|name| !name.contains('/'))
}

/// The program's kind for a verb, given whether the object is a program course itself.
fn kind_of(verb_id: &str, object_is_course: bool) -> Option<EventKind> {
    Some(match verb_name(verb_id)? {
        "completed" if object_is_course => EventKind::CourseCompleted,
        "completed" => EventKind::ModuleCompleted,
        "passed" => EventKind::AssessmentPassed,
        "failed" => EventKind::AssessmentFailed,
        "progressed" => EventKind::Progressed,
        "earned" => EventKind::CertificateEarned,
        "registered" => EventKind::Enrolled,
        "launched" | "initialized" => EventKind::Started,
        "attended" => EventKind::SessionAttended,
        _ => return None,
    })
}

/// How the roster may know the actor, when the actor is an agent.
pub fn learner_of(actor: &Value, source: &str) -> Option<LearnerRef> {
    if actor.get("objectType").and_then(Value::as_str) == Some("Group") {
        return None;
    }
    if let Some(mbox) = actor.get("mbox").and_then(Value::as_str) {
        return Some(LearnerRef::from_email(mbox.strip_prefix("mailto:")?));
    }
    if let Some(sha1) = actor.get("mbox_sha1sum").and_then(Value::as_str) {
        return LearnerRef::on_platform("mbox-sha1", &sha1.to_ascii_lowercase()).ok();
    }
    if let Some(account) = actor.get("account") {
        let name = account.get("name").and_then(Value::as_str)?;
        return LearnerRef::on_platform(source, name).ok();
    }
    let openid = actor.get("openid").and_then(Value::as_str)?;
    LearnerRef::on_platform("openid", openid).ok()
}

/// The activity ids of `context.contextActivities.<list>` (one activity or an array).
fn context_activities<'a>(statement: &'a Value, list: &str) -> Vec<&'a str> {
    match statement.pointer(&format!("/context/contextActivities/{list}")) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|a| a.get("id").and_then(Value::as_str))
            .collect(),
        Some(one) => one.get("id").and_then(Value::as_str).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The program course a statement is about, and whether the object itself is that course.
fn course_of(statement: &Value, source: &str, courses: &CourseMap) -> Option<(String, bool)> {
    let object = &statement["object"];
    let object_type = object
        .get("objectType")
        .and_then(Value::as_str)
        .unwrap_or("Activity");
    if object_type != "Activity" {
        return None;
    }
    let id = object.get("id").and_then(Value::as_str)?;
    if courses.is_mapped(source, id) {
        return Some((courses.course_for(source, id), true));
    }
    let outer = context_activities(statement, "parent")
        .into_iter()
        .chain(context_activities(statement, "grouping"))
        .find(|parent| courses.is_mapped(source, parent));
    Some(match outer {
        Some(parent) => (courses.course_for(source, parent), false),
        // Unmapped: kept as sent; it counts as activity but completes no required course.
        None => (id.to_owned(), true),
    })
}

/// The share of the course done, from the cmi5 progress extension (0-100).
fn progress_of(result: &Value) -> Option<f64> {
    let extensions = result.get("extensions")?.as_object()?;
    extensions.iter().find_map(|(key, value)| {
        let bare = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))?;
        (bare == CMI5_PROGRESS)
            .then(|| value.as_f64())
            .flatten()
            .map(|percent| (percent / 100.0).clamp(0.0, 1.0))
    })
}

/// The score as a share, 0-1: `scaled` (a negative one counts as 0), else `raw` between `min`
/// and `max`.
fn score_of(result: &Value) -> Option<f64> {
    let score = result.get("score")?;
    if let Some(scaled) = score.get("scaled").and_then(Value::as_f64) {
        return Some(scaled.clamp(0.0, 1.0));
    }
    let raw = score.get("raw").and_then(Value::as_f64)?;
    let min = score.get("min").and_then(Value::as_f64)?;
    let max = score.get("max").and_then(Value::as_f64)?;
    (max > min).then(|| ((raw - min) / (max - min)).clamp(0.0, 1.0))
}

/// The normalised event of a valid statement as stored (with its `id` and `timestamp`), or
/// `None` when its verb, actor or object carries no program meaning.
pub fn event_of(
    statement: &Value,
    source: &str,
    courses: &CourseMap,
    content_hash: &str,
) -> Option<LearningEvent> {
    let verb_id = statement.pointer("/verb/id").and_then(Value::as_str)?;
    let learner = learner_of(&statement["actor"], source)?;
    let (course_id, object_is_course) = course_of(statement, source, courses)?;
    let kind = kind_of(verb_id, object_is_course)?;
    let occurred_at: DateTime<Utc> = statement
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(validate::parse_timestamp)?;
    let result = statement.get("result").unwrap_or(&Value::Null);
    let statement_id = statement.get("id").and_then(Value::as_str)?;
    // The event's raw text names its statement rather than copying it: the statement (which
    // may hold a clear-text mail address) stays in the admin-only statement store alone.
    let raw = canonical_json(&serde_json::json!({
        "xapi_statement": statement_id,
        "verb": verb_id,
        "object": statement.pointer("/object/id"),
    }));
    Some(LearningEvent {
        source: source.to_owned(),
        event_id: statement_id.to_owned(),
        learner,
        course_id,
        kind,
        progress: if kind == EventKind::Progressed {
            progress_of(result)
        } else {
            None
        },
        score: score_of(result),
        duration_seconds: result
            .get("duration")
            .and_then(Value::as_str)
            .and_then(validate::duration_seconds)
            .map(|seconds| seconds.round() as i64),
        occurred_at,
        // The statement's content hash, so that its event is a duplicate exactly when the
        // statement is.
        content_hash: content_hash.to_owned(),
        earlier_content_hash: None,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn courses() -> CourseMap {
        CourseMap::new([(
            "coursera".to_owned(),
            "https://www.coursera.org/learn/genai-for-educators".to_owned(),
            "genai-teaching-learning".to_owned(),
        )])
    }

    fn statement(verb: &str, object: &str) -> Value {
        json!({
            "id": "4f0c7a3e-9d51-4f6e-8a0b-2c3d4e5f6a7b",
            "actor": {"account": {"homePage": "https://www.coursera.org", "name": "8f3a"}},
            "verb": {"id": verb},
            "object": {"id": object},
            "timestamp": "2026-11-02T10:00:00+05:00",
        })
    }

    #[test]
    fn verbs_map_to_kinds_and_others_to_nothing() {
        let course = "https://www.coursera.org/learn/genai-for-educators";
        let event = |verb: &str| event_of(&statement(verb, course), "coursera", &courses(), "h");
        let completed = event("http://adlnet.gov/expapi/verbs/completed").unwrap();
        assert_eq!(completed.kind, EventKind::CourseCompleted);
        assert_eq!(completed.course_id, "genai-teaching-learning");
        assert_eq!(completed.learner.as_str(), "coursera:8f3a");
        assert_eq!(
            completed.occurred_at.to_rfc3339(),
            "2026-11-02T05:00:00+00:00"
        );
        assert_eq!(
            event("https://w3id.org/xapi/adl/verbs/passed").map(|e| e.kind),
            Some(EventKind::AssessmentPassed)
        );
        assert_eq!(
            event("http://id.tincanapi.com/verb/earned").map(|e| e.kind),
            Some(EventKind::CertificateEarned)
        );
        assert_eq!(
            event("http://adlnet.gov/expapi/verbs/launched").map(|e| e.kind),
            Some(EventKind::Started)
        );
        assert!(event("http://adlnet.gov/expapi/verbs/satisfied").is_none());
        assert!(event("http://adlnet.gov/expapi/verbs/experienced").is_none());
        assert!(event("https://example.org/verbs/completed").is_none());
    }

    #[test]
    fn a_module_inside_a_mapped_course_completes_the_module_only() {
        let mut s = statement(
            "http://adlnet.gov/expapi/verbs/completed",
            "https://www.coursera.org/learn/genai-for-educators/module/2",
        );
        s["context"] = json!({"contextActivities": {"parent": [
            {"id": "https://www.coursera.org/learn/genai-for-educators"}]}});
        let event = event_of(&s, "coursera", &courses(), "h").unwrap();
        assert_eq!(event.kind, EventKind::ModuleCompleted);
        assert_eq!(event.course_id, "genai-teaching-learning");
    }

    #[test]
    fn progress_comes_from_the_cmi5_extension_in_both_schemes() {
        for scheme in ["http", "https"] {
            let mut s = statement(
                "http://adlnet.gov/expapi/verbs/progressed",
                "https://x.pk/a",
            );
            s["result"] = json!({"extensions": {
                format!("{scheme}://w3id.org/xapi/cmi5/result/extensions/progress"): 40}});
            let event = event_of(&s, "moodle", &CourseMap::default(), "h").unwrap();
            assert_eq!(event.progress, Some(0.4), "{scheme}");
            assert_eq!(
                event.course_id, "https://x.pk/a",
                "unmapped ids pass through"
            );
        }
    }

    #[test]
    fn scores_durations_and_learners() {
        let mut s = statement("http://adlnet.gov/expapi/verbs/failed", "https://x.pk/quiz");
        s["result"] = json!({"score": {"raw": 3, "min": 0, "max": 12}, "duration": "PT1H2M3S"});
        s["actor"] = json!({"mbox": "mailto:Ayesha@UET.edu.pk"});
        let event = event_of(&s, "moodle", &CourseMap::default(), "h").unwrap();
        assert_eq!(event.score, Some(0.25));
        assert_eq!(event.duration_seconds, Some(3723));
        assert_eq!(event.learner, LearnerRef::from_email("ayesha@uet.edu.pk"));
        s["result"] = json!({"score": {"scaled": -0.5}});
        assert_eq!(
            event_of(&s, "moodle", &CourseMap::default(), "h")
                .unwrap()
                .score,
            Some(0.0)
        );
        s["actor"] = json!({"objectType": "Group", "mbox": "mailto:team@uet.edu.pk"});
        assert!(event_of(&s, "moodle", &CourseMap::default(), "h").is_none());
    }
}
