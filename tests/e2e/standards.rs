//! The standard feeds end to end: xAPI statements as a learning record store takes them
//! (versions, validation, conflicts, voiding, reading back, keys), and IMS Caliper envelopes —
//! each reaching the figures the way native events do.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use base64::Engine as _;
use nigrani_e2e::{ADMIN_KEY, COURSES, TestServer, load_small_program, wait_for};
use serde_json::{Value, json};

const VERSION: (&str, &str) = ("X-Experience-API-Version", "1.0.3");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// An ingest key of source `coursera`, as HTTP Basic credentials (id as user, rest as password).
fn basic_ingest_key(server: &TestServer) -> String {
    let out = server.cli(&[
        "keys", "create", "--role", "ingest", "--name", "lrs", "--source", "coursera",
    ]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("nk_"))
        .unwrap();
    let (id, secret) = key.rsplit_once('_').unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {encoded}")
}

fn platform_course(i: usize) -> String {
    format!("https://www.coursera.org/learn/{}", COURSES[i])
}

fn completed(id: &str, learner: &str, course: usize) -> Value {
    json!({
        "id": id,
        "actor": {"objectType": "Agent",
                  "account": {"homePage": "https://www.coursera.org", "name": learner}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
        "object": {"objectType": "Activity", "id": platform_course(course),
                   "definition": {"name": {"en-US": "A course of the program"}}},
        "timestamp": "2026-03-20T10:00:00+05:00"
    })
}

fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    auth: &str,
    body: &Value,
) -> (u16, std::collections::HashMap<String, String>, Value) {
    let text = body.to_string();
    let (status, headers, answer) = server.request(
        method,
        path,
        &[("Authorization", auth), VERSION, JSON],
        Some(text.as_bytes()),
    );
    (
        status,
        headers,
        serde_json::from_str(&answer).unwrap_or(Value::Null),
    )
}

fn map_courses(server: &TestServer) {
    let csv: String = std::iter::once("source,platform_course_id,course_id\n".to_owned())
        .chain((0..3).map(|i| format!("coursera,{},{}\n", platform_course(i), COURSES[i])))
        .collect();
    let (status, body) = server.post("/api/v1/course-mappings", "text/csv", csv);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mappings"], 3);
}

const IDS: [&str; 3] = [
    "6c1f4a9e-0b2d-4c3e-9f5a-7d8e9f0a1b2c",
    "6c1f4a9e-0b2d-4c3e-9f5a-7d8e9f0a1b2d",
    "6c1f4a9e-0b2d-4c3e-9f5a-7d8e9f0a1b2e",
];

