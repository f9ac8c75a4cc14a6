//! Who may call what: the one table of routes, methods and the roles each needs, and the
//! middleware that applies it before a handler reads anything of the request.
//!
//! Checking here, ahead of the handlers' extractors, keeps the answers in the order a client can
//! act on: a missing or wrong key is 401, a key of the wrong role 403, and only then is the
//! query or body validated (400). A route missing from [`RULES`] is refused by
//! [`crate::auth::Authenticated`] (no handler runs without a rule), which the route tests catch.
//!
//! HTTP methods are sorted here too: a method a path does not take is 405 with `Allow`, a method
//! nigrani does not know is 501 elsewhere, and metrics label methods from a fixed set, so a
//! client inventing methods cannot grow `/metrics`.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use nigrani_domain::AccessRole::{self, Admin, Ingest, Manager, Partner};

use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// Whom a caller's figures are for: partner keys get the disclosure-controlled view
/// ([`nigrani_analytics::disclosure`]), managers and admins exact figures.
pub(crate) fn audience(role: AccessRole) -> nigrani_analytics::disclosure::Audience {
    use nigrani_analytics::disclosure::Audience;
    match role {
        Partner => Audience::Partner,
        Admin | Manager | Ingest => Audience::Exact,
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, without a key (health, metrics, the API's own description).
    Public,
    /// A key with one of these roles.
    Roles(&'static [AccessRole]),
}

const READERS: Access = Access::Roles(&[Admin, Manager, Partner]);
const ADMIN: Access = Access::Roles(&[Admin]);
const WRITERS: Access = Access::Roles(&[Admin, Ingest]);

/// Every route: method, pattern (as the router names it, without the regular expressions of its
/// segments) and who may call it. A pattern without segments may also name one path of a wider
/// pattern: that entry comes first and wins (the learner list needs more than the other roster
/// lists).
pub(crate) const RULES: &[(Method, &str, Access)] = &[
    (
        Method::GET,
        "/api/v1/learners",
        Access::Roles(&[Admin, Manager]),
    ),
    (Method::GET, "/healthz", Access::Public),
    (Method::GET, "/readyz", Access::Public),
    (Method::GET, "/metrics", Access::Public),
    (
        Method::GET,
        "/metrics/program",
        Access::Roles(&[Admin, Manager]),
    ),
    (Method::GET, "/api/openapi.json", Access::Public),
    (Method::GET, "/api/openapi-ui.json", Access::Public),
    (Method::GET, "/api/docs/{_}", Access::Public),
    (Method::POST, "/api/v1/events", WRITERS),
    (
        Method::GET,
        "/api/v1/status",
        Access::Roles(&[Admin, Manager]),
    ),
    (Method::GET, "/api/v1/rejections", ADMIN),
    (Method::GET, "/api/v1/audit", ADMIN),
    (Method::GET, "/api/v1/breakdown", READERS),
    (Method::GET, "/api/v1/timeseries", READERS),
    (Method::GET, "/api/v1/funnel", READERS),
    (Method::GET, "/api/v1/targets", READERS),
    (Method::GET, "/api/v1/summary", READERS),
    (Method::GET, "/api/v1/stream", READERS),
    (Method::GET, "/api/v1/cohorts/{cohort_id}", READERS),
    (Method::POST, "/api/v1/{kind}", ADMIN),
    (Method::GET, "/api/v1/{kind}", READERS),
    (
        Method::GET,
        "/api/v1/course-mappings",
        Access::Roles(&[Admin, Manager]),
    ),
    (Method::POST, "/api/v1/course-mappings", ADMIN),
    (Method::DELETE, "/api/v1/course-mappings", ADMIN),
    (Method::POST, "/api/v1/imports/coursera", WRITERS),
    (Method::GET, "/xapi/about", Access::Public),
    (Method::HEAD, "/xapi/about", Access::Public),
    (Method::POST, "/xapi/statements", WRITERS),
    (Method::PUT, "/xapi/statements", WRITERS),
    // Statements are raw payloads (they may hold e-mail addresses): admins only.
    (Method::GET, "/xapi/statements", ADMIN),
    (Method::HEAD, "/xapi/statements", ADMIN),
    (Method::POST, "/caliper/v1p1/events", WRITERS),
    (Method::GET, "/grafana", READERS),
    (Method::GET, "/grafana/", READERS),
    (Method::POST, "/grafana/metrics", READERS),
    (Method::POST, "/grafana/metric-payload-options", READERS),
    (Method::POST, "/grafana/query", READERS),
    (Method::POST, "/grafana/variable", READERS),
    (Method::POST, "/grafana/tag-keys", READERS),
    (Method::POST, "/grafana/tag-values", READERS),
];

/// The methods of HTTP that nigrani knows; anything else is 501.
const KNOWN_METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

/// The method as a metric label: one of a fixed set, whatever the client sent.
pub(crate) fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// The rule for a request, when its path matches a route that takes its method.
fn rule(method: &Method, path: &str, pattern: &str) -> Option<Access> {
    let pattern = plain(pattern);
    RULES
        .iter()
        .find(|(m, p, _)| m == method && (*p == path || *p == pattern))
        .map(|(_, _, access)| *access)
}

/// A pattern without the regular expressions of its segments: `/{kind:a|b}` is `/{kind}`.
fn plain(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut depth = 0usize;
    let mut in_regex = false;
    for c in pattern.chars() {
        if in_regex {
            // Skip the expression, braces of its own included, up to its segment's `}`.
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    depth = 0;
                    in_regex = false;
                    out.push(c);
                }
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth > 0 => {
                in_regex = true;
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The route of a request as a metric label: its pattern without regular expressions, or
/// `unmatched` — never the raw path.
pub(crate) fn route_label(req: &HttpRequest) -> String {
    routed(req)
        .1
        .map_or_else(|| "unmatched".to_owned(), |pattern| plain(&pattern))
}

/// The path as the router sees it (percent-decoded), and the pattern of the first route that
/// matches it — the route the router takes, so that the rule checked is the rule of the handler
/// that runs.
fn routed(req: &HttpRequest) -> (String, Option<String>) {
    let path = req.match_info().as_str().to_owned();
    let pattern = req.resource_map().match_pattern(&path);
    (path, pattern)
}

/// Applies [`RULES`]: authenticates and checks the role of every request to a route that needs
/// a key, and records the caller for the handler and the audit log.
pub(crate) async fn check(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let (path, pattern) = routed(req.request());
    let access = pattern.and_then(|pattern| rule(req.method(), &path, &pattern));
    if let Some(Access::Roles(roles)) = access {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let caller = match state {
            Some(state) => state.keys.authenticate(req.request()).await,
            None => Err(ApiError::new(
                ErrorCode::InternalError,
                "application state missing",
            )),
        };
        let verdict = caller.and_then(|caller| {
            // Known even when refused, so that a partner's refused request is audited too.
            req.extensions_mut().insert(caller.clone());
            caller.require(roles)?;
            Ok(caller)
        });
        match verdict {
            Ok(caller) => {
                req.extensions_mut().insert(Authorized(caller));
            }
            Err(error) => {
                let (request, _) = req.into_parts();
                return Ok(ServiceResponse::new(request, error.error_response()));
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The caller of a request that passed [`check`].
#[derive(Debug, Clone)]
pub(crate) struct Authorized(pub(crate) crate::auth::Caller);

/// What answers a request no route took: 405 (with `Allow`) on a path that exists with other
/// methods, whatever the method; elsewhere 501 for a method nigrani does not know, else 404.
pub(crate) async fn unrouted(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (_, pattern) = routed(&req);
    let allowed: Vec<&str> = pattern
        .map(|pattern| {
            let pattern = plain(&pattern);
            RULES
                .iter()
                .filter(|(_, p, _)| *p == pattern)
                .map(|(m, _, _)| m.as_str())
                .collect()
        })
        .unwrap_or_default();
    if allowed.is_empty() {
        if !KNOWN_METHODS.contains(req.method()) {
            return Err(ApiError::new(
                ErrorCode::NotImplemented,
                "nigrani does not implement this HTTP method",
            ));
        }
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no route {} {}", req.method(), req.path()),
        ));
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} takes {allow}, not {}", req.path(), req.method()),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_an_access_rule() {
        let document: serde_json::Value =
            serde_json::from_str(&crate::openapi::document_json()).unwrap_or_default();
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() > 10);
        for (path, operations) in paths {
            for method in operations.as_object().into_iter().flat_map(|o| o.keys()) {
                let method: Method = method.to_ascii_uppercase().parse().unwrap_or(Method::GET);
                assert!(
                    rule(&method, &path, &path).is_some(),
                    "{method} {path} has no access rule"
                );
            }
        }
    }

    #[test]
    fn patterns_are_compared_without_their_regular_expressions() {
        assert_eq!(plain(crate::routes::ROSTER_PATH), "/{kind}");
        assert_eq!(plain("/api/docs/{_:.*}"), "/api/docs/{_}");
        assert_eq!(plain("/a/{n:[0-9]{2}}/b"), "/a/{n}/b");
        assert_eq!(
            plain("/api/v1/cohorts/{cohort_id}"),
            "/api/v1/cohorts/{cohort_id}"
        );
        let learners = rule(&Method::GET, "/api/v1/learners", "/api/v1/{kind:x|y}");
        assert_eq!(learners, Some(Access::Roles(&[Admin, Manager])));
        let cohorts = rule(&Method::GET, "/api/v1/cohorts", "/api/v1/{kind:x|y}");
        assert_eq!(cohorts, Some(READERS));
    }

    #[test]
    fn method_labels_are_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        let invented = Method::from_bytes(b"INVENTED").unwrap_or(Method::GET);
        assert_eq!(method_label(&invented), "other");
    }
}
