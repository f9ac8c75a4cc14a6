//! A local stand-in for Coursera's enterprise API, for the pull tests: the OAuth2
//! client-credentials token endpoint and the enrollment-report pages, over a minimal HTTP/1.1
//! server (one request per connection, answered with `Connection: close`).
//!
//! It answers the documented shapes — `{"access_token", "token_type", "expires_in"}`;
//! `{"elements": [...], "paging": {"next": "<start>", "total": n}}` — and, as a test switches
//! them on in [`Behaviour`], their failure modes: tokens that stop working after some requests
//! or some time (401), `paging.total` missing, pages that fail (500, or 429 with `Retry-After`)
//! a number of times, rows inserted at the front of the report mid-pass (so a row comes again on
//! the next page), `next` given on a short last page. It counts token and page requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nigrani_ingest::coursera::ClientConfig;
use serde_json::{Value, json};

pub(crate) const ORG: &str = "c37xORGpk0HEC2026aiup";
pub(crate) const CLIENT_ID: &str = "nigrani-moitt-reports";
pub(crate) const CLIENT_SECRET: &str = "s3cret-for-tests-only";

/// How a failing page answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailWith {
    /// This status (500, 503, …) with a JSON error body.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after: u64 },
}

/// A page that fails `times` times before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) start: u64,
    pub(crate) times: u32,
    pub(crate) with: FailWith,
}

/// What the stand-in does, switchable per test (and between runs of one test).
#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    /// The `expires_in` the token answer gives, in seconds.
    pub(crate) expires_in: u64,
    /// A token stops working after this many page requests (then: 401).
    pub(crate) token_requests_allowed: Option<u32>,
    /// A token stops working this long after it was issued (then: 401).
    pub(crate) token_lifetime: Option<Duration>,
    /// Leave `paging.total` out.
    pub(crate) omit_total: bool,
    /// Write `paging.next` as a number rather than Coursera's string.
    pub(crate) next_as_number: bool,
    /// Give `paging.next` on every non-empty page, the last one included.
    pub(crate) next_on_last_page: bool,
    /// Pages that fail before they answer.
    pub(crate) failures: Vec<Failure>,
    /// Rows that appear at the front of the report once the first page has been served.
    pub(crate) insert_after_first_page: Vec<Value>,
    /// The most rows a page holds, whatever `limit` asks (`next` follows the rows given).
    pub(crate) max_limit: Option<u64>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            expires_in: 1800,
            token_requests_allowed: None,
            token_lifetime: None,
            omit_total: false,
            next_as_number: false,
            next_on_last_page: false,
            failures: Vec::new(),
            insert_after_first_page: Vec::new(),
            max_limit: None,
        }
    }
}

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    /// `token` or `page`.
    pub(crate) kind: &'static str,
    /// The page's `start` (0 for tokens).
    pub(crate) start: u64,
    /// The status answered.
    pub(crate) status: u16,
}

struct IssuedToken {
    issued: Instant,
    uses: u32,
}

struct State {
    program_id: String,
    rows: Vec<Value>,
    behaviour: Behaviour,
    tokens: HashMap<String, IssuedToken>,
    issued: u32,
    pages_served: u64,
    log: Vec<Logged>,
}

/// The running stand-in; stops when dropped.
pub(crate) struct Standin {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Standin {
    /// Serves `rows` as program `program_id`'s report, on a free local port.
    pub(crate) fn start(program_id: &str, rows: Vec<Value>, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            program_id: program_id.to_owned(),
            rows,
            behaviour,
            tokens: HashMap::new(),
            issued: 0,
            pages_served: 0,
            log: Vec::new(),
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stopping = Arc::clone(&stopping);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let state = Arc::clone(&state);
                        // One thread per connection, as a server would; the client sends one
                        // request at a time anyway.
                        std::thread::spawn(move || serve(stream, &state));
                    }
                }
            })
        };
        Self {
            address,
            state,
            stopping,
            thread: Some(thread),
        }
    }

    /// A client configuration for this stand-in: `page_size` rows a page, retries 1 ms apart.
    pub(crate) fn config(&self, page_size: u64) -> ClientConfig {
        ClientConfig {
            api_base: format!("http://{}/api/businesses.v1/{ORG}", self.address),
            token_url: format!("http://{}/oauth2/client_credentials/token", self.address),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            page_size,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Changes what the stand-in does from now on.
    pub(crate) fn change(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state().behaviour);
    }

    /// Replaces the report's rows (a newer report).
    pub(crate) fn set_rows(&self, rows: Vec<Value>) {
        self.state().rows = rows;
    }

    /// Token requests answered so far.
    pub(crate) fn token_requests(&self) -> usize {
        self.state()
            .log
            .iter()
            .filter(|l| l.kind == "token")
            .count()
    }

    /// Page requests answered so far, failed ones included.
    pub(crate) fn page_requests(&self) -> usize {
        self.state().log.iter().filter(|l| l.kind == "page").count()
    }

    /// Every request answered, in order.
    pub(crate) fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// Forgets the requests answered so far.
    pub(crate) fn clear_log(&self) {
        self.state().log.clear();
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    });
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let response = answer(&request, state);
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(response.body.as_bytes());
    let _ = stream.flush();
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    })
}

