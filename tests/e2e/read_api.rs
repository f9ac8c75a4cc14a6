//! What dashboards, Grafana and partners call: the summary, a cohort in detail, the live stream,
//! the Grafana datasource, flat rows for Infinity, labels, and the OpenAPI document and its page.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nigrani_e2e::{ADMIN_KEY, COURSES, TestServer, course_event, load_small_program, wait_for};
use serde_json::{Value, json};

fn partner_key(server: &TestServer) -> String {
    let out = server.cli(&["keys", "create", "--name", "hec", "--role", "partner"]);
    out.split_whitespace()
        .find(|w| w.starts_with("nk_"))
        .unwrap()
        .to_owned()
}

fn get_json_as(server: &TestServer, key: &str, path: &str) -> (u16, Value) {
    let ((status, body), _) = server.get_as(Some(key), path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Waits until the small program is in the figures.
fn loaded(server: &TestServer) {
    load_small_program(server);
    wait_for(server, "/api/v1/summary", |b| {
        b["program"]["enrolled"] == 4 && b["program"]["completed"] == 1
    });
}

#[test]
fn summary_per_track_against_targets() {
    let server = TestServer::sqlite();
    loaded(&server);
    let (status, body) = server.get_json("/api/v1/summary?lang=ur");
    assert_eq!(status, 200, "{body}");
    let soft = &body["tracks"][0];
    assert_eq!(soft["track"], "soft");
    assert_eq!(soft["track_label"], "اے آئی سافٹ اسکلز");
    assert_eq!(
        (
            &soft["enrolled"],
            &soft["started"],
            &soft["completed"],
            &soft["trained"]
        ),
        (&json!(4), &json!(3), &json!(1), &json!(1)),
        "A completed; B and D started; C only enrolled: {soft}"
    );
    assert_eq!(soft["target"]["target"], 1000);
    assert_eq!(soft["target"]["attained"], 1);
    assert_eq!(body["tracks"][1]["track"], "hard");
    assert_eq!(body["tracks"][1]["enrolled"], 0);
    assert!(body["metric_labels"]["completed"].is_string());

    let (_, rows) = server.get_json("/api/v1/summary?format=rows");
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    let (status, error) = server.get_json("/api/v1/summary?province=punjab");
    assert_eq!((status, &error["code"]), (400, &json!("invalid_query")));

    // Partners: four learners is a small cell (k = 5): published as 0 or from 5 on.
    let partner = partner_key(&server);
    let (status, body) = get_json_as(&server, &partner, "/api/v1/summary");
    assert_eq!(status, 200);
    assert_eq!(body["disclosure"]["perturbed"], true, "{body}");
    let soft = &body["tracks"][0];
    for field in ["learners", "enrolled", "started", "completed", "trained"] {
        let n = soft[field].as_u64().unwrap();
        assert!(n == 0 || (5..=9).contains(&n), "{field}: {soft}");
    }
    assert_eq!(
        soft["target"]["attained"], soft["trained"],
        "the same learners, the same count: {soft}"
    );
    assert_eq!(body["tracks"][1]["enrolled"], 0, "a true zero stays zero");
    // The cohort holds the same four learners: the same cell.
    let (_, cohort) = get_json_as(&server, &partner, "/api/v1/cohorts/soft-t");
    assert_eq!(cohort["figures"]["enrolled"], soft["enrolled"], "{cohort}");
}

#[test]
fn cohort_detail_lists_members_for_managers_only() {
    let server = TestServer::sqlite();
    loaded(&server);
    let (status, body) = server.get_json("/api/v1/cohorts/soft-t");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cohort"]["name"], "Soft T");
    assert_eq!(body["figures"]["enrolled"], 4);
    assert_eq!(body["target"]["target"], 4);
    let statuses: Vec<(String, String)> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["learner_id"].as_str().unwrap().to_owned(),
                m["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("A", "completed"),
        ("B", "started"),
        ("C", "enrolled"),
        ("D", "withdrawn"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(statuses, expected);
    assert_eq!(body["members"][0]["progress"], 1.0);

    let manager = {
        let out = server.cli(&["keys", "create", "--name", "pm", "--role", "manager"]);
        out.split_whitespace()
            .find(|w| w.starts_with("nk_"))
            .unwrap()
            .to_owned()
    };
    let (_, body) = get_json_as(&server, &manager, "/api/v1/cohorts/soft-t");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(4));

    let partner = partner_key(&server);
    let (status, body) = get_json_as(&server, &partner, "/api/v1/cohorts/soft-t");
    assert_eq!(status, 200);
    assert!(
        body.get("members").is_none(),
        "no learner rows for partners: {body}"
    );
    let enrolled = body["figures"]["enrolled"].as_u64();
    assert!(
        enrolled.is_none() || enrolled.is_some_and(|n| n == 0 || n >= 5),
        "{body}"
    );

    let (status, error) = server.get_json("/api/v1/cohorts/no-such-cohort");
    assert_eq!((status, &error["code"]), (404, &json!("not_found")));
}

/// A server-sent-events connection read line by line.
struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    fn open(server: &TestServer, key: &str, last_event_id: Option<&str>) -> Self {
        let address = server.url("").replace("http://", "");
        let address = address.trim_end_matches('/');
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /api/v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Accept: text/event-stream\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        Self { reader }
    }

    /// The next `update` message within `within`: its id and data.
    fn next_update(&mut self, within: Duration) -> Option<(i64, Value)> {
        let started = Instant::now();
        let mut id = None;
        let mut event = String::new();
        let mut line = String::new();
        while started.elapsed() < within {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(_) => continue, // read timeout; keep waiting
            }
            // Chunked transfer encoding puts chunk sizes on their own lines; they never look
            // like `field: value`.
            let line = line.trim_end();
            if let Some(value) = line.strip_prefix("id: ") {
                id = value.parse().ok();
            } else if let Some(value) = line.strip_prefix("event: ") {
                event = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ")
                && event == "update"
            {
                return Some((id.unwrap(), serde_json::from_str(value).unwrap()));
            }
        }
        None
    }
}

#[test]
fn the_stream_pushes_changed_slices_and_resumes() {
    let server = TestServer::sqlite();
    loaded(&server);
    let mut stream = EventStream::open(&server, ADMIN_KEY, None);
    let (first_id, first) = stream.next_update(Duration::from_secs(5)).unwrap();
    assert_eq!(first["summary"]["program"]["enrolled"], 4, "{first}");
    let slices = first["slices"]["rows"].as_array().unwrap();
    assert!(
        slices
            .iter()
            .any(|r| r["province"] == "punjab" && r["track"] == "soft" && r["enrolled"] == 2),
        "{first}"
    );

    // C (Sindh) completes a course: only Sindh's soft slice changes.
    let event = course_event(
        "c-2",
        "coursera:c",
        COURSES[0],
        "course_completed",
        json!({"progress": 1.0}),
        "2026-03-20T10:00:00Z",
    );
    let (status, _) = server.post(
        "/api/v1/events",
        "application/json",
        json!([event]).to_string(),
    );
    assert_eq!(status, 200);
    let (second_id, second) = stream.next_update(Duration::from_secs(5)).unwrap();
    assert!(second_id > first_id);
    let changed = second["slices"]["rows"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "only the changed slice: {second}");
    assert_eq!(changed[0]["province"], "sindh");
    assert_eq!(changed[0]["started"], 2);

    // Resuming at the latest id sends nothing until the data moves on.
    let mut resumed = EventStream::open(&server, ADMIN_KEY, Some(&second_id.to_string()));
    assert!(resumed.next_update(Duration::from_millis(2500)).is_none());

    // Partners get perturbed counts: none from 1 to k - 1.
    let partner = partner_key(&server);
    let mut partner_stream = EventStream::open(&server, &partner, None);
    let (_, update) = partner_stream.next_update(Duration::from_secs(5)).unwrap();
    for row in update["slices"]["rows"].as_array().unwrap() {
        let enrolled = &row["enrolled"];
        assert!(
            enrolled.is_null() || enrolled.as_u64().is_some_and(|n| n == 0 || n >= 5),
            "{row}"
        );
    }
}

#[test]
fn open_streams_do_not_hold_up_a_shutdown() {
    let mut server = TestServer::sqlite();
    let mut stream = EventStream::open(&server, ADMIN_KEY, None);
    assert!(stream.next_update(Duration::from_secs(5)).is_some());
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    let status = server.terminate_reap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?} with a stream open",
        started.elapsed()
    );
}

