//! Helpers for nigrani's end-to-end tests: start the real `nigrani` binary on a free port against
//! a fresh SQLite folder or a fresh PostgreSQL database, talk to it over HTTP, stop it politely
//! (SIGTERM) or not (SIGKILL), and start it again on the same data.
//!
//! The binary under test is the one built from the current source: the first time a test process
//! needs it, [`binary`] runs `cargo build -p nigrani --bin nigrani` — with the cargo that runs the
//! tests (`CARGO`), into the target folder and profile this test executable was built in — and
//! uses the executable cargo reports. (`CARGO_BIN_EXE_nigrani` would be the natural way, but cargo
//! sets it only for tests of the `nigrani` package itself; and a binary merely found in
//! `target/debug` may predate the source, e.g. after `cargo test -p nigrani-e2e`.) The build is a
//! no-op when the binary is current. It resolves features for `nigrani` alone, so the binary is the
//! production one: without the `testing` feature of nigrani-store that these helpers use.
//! `NIGRANI_TEST_BIN` names another binary instead, and nothing is built.
//!
//! Run the end-to-end tests one process at a time, as `cargo test` does: every `cargo build`,
//! even one with nothing to do, links the binary into its place anew, so a build started by a
//! parallel runner could briefly take it away from a test that is starting it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nigrani_store::testing::TestDatabase;
use nigrani_store::{Store, StoreConfig};
use serde_json::Value;

/// Where the data of a test server lives; kept across restarts.
pub enum Data {
    /// A temporary SQLite folder.
    Sqlite(tempfile::TempDir),
    /// A throw-away PostgreSQL database.
    Postgres(TestDatabase),
}

/// The admin key every test server is started with.
pub const ADMIN_KEY: &str = "nk_0000a11d_00000000000000000000000000000001";

/// A running `nigrani serve`.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The metrics-only server's URL, when `NIGRANI_METRICS_LISTEN` was given.
    pub metrics_url: Option<String>,
    data: Data,
    env: Vec<(String, String)>,
    agent: ureq::Agent,
}

/// The `nigrani` binary under test: `NIGRANI_TEST_BIN`, or the binary of the current source, built
/// once per test process (see the crate's header).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| match std::env::var_os("NIGRANI_TEST_BIN") {
            Some(path) => PathBuf::from(path),
            None => build_binary(),
        })
        .clone()
}

