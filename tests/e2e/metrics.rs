//! `/metrics`: bounded labels, the service metrics in public and the program gauges only for
//! manager and admin keys, and `promtool check metrics` passing on the real output.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Stdio};

use nigrani_e2e::{ADMIN_KEY, TestServer, event, ndjson};

#[test]
fn metrics_are_bounded_and_pass_promtool() {
    let server = TestServer::sqlite();
    let cohorts = "cohort_id,name,track,starts_on,ends_on,target\nsoft-t,Soft T,soft,2026-01-01,2026-12-31,10\n";
    assert_eq!(server.post("/api/v1/cohorts", "text/csv", cohorts).0, 200);
    let learners = "learner_id,institution,discipline,track,cohort,role,identities\nL1,PK-PB-001,education,soft,soft-t,faculty,coursera:l1\n";
    assert_eq!(server.post("/api/v1/learners", "text/csv", learners).0, 200);
    let mut bad = event("bad", "coursera:l1");
    bad["kind"] = "flew".into();
    server.post(
        "/api/v1/events",
        "application/x-ndjson",
        ndjson(&[event("m-1", "coursera:l1"), bad]),
    );
    server.get("/api/v1/institutions");
    server.get("/api/v1/no-such-thing-12345");
    std::thread::sleep(std::time::Duration::from_millis(600)); // one analytics refresh

    let ((status, text), _) = server.get_as(None, "/metrics");
    assert_eq!(status, 200);
    for needle in [
        r#"nigrani_events_ingested_total{outcome="accepted",source="coursera"} 1"#,
        r#"nigrani_events_ingested_total{outcome="rejected",source="coursera"} 1"#,
        r#"nigrani_http_requests_total{method="GET",route="/api/v1/{kind}",status="200"}"#,
        r#"nigrani_http_request_duration_seconds_bucket{method="POST",route="/api/v1/events""#,
        "nigrani_store_write_duration_seconds_count",
        r#"nigrani_source_last_event_received_timestamp_seconds{source="coursera"}"#,
        "nigrani_analytics_refreshes",
        "nigrani_ingest_batches_in_flight",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(
        !text.contains("no-such-thing"),
        "raw paths never become labels"
    );
    // Nothing about learners without a key: the program gauges are a route of their own.
    for program in ["nigrani_learners", "nigrani_cohort_completion_ratio"] {
        assert!(!text.contains(program), "`{program}` is public:\n{text}");
    }
    let ((status, _), _) = server.get_as(None, "/metrics/program");
    assert_eq!(status, 401, "the program gauges need a key");
    let out = server.cli(&["keys", "create", "--name", "meta", "--role", "partner"]);
    let partner = out
        .split_whitespace()
        .find(|w| w.starts_with("nk_"))
        .unwrap();
    let ((status, _), _) = server.get_as(Some(partner), "/metrics/program");
    assert_eq!(
        status, 403,
        "exact program figures are not for partner keys"
    );
    let ((status, program), _) = server.get_as(Some(ADMIN_KEY), "/metrics/program");
    assert_eq!(status, 200);
    for needle in [
        r#"nigrani_learners{province="punjab",status="enrolled",track="soft"} 1"#,
        r#"nigrani_cohort_completion_ratio{cohort="soft-t"} 0"#,
    ] {
        assert!(
            program.contains(needle),
            "missing `{needle}` in:\n{program}"
        );
    }

    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert_ne!(
            std::env::var("NIGRANI_TEST_REQUIRE_PROMTOOL").as_deref(),
            Ok("1"),
            "promtool is required but not installed"
        );
        // Straight to stderr, past libtest's capture, so that the skip shows in a passing run
        // (as nigrani_store::testing does for PostgreSQL).
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: `promtool check metrics` did not run: promtool is not installed \
             (NIGRANI_TEST_REQUIRE_PROMTOOL=1 makes this a failure)"
        );
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{text}{program}").as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn metrics_can_have_their_own_port() {
    let server = TestServer::sqlite_with(&[("NIGRANI_METRICS_LISTEN", "127.0.0.1:0")]);
    let url = server
        .metrics_url
        .clone()
        .expect("the metrics address is printed");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(&url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("nigrani_analytics_refreshes"), "{text}");
    // Only `/metrics` is there: the API stays on the main port.
    let other = url.replace("/metrics", "/api/v1/summary");
    assert_eq!(agent.get(&other).call().unwrap().status().as_u16(), 404);
    assert_eq!(
        server.get_as(None, "/metrics").0.0,
        200,
        "and on the main port too"
    );
}