#[test]
fn statements_reach_the_figures_and_voiding_retracts_them() {
    let server = TestServer::sqlite();
    load_small_program(&server);
    map_courses(&server);
    let auth = basic_ingest_key(&server);
    let path = "/api/v1/breakdown?metrics=completed";
    wait_for(&server, path, |b| b["rows"][0]["completed"] == 1);

    // Learner C (coursera:c) completes the three courses: three statements, one batch.
    let batch = json!([
        completed(IDS[0], "c", 0),
        completed(IDS[1], "c", 1),
        completed(IDS[2], "c", 2)
    ]);
    let (status, headers, ids) = send(&server, "POST", "/xapi/statements", &auth, &batch);
    assert_eq!(status, 200, "{ids}");
    assert_eq!(ids, json!(IDS));
    assert_eq!(headers["x-experience-api-version"], "1.0.3");
    wait_for(&server, path, |b| b["rows"][0]["completed"] == 2);

    // The same statement again changes nothing; with other content it is a conflict.
    let (status, _, _) = send(
        &server,
        "PUT",
        &format!("/xapi/statements?statementId={}", IDS[0]),
        &auth,
        &completed(IDS[0], "c", 0),
    );
    assert_eq!(status, 204);
    let (status, _, body) = send(
        &server,
        "POST",
        "/xapi/statements",
        &auth,
        &completed(IDS[0], "c", 1),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("statement_conflict")),
        "{body}"
    );

    // Voiding one completion retracts it from the figures; the statement stays readable.
    let voiding = json!({
        "actor": {"mbox": "mailto:registrar@hec.gov.pk"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": IDS[2]}
    });
    let (status, _, voiding_id) = send(&server, "POST", "/xapi/statements", &auth, &voiding);
    assert_eq!(status, 200, "{voiding_id}");
    wait_for(&server, path, |b| b["rows"][0]["completed"] == 1);
    let admin = format!("Bearer {ADMIN_KEY}");
    let get = |query: &str| {
        let (status, headers, body) = server.request(
            "GET",
            &format!("/xapi/statements{query}"),
            &[("Authorization", &admin), VERSION],
            None,
        );
        (
            status,
            headers,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let (status, _, _) = get(&format!("?statementId={}", IDS[2]));
    assert_eq!(
        status, 404,
        "a voided statement is not returned by statementId"
    );
    let (status, _, voided) = get(&format!("?voidedStatementId={}", IDS[2]));
    assert_eq!(status, 200);
    assert_eq!(voided["id"], IDS[2]);
    assert!(voided["stored"].is_string() && voided["authority"].is_object());

    // Lists leave voided statements out, filter and page with `more`.
    let (status, headers, page) =
        get("?verb=http%3A%2F%2Fadlnet.gov%2Fexpapi%2Fverbs%2Fcompleted&limit=1&ascending=true");
    assert_eq!(status, 200, "{page}");
    assert!(headers.contains_key("x-experience-api-consistent-through"));
    assert_eq!(page["statements"][0]["id"], IDS[0]);
    let more = page["more"].as_str().unwrap().to_owned();
    let (_, _, next) = get(&more["/xapi/statements".len()..]);
    assert_eq!(next["statements"][0]["id"], IDS[1]);
    assert_eq!(next["more"], "", "the voided third is left out");
    let agent =
        json!({"account": {"homePage": "https://www.coursera.org", "name": "c"}}).to_string();
    let (_, _, by_agent) = get(&format!("?agent={}&format=ids", encode(&agent)));
    assert_eq!(
        by_agent["statements"].as_array().unwrap().len(),
        2,
        "{by_agent}"
    );
    assert_eq!(
        by_agent["statements"][0]["verb"],
        json!({"id": "http://adlnet.gov/expapi/verbs/completed"})
    );

    // Reading statements back is for admins: an ingest key is refused.
    let (status, _, _) = server.request(
        "GET",
        "/xapi/statements",
        &[("Authorization", &auth), VERSION],
        None,
    );
    assert_eq!(status, 403);
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn an_lrs_refuses_what_the_specification_refuses() {
    let server = TestServer::sqlite();
    let auth = basic_ingest_key(&server);
    let good = completed(IDS[0], "c", 0);

    // No version header: 400, and the answer still names a version.
    let (status, headers, body) = server.request(
        "POST",
        "/xapi/statements",
        &[("Authorization", &auth), JSON],
        Some(good.to_string().as_bytes()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("xapi_version"));
    assert!(headers.contains_key("x-experience-api-version"));
    // The about resource needs neither key nor version.
    let (status, _, about) = server.request("GET", "/xapi/about", &[], None);
    assert_eq!(status, 200);
    assert!(about.contains("1.0.3"));

    // One invalid statement refuses the whole batch; nothing of it is stored.
    let mut two_ids = good.clone();
    two_ids["actor"]["mbox"] = json!("mailto:c@uet.edu.pk");
    let mut wrong_case = completed(IDS[1], "c", 0);
    wrong_case["Verb"] = wrong_case["verb"].take();
    wrong_case.as_object_mut().unwrap().remove("verb");
    let mut minus_zero = completed(IDS[1], "c", 0);
    minus_zero["timestamp"] = json!("2026-03-20T10:00:00-00:00");
    let mut scaled = completed(IDS[1], "c", 0);
    scaled["result"] = json!({"score": {"scaled": 1.5}});
    for bad in [two_ids, wrong_case, minus_zero, scaled] {
        let batch = json!([completed(IDS[2], "c", 1), bad]);
        let (status, _, body) = send(&server, "POST", "/xapi/statements", &auth, &batch);
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_statement")),
            "{body}"
        );
    }
    let (status, _, body) = send(
        &server,
        "POST",
        "/xapi/statements",
        &auth,
        &json!([completed(IDS[1], "c", 0), completed(IDS[1], "c", 0)]),
    );
    assert_eq!(status, 400, "two statements with one id: {body}");
    let (status, _, _) = server.request(
        "GET",
        &format!("/xapi/statements?statementId={}", IDS[2]),
        &[("Authorization", &format!("Bearer {ADMIN_KEY}")), VERSION],
        None,
    );
    assert_eq!(status, 404, "nothing of a refused batch is stored");
    let rejections = server.get_json("/api/v1/rejections").1;
    assert!(
        rejections.to_string().contains("xAPI"),
        "refused batches are kept: {rejections}"
    );

    // Without a key, 401 (still naming the version); a statement without an id gets one.
    let (status, headers, _) =
        server.request("POST", "/xapi/statements", &[VERSION, JSON], Some(b"{}"));
    assert_eq!(status, 401);
    assert_eq!(headers["x-experience-api-version"], "1.0.3");
    // An attachment whose data is neither linked nor sent is refused.
    let mut attached = good.clone();
    attached["id"] = json!("1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b");
    attached["attachments"] = json!([{"usageType": "http://id.tincanapi.com/attachment/certificate",
        "display": {"en": "certificate"}, "contentType": "application/pdf", "length": 1024,
        "sha2": "4ac6b0f3c1b7e6a7d2f1e0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2918f7e6d5"}]);
    let (status, _, body) = send(&server, "POST", "/xapi/statements", &auth, &attached);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("fileUrl"),
        "{body}"
    );
    let mut anonymous = good.clone();
    anonymous.as_object_mut().unwrap().remove("id");
    let (status, _, ids) = send(&server, "POST", "/xapi/statements", &auth, &anonymous);
    assert_eq!(status, 200, "{ids}");
    assert_eq!(ids[0].as_str().unwrap().len(), 36);
    // HEAD answers as GET, without a body.
    let admin = format!("Bearer {ADMIN_KEY}");
    let one = format!("/xapi/statements?statementId={}", ids[0].as_str().unwrap());
    let (status, headers, body) =
        server.request("HEAD", &one, &[("Authorization", &admin), VERSION], None);
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["x-experience-api-version"], "1.0.3");
    let (status, _, _) = server.request("HEAD", "/xapi/about", &[], None);
    assert_eq!(status, 200);

    // A statement dated two days ahead is stored, changes no figure, and its event is kept
    // as a rejection with the reason.
    let mut ahead = good.clone();
    ahead["id"] = json!("7d2e5b1a-3c4f-4e6a-9b8c-0d1e2f3a4b5c");
    ahead["timestamp"] = json!((chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339());
    let (status, _, ids) = send(&server, "POST", "/xapi/statements", &auth, &ahead);
    assert_eq!(status, 200, "{ids}");
    let rejections = server.get_json("/api/v1/rejections").1;
    assert!(
        rejections
            .to_string()
            .contains("7d2e5b1a-3c4f-4e6a-9b8c-0d1e2f3a4b5c"),
        "{rejections}"
    );

    // The document resources are not provided.
    let (status, _, _) = server.request(
        "GET",
        "/xapi/activities/state",
        &[("Authorization", &auth), VERSION],
        None,
    );
    assert_eq!(status, 501);
}

#[test]
fn caliper_envelopes_are_taken_and_bad_ones_refused() {
    let server = TestServer::sqlite();
    let envelope = json!({
        "sensor": "https://lms.example.edu.pk/sensors/1",
        "sendTime": "2026-03-20T10:00:05.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1",
        "data": [{
            "@context": "http://purl.imsglobal.org/ctx/caliper/v1p1",
            "id": "urn:uuid:3a648e68-f00d-4c08-aa59-8738e1884f2c",
            "type": "NavigationEvent",
            "actor": {"id": "https://lms.example.edu.pk/users/554433", "type": "Person"},
            "action": "NavigatedTo",
            "object": {"id": "https://lms.example.edu.pk/courses/7/pages/1", "type": "WebPage"},
            "eventTime": "2026-03-20T10:00:00.000Z"
        }]
    });
    let (status, body) = server.post(
        "/caliper/v1p1/events",
        "application/json",
        envelope.to_string(),
    );
    assert_eq!((status, body), (200, Value::Null), "an empty body");
    let stats = server.get_json("/api/v1/status").1;
    assert_eq!(stats["stats"]["unmatched_events"], 1, "{stats}");

    let mut old = envelope.clone();
    old["dataVersion"] = json!("http://purl.imsglobal.org/ctx/caliper/v1p0");
    assert_eq!(
        server
            .post("/caliper/v1p1/events", "application/json", old.to_string())
            .0,
        422
    );
    assert_eq!(
        server
            .post("/caliper/v1p1/events", "text/plain", envelope.to_string())
            .0,
        415
    );
    assert_eq!(
        server
            .post("/caliper/v1p1/events", "application/json", "{\"data\": 1}")
            .0,
        400
    );
}
