//! Coursera end to end: the enrollment report imported as CSV (over HTTP and from the command
//! line), and the scheduled pull of `nigrani serve` against a local stand-in of Coursera's API,
//! its health on `/api/v1/status` and `/metrics` — each reaching the figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[allow(dead_code)] // the stand-in serves the ingest crate's tests too; these use part of it
#[path = "../../crates/ingest/tests/support/coursera_standin.rs"]
mod coursera_standin;

use coursera_standin::{Behaviour, Standin};
use nigrani_e2e::{COURSES, TestServer, load_small_program, wait_for};
use serde_json::{Value, json};

const PROGRAM: &str = "pKx7Qm2aEe6uGw4bNcR1sA";
const PLATFORM_COURSES: [&str; 3] = [
    "Hw3kN6s2EeuPq1b8Yx4zCd",
    "tC2xJ0t5EeuZ7w6y0kX1qA",
    "Lm4pR8u1EeyQ2g5aT7vW3b",
];
const HEADER: &str = "Name,Email,External Id,Course,Course ID,Course Slug,University,Enrollment Time,Last Course Activity Time,Overall Progress,Completed,Removed From Program,Program Slug,Program Name,Completion Time,Course Grade,Course Certificate URL,Course Type";

fn map_courses(server: &TestServer) {
    let csv: String = std::iter::once("source,platform_course_id,course_id\n".to_owned())
        .chain((0..3).map(|i| format!("coursera,{},{}\n", PLATFORM_COURSES[i], COURSES[i])))
        .collect();
    let (status, body) = server.post("/api/v1/course-mappings", "text/csv", csv);
    assert_eq!(status, 200, "{body}");
}

/// The report with learner `learner` having completed the three courses (and one row without a
/// learner, which is kept as a rejection).
fn report(learner: &str) -> String {
    let mut csv = format!("{HEADER}\n");
    for (i, course) in PLATFORM_COURSES.iter().enumerate() {
        csv.push_str(&format!(
            "Sana Iqbal,{learner}@uet.edu.pk,{learner},Course {i},{course},course-{i},UET,2026-02-02 04:00:00 UTC,2026-03-0{d} 04:00:00 UTC,100,Yes,No,ai-soft-skills,AI Soft Skills,2026-03-0{d} 04:00:00 UTC,91%,https://coursera.org/verify/X{i},COURSE\n",
            d = i + 1
        ));
    }
    csv.push_str("No One,,,Course 0,Hw3kN6s2EeuPq1b8Yx4zCd,course-0,UET,2026-02-02 04:00:00 UTC,,10,No,No,ai-soft-skills,AI Soft Skills,,,,COURSE\n");
    csv
}

const COMPLETED: &str = "/api/v1/breakdown?metrics=completed";

#[test]
fn an_imported_report_reaches_the_figures_once() {
    let server = TestServer::sqlite_with(&[("NIGRANI_INGEST__MAX_BODY_BYTES", "4096")]);
    load_small_program(&server);
    map_courses(&server);
    wait_for(&server, COMPLETED, |b| b["rows"][0]["completed"] == 1);

    let (status, body) = server.post("/api/v1/imports/coursera", "text/csv", report("c"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], 4);
    assert_eq!(body["rejected_rows"], 1);
    assert!(body["events"]["accepted"].as_u64().unwrap() >= 3, "{body}");
    wait_for(&server, COMPLETED, |b| b["rows"][0]["completed"] == 2);

    // The same report again changes nothing.
    let (status, again) = server.post("/api/v1/imports/coursera", "text/csv", report("c"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["events"]["accepted"], 0);
    assert_eq!(again["events"]["duplicate"], body["events"]["accepted"]);
    let (_, rejections) = server.get_json("/api/v1/rejections");
    assert!(
        rejections.to_string().contains("coursera"),
        "the learnerless row is kept: {rejections}"
    );

    // A file that is not the report, another media type, a body past the limit.
    let (status, body) = server.post("/api/v1/imports/coursera", "text/csv", "a,b\n1,2\n");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("csv_missing_columns")),
        "{body}"
    );
    let (status, body) = server.post("/api/v1/imports/coursera", "application/json", "[]");
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let big = format!("{}{}", report("d"), "x".repeat(4096));
    let (status, body) = server.post("/api/v1/imports/coursera", "text/csv", big);
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let (status, body) = server.post(
        "/api/v1/imports/coursera",
        "text/csv",
        format!("{HEADER}\n"),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("empty_batch")),
        "{body}"
    );

    // The command line reads the same report from a file, streaming it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.csv");
    std::fs::write(&file, report("d")).unwrap();
    let out = server.cli(&["import", "--format", "coursera", file.to_str().unwrap()]);
    assert!(
        out.contains("imported 4 row(s)") && out.contains("1 rejected"),
        "{out}"
    );
    wait_for(&server, COMPLETED, |b| b["rows"][0]["completed"] == 3);
    let out = server.cli(&["import", "--format", "coursera", file.to_str().unwrap()]);
    assert!(
        out.contains("0 accepted"),
        "re-importing changes nothing: {out}"
    );
}