fn answer(request: &Request, state: &Mutex<State>) -> Response {
    let mut state = lock(state);
    let report_path = format!(
        "/api/businesses.v1/{ORG}/programs/{}/enrollmentReports",
        state.program_id
    );
    let (kind, start, response) = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/oauth2/client_credentials/token") => ("token", 0, token(request, &mut state)),
        ("GET", path) if path == report_path => {
            let start = request
                .query
                .get("start")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            ("page", start, page(request, start, &mut state))
        }
        ("GET", path) if path.ends_with("/enrollmentReports") => (
            "page",
            0,
            Response::json(
                404,
                json!({"errorCode": "NOT_FOUND", "message": "no such program"}),
            ),
        ),
        _ => (
            "other",
            0,
            Response::json(404, json!({"errorCode": "NOT_FOUND"})),
        ),
    };
    state.log.push(Logged {
        kind,
        start,
        status: response.status,
    });
    response
}

fn token(request: &Request, state: &mut State) -> Response {
    let expected = format!(
        "Basic {}",
        base64(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes())
    );
    if request.headers.get("authorization") != Some(&expected) {
        return Response::json(
            401,
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        );
    }
    let form = String::from_utf8_lossy(&request.body);
    if !form
        .split('&')
        .any(|pair| pair == "grant_type=client_credentials")
    {
        return Response::json(400, json!({"error": "unsupported_grant_type"}));
    }
    state.issued += 1;
    let value = format!("standin-token-{}", state.issued);
    state.tokens.insert(
        value.clone(),
        IssuedToken {
            issued: Instant::now(),
            uses: 0,
        },
    );
    Response::json(
        200,
        json!({"access_token": value, "token_type": "Bearer", "expires_in": state.behaviour.expires_in}),
    )
}

fn page(request: &Request, start: u64, state: &mut State) -> Response {
    if let Some(failure) = state
        .behaviour
        .failures
        .iter_mut()
        .find(|f| f.start == start && f.times > 0)
    {
        failure.times -= 1;
        return match failure.with {
            FailWith::Status(status) => Response::json(
                status,
                json!({"errorCode": "INTERNAL_ERROR", "message": "try again"}),
            ),
            FailWith::TooManyRequests { retry_after } => Response {
                status: 429,
                headers: vec![("Retry-After", retry_after.to_string())],
                body: json!({"errorCode": "TOO_MANY_REQUESTS"}).to_string(),
            },
        };
    }
    let token = request
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let allowed = state.behaviour.token_requests_allowed;
    let lifetime = state.behaviour.token_lifetime;
    let valid = match state.tokens.get_mut(&token) {
        Some(issued) => {
            let used_up = allowed.is_some_and(|allowed| issued.uses >= allowed);
            let expired = lifetime.is_some_and(|lifetime| issued.issued.elapsed() >= lifetime);
            issued.uses += 1;
            !used_up && !expired
        }
        None => false,
    };
    if !valid {
        return Response::json(
            401,
            json!({"errorCode": "UNAUTHORIZED", "message": "Token has expired or is invalid"}),
        );
    }
    let limit: u64 = request
        .query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .min(state.behaviour.max_limit.unwrap_or(u64::MAX));
    if state.pages_served == 1 && !state.behaviour.insert_after_first_page.is_empty() {
        let mut inserted = std::mem::take(&mut state.behaviour.insert_after_first_page);
        inserted.append(&mut state.rows);
        state.rows = inserted;
    }
    state.pages_served += 1;
    let total = state.rows.len() as u64;
    let from = start.min(total) as usize;
    let to = (start + limit).min(total) as usize;
    let elements: Vec<Value> = state.rows[from..to].to_vec();
    let more = start + limit < total || (state.behaviour.next_on_last_page && !elements.is_empty());
    let mut paging = serde_json::Map::new();
    if more {
        let next = start + limit;
        paging.insert(
            "next".into(),
            if state.behaviour.next_as_number {
                json!(next)
            } else {
                json!(next.to_string())
            },
        );
    }
    if !state.behaviour.omit_total {
        paging.insert("total".into(), json!(total));
    }
    Response::json(200, json!({"elements": elements, "paging": paging}))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
