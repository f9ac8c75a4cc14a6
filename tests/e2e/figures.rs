//! The figures over HTTP: a small program with known answers, fresh data showing within the
//! refresh interval, clear errors for bad queries, and two replicas on one PostgreSQL.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use nigrani_e2e::{COURSES, TestServer, course_event as event, load_small_program, wait_for};
use serde_json::{Value, json};

#[test]
fn a_small_program_gives_the_expected_figures() {
    let server = TestServer::sqlite();
    load_small_program(&server);
    let path = "/api/v1/breakdown?by=province&metrics=enrolled,started,completed,trained,withdrawn,completion_rate,avg_progress,avg_score&totals=true&as_of=2026-04-01";
    let (body, _) = wait_for(&server, path, |b| {
        b["rows"]
            .as_array()
            .is_some_and(|r| r.len() == 3 && r[2]["started"] == 3)
    });
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows[0]["province"], "punjab");
    assert_eq!(rows[0]["enrolled"], 2);
    assert_eq!(rows[0]["completed"], 1);
    assert_eq!(rows[0]["trained"], 1);
    assert_eq!(rows[0]["completion_rate"], 0.5);
    // A: 1, B: (0.9 + 0.6 + 0) / 3 = 0.5 → mean 0.75.
    assert!((rows[0]["avg_progress"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert_eq!(rows[0]["avg_score"], 0.8);
    assert_eq!(rows[1]["province"], "sindh");
    assert_eq!(rows[1]["started"], 1, "C only enrolled");
    assert_eq!(rows[1]["withdrawn"], 1);
    assert_eq!(rows[2]["province"], Value::Null, "the total row");
    assert_eq!(rows[2]["enrolled"], 4);

    // Urdu labels for dimension values and metrics.
    let (_, urdu) = server
        .get_json("/api/v1/breakdown?by=province,cohort&metrics=enrolled&lang=ur&as_of=2026-04-01");
    let first = &urdu["rows"][0];
    assert_eq!(first["province_label"], "پنجاب");
    assert_eq!(first["cohort"], "soft-t");
    assert_eq!(
        first["cohort_label"], "Soft T",
        "a cohort without an Urdu name keeps its English one"
    );
    assert_eq!(urdu["metric_labels"]["enrolled"], "داخل شدہ");
    let (_, english) = server.get_json("/api/v1/breakdown?by=track&metrics=trained&lang=en");
    assert_eq!(english["rows"][0]["track_label"], "AI Soft Skills");

    // As of before A completed the third course, nobody has completed.
    let (_, early) =
        server.get_json("/api/v1/breakdown?metrics=completed,started&as_of=2026-03-11T12:00:00Z");
    assert_eq!(early["rows"][0]["completed"], 0);
    assert_eq!(early["rows"][0]["started"], 3);

    let (_, funnel) = server.get_json("/api/v1/funnel?by=track");
    let soft = &funnel["rows"][0];
    assert_eq!(
        (
            soft["enrolled"].as_u64(),
            soft["started"].as_u64(),
            soft["half_way"].as_u64(),
            soft["completed"].as_u64()
        ),
        (Some(4), Some(3), Some(2), Some(1))
    );

    let (_, series) = server.get_json("/api/v1/timeseries?metric=completed&interval=month&from=2026-02-01&to=2026-04-30&cumulative=true&track=soft");
    let points = series["series"]["points"].as_array().unwrap();
    let values: Vec<&Value> = points.iter().map(|p| &p["values"]["all"]).collect();
    assert_eq!(values, [&json!(0.0), &json!(1.0), &json!(1.0)]);
    assert!(
        points[2]["targets"]["all"].as_f64().unwrap() > 0.0,
        "the soft track's trajectory"
    );

    let (_, targets) = server.get_json("/api/v1/targets");
    let cohort = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "soft-t")
        .unwrap();
    assert_eq!(
        (cohort["attained"].as_u64(), cohort["target"].as_u64()),
        (Some(1), Some(4))
    );
}

#[test]
fn breakdowns_come_as_csv_and_polling_costs_a_304() {
    let server = TestServer::sqlite();
    load_small_program(&server);
    let path = "/api/v1/breakdown?by=province&metrics=enrolled,completion_rate&totals=true&as_of=2026-04-01";
    // The roster shows as soon as it is uploaded; wait for the events too.
    wait_for(&server, path, |b| {
        b["rows"]
            .as_array()
            .is_some_and(|r| r.len() == 3 && r[2]["completion_rate"] == 0.25)
    });

    let (status, headers, csv) = server.get_with(&format!("{path}&format=csv"), &[]);
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/csv"));
    assert_eq!(
        csv,
        "province,learners,enrolled,completion_rate\npunjab,2,2,0.5\nsindh,2,2,0.0\n,4,4,0.25\n"
    );
    let (_, _, by_accept) = server.get_with(path, &[("Accept", "text/csv")]);
    assert_eq!(by_accept, csv);

    let (status, headers, body) = server.get_with(path, &[]);
    assert_eq!(status, 200);
    let etag = headers["etag"].clone();
    assert_eq!(headers["cache-control"], "private, no-cache");
    let (status, _, empty) = server.get_with(path, &[("If-None-Match", &etag)]);
    assert_eq!((status, empty.as_str()), (304, ""));
    let (status, _, again) = server.get_with(path, &[("If-None-Match", "\"something-else\"")]);
    assert_eq!((status, again), (200, body));
}

#[test]
fn bad_queries_get_clear_errors() {
    let server = TestServer::sqlite();
    for (path, needle) in [
        ("/api/v1/breakdown?by=colour", "unknown dimension `colour`"),
        (
            "/api/v1/breakdown?metrics=completions",
            "unknown metric `completions`",
        ),
        ("/api/v1/breakdown?colour=red", "unknown parameter `colour`"),
        (
            "/api/v1/breakdown?from=2026-05-01&to=2026-04-01",
            "lies after",
        ),
        (
            "/api/v1/breakdown?period=last_7_days&from=2026-01-01",
            "not both",
        ),
        ("/api/v1/breakdown?period=yesterday", "unknown period"),
        (
            "/api/v1/breakdown?by=province,track,discipline,cohort,institution,gender",
            "at most",
        ),
        ("/api/v1/breakdown?by=track,track", "twice"),
        ("/api/v1/breakdown?interval=month", "needs `by=period`"),
        ("/api/v1/breakdown?by=period", "needs `from`"),
        (
            "/api/v1/breakdown?province=atlantis",
            "not a value of `province`",
        ),
        ("/api/v1/breakdown?track=", "lists no values"),
        ("/api/v1/breakdown?as_of=yesterday", "RFC 3339"),
        ("/api/v1/breakdown?totals=maybe", "true or false"),
        ("/api/v1/breakdown?by=track&by=province", "more than once"),
        ("/api/v1/timeseries", "`metric` is required"),
        (
            "/api/v1/timeseries?metric=avg_progress",
            "latest moment only",
        ),
        (
            "/api/v1/timeseries?metric=completed&interval=day&from=2020-01-01",
            "more than 400 points",
        ),
        ("/api/v1/funnel?by=planet", "unknown dimension"),
        ("/api/v1/targets?x=1", "unknown parameter"),
        ("/api/v1/breakdown?format=xml", "`format` must be"),
        ("/api/v1/breakdown?lang=fr", "`lang` must be"),
    ] {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "invalid_query", "{path}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
}

#[test]
fn new_events_show_in_queries_within_the_refresh_interval() {
    let server = TestServer::sqlite();
    load_small_program(&server);
    let path = "/api/v1/breakdown?metrics=completed";
    wait_for(&server, path, |b| b["rows"][0]["completed"] == 1);
    let events: Vec<Value> = COURSES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            event(
                &format!("b-done-{i}"),
                "coursera:b",
                c,
                "course_completed",
                json!({}),
                "2026-04-02T10:00:00Z",
            )
        })
        .collect();
    server.post(
        "/api/v1/events",
        "application/json",
        json!(events).to_string(),
    );
    let (_, waited) = wait_for(&server, path, |b| b["rows"][0]["completed"] == 2);
    assert!(waited < Duration::from_secs(2), "visible after {waited:?}");
}

