//! Bad input over HTTP: each case gets a clear 4xx (or a per-event rejection) with its code, the
//! server keeps serving, and the valid events of a batch are never lost.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use nigrani_e2e::{TestServer, event, ndjson};
use serde_json::{Value, json};

fn outcomes(report: &Value) -> Vec<(String, Option<String>)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn status_counts(server: &TestServer) -> Value {
    server.get_json("/api/v1/status").1["stats"].clone()
}

#[test]
fn invalid_events_are_rejected_one_by_one_and_valid_ones_kept() {
    let server = TestServer::sqlite();
    let mut wrong_type = event("e-type", "coursera:a");
    wrong_type["progress"] = json!("half");
    let mut unknown_kind = event("e-kind", "coursera:a");
    unknown_kind["kind"] = json!("graduated");
    let mut progress_high = event("e-progress", "coursera:a");
    progress_high["progress"] = json!(1.2);
    let mut score_low = event("e-score", "coursera:a");
    score_low["score"] = json!(-0.5);
    let mut no_zone = event("e-zone", "coursera:a");
    no_zone["occurred_at"] = json!("2026-03-01T10:00:00");
    let mut future = event("e-future", "coursera:a");
    future["occurred_at"] = json!("2099-01-01T00:00:00Z");
    let batch = json!([
        event("ok-1", "coursera:a"),
        wrong_type,
        unknown_kind,
        progress_high,
        score_low,
        no_zone,
        future,
        "not an object",
        event("ok-2", "coursera:b"),
    ]);
    let (status, report) = server.post("/api/v1/events", "application/json", batch.to_string());
    assert_eq!(status, 200, "{report}");
    let reasons: Vec<_> = outcomes(&report)
        .into_iter()
        .map(|(o, r)| r.unwrap_or(o))
        .collect();
    assert_eq!(
        reasons,
        [
            "unmatched",
            "invalid_field",
            "unknown_kind",
            "out_of_range",
            "out_of_range",
            "timestamp_without_zone",
            "timestamp_in_future",
            "invalid_field",
            "unmatched",
        ]
    );
    assert_eq!(report["counts"]["rejected"], 7);

    let stats = status_counts(&server);
    assert_eq!(
        stats["events"], 2,
        "the valid events of the batch were stored"
    );
    assert_eq!(stats["rejections"], 7, "every rejection was kept");
    let (_, rejections) = server.get_json("/api/v1/rejections?limit=3");
    assert_eq!(rejections["rejections"].as_array().unwrap().len(), 3);
    assert_eq!(rejections["rejections"][0]["reason"], "invalid_field");
    assert_eq!(rejections["rejections"][0]["event_id"], "e-type");
    let next = rejections["next_after"].as_i64().unwrap();
    let (_, rest) = server.get_json(&format!("/api/v1/rejections?after={next}"));
    assert_eq!(rest["rejections"].as_array().unwrap().len(), 4);
}

#[test]
fn malformed_bodies_and_lines() {
    let server = TestServer::sqlite();
    let (status, error) = server.post("/api/v1/events", "application/json", "[{\"source\": ");
    assert_eq!(status, 400);
    assert_eq!(error["code"], "malformed_json");
    assert!(error["message"].as_str().unwrap().contains("kept"));

    let (status, error) = server.post("/api/v1/events", "application/json", "42");
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_body"))
    );

    // In NDJSON a bad line is one rejection; the lines around it go on.
    let body = format!(
        "{}\n{{oops\n{}\n",
        event("n-1", "coursera:a"),
        event("n-2", "coursera:a")
    );
    let (status, report) = server.post("/api/v1/events", "application/x-ndjson", body);
    assert_eq!(status, 200);
    let got = outcomes(&report);
    assert_eq!(got[1], ("rejected".into(), Some("malformed_json".into())));
    assert_eq!(report["counts"]["unmatched"], 2);

    let (_, rejections) = server.get_json("/api/v1/rejections");
    let kept: Vec<&str> = rejections["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["raw"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["[{\"source\": ", "42", "{oops"]);
}

