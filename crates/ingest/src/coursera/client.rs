//! A blocking client for Coursera's enrollment-report API: an OAuth2 client-credentials token,
//! kept and renewed, pages read by `start`/`limit`, and retries with exponential backoff.
//!
//! - Token: `POST token_url` with `grant_type=client_credentials` as a form, the client id and
//!   secret as HTTP Basic credentials (Coursera's developer portal calls them the app's API key
//!   and secret). The answer is `{"access_token", "token_type": "Bearer", "expires_in": 1800}`
//!   (Coursera's tokens last 1,800 s; that is assumed when `expires_in` is missing). The token is
//!   renewed shortly before it expires, and once more when a page is refused with 401 before the
//!   client gives up.
//! - Pages: `GET {api_base}/programs/{programId}/enrollmentReports?start=&limit=` with the token
//!   as a bearer, answered `{"elements": [...], "paging": {"next", "total"}}`. Coursera writes
//!   `next` as a string ("100"); a number is read as well. `total` may be missing.
//! - Retries: 429 and 5xx answers and failed connections are retried up to `max_attempts` times
//!   in all, waiting `initial_backoff` doubled at each attempt, or the `Retry-After` seconds the
//!   answer asks for (up to five minutes: an answer asking more fails at once, for the caller's
//!   scheduler to come back later). No jitter: one client pulls one program at a time.
//!
//! TLS: `ureq` is built with rustls and the Mozilla root certificates compiled in (nothing is
//! fetched at run time), so Coursera's `https://` endpoints work as they are; the tests' stand-in
//! speaks plain HTTP on the loopback.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nigrani_domain::clock::{self, SharedClock};
use serde_json::Value;

use super::report::{ReportRow, RowAt, RowError};

/// Longest wait between two attempts, whether from backoff or `Retry-After`.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Coursera's token lifetime, assumed when a token answer has no `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
/// Largest answer read, in bytes.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// How to reach the API.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The API for one organisation, e.g. `https://api.coursera.org/api/businesses.v1/<orgId>`;
    /// pages are read from `{api_base}/programs/{programId}/enrollmentReports`.
    pub api_base: String,
    /// The OAuth2 token endpoint, e.g.
    /// `https://api.coursera.com/oauth2/client_credentials/token`.
    pub token_url: String,
    /// The app's client id (the developer portal's "API key").
    pub client_id: String,
    /// The app's client secret. Never printed (`Debug` hides it).
    pub client_secret: String,
    /// Rows asked for per page (`limit`).
    pub page_size: u64,
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub initial_backoff: Duration,
    /// Longest one request may take, connecting and reading included.
    pub request_timeout: Duration,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_base", &self.api_base)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .field("page_size", &self.page_size)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ClientConfig {
    /// Coursera's production endpoints for an organisation, with defaults for the rest: 100
    /// rows a page, 5 attempts from 1 s, 30 s per request.
    pub fn coursera(org_id: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            api_base: format!("https://api.coursera.org/api/businesses.v1/{org_id}"),
            token_url: "https://api.coursera.com/oauth2/client_credentials/token".into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            page_size: 100,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }

    fn check(&self) -> Result<(), PullError> {
        let config = |message: String| Err(PullError::Config(message));
        for (name, url) in [("api_base", &self.api_base), ("token_url", &self.token_url)] {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return config(format!(
                    "`{name}` must be an https:// (or http://) URL, got `{url}`"
                ));
            }
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return config("`client_id` and `client_secret` are required".into());
        }
        if self.page_size == 0 {
            return config("`page_size` must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return config("`max_attempts` must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a pull failed. [`PullError::code`] is the machine-readable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    #[error("the Coursera client is misconfigured: {0}")]
    Config(String),
    #[error("Coursera's token endpoint refused the client credentials (HTTP {status}): {message}")]
    Auth { status: u16, message: String },
    #[error("Coursera refused the access token again after it was renewed (HTTP 401)")]
    Unauthorized,
    #[error("the API client may not read program `{program_id}`'s report (HTTP 403)")]
    Forbidden { program_id: String },
    #[error("Coursera knows no program `{program_id}` (HTTP 404)")]
    NotFound { program_id: String },
    #[error(
        "Coursera answered 429 (too many requests) to {what} {attempts} times{}",
        retry_after.map(|d| format!("; it asks to wait {} s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        what: String,
        attempts: u32,
        retry_after: Option<Duration>,
    },
    #[error("Coursera answered HTTP {status} to {what} {attempts} times")]
    Unavailable {
        what: String,
        status: u16,
        attempts: u32,
    },
    #[error("Coursera could not be reached for {what} ({attempts} attempts): {message}")]
    Unreachable {
        what: String,
        attempts: u32,
        message: String,
    },
    #[error("Coursera answered HTTP {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("Coursera's answer to {what} is not what its API documents: {message}")]
    BadResponse { what: String, message: String },
    #[error(
        "the report's paging does not move on: the page at {start} says the next starts at {next}"
    )]
    Paging { start: u64, next: u64 },
    #[error("the caller could not keep a page of the report: {0}")]
    Deliver(String),
}