/// Two nigrani processes on one PostgreSQL: what one ingests, the other's queries show within
/// two seconds.
#[test]
fn a_second_replica_sees_events_ingested_through_the_first() {
    let Some(first) = TestServer::postgres("replicas") else {
        return;
    };
    let url = first.database_url().unwrap().to_owned();
    let second = TestServer::sqlite_with(&[("NIGRANI_DATABASE_URL", url.as_str())]);
    load_small_program(&first);
    let path = "/api/v1/breakdown?metrics=enrolled,completed";
    wait_for(&second, path, |b| {
        b["rows"][0]["enrolled"] == 4 && b["rows"][0]["completed"] == 1
    });

    let events: Vec<Value> = COURSES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            event(
                &format!("c-done-{i}"),
                "coursera:c",
                c,
                "course_completed",
                json!({}),
                "2026-04-03T10:00:00Z",
            )
        })
        .collect();
    let sent = Instant::now();
    let (status, _) = first.post(
        "/api/v1/events",
        "application/json",
        json!(events).to_string(),
    );
    assert_eq!(status, 200);
    let acknowledged = sent.elapsed();
    let (_, waited) = wait_for(&second, path, |b| b["rows"][0]["completed"] == 2);
    assert!(
        waited < Duration::from_secs(2),
        "the second replica saw it after {waited:?} (ack took {acknowledged:?})"
    );
}