/// Builds `nigrani` from the workspace's current source and returns the executable's path.
fn build_binary() -> PathBuf {
    // Test executables live in <target>/<profile folder>/deps; build into the same place, so that
    // the build reuses what the test build compiled.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    // Cargo tells the tests it runs which cargo it is; the one this crate was built by otherwise.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "-q",
            "-p",
            "nigrani",
            "--bin",
            "nigrani",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Compiler messages go to stderr as text; stdout carries the artifacts as JSON.
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo to build the nigrani binary");
    assert!(
        output.status.success(),
        "`cargo build -p nigrani` failed (its errors are above)"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "nigrani"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo built no nigrani executable")
}

impl TestServer {
    /// A server on a fresh SQLite folder.
    pub fn sqlite() -> Self {
        Self::sqlite_with(&[])
    }

    /// A server on a fresh SQLite folder with extra `NIGRANI_*` settings.
    pub fn sqlite_with(env: &[(&str, &str)]) -> Self {
        Self::start(Data::Sqlite(tempfile::tempdir().unwrap()), env)
    }

    /// A server on a fresh PostgreSQL database, or `None` when PostgreSQL tests are not
    /// configured (see `nigrani_store::testing`).
    pub fn postgres(label: &str) -> Option<Self> {
        Some(Self::start(
            Data::Postgres(TestDatabase::create(label)?),
            &[],
        ))
    }

    /// A server on the given data.
    pub fn start(data: Data, env: &[(&str, &str)]) -> Self {
        // The data's own settings first, so that `env` can override them.
        let mut env_all: Vec<(String, String)> = match &data {
            Data::Sqlite(dir) => {
                vec![("NIGRANI_DATA_DIR".into(), dir.path().display().to_string())]
            }
            Data::Postgres(db) => vec![("NIGRANI_DATABASE_URL".into(), db.url().to_owned())],
        };
        env_all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let env = env_all;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut server = Self {
            child: None,
            address: String::new(),
            metrics_url: None,
            data,
            env,
            agent,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env_remove("NIGRANI_DATABASE_URL")
            .env("NIGRANI_ADMIN_KEY", ADMIN_KEY)
            .env("NIGRANI_LISTEN", "127.0.0.1:0")
            .env(
                "NIGRANI_LOG",
                std::env::var("NIGRANI_TEST_LOG").unwrap_or("error".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("cannot start nigrani serve");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("nigrani listening on ")
            .unwrap_or_else(|| panic!("nigrani serve did not start: `{line}`"))
            .to_owned();
        self.address = address;
        if self.env.iter().any(|(k, _)| k == "NIGRANI_METRICS_LISTEN") {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            self.metrics_url = line.trim().strip_prefix("metrics on ").map(str::to_owned);
        }
        self.child = Some(child);
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a body; returns the status and the body (JSON, or `Value::Null` when empty).
    pub fn post(&self, path: &str, content_type: &str, body: impl AsRef<[u8]>) -> (u16, Value) {
        self.try_post(path, content_type, body)
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    /// POSTs a body; an error when no answer came (e.g. the server was killed).
    pub fn try_post(
        &self,
        path: &str,
        content_type: &str,
        body: impl AsRef<[u8]>,
    ) -> Result<(u16, Value), String> {
        self.try_post_as(ADMIN_KEY, path, content_type, body)
    }

    /// POSTs a body with another key.
    pub fn post_as(
        &self,
        key: &str,
        path: &str,
        content_type: &str,
        body: impl AsRef<[u8]>,
    ) -> (u16, Value) {
        self.try_post_as(key, path, content_type, body)
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    fn try_post_as(
        &self,
        key: &str,
        path: &str,
        content_type: &str,
        body: impl AsRef<[u8]>,
    ) -> Result<(u16, Value), String> {
        let mut response = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", content_type)
            .send(body.as_ref())
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// POSTs without a Content-Type.
    pub fn post_untyped(&self, path: &str, body: &str) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs a path; returns the status and the body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_as(Some(ADMIN_KEY), path).0
    }

    /// GETs a path with another key (or none); returns the status, the body text and the
    /// `Retry-After` header.
    pub fn get_as(&self, key: Option<&str>, path: &str) -> ((u16, String), Option<String>) {
        let mut request = self.agent.get(&self.url(path));
        if let Some(key) = key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request.call().unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (
            (status, response.body_mut().read_to_string().unwrap()),
            retry_after,
        )
    }

    /// GETs a path as admin with extra request headers; returns the status, the response headers
    /// (lower-case names) and the body.
    pub fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, std::collections::HashMap<String, String>, String) {
        let mut request = self
            .agent
            .get(&self.url(path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().unwrap();
        let status = response.status().as_u16();
        let names = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        (status, names, response.body_mut().read_to_string().unwrap())
    }

    /// Sends a request with exactly these headers (no key unless one is among them); returns the
    /// status, the response headers (lower-case names) and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, std::collections::HashMap<String, String>, String) {
        let url = self.url(path);
        let response = match method {
            "GET" | "DELETE" | "HEAD" => {
                let mut request = match method {
                    "GET" => self.agent.get(&url),
                    "HEAD" => self.agent.head(&url),
                    _ => self.agent.delete(&url),
                };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            _ => {
                let mut request = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body.unwrap_or_default())
            }
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = response.status().as_u16();
        let names = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        (
            status,
            names,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Runs `nigrani` with this server's data settings (e.g. `keys create`); returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(binary())
            .args(args)
            .env_remove("NIGRANI_DATABASE_URL")
            .env("NIGRANI_LOG", "error")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nigrani {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// GETs a path and parses the JSON body.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get(path);
        (status, serde_json::from_str(&text).unwrap())
    }

    /// Kills the server with SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits for a server that was sent SIGTERM from elsewhere to exit, and returns its status.
    pub fn terminate_reap(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server was running");
        child.wait().unwrap()
    }

    /// The PostgreSQL URL of the server's database, when it runs on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        match &self.data {
            Data::Postgres(db) => Some(db.url()),
            Data::Sqlite(_) => None,
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Starts the server again on the same data (after `kill` or `terminate`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
    }

    /// Starts the server again on the same data with further settings (after `kill`).
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.restart();
    }

    /// Opens the server's store directly, to check what is durable.
    pub async fn store(&self) -> Arc<dyn Store> {
        let config = match &self.data {
            Data::Sqlite(dir) => StoreConfig {
                data_dir: dir.path().to_path_buf(),
                ..StoreConfig::default()
            },
            Data::Postgres(db) => StoreConfig {
                database_url: Some(db.url().to_owned()),
                ..StoreConfig::default()
            },
        };
        nigrani_store::open(&config).await.unwrap().0
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A valid native event for learner `learner`, with id `id`.
pub fn event(id: &str, learner: &str) -> Value {
    serde_json::json!({
        "source": "coursera",
        "event_id": id,
        "learner": learner,
        "course_id": "ai-fundamentals-for-educators",
        "kind": "progressed",
        "progress": 0.5,
        "occurred_at": "2026-03-01T10:00:00+05:00",
    })
}

/// Events as an NDJSON body.
pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// The soft track's required courses.
pub const COURSES: [&str; 3] = [
    "ai-fundamentals-for-educators",
    "genai-in-teaching-and-learning",
    "ai-ethics-in-academia",
];

/// An event of `kind` for `learner` on `course` at `at`, with `extra` fields.
pub fn course_event(
    id: &str,
    learner: &str,
    course: &str,
    kind: &str,
    extra: Value,
    at: &str,
) -> Value {
    let mut e = serde_json::json!({
        "source": "coursera", "event_id": id, "learner": learner, "course_id": course,
        "kind": kind, "occurred_at": at,
    });
    if let (Value::Object(fields), Value::Object(more)) = (&mut e, extra) {
        fields.extend(more);
    }
    e
}

/// Four soft-track learners at two universities: one completes all three courses, one is half
/// way, one only enrolled, one withdrew.
pub fn load_small_program(server: &TestServer) {
    let cohorts = "cohort_id,name,track,starts_on,ends_on,target\nsoft-t,Soft T,soft,2026-01-01,2026-12-31,4\n";
    assert_eq!(server.post("/api/v1/cohorts", "text/csv", cohorts).0, 200);
    let learners = "learner_id,institution,discipline,track,cohort,role,identities,gender\n\
        A,PK-PB-001,education,soft,soft-t,faculty,coursera:a,female\n\
        B,PK-PB-001,education,soft,soft-t,faculty,coursera:b,male\n\
        C,PK-SD-001,law,soft,soft-t,faculty,coursera:c,female\n\
        D,PK-SD-001,law,soft,soft-t,faculty,coursera:d,\n";
    let (status, body) = server.post("/api/v1/learners", "text/csv", learners);
    assert_eq!(status, 200, "{body}");
    let mut events = Vec::new();
    for (i, course) in COURSES.iter().enumerate() {
        events.push(course_event(
            &format!("a-{i}"),
            "coursera:a",
            course,
            "course_completed",
            serde_json::json!({"progress": 1.0}),
            &format!("2026-03-{:02}T10:00:00Z", 10 + i),
        ));
    }
    events.push(course_event(
        "a-start",
        "coursera:a",
        COURSES[0],
        "started",
        serde_json::json!({}),
        "2026-03-01T10:00:00Z",
    ));
    events.push(course_event(
        "b-1",
        "coursera:b",
        COURSES[0],
        "progressed",
        serde_json::json!({"progress": 0.9, "score": 0.8}),
        "2026-03-05T10:00:00Z",
    ));
    events.push(course_event(
        "b-2",
        "coursera:b",
        COURSES[1],
        "progressed",
        serde_json::json!({"progress": 0.6}),
        "2026-03-06T10:00:00Z",
    ));
    events.push(course_event(
        "c-1",
        "coursera:c",
        COURSES[0],
        "enrolled",
        serde_json::json!({}),
        "2026-03-01T10:00:00Z",
    ));
    events.push(course_event(
        "d-1",
        "coursera:d",
        COURSES[0],
        "progressed",
        serde_json::json!({"progress": 0.3}),
        "2026-03-02T10:00:00Z",
    ));
    events.push(course_event(
        "d-2",
        "coursera:d",
        COURSES[0],
        "withdrawn",
        serde_json::json!({}),
        "2026-03-03T10:00:00Z",
    ));
    let (status, report) = server.post("/api/v1/events", "application/x-ndjson", ndjson(&events));
    assert_eq!(status, 200);
    assert_eq!(report["counts"]["accepted"], events.len());
}

/// GETs `path` as admin until `ready` holds of the answer (10 s at most).
pub fn wait_for(
    server: &TestServer,
    path: &str,
    ready: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 200, "{body}");
        if ready(&body) {
            return (body, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
