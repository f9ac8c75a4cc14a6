//! A hostile client and a failing database: none of it may crash the server, lose the valid
//! events of a batch, leave an outcome misreported, or grow memory or `/metrics` without bound.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nigrani_e2e::{ADMIN_KEY, Data, TestServer, event, ndjson};
use nigrani_store::testing::TestDatabase;
use serde_json::{Value, json};

/// Sends raw bytes on a new connection and reads the answer until the server closes it or
/// `timeout` passes; returns the status (0 when none came) and the whole text.
fn raw(server: &TestServer, request: &[u8], timeout: Duration) -> (u16, String) {
    let address = server.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn outcomes(report: &Value) -> Vec<String> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["reason"]
                .as_str()
                .or(r["outcome"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The NUL character, in every form it can arrive in, gets the same per-event answer on both
/// backends, and the valid events beside it are stored.
fn nul_characters_are_refused_alike(server: &TestServer) -> Vec<Vec<String>> {
    let mut answers = Vec::new();
    let mut escaped = event("nul-escaped", "coursera:a");
    escaped["course_id"] = json!("ai\u{0}fundamentals");
    let mut in_extra = event("nul-extra", "coursera:a");
    in_extra["note"] = json!({"deep": ["x\u{0}"]});
    let batch = json!([event("nul-ok-1", "coursera:a"), escaped, in_extra]);
    let (status, report) = server.post("/api/v1/events", "application/json", batch.to_string());
    assert_eq!(status, 200, "{report}");
    answers.push(outcomes(&report));

    // A raw NUL byte on a line that is not JSON, beside a valid line.
    let mut lines = ndjson(&[event("nul-ok-2", "coursera:a")]).into_bytes();
    lines.extend_from_slice(b"{\"event_id\": \"raw\0nul\"\n");
    let (status, report) = server.post("/api/v1/events", "application/x-ndjson", &lines);
    assert_eq!(status, 200, "{report}");
    answers.push(outcomes(&report));

    // A body that is not JSON at all, with a NUL in it: refused whole, and kept.
    let (status, error) = server.post("/api/v1/events", "application/json", b"[\0oops");
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("malformed_json"))
    );

    // Resending gives the same answers: nothing is left half-stored.
    let (_, report) = server.post("/api/v1/events", "application/x-ndjson", &lines);
    answers.push(outcomes(&report));
    let (_, rejections) = server.get_json("/api/v1/rejections");
    let kept = rejections["rejections"].as_array().unwrap();
    assert!(
        kept.iter()
            .any(|r| r["raw"].as_str().unwrap().contains("raw\u{FFFD}nul")),
        "the malformed line is kept, its NUL replaced: {rejections}"
    );
    assert!(kept.iter().any(|r| r["raw"] == "[\u{FFFD}oops"));
    answers
}

#[test]
fn nul_characters_get_the_same_answer_on_both_backends() {
    let sqlite = TestServer::sqlite();
    let on_sqlite = nul_characters_are_refused_alike(&sqlite);
    let expected: Vec<Vec<&str>> = vec![
        vec!["unmatched", "invalid_field", "invalid_field"],
        vec!["unmatched", "malformed_json"],
        vec!["duplicate", "malformed_json"],
    ];
    assert_eq!(on_sqlite, expected);
    if let Some(postgres) = TestServer::postgres("nul") {
        assert_eq!(nul_characters_are_refused_alike(&postgres), on_sqlite);
    }
}

#[test]
fn a_number_spelled_otherwise_is_a_duplicate_not_a_conflict() {
    let server = TestServer::sqlite();
    let mut first = event("num-1", "coursera:a");
    first["progress"] = json!(1.0);
    first["duration_seconds"] = json!(60);
    let mut again = first.clone();
    again["progress"] = json!(1);
    again["duration_seconds"] = json!(6e1);
    let (_, report) = server.post(
        "/api/v1/events",
        "application/json",
        json!([first]).to_string(),
    );
    assert_eq!(outcomes(&report), ["unmatched"]);
    let (_, report) = server.post(
        "/api/v1/events",
        "application/json",
        json!([again]).to_string(),
    );
    assert_eq!(outcomes(&report), ["duplicate"], "{report}");
}

#[test]
fn methods_are_bounded_in_metrics_and_answered_405_or_501() {
    let server = TestServer::sqlite();
    let lines = |server: &TestServer| server.get("/metrics").1.lines().count();
    // Reading /metrics is a request too: read once first, so that its own series exist.
    lines(&server);
    let mut after_some = 0;
    for i in 0..300 {
        if i == 20 {
            after_some = lines(&server);
        }
        let (status, _) = raw(
            &server,
            &request(&format!("INVENT{i}"), "/api/v1/summary", ""),
            Duration::from_secs(5),
        );
        assert_eq!(status, 405);
        let (status, _) = raw(
            &server,
            &request(&format!("INVENT{i}"), &format!("/nowhere/{i}"), ""),
            Duration::from_secs(5),
        );
        assert_eq!(status, 501);
    }
    let after_all = lines(&server);
    assert_eq!(
        after_all, after_some,
        "/metrics grew from {after_some} to {after_all} lines"
    );

    for method in ["PUT", "DELETE", "TRACE", "PATCH"] {
        let (status, text) = raw(
            &server,
            &request(method, "/api/v1/summary", ""),
            Duration::from_secs(5),
        );
        assert_eq!(status, 405, "{method}: {text}");
        assert!(text.to_ascii_lowercase().contains("allow: get"), "{text}");
        assert!(text.contains("method_not_allowed"), "{text}");
    }
    let (status, text) = raw(
        &server,
        &request("DELETE", "/api/v1/events", ""),
        Duration::from_secs(5),
    );
    assert_eq!(status, 405, "{text}");
    assert!(text.to_ascii_lowercase().contains("allow: post"), "{text}");
    let (status, _) = raw(
        &server,
        &request("GET", "/nowhere", ""),
        Duration::from_secs(5),
    );
    assert_eq!(status, 404);
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_roles_come_before_validation() {
    let server = TestServer::sqlite();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, text) = raw(
            &server,
            &request(
                "GET",
                "/api/v1/status",
                &format!("Authorization: {scheme} {ADMIN_KEY}\r\n"),
            ),
            Duration::from_secs(5),
        );
        assert_eq!(status, 200, "{scheme}: {text}");
    }
    let out = server.cli(&[
        "keys", "create", "--role", "ingest", "--name", "i", "--source", "coursera",
    ]);
    let ingest = out
        .split_whitespace()
        .find(|w| w.starts_with("nk_"))
        .unwrap();
    // An ingest key may not read figures: 403, whatever its query or body says.
    let ((status, body), _) = server.get_as(Some(ingest), "/api/v1/breakdown?by=nonsense");
    assert_eq!(status, 403, "{body}");
    let (status, body) = server.post_as(ingest, "/grafana/query", "application/json", "{not json");
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    // No key: 401 before the bad query.
    let ((status, _), _) = server.get_as(None, "/api/v1/breakdown?by=nonsense");
    assert_eq!(status, 401);
}