#[test]
fn empty_batches_and_missing_content_types_are_refused() {
    let server = TestServer::sqlite();
    for (content_type, body) in [
        ("application/json", "[]"),
        ("application/x-ndjson", "\n \n"),
    ] {
        let (status, error) = server.post("/api/v1/events", content_type, body);
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some("empty_batch")),
            "{body:?}"
        );
    }
    let (status, error) = server.post_untyped("/api/v1/events", "[]");
    assert_eq!(
        (status, error["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, error) = server.post("/api/v1/events", "text/plain", "[]");
    assert_eq!(
        (status, error["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert_eq!(status_counts(&server)["events"], 0);
}

#[test]
fn batches_and_bodies_over_the_limits_get_413_and_store_nothing() {
    let server = TestServer::sqlite_with(&[
        ("NIGRANI_INGEST__MAX_EVENTS", "10"),
        ("NIGRANI_INGEST__MAX_BODY_BYTES", "4096"),
    ]);
    let eleven: Vec<Value> = (0..11)
        .map(|i| event(&format!("c-{i}"), "coursera:a"))
        .collect();
    let (status, error) = server.post("/api/v1/events", "application/x-ndjson", ndjson(&eleven));
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("batch_too_large")),
        "{error}"
    );

    let big = format!("[{}]", " ".repeat(5000));
    let (status, error) = server.post("/api/v1/events", "application/json", big);
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(status_counts(&server)["events"], 0);

    let ten = &eleven[..10];
    let (status, report) = server.post("/api/v1/events", "application/x-ndjson", ndjson(ten));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["counts"]["unmatched"], 10);
}

#[test]
fn the_same_id_twice_in_a_batch_and_across_batches() {
    let server = TestServer::sqlite();
    let mut changed = event("d-1", "coursera:a");
    changed["progress"] = json!(0.9);
    let batch = json!([
        event("d-1", "coursera:a"),
        event("d-1", "coursera:a"),
        changed
    ]);
    let (status, report) = server.post("/api/v1/events", "application/json", batch.to_string());
    assert_eq!(status, 200);
    let got: Vec<_> = outcomes(&report).into_iter().map(|(o, _)| o).collect();
    assert_eq!(got, ["unmatched", "duplicate", "conflict"]);
    let seqs: Vec<_> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].clone())
        .collect();
    assert!(
        seqs.iter().all(|s| *s == seqs[0]),
        "all three point at the stored event: {seqs:?}"
    );

    // Replaying the batch changes nothing; the conflict is reported again.
    let (_, again) = server.post("/api/v1/events", "application/json", batch.to_string());
    let got: Vec<_> = outcomes(&again).into_iter().map(|(o, _)| o).collect();
    assert_eq!(got, ["duplicate", "duplicate", "conflict"]);
    let stats = status_counts(&server);
    assert_eq!(stats["events"], 1);
    assert_eq!(stats["rejections"], 2, "each conflict is kept for an admin");
}