fn api_row(learner: &str, course: &str, updated_at: i64) -> Value {
    json!({
        "programId": PROGRAM, "programName": "AI Soft Skills",
        "externalId": learner, "email": format!("{learner}@uet.edu.pk"),
        "contentId": course, "contentType": "COURSE", "contentName": "A course",
        "isCompleted": true, "completedAt": updated_at, "overallProgress": 100, "grade": 0.9,
        "enrolledAt": updated_at - 86_400_000, "lastActivityAt": updated_at, "updatedAt": updated_at,
        "membershipState": "MEMBER", "certificateUrl": "https://coursera.org/verify/ABC"
    })
}

#[test]
fn the_scheduled_pull_reaches_the_figures_and_reports_its_health() {
    let updated = 1_773_000_000_000_i64;
    let rows: Vec<Value> = PLATFORM_COURSES
        .iter()
        .enumerate()
        .map(|(i, course)| api_row("c", course, updated + i as i64))
        .collect();
    let standin = Standin::start(PROGRAM, rows, Behaviour::default());
    let config = standin.config(2);
    // The roster and the course mapping first; then the server starts again with the connector,
    // whose first run begins at once.
    let mut server = TestServer::sqlite();
    load_small_program(&server);
    map_courses(&server);
    wait_for(&server, COMPLETED, |b| b["rows"][0]["completed"] == 1);
    server.kill();
    server.restart_with(&[
        ("NIGRANI_COURSERA__ORG_ID", coursera_standin::ORG),
        ("NIGRANI_COURSERA__CLIENT_ID", &config.client_id),
        ("NIGRANI_COURSERA__CLIENT_SECRET", &config.client_secret),
        ("NIGRANI_COURSERA__PROGRAMS", &format!("[\"{PROGRAM}\"]")),
        ("NIGRANI_COURSERA__PAGE_SIZE", "2"),
        ("NIGRANI_COURSERA__API_BASE", &config.api_base),
        ("NIGRANI_COURSERA__TOKEN_URL", &config.token_url),
    ]);
    let (status, _) = wait_for(&server, "/api/v1/status", |s| {
        s["connectors"][0]["last_success_at"].is_string()
    });
    wait_for(&server, COMPLETED, |b| b["rows"][0]["completed"] == 2);
    let connector = &status["connectors"][0];
    assert_eq!(connector["connector"], format!("coursera/{PROGRAM}"));
    assert_eq!(connector["rows_total"], 3);
    assert_eq!(connector["in_pass"], false);
    assert!(connector["last_error"].is_null(), "{connector}");
    let data_as_of =
        chrono::DateTime::parse_from_rfc3339(connector["data_as_of"].as_str().unwrap());
    assert_eq!(data_as_of.unwrap().timestamp_millis(), updated + 2);
    // Two pages of two rows, then the end.
    assert_eq!(standin.page_requests(), 2);
    assert!(standin.token_requests() >= 1);

    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let label = format!("{{connector=\"coursera/{PROGRAM}\"}}");
    for name in [
        "nigrani_connector_last_success_timestamp_seconds",
        "nigrani_connector_last_run_timestamp_seconds",
        "nigrani_connector_rows_read",
        "nigrani_connector_lag_seconds",
        "nigrani_connector_data_lag_seconds",
    ] {
        assert!(
            metrics.contains(&format!("{name}{label}")),
            "{name} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!("nigrani_connector_failing{label} 0")),
        "{metrics}"
    );
}