impl PullError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PullError::Config(_) => "config",
            PullError::Auth { .. } => "auth_failed",
            PullError::Unauthorized => "unauthorized",
            PullError::Forbidden { .. } => "forbidden",
            PullError::NotFound { .. } => "program_not_found",
            PullError::RateLimited { .. } => "rate_limited",
            PullError::Unavailable { .. } => "unavailable",
            PullError::Unreachable { .. } => "unreachable",
            PullError::Status { .. } => "http_status",
            PullError::BadResponse { .. } => "bad_response",
            PullError::Paging { .. } => "bad_paging",
            PullError::Deliver(_) => "deliver_failed",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PullError::RateLimited { .. }
                | PullError::Unavailable { .. }
                | PullError::Unreachable { .. }
        )
    }
}

/// One page of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's rows, each read or refused on its own (a bad row spoils nothing else).
    pub rows: Vec<Result<ReportRow, RowError>>,
    /// Where the next page starts (`paging.next`), when the API says there is one.
    pub next: Option<u64>,
    /// The report's size (`paging.total`), when the API says.
    pub total: Option<u64>,
}

struct Token {
    value: String,
    /// When to renew it: a little before it expires.
    renew_at: DateTime<Utc>,
}

/// The API client. Blocking; one request at a time.
pub struct Client {
    config: ClientConfig,
    agent: ureq::Agent,
    token: Option<Token>,
    clock: SharedClock,
    sleep: Box<dyn Fn(Duration) + Send + Sync>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("has_token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// What a request came back with, before its status is judged.
struct Answer {
    status: u16,
    body: String,
}

impl Client {
    /// A client reading the system clock and sleeping for real between attempts.
    pub fn new(config: ClientConfig) -> Result<Self, PullError> {
        config.check()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout))
            .user_agent(concat!("nigrani/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            config,
            agent,
            token: None,
            clock: clock::system(),
            sleep: Box::new(std::thread::sleep),
        })
    }