#[test]
fn unmatched_events_are_attributed_when_the_roster_arrives() {
    let server = TestServer::sqlite();
    let (_, report) = server.post(
        "/api/v1/events",
        "application/json",
        json!([event("u-1", "coursera:new"), event("u-2", "coursera:new")]).to_string(),
    );
    assert_eq!(report["counts"]["unmatched"], 2);
    // Unmatched activity is a figure of its own, per source.
    assert_eq!(
        server.get_json("/api/v1/status").1["unmatched"],
        json!([{"source": "coursera", "learner_refs": 1, "events": 2}])
    );
    let cohorts = "cohort_id,name,track,starts_on,ends_on,target\nsoft-x,Soft X,soft,2026-02-01,2026-06-30,100\n";
    let (status, body) = server.post("/api/v1/cohorts", "text/csv", cohorts);
    assert_eq!(status, 200, "{body}");
    let learners = "learner_id,institution,discipline,track,cohort,role,identities\n\
                    L1,PK-PB-001,education,soft,soft-x,faculty,coursera:new|email:Someone@uni.edu.pk\n";
    let (status, body) = server.post("/api/v1/learners", "text/csv", learners);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributed_events"], 2);
    assert_eq!(status_counts(&server)["unmatched_events"], 0);
    assert_eq!(server.get_json("/api/v1/status").1["unmatched"], json!([]));
    let (_, csv) = server.get("/api/v1/learners?format=csv");
    assert!(csv.contains("L1,PK-PB-001"), "{csv}");
    assert!(
        !csv.contains("Someone"),
        "e-mail addresses are stored hashed: {csv}"
    );
}

#[test]
fn roster_files_with_problems_are_refused_whole() {
    let server = TestServer::sqlite();
    let cohorts = "cohort_id,name,track,starts_on,ends_on,target\nsoft-x,Soft X,soft,2026-02-01,2026-06-30,100\n";
    assert_eq!(server.post("/api/v1/cohorts", "text/csv", cohorts).0, 200);

    let unknown_institution = "learner_id,institution,discipline,track,cohort,role,identities\n\
        L1,PK-PB-001,education,soft,soft-x,faculty,coursera:1\n\
        L2,PK-ZZ-404,education,soft,soft-x,faculty,coursera:2\n";
    let (status, error) = server.post("/api/v1/learners", "text/csv", unknown_institution);
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("invalid_rows")),
        "{error}"
    );
    let problem = &error["details"]["problems"][0];
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("unknown institution `PK-ZZ-404`")
    );
    assert_eq!(
        status_counts(&server)["learners"],
        0,
        "nothing of the file was written"
    );

    let missing = "learner_id,institution\nL1,PK-PB-001\n";
    let (status, error) = server.post("/api/v1/learners", "text/csv", missing);
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("csv_missing_columns"))
    );
    assert!(error["message"].as_str().unwrap().contains("discipline"));

    let extra = "code,name,stem,colour\nlaw,Law,false,red\n";
    let (status, error) = server.post("/api/v1/disciplines", "text/csv", extra);
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("csv_unknown_columns"))
    );

    let mut bad_utf8 = b"code,name,stem\nlaw,L".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(b"aw,false\n");
    let (status, error) = server.post("/api/v1/disciplines", "text/csv", bad_utf8);
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_utf8")),
        "{error}"
    );
    assert_eq!(error["details"]["line"], 2);

    let (status, error) = server.post("/api/v1/planets", "text/csv", "a\n1\n");
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    let (status, _) = server.get("/api/v1/institutions?colour=red");
    assert_eq!(status, 400);
    assert_eq!(
        server.get("/healthz").0,
        200,
        "still serving after all of it"
    );
}

#[test]
fn reference_data_is_seeded_and_listed() {
    let server = TestServer::sqlite();
    let (status, body) = server.get_json("/api/v1/institutions");
    assert_eq!(status, 200);
    let institutions = body["institutions"].as_array().unwrap();
    assert!(institutions.len() >= 200);
    let provinces: std::collections::HashSet<&str> = institutions
        .iter()
        .map(|i| i["province"].as_str().unwrap())
        .collect();
    assert_eq!(provinces.len(), 7);
    let (_, tracks) = server.get_json("/api/v1/tracks");
    assert_eq!(tracks["tracks"][0]["track"], "soft");
    assert_eq!(tracks["tracks"][0]["target"], 1000);
    assert_eq!(tracks["tracks"][1]["stretch_target"], 500);
    let (status, csv) = server.get("/api/v1/disciplines?format=csv");
    assert_eq!(status, 200);
    assert!(csv.starts_with("code,name,stem,name_ur\n"));
}