#[test]
fn invented_key_ids_cost_little_and_failing_addresses_are_slowed() {
    let server = TestServer::sqlite();
    let mut limited = 0;
    for i in 0..300 {
        let key = format!("nk_{i:08x}_00000000000000000000000000000000");
        let ((status, _), retry_after) = server.get_as(Some(&key), "/api/v1/summary");
        match status {
            401 => {}
            429 => {
                limited += 1;
                assert!(retry_after.is_some());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        limited > 100,
        "only {limited} of 300 failures were rate-limited"
    );
    // A key the server knows still works from the same address.
    assert_eq!(server.get("/api/v1/summary").0, 200);
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_body_of_millions_of_tiny_events_is_refused_in_bounded_memory() {
    let server = TestServer::sqlite();
    let tiny_lines = "{}\n".repeat(10 * 1024 * 1024 / 3);
    let tiny_array = format!("[{}{{}}]", "{},".repeat(10 * 1024 * 1024 / 3 - 1));
    for _ in 0..3 {
        let (status, error) = server.post("/api/v1/events", "application/x-ndjson", &tiny_lines);
        assert_eq!(
            (status, error["code"].as_str()),
            (413, Some("batch_too_large"))
        );
        let (status, error) = server.post("/api/v1/events", "application/json", &tiny_array);
        assert_eq!(
            (status, error["code"].as_str()),
            (413, Some("batch_too_large"))
        );
    }
    let peak = peak_rss(server.pid());
    assert!(
        peak < 300 * 1024 * 1024,
        "peak RSS {} MiB for 10 MiB bodies",
        peak >> 20
    );
    // One oversized event is refused alone; the others of its batch are kept.
    let mut huge = event("huge", "coursera:a");
    huge["note"] = json!("x".repeat(300 * 1024));
    let batch = json!([event("small", "coursera:a"), huge]);
    let (status, report) = server.post("/api/v1/events", "application/json", batch.to_string());
    assert_eq!(status, 200);
    assert_eq!(outcomes(&report), ["unmatched", "event_too_large"]);
}

#[test]
fn kept_payloads_are_capped_and_listed_a_few_megabytes_at_a_time() {
    let server = TestServer::sqlite();
    let big = format!("[{}", "x".repeat(100 * 1024));
    for _ in 0..80 {
        let (status, _) = server.post("/api/v1/events", "application/json", &big);
        assert_eq!(status, 400);
    }
    let (status, first) = server.get_json("/api/v1/rejections?limit=1000");
    assert_eq!(status, 200);
    let rows = first["rejections"].as_array().unwrap();
    assert!(rows.len() < 80 && rows.len() > 10, "{} rows", rows.len());
    let row = &rows[0];
    assert_eq!(row["raw_bytes"], big.len());
    assert_eq!(row["raw_truncated"], true);
    assert_eq!(row["raw"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(row["raw_sha256"].as_str().unwrap().len(), 64);
    let text_bytes: usize = rows.iter().map(|r| r["raw"].as_str().unwrap().len()).sum();
    assert!(
        text_bytes <= 4 * 1024 * 1024 + 64 * 1024,
        "{text_bytes} bytes in a page"
    );
    let after = first["next_after"].as_i64().unwrap();
    let (_, second) = server.get_json(&format!("/api/v1/rejections?limit=1000&after={after}"));
    let total = rows.len() + second["rejections"].as_array().unwrap().len();
    assert_eq!(total, 80);
}

#[test]
fn slow_bodies_time_out() {
    let server = TestServer::sqlite_with(&[
        ("NIGRANI_INGEST__BODY_GRACE_SECS", "1"),
        ("NIGRANI_INGEST__MIN_BODY_BYTES_PER_SECOND", "1000"),
    ]);
    let address = server.address.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    // 20 bytes every 300 ms: far below 1,000 bytes a second.
    let mut answer = Vec::new();
    for _ in 0..30 {
        if stream.write_all(&[b' '; 20]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        stream.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buffer)
            && n > 0
        {
            answer.extend_from_slice(&buffer[..n]);
            break;
        }
        stream.set_nonblocking(false).unwrap();
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // An honest sender within the rate is unaffected.
    let (status, _) = server.post(
        "/api/v1/events",
        "application/x-ndjson",
        ndjson(&[event("fast", "coursera:a")]),
    );
    assert_eq!(status, 200);
}

/// The connection dies while the batch is committed: the answer says the outcome is unknown
/// and when to retry, and a resend settles it without losing or doubling anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_lost_at_commit_answers_outcome_unknown() {
    let Some(db) = TestDatabase::create("commit_lost") else {
        return;
    };
    let url = db.url().to_owned();
    let server = TestServer::start(Data::Postgres(db), &[]);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // A deferred trigger runs at COMMIT; this one ends its own session there.
    client
        .batch_execute(
            "CREATE FUNCTION die_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id = 'dies-at-commit' THEN
                     PERFORM pg_terminate_backend(pg_backend_pid());
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON events
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die_at_commit();",
        )
        .await
        .unwrap();
    let batch = ndjson(&[
        event("beside", "coursera:a"),
        event("dies-at-commit", "coursera:a"),
    ]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(&server.url("/api/v1/events"))
        .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
        .header("Content-Type", "application/x-ndjson")
        .send(batch.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value =
        serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body["code"], "outcome_unknown", "{body}");

    client
        .batch_execute("DROP TRIGGER die_at_commit ON events")
        .await
        .unwrap();
    // Resend as a client would, after `Retry-After`: the pool may first hand out another
    // connection the database closed (503 `store_unavailable`, nothing stored).
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let (status, report) = server.post("/api/v1/events", "application/x-ndjson", &batch);
        if status == 200 {
            break report;
        }
        assert_eq!(status, 503, "{report}");
        assert!(Instant::now() < deadline, "{report}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for outcome in outcomes(&report) {
        assert!(
            ["unmatched", "duplicate"].contains(&outcome.as_str()),
            "{report}"
        );
    }
    // The status read may also meet a connection the database closed: 503, then try again.
    let status = loop {
        let (code, status) = server.get_json("/api/v1/status");
        if code == 200 {
            break status;
        }
        assert_eq!(code, 503, "{status}");
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["stats"]["events"], 2, "{status}");
}

#[test]
fn access_follows_the_route_the_router_takes() {
    let server = TestServer::sqlite();
    let out = server.cli(&["keys", "create", "--role", "partner", "--name", "p"]);
    let partner = out
        .split_whitespace()
        .find(|w| w.starts_with("nk_"))
        .unwrap()
        .to_owned();
    let as_partner = format!("Authorization: Bearer {partner}\r\n");
    let as_admin = format!("Authorization: Bearer {ADMIN_KEY}\r\n");
    let get = |path: &str, headers: &str| {
        raw(
            &server,
            &request("GET", path, headers),
            Duration::from_secs(5),
        )
    };
    // Percent-encoded paths reach the route they decode to, under that route's rule.
    for path in [
        "/api/v1/r%65jections",
        "/api/v1/st%61tus",
        "/api/v1/%61udit",
        "/api/v1/learners?limit=abc",
    ] {
        let (status, text) = get(path, &as_partner);
        assert_eq!(status, 403, "{path}: {text}");
    }
    let (status, text) = get("/%61pi/v1/status", "");
    assert_eq!(status, 401, "{text}");
    let (status, _) = get("/api/v1/st%61tus", &as_admin);
    assert_eq!(status, 200);
    // Another method of a real route is 405, never a roster kind and never a 500.
    let (status, text) = get("/api/v1/events", &as_admin);
    assert_eq!(status, 405, "{text}");
    assert!(text.to_ascii_lowercase().contains("allow: post"), "{text}");
    let (status, text) = raw(
        &server,
        &request("POST", "/api/v1/status", &as_admin),
        Duration::from_secs(5),
    );
    assert_eq!(status, 405, "{text}");
    let (status, _) = get("/api/v1/nonsense", &as_admin);
    assert_eq!(status, 404);
    // A partner's refused request is in the audit log too.
    let (_, audit) = server.get_json("/api/v1/audit");
    let refused = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["status"] == 403)
        .count();
    assert_eq!(refused, 4, "{audit}");
}

#[test]
fn a_guessed_secret_for_a_public_key_id_is_rate_limited() {
    let server = TestServer::sqlite();
    // The admin key's id is public; its secret is not.
    let id = &ADMIN_KEY[..11];
    let mut limited = 0;
    for i in 0..200 {
        let guess = format!("{id}_{:032x}", 0xdead_0000_u128 + i);
        let ((status, _), _) = server.get_as(Some(&guess), "/api/v1/status");
        assert!(status == 401 || status == 429, "{status}");
        limited += usize::from(status == 429);
    }
    assert!(
        limited > 50,
        "only {limited} of 200 guesses were rate-limited"
    );
    // The right key still works from the same address.
    assert_eq!(server.get("/api/v1/status").0, 200);
}