    /// The same client with its time (token expiry, the cursor's timestamps) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The same client waiting between attempts with `sleep` (tests record the waits).
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleep = Box::new(sleep);
        self
    }

    /// Rows asked for per page.
    pub fn page_size(&self) -> u64 {
        self.config.page_size
    }

    /// The time by the client's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reads the page of program `program_id`'s report that starts at row `start`.
    pub fn fetch_page(&mut self, program_id: &str, start: u64) -> Result<Page, PullError> {
        let url = format!(
            "{}/programs/{}/enrollmentReports",
            self.config.api_base.trim_end_matches('/'),
            path_segment(program_id)
        );
        let what = format!("the report page at {start}");
        let mut renewed = false;
        let answer = loop {
            let token = self.token()?;
            let limit = self.config.page_size;
            let agent = self.agent.clone();
            let answer = self.send(&what, || {
                agent
                    .get(&url)
                    .query("start", start.to_string())
                    .query("limit", limit.to_string())
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Accept", "application/json")
                    .call()
            })?;
            match answer.status {
                200 => break answer,
                401 if !renewed => {
                    tracing::info!(
                        program_id,
                        start,
                        "Coursera refused the access token; renewing it once."
                    );
                    self.token = None;
                    renewed = true;
                }
                401 => return Err(PullError::Unauthorized),
                403 => {
                    return Err(PullError::Forbidden {
                        program_id: program_id.into(),
                    });
                }
                404 => {
                    return Err(PullError::NotFound {
                        program_id: program_id.into(),
                    });
                }
                status => {
                    return Err(PullError::Status {
                        what,
                        status,
                        message: excerpt(&answer.body),
                    });
                }
            }
        };
        parse_page(&answer.body, start).map_err(|message| PullError::BadResponse { what, message })
    }

    /// A token good for now, fetching one when there is none or it is about to expire.
    fn token(&mut self) -> Result<String, PullError> {
        let now = self.clock.now();
        if let Some(token) = &self.token
            && now < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let what = "the token request".to_owned();
        let agent = self.agent.clone();
        let url = self.config.token_url.clone();
        let basic = format!(
            "Basic {}",
            base64(format!("{}:{}", self.config.client_id, self.config.client_secret).as_bytes())
        );
        let answer = self.send(&what, || {
            agent
                .post(&url)
                .header("Authorization", basic.as_str())
                .header("Accept", "application/json")
                .send_form([("grant_type", "client_credentials")])
        })?;
        if answer.status != 200 {
            let message = serde_json::from_str::<Value>(&answer.body)
                .ok()
                .and_then(|body| {
                    let text =
                        |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
                    match (text("error"), text("error_description")) {
                        (Some(error), Some(description)) => Some(format!("{error}: {description}")),
                        (Some(error), None) => Some(error),
                        (None, description) => description,
                    }
                })
                .unwrap_or_else(|| excerpt(&answer.body));
            return Err(if matches!(answer.status, 400 | 401 | 403) {
                PullError::Auth {
                    status: answer.status,
                    message,
                }
            } else {
                PullError::Status {
                    what,
                    status: answer.status,
                    message,
                }
            });
        }
        let (value, lifetime) =
            parse_token(&answer.body).map_err(|message| PullError::BadResponse {
                what: what.clone(),
                message,
            })?;
        // Renew a little early: a tenth of the lifetime, at most a minute.
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        let early = chrono::Duration::from_std(lifetime.saturating_sub(margin))
            .unwrap_or(chrono::Duration::zero());
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "Coursera issued an access token."
        );
        self.token = Some(Token {
            value: value.clone(),
            renew_at: now + early,
        });
        Ok(value)
    }

    /// Sends a request, retrying 429, 5xx and failed connections.
    fn send(
        &self,
        what: &str,
        request: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, PullError> {
        let attempts = self.config.max_attempts;
        let mut attempt = 1;
        loop {
            let failure = match request() {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response
                        .body_mut()
                        .with_config()
                        .limit(MAX_BODY_BYTES)
                        .read_to_string();
                    match (status, body) {
                        (429, _) => Failure::RateLimited(retry_after),
                        (500..=599, _) => Failure::Server(status, retry_after),
                        (_, Ok(body)) => return Ok(Answer { status, body }),
                        (_, Err(error)) => Failure::Transport(error.to_string()),
                    }
                }
                Err(error) if retryable(&error) => Failure::Transport(error.to_string()),
                Err(error) => {
                    return Err(PullError::Unreachable {
                        what: what.into(),
                        attempts: attempt,
                        message: error.to_string(),
                    });
                }
            };
            let asked = match &failure {
                Failure::RateLimited(after) | Failure::Server(_, after) => *after,
                Failure::Transport(_) => None,
            };
            let give_up = attempt >= attempts || asked.is_some_and(|d| d > MAX_WAIT);
            if give_up {
                return Err(match failure {
                    Failure::RateLimited(retry_after) => PullError::RateLimited {
                        what: what.into(),
                        attempts: attempt,
                        retry_after,
                    },
                    Failure::Server(status, _) => PullError::Unavailable {
                        what: what.into(),
                        status,
                        attempts: attempt,
                    },
                    Failure::Transport(message) => PullError::Unreachable {
                        what: what.into(),
                        attempts: attempt,
                        message,
                    },
                });
            }
            let backoff = self
                .config
                .initial_backoff
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(MAX_WAIT);
            let wait = asked.unwrap_or(backoff);
            tracing::warn!(
                what,
                attempt,
                attempts,
                wait_ms = wait.as_millis() as u64,
                failure = %failure,
                "Coursera's answer was a temporary failure; waiting before trying again."
            );
            (self.sleep)(wait);
            attempt += 1;
        }
    }
}