fn grafana(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    server.post(path, "application/json", body.to_string())
}

#[test]
fn grafana_json_datasource() {
    let server = TestServer::sqlite();
    loaded(&server);
    assert_eq!(server.get("/grafana").0, 200);
    assert_eq!(server.get_as(None, "/grafana").0.0, 401);

    let (status, metrics) = grafana(&server, "/grafana/metrics", json!({}));
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["value"] == "completed" && m["payloads"].is_array())
    );
    let (_, options) = grafana(
        &server,
        "/grafana/metric-payload-options",
        json!({"metric": "completed", "payload": {}, "name": "split"}),
    );
    assert!(
        options
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == "province")
    );

    let range = json!({"from": "2026-03-01T00:00:00Z", "to": "2026-03-31T00:00:00Z"});
    let query = json!({
        "range": range, "intervalMs": 86_400_000,
        "targets": [
            {"refId": "A", "target": "completed", "payload": {"cumulative": "true"}},
            {"refId": "B", "target": "started", "payload": {"format": "table", "by": ["province"]}},
        ],
    });
    let (status, answer) = grafana(&server, "/grafana/query", query.clone());
    assert_eq!(status, 200, "{answer}");
    let series = &answer[0];
    assert_eq!(series["target"], "completed");
    let points = series["datapoints"].as_array().unwrap();
    assert_eq!(points.len(), 31, "one point per day of March");
    assert_eq!(
        points[0][1], 1_772_305_200_000_i64,
        "1 March, midnight in Pakistan"
    );
    assert_eq!(points.last().unwrap()[0], 1.0, "A completed on 12 March");
    assert_eq!(points[5][0], 0.0);
    let table = &answer[1];
    assert_eq!(table["type"], "table");
    assert_eq!(table["columns"][0]["text"], "province");
    assert_eq!(table["rows"][0], json!(["punjab", 2, 2]));

    // Ad-hoc filters narrow the learners.
    let mut filtered = query.clone();
    filtered["adhocFilters"] = json!([{"key": "province", "operator": "=", "value": "sindh"}]);
    let (_, answer) = grafana(&server, "/grafana/query", filtered);
    assert_eq!(
        answer[0]["datapoints"].as_array().unwrap().last().unwrap()[0],
        0.0
    );

    let (_, keys) = grafana(&server, "/grafana/tag-keys", json!({}));
    assert!(
        keys.as_array()
            .unwrap()
            .contains(&json!({"type": "string", "text": "cohort"}))
    );
    let (_, values) = grafana(&server, "/grafana/tag-values", json!({"key": "cohort"}));
    assert!(
        values
            .as_array()
            .unwrap()
            .contains(&json!({"text": "soft-t"}))
    );
    let (_, variable) = grafana(
        &server,
        "/grafana/variable",
        json!({"payload": {"target": "province"}}),
    );
    assert!(
        variable
            .as_array()
            .unwrap()
            .contains(&json!({"__text": "Punjab", "__value": "punjab"}))
    );

    // Bad input is a clear 4xx.
    let mut bad = query.clone();
    bad["targets"][0]["target"] = json!("completions");
    let (status, error) = grafana(&server, "/grafana/query", bad);
    assert_eq!((status, &error["code"]), (400, &json!("invalid_query")));
    let mut bad = query.clone();
    bad["adhocFilters"] = json!([{"key": "province", "operator": "!=", "value": "sindh"}]);
    assert_eq!(grafana(&server, "/grafana/query", bad).0, 400);
    let (status, error) = server.post("/grafana/query", "application/json", "{\"range\":");
    assert_eq!((status, &error["code"]), (400, &json!("malformed_json")));
    let (status, error) = grafana(&server, "/grafana/query", json!({"targets": []}));
    assert_eq!((status, &error["code"]), (400, &json!("invalid_body")));
}

