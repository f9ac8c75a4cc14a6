//! Keys and roles: 401 without a valid key, 403 for the wrong role, partner answers perturbed
//! and audited, ingest keys bound to their source, revocation, and per-key rate limits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use nigrani_e2e::{TestServer, event, ndjson};
use serde_json::Value;

fn key(server: &TestServer, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "create", "--role", role, "--name", "test"];
    args.extend_from_slice(extra);
    server.cli(&args).trim().to_owned()
}

fn status(server: &TestServer, key: Option<&str>, path: &str) -> (u16, Value) {
    let ((status, body), _) = server.get_as(key, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn keys_roles_and_their_errors() {
    let server = TestServer::sqlite();
    let (code, body) = status(&server, None, "/api/v1/breakdown");
    assert_eq!((code, body["code"].as_str()), (401, Some("missing_key")));
    let (code, body) = status(
        &server,
        Some("nk_12345678_00000000000000000000000000000000"),
        "/api/v1/breakdown",
    );
    assert_eq!((code, body["code"].as_str()), (401, Some("invalid_key")));
    let (code, body) = status(&server, Some("not-a-key"), "/api/v1/breakdown");
    assert_eq!((code, body["code"].as_str()), (401, Some("invalid_key")));

    let partner = key(&server, "partner", &[]);
    let manager = key(&server, "manager", &[]);
    let ingest = key(&server, "ingest", &["--source", "coursera"]);
    assert_eq!(status(&server, Some(&partner), "/api/v1/breakdown").0, 200);
    assert_eq!(status(&server, Some(&manager), "/api/v1/learners").0, 200);
    for (key, path) in [
        (&partner, "/api/v1/learners"),
        (&partner, "/api/v1/rejections"),
        (&manager, "/api/v1/audit"),
        (&ingest, "/api/v1/breakdown"),
    ] {
        let (code, body) = status(&server, Some(key), path);
        assert_eq!(
            (code, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (code, _) = server.post_as(&partner, "/api/v1/events", "application/json", "[]");
    assert_eq!(code, 403);

    // Ingest keys send their own source only.
    let mut other = event("o-1", "coursera:x");
    other["source"] = "edx".into();
    let (code, report) = server.post_as(
        &ingest,
        "/api/v1/events",
        "application/x-ndjson",
        ndjson(&[event("i-1", "coursera:x"), other]),
    );
    assert_eq!(code, 200);
    assert_eq!(report["results"][0]["outcome"], "unmatched");
    assert_eq!(report["results"][1]["reason"], "source_mismatch");

    // Revoked keys stop working (the key cache lives a few seconds).
    let id = partner[..11].to_owned();
    assert!(server.cli(&["keys", "revoke", &id]).contains("revoked"));
    let list = server.cli(&["keys", "list"]);
    assert!(list.contains(&id) && list.contains("(revoked)"), "{list}");
    assert!(!list.contains(&partner), "keys are never listed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let (code, _) = status(&server, Some(&partner), "/api/v1/breakdown");
        if code == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revoked key still accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn partners_see_perturbed_figures_and_are_audited() {
    let server = TestServer::sqlite();
    let cohorts = "cohort_id,name,track,starts_on,ends_on,target\nsoft-t,Soft T,soft,2026-01-01,2026-12-31,10\n";
    assert_eq!(server.post("/api/v1/cohorts", "text/csv", cohorts).0, 200);
    // Six learners in Punjab, two in Sindh.
    let mut learners =
        String::from("learner_id,institution,discipline,track,cohort,role,identities\n");
    for i in 0..8 {
        let institution = if i < 6 { "PK-PB-001" } else { "PK-SD-001" };
        learners.push_str(&format!(
            "L{i},{institution},education,soft,soft-t,faculty,coursera:l{i}\n"
        ));
    }
    assert_eq!(server.post("/api/v1/learners", "text/csv", learners).0, 200);
    let partner = key(&server, "partner", &[]);
    let path = "/api/v1/breakdown?by=province&metrics=enrolled,completion_rate&totals=true";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let manager_view = loop {
        let (_, body) = status(&server, Some(nigrani_e2e::ADMIN_KEY), path);
        if body["rows"].as_array().is_some_and(|r| r.len() == 3) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        manager_view["rows"][1]["enrolled"], 2,
        "managers see exact figures"
    );

    let (code, partner_view) = status(&server, Some(&partner), path);
    assert_eq!(code, 200);
    assert_eq!(partner_view["disclosure"]["perturbed"], true);
    assert_eq!(partner_view["disclosure"]["additive"], false);
    assert_eq!(manager_view["disclosure"]["perturbed"], false);
    for row in partner_view["rows"].as_array().unwrap() {
        for field in ["learners", "enrolled"] {
            let n = row[field].as_u64().unwrap();
            assert!(n == 0 || n >= 5, "no count from 1 to k-1: {row}");
            let truth = match row["province"].as_str() {
                None => 8,
                Some("punjab") => 6,
                _ => 2,
            };
            assert!(
                n.abs_diff(truth) <= 5,
                "within max_noise of the truth: {row}"
            );
        }
        assert!(
            row["completion_rate"].is_null(),
            "no rate over fewer than min_base learners: {row}"
        );
    }
    let (_, again) = status(&server, Some(&partner), path);
    assert_eq!(
        again["rows"], partner_view["rows"],
        "the same cells, the same answer"
    );
    // The metrics a breakdown does not ask for come from the same cells: the program's
    // learners are one cell, whichever query it is in.
    let (_, program) = status(
        &server,
        Some(&partner),
        "/api/v1/breakdown?metrics=enrolled",
    );
    let total = partner_view["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["province"].is_null())
        .unwrap();
    assert_eq!(program["rows"][0]["enrolled"], total["enrolled"]);

    let (_, audit) = status(&server, Some(nigrani_e2e::ADMIN_KEY), "/api/v1/audit");
    let entries = audit["audit"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        3,
        "only partner requests are audited: {audit}"
    );
    assert!(entries.iter().all(|e| e["key_id"] == partner[..11]));
    assert_eq!(entries[0]["key_id"], partner[..11]);
    assert_eq!(entries[0]["path"], "/api/v1/breakdown");
    assert_eq!(entries[0]["status"], 200);

    // A window inside one day is empty once a partner's times are whole days: the error says
    // so, rather than quoting times the partner never sent.
    let within_a_day = "/api/v1/breakdown?from=2026-11-10T08:00:00Z&to=2026-11-10T12:00:00Z";
    let (code, body) = status(&server, Some(&partner), within_a_day);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["code"], "invalid_query");
    assert!(
        body["message"].as_str().unwrap().contains("whole days"),
        "{body}"
    );
    let (code, _) = status(&server, Some(nigrani_e2e::ADMIN_KEY), within_a_day);
    assert_eq!(code, 200, "managers may ask any window");
}

#[test]
fn keys_are_rate_limited_with_retry_after() {
    let server = TestServer::sqlite_with(&[("NIGRANI_RATE_LIMIT_PER_SECOND", "5")]);
    let manager = key(&server, "manager", &[]);
    let mut limited = None;
    for _ in 0..40 {
        let ((code, body), retry_after) = server.get_as(Some(&manager), "/api/v1/targets");
        if code == 429 {
            limited = Some((body, retry_after));
            break;
        }
    }
    let (body, retry_after) = limited.expect("a burst past the limit gets 429");
    assert!(body.contains("rate_limited"));
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        server
            .get_as(Some(nigrani_e2e::ADMIN_KEY), "/api/v1/targets")
            .0
            .0,
        200,
        "other keys are unaffected"
    );
}