/// A temporary failure of one attempt.
enum Failure {
    RateLimited(Option<Duration>),
    Server(u16, Option<Duration>),
    Transport(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::RateLimited(_) => f.write_str("HTTP 429"),
            Failure::Server(status, _) => write!(f, "HTTP {status}"),
            Failure::Transport(message) => f.write_str(message),
        }
    }
}

fn retryable(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

fn parse_token(body: &str) -> Result<(String, Duration), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the token answer is not JSON: {e}"))?;
    let token = value
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token answer has no `access_token`")?;
    if let Some(kind) = value.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("the token is of type `{kind}`, not a bearer token"));
    }
    let lifetime = match value.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(expires) => Duration::from_secs(
            number(expires).ok_or("`expires_in` is not a whole number of seconds")?,
        ),
    };
    Ok((token.to_owned(), lifetime))
}

/// A whole number, written as a JSON number or as digits in a string (Coursera writes
/// `paging.next` as a string).
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_page(body: &str, start: u64) -> Result<Page, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the page is not JSON: {e}"))?;
    let elements = value
        .get("elements")
        .and_then(Value::as_array)
        .ok_or("the page has no `elements` array")?;
    let paging = value.get("paging");
    let field = |name: &str| -> Result<Option<u64>, String> {
        match paging.and_then(|p| p.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => number(v)
                .map(Some)
                .ok_or_else(|| format!("`paging.{name}` is not a whole number: {v}")),
        }
    };
    Ok(Page {
        rows: elements
            .iter()
            .enumerate()
            .map(|(index, element)| {
                ReportRow::from_json(element, RowAt::Element(start + index as u64))
            })
            .collect(),
        next: field("next")?,
        total: field("total")?,
    })
}

fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    if body.len() <= MAX {
        return body.to_owned();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// A URL path segment: unreserved characters as they are, the rest percent-encoded.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Standard base64 with padding, for HTTP Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_examples() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn pages_read_paging_as_strings_or_numbers() {
        let page = parse_page(
            r#"{"elements":[{"programId":"P","externalId":"X","contentId":"C"},{"programId":"P"}],
                "paging":{"next":"102","total":340}}"#,
            100,
        )
        .unwrap();
        assert_eq!((page.next, page.total), (Some(102), Some(340)));
        assert!(page.rows[0].is_ok());
        assert_eq!(page.rows[1].as_ref().unwrap_err().at, RowAt::Element(101));
        let last = parse_page(r#"{"elements":[],"paging":{}}"#, 0).unwrap();
        assert_eq!((last.next, last.total), (None, None));
        assert!(parse_page(r#"{"paging":{}}"#, 0).is_err());
        assert!(parse_page(r#"{"elements":[],"paging":{"next":"soon"}}"#, 0).is_err());
    }

    #[test]
    fn tokens_need_a_bearer_and_default_to_half_an_hour() {
        assert_eq!(
            parse_token(r#"{"access_token":"t","token_type":"Bearer"}"#).unwrap(),
            ("t".to_owned(), DEFAULT_TOKEN_LIFETIME)
        );
        assert_eq!(
            parse_token(r#"{"access_token":"t","expires_in":"60"}"#)
                .unwrap()
                .1,
            Duration::from_secs(60)
        );
        assert!(parse_token(r#"{"access_token":"t","token_type":"mac"}"#).is_err());
        assert!(parse_token(r#"{"token_type":"Bearer"}"#).is_err());
    }

    #[test]
    fn config_takes_https_refuses_other_schemes_and_hides_the_secret() {
        let config = ClientConfig::coursera("ORG", "key", "s3cr3t");
        Client::new(config.clone()).unwrap();
        let ftp = ClientConfig {
            api_base: "ftp://api.coursera.org".into(),
            ..config.clone()
        };
        let error = Client::new(ftp).unwrap_err();
        assert_eq!(error.code(), "config");
        assert!(error.to_string().contains("https://"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