#[test]
fn flat_rows_and_labels_for_infinity() {
    let server = TestServer::sqlite();
    loaded(&server);
    let (status, rows) = server.get_json("/api/v1/breakdown?by=province&format=rows");
    assert_eq!(status, 200);
    assert_eq!(rows[0]["province"], "punjab", "{rows}");
    let (_, rows) = server.get_json("/api/v1/timeseries?metric=completed&from=2026-03-01&to=2026-03-31&interval=month&format=rows");
    assert_eq!(
        rows,
        json!([{"period": "2026-03", "starts_on": "2026-03-01", "series": "all", "value": 1, "target": null}])
    );
    let (_, rows) = server.get_json("/api/v1/targets?format=rows");
    assert!(rows.as_array().unwrap().iter().any(|t| t["id"] == "soft-t"));
    let (_, rows) = server.get_json("/api/v1/funnel?by=track&format=rows");
    assert_eq!(rows[0]["enrolled"], 4);

    let (_, series) = server.get_json(
        "/api/v1/timeseries?metric=completed&split=track&from=2026-03-01&to=2026-03-31&lang=ur",
    );
    assert_eq!(series["labels"]["soft"], "اے آئی سافٹ اسکلز", "{series}");
    let (_, targets) = server.get_json("/api/v1/targets?lang=en");
    let soft_t = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "soft-t")
        .unwrap();
    assert_eq!(soft_t["label"], "Soft T");
    let (_, funnel) = server.get_json("/api/v1/funnel?by=province&lang=en");
    assert_eq!(funnel["rows"][0]["labels"], json!(["Punjab"]));

    let (_, list) = server.get_json("/api/v1/institutions?lang=ur");
    let first = &list["institutions"][0];
    assert_eq!(first["label"], first["name_ur"]);
    assert!(first["province_label"].is_string());
    let (_, rows) = server.get_json("/api/v1/cohorts?format=rows");
    assert_eq!(rows[0]["cohort_id"], "soft-t", "{rows}");
    let (_, list) = server.get_json("/api/v1/cohorts?lang=en");
    assert_eq!(list["cohorts"][0]["label"], "Soft T");
}

#[test]
fn the_openapi_document_and_its_page_are_served_and_cover_every_route() {
    let server = TestServer::sqlite();
    loaded(&server);
    let (status, text) = server.get("/api/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(
        text,
        server.cli(&["openapi"]),
        "the served document is `nigrani openapi`"
    );
    let document: Value = serde_json::from_str(&text).unwrap();

    let (status, page) = server.get("/api/docs/");
    assert_eq!(status, 200);
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from outside: {page}"
    );
    let (status, script) = server.get("/api/docs/swagger-ui-bundle.js");
    assert_eq!(status, 200);
    assert!(script.len() > 100_000);

    // Every documented GET answers (no 404 or 405) with the documented path filled in.
    for (path, item) in document["paths"].as_object().unwrap() {
        if item.get("get").is_none() || path == "/api/v1/stream" {
            continue;
        }
        let concrete = path
            .replace("{kind}", "institutions")
            .replace("{cohort_id}", "soft-t");
        let (status, body) = server.get(&concrete);
        assert_eq!(
            status,
            if path == "/api/v1/timeseries" {
                400
            } else {
                200
            },
            "{path}: {body}"
        );
    }
}
