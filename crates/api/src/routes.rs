//! Handlers. Each reads its input, calls ingest or the store, and answers JSON (or CSV when
//! asked); every error goes through [`ApiError`].

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use nigrani_ingest::BodyFormat;
use nigrani_ingest::roster::{self, RosterKind, Rows};
use nigrani_store::Page;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Authenticated, Caller};
use crate::error::ErrorCode;
use crate::{ApiError, AppState};
use nigrani_domain::AccessRole::{self, Admin, Manager, Partner};

/// Largest roster file accepted over HTTP; bigger rosters go through `nigrani import`.
pub const MAX_ROSTER_BYTES: usize = 64 * 1024 * 1024;
/// The roster lists, one path each: `{kind}` takes only their names, so that no other path under
/// `/api/v1` (a misspelt route, another method of a real one) is taken for a roster kind.
pub(crate) const ROSTER_PATH: &str = "/{kind:institutions|disciplines|tracks|cohorts|learners}";
/// Default and largest page of a list.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;

/// Registers every route but the API's own description (see [`crate::openapi::configure`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("the query is not valid: {e}"),
        )
        .into()
    }))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(prometheus_metrics))
    .route("/metrics/program", web::get().to(program_metrics))
    .configure(crate::grafana::configure)
    .configure(crate::xapi::configure)
    .configure(crate::caliper::configure)
    .service(
        web::scope("/api/v1")
            .configure(crate::courses::configure)
            .configure(crate::imports::configure)
            .route("/events", web::post().to(post_events))
            .route("/status", web::get().to(status))
            .route("/rejections", web::get().to(list_rejections))
            .route("/audit", web::get().to(list_audit))
            .route(
                "/breakdown",
                web::get().to(crate::figures::handlers::breakdown),
            )
            .route(
                "/timeseries",
                web::get().to(crate::figures::handlers::timeseries),
            )
            .route("/funnel", web::get().to(crate::figures::handlers::funnel))
            .route("/targets", web::get().to(crate::figures::handlers::targets))
            .route("/summary", web::get().to(crate::summary::summary))
            .route("/stream", web::get().to(crate::stream::stream))
            .route(
                "/cohorts/{cohort_id}",
                web::get().to(crate::summary::cohort),
            )
            .route(ROSTER_PATH, web::post().to(upsert_roster))
            .route(ROSTER_PATH, web::get().to(list_roster)),
    )
    .default_service(web::to(crate::access::unrouted));
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Object, example = json!({"status": "ok"})),
              crate::error::ErrorResponses))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The database answers", body = Object, example = json!({"status": "ready"})),
              (status = 503, description = "The database cannot be reached (`store_unavailable`)", body = crate::error::ErrorBody),
              crate::error::ErrorResponses))]
#[tracing::instrument(skip_all)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}

/// What the store holds: counts of events, unmatched events, learners and rejections, and the
/// unmatched activity per source.
#[utoipa::path(get, path = "/api/v1/status", tag = "admin",
    responses((status = 200, description = "The store's counts, unmatched activity per source (events whose learner the roster does not know: distinct learner references and events), the pull connectors' health (last run and last complete pass, rows read, lag, the newest row's time, the last error) and the ingest limits", body = Object,
               example = json!({"backend": "sqlite", "stats": {"events": 31000, "unmatched_events": 310, "learners": 1000, "rejections": 4},
                                "unmatched": [{"source": "coursera", "learner_refs": 12, "events": 310}],
                                "connectors": [{"connector": "coursera/pKx7Qm2aEe6uGw4bNcR1sA", "last_run_at": "2026-12-01T06:00:04Z",
                                    "last_success_at": "2026-12-01T06:00:04Z", "rows_total": 1350, "lag_seconds": 3600,
                                    "data_as_of": "2026-11-30T18:00:00Z", "data_lag_seconds": 46800, "in_pass": false, "last_error": null}],
                                "limits": {"max_events": 5000, "max_body_bytes": 10485760}})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all)]
pub(crate) async fn status(
    _authorized: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let stats = state.store.stats().await?;
    let unmatched = state.store.unmatched_by_source().await?;
    let connectors = connector_health(&state).await?;
    Ok(HttpResponse::Ok().json(json!({
        "backend": state.store.backend(),
        "stats": stats,
        "unmatched": unmatched,
        "connectors": connectors,
        "limits": {
            "max_events": state.ingestor.limits().max_events,
            "max_body_bytes": state.ingestor.limits().max_body_bytes,
        },
    })))
}

/// Every pull connector's health, as of now.
async fn connector_health(
    state: &AppState,
) -> Result<Vec<nigrani_ingest::coursera::connector::Health>, nigrani_store::StoreError> {
    let now = state.clock.now();
    Ok(state
        .store
        .connector_states()
        .await?
        .iter()
        .map(|s| nigrani_ingest::coursera::connector::Health::of(s, now))
        .collect())
}

/// Ingests a batch of events (a JSON array, or NDJSON) and answers for each one. Every outcome
/// in the answer is durable.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body(description = "Up to 5,000 events (10 MiB) as a JSON array or NDJSON", content(
        (EventBatch = "application/json", example = json!([{"event_id": "evt-0001", "source": "coursera", "kind": "course_completed",
            "occurred_at": "2026-11-30T09:15:00+05:00", "learner": {"learner_id": "L000123"}, "course_id": "ai-for-everyone", "progress": 1.0}])),
        ("application/x-ndjson"),
    )),
    responses((status = 200, description = "One outcome per event, in order: accepted, unmatched, duplicate, conflict, or rejected with a reason. Every outcome is durable.", body = Object,
               example = json!({"counts": {"accepted": 1, "unmatched": 0, "duplicate": 0, "conflict": 0, "rejected": 0},
                                "results": [{"index": 0, "event_id": "evt-0001", "outcome": "accepted"}]})),
              (status = 413, description = "Too many events or bytes (`batch_too_large`, `payload_too_large`)", body = crate::error::ErrorBody),
              (status = 415, description = "Not JSON or NDJSON (`unsupported_media_type`)", body = crate::error::ErrorBody),
              (status = 503, description = "The database cannot be reached; nothing was stored (`store_unavailable`)", body = crate::error::ErrorBody),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(bytes, events))]
pub(crate) async fn post_events(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = match crate::body::media_type(&req).as_deref() {
        Some("application/json") => BodyFormat::JsonArray,
        Some(
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/jsonlines",
        ) => BodyFormat::Ndjson,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send events as `application/json` (an array) or `application/x-ndjson`, \
                     not {}",
                    other.map_or("a body without Content-Type".to_owned(), |t| format!(
                        "`{t}`"
                    ))
                ),
            ));
        }
    };
    let limits = state.ingestor.limits();
    let body = crate::body::read_body(&req, payload, limits.max_body_bytes).await?;
    let backend = state.store.backend().as_str();
    let in_flight = state.metrics.in_flight(backend);
    in_flight.inc();
    let started = std::time::Instant::now();
    let received_at = state.clock.now();
    tracing::Span::current().record("bytes", body.len());
    let report = state
        .ingestor
        .bound_to(caller.source.as_deref())
        .ingest_body(&body, format, received_at)
        .await;
    in_flight.dec();
    let report = report?;
    state
        .metrics
        .observe_batch(backend, &report, started.elapsed(), received_at);
    tracing::Span::current().record("events", report.results.len());
    Ok(HttpResponse::Ok().json(report))
}

crate::schema::schema_type! {
    /// A batch of events as JSON: an array of at least one value (each is checked and answered
    /// on its own, so anything but an object is answered `rejected`), or one object.
    EventBatch => utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(<crate::schema::AnyJson as utoipa::PartialSchema>::schema())
                .min_items(Some(1)),
        )
        .item(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Object),
        )
        .description(Some(
            "Events as a JSON array (each answered on its own: anything but a valid event object \
             is `rejected`), or one event object",
        ))
        .into()
}

crate::schema::schema_type! {
    /// Roster rows as JSON: an array of at least one object, of the fields of the kind.
    RosterRows => utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Object),
        )
        .min_items(Some(1))
        .description(Some("At least one row, each an object of the kind's fields"))
        .into()
}

crate::schema::schema_type! {
    /// `format` of a roster list.
    ListFormat => crate::schema::choices(["json", "csv", "rows"], false, "`json`, `csv` or `rows`")
}

crate::schema::schema_type! {
    /// `lang` of a roster list.
    ListLang => crate::schema::choices(["en", "ur"], false, "`en` or `ur`")
}

/// The kinds of roster rows, as the OpenAPI document names them in paths.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code, reason = "documents the path; handlers parse it as text")]
pub(crate) enum RosterKindParam {
    Institutions,
    Disciplines,
    Tracks,
    Cohorts,
    Learners,
}

fn roster_kind(path: &str) -> Result<RosterKind, ApiError> {
    path.parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("no resource `/api/v1/{path}`")))
}

/// Upserts roster rows of one kind from CSV (`text/csv`) or a JSON array. The file is checked
/// whole first; nothing is written when any row is invalid.
#[utoipa::path(post, path = "/api/v1/{kind}", tag = "roster",
    params(("kind" = RosterKindParam, Path, description = "institutions, disciplines, tracks, cohorts or learners", example = "cohorts")),
    request_body(description = "Rows as CSV with a header, or a JSON array of objects (up to 64 MiB)", content(
        ("text/csv", example = "cohort_id,name,name_ur,track,starts_on,ends_on,target\nsoft-2026-c1,AI Soft Skills cohort 1,اے آئی سافٹ اسکلز گروپ 1,soft,2026-09-01,2026-12-15,300\n"),
        (RosterRows = "application/json"),
    )),
    responses((status = 200, description = "Rows upserted, and events attributed to learners they made known", body = Object,
               example = json!({"kind": "cohorts", "rows": 1, "attributed_events": 0})),
              (status = 422, description = "Invalid rows, listed by line in `details`; nothing was written (`invalid_rows`)", body = crate::error::ErrorBody),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip(_authorized, req, payload, state))]
pub(crate) async fn upsert_roster(
    _authorized: Authenticated,
    kind: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let kind = roster_kind(&kind)?;
    let media = crate::body::media_type(&req);
    let body = crate::body::read_body(&req, payload, MAX_ROSTER_BYTES).await?;
    let rows = match media.as_deref() {
        Some("text/csv") => roster::parse_csv(kind, &body)?,
        Some("application/json") => roster::parse_json(kind, &body)?,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send {} as `text/csv` or `application/json`, not {}",
                    kind.as_str(),
                    other.map_or("a body without Content-Type".to_owned(), |t| format!(
                        "`{t}`"
                    ))
                ),
            ));
        }
    };
    let applied = roster::apply(&state.store, &rows).await;
    // What was committed (all of it, or the chunks before a failure) shows at once, not at the
    // next refresh tick.
    state.engine.roster_changed();
    let report = applied?;
    tracing::info!(
        kind = kind.as_str(),
        rows = report.rows,
        "Roster rows upserted."
    );
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Learners only: return those whose id sorts after this one.
    after: Option<String>,
    /// Learners only: page size (default 1,000, at most 10,000).
    limit: Option<usize>,
    /// `en` or `ur`: add a `label` (and `province_label` or `track_label`) to each row.
    lang: Option<String>,
}

fn wants_csv(req: &HttpRequest, format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json" | "rows") => Ok(false),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`format` must be `json`, `csv` or `rows`, not `{other}`"),
        )),
        None => Ok(req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv"))),
    }
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`limit` must lie between 1 and {MAX_PAGE}, got {n}"),
        )),
    }
}

/// Lists roster rows of one kind, as JSON or CSV. Learners come a page at a time.
#[utoipa::path(get, path = "/api/v1/{kind}", tag = "roster",
    params(("kind" = RosterKindParam, Path, description = "institutions, disciplines, tracks, cohorts or learners (learners: admin and manager keys only)", example = "institutions"),
           ("format" = Option<ListFormat>, Query, description = "`json` (default), `csv` (also with `Accept: text/csv`) or `rows` (the bare array)"),
           ("after" = Option<String>, Query, description = "Learners only: those whose id sorts after this one"),
           ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "Learners only: page size (default 1,000, at most 10,000)"),
           ("lang" = Option<ListLang>, Query, description = "`en` or `ur`: add labels")),
    responses((status = 200, description = "The rows", content(
                 (crate::schema::ObjectOrRows = "application/json", example = json!({"institutions": [{"hec_id": "HEC-0001", "name": "University of the Punjab",
                    "name_ur": "جامعہ پنجاب", "province": "punjab", "city": "Lahore", "sector": "public", "label": "جامعہ پنجاب", "province_label": "پنجاب"}]})),
                 (String = "text/csv"))),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip(caller, req, state))]
pub(crate) async fn list_roster(
    Authenticated(caller): Authenticated,
    kind: web::Path<String>,
    query: web::Query<ListQuery>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let kind = roster_kind(&kind)?;
    // Learner-level rows never leave through a partner (or ingest) key.
    if kind == RosterKind::Learners {
        caller.require(&[Admin, Manager])?;
    } else {
        caller.require(&[Admin, Manager, Partner])?;
    }
    let csv = wants_csv(&req, query.format.as_deref())?;
    if kind != RosterKind::Learners && (query.after.is_some() || query.limit.is_some()) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "`after` and `limit` apply to learners, not {}",
                kind.as_str()
            ),
        ));
    }
    let store = &state.store;
    let rows = match kind {
        RosterKind::Institutions => Rows::Institutions(store.institutions().await?),
        RosterKind::Disciplines => Rows::Disciplines(store.disciplines().await?),
        RosterKind::Tracks => Rows::Tracks(store.track_plans().await?),
        RosterKind::Cohorts => Rows::Cohorts(store.cohorts().await?),
        RosterKind::Learners => Rows::Learners(
            store
                .learners(Page {
                    after: query.after.clone(),
                    limit: page_size(query.limit)?,
                })
                .await?,
        ),
    };
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(roster::to_csv(&rows)));
    }
    let lang = match query.lang.as_deref() {
        None => None,
        Some("en") => Some(crate::figures::Lang::En),
        Some("ur") => Some(crate::figures::Lang::Ur),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`lang` must be `en` or `ur`, not `{other}`"),
            ));
        }
    };
    let pick = |en: &str, ur: &str| match lang {
        Some(crate::figures::Lang::Ur) => ur.to_owned(),
        _ => en.to_owned(),
    };
    // Each row as JSON, with labels added when a language was asked.
    let labelled = |row: Value, labels: &[(&str, String)]| {
        let mut row = row;
        if lang.is_some() {
            for (field, label) in labels {
                row[*field] = json!(label);
            }
        }
        row
    };
    let body = match &rows {
        Rows::Institutions(rows) => {
            json!({ "institutions": rows.iter().map(|i| labelled(json!(i), &[
            ("label", pick(&i.name, &i.name_ur)),
            ("province_label", pick(i.province.label_en(), i.province.label_ur())),
        ])).collect::<Vec<_>>() })
        }
        Rows::Disciplines(rows) => json!({ "disciplines": rows.iter().map(|d| labelled(json!(d), &[
            ("label", pick(&d.name, &d.name_ur)),
        ])).collect::<Vec<_>>() }),
        Rows::Tracks(rows) => json!({ "tracks": rows.iter().map(|t| labelled(json!(t), &[
            ("label", pick(t.track.label_en(), t.track.label_ur())),
        ])).collect::<Vec<_>>() }),
        Rows::Cohorts(rows) => json!({ "cohorts": rows.iter().map(|c| labelled(json!(c), &[
            ("label", pick(&c.name, &c.name_ur)),
            ("track_label", pick(c.track.label_en(), c.track.label_ur())),
        ])).collect::<Vec<_>>() }),
        Rows::Learners(rows) => json!({
            "learners": rows,
            "next_after": rows.last().map(|l| l.learner_id.clone()),
        }),
    };
    // `format=rows`: the bare array, for Grafana's Infinity datasource.
    let body = match (query.format.as_deref(), body) {
        (Some("rows"), Value::Object(mut fields)) => {
            fields.remove(kind.as_str()).unwrap_or_default()
        }
        (_, body) => body,
    };
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectionQuery {
    /// Return rejections with an id greater than this one.
    after: Option<i64>,
    /// Page size (default 1,000, at most 10,000).
    limit: Option<usize>,
}

/// Most bytes of kept payloads in one page of rejections; the page ends early past this (always
/// with at least one rejection), and `next_after` goes on from there.
pub const MAX_REJECTION_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Rejections read from the store at a time while a page is filled.
const REJECTION_CHUNK: usize = 100;

/// Lists what was received and refused, oldest first, with the reason and what was kept of the
/// payload (at most 64 KiB of each, with its size and SHA-256).
#[utoipa::path(get, path = "/api/v1/rejections", tag = "admin",
    params(("after" = Option<i64>, Query, description = "Rejections with an id greater than this one"),
           ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "Page size (default 1,000, at most 10,000); a page also ends once its payloads pass 4 MiB")),
    responses((status = 200, description = "A page of rejections and the `after` of the next page", body = Object,
               example = json!({"rejections": [{"id": 7, "received_at": "2026-11-30T10:00:00Z", "source": "coursera", "event_id": "evt-9",
                                 "reason": "unknown_kind", "message": "unknown event kind `finished`", "raw": "{}",
                                 "raw_bytes": 2, "raw_sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "raw_truncated": false}], "next_after": 7})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip(_authorized, state))]
pub(crate) async fn list_rejections(
    _authorized: Authenticated,
    query: web::Query<RejectionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_size(query.limit)?;
    let mut after = query.after;
    let mut page = Vec::new();
    let mut bytes = 0;
    // Read in small chunks, so that the page's memory follows its byte budget, not its length.
    'fill: while page.len() < limit {
        let asked = REJECTION_CHUNK.min(limit - page.len());
        let chunk = state
            .store
            .rejections(Page {
                after,
                limit: asked,
            })
            .await?;
        let last_chunk = chunk.len() < asked;
        for rejection in chunk {
            if bytes >= MAX_REJECTION_PAGE_BYTES {
                break 'fill;
            }
            bytes += rejection.rejection.raw.len() + rejection.rejection.message.len();
            after = Some(rejection.id);
            page.push(rejection);
        }
        if last_chunk {
            break;
        }
    }
    let next_after = page.last().map(|r| r.id);
    Ok(HttpResponse::Ok().json(json!({ "rejections": page, "next_after": next_after })))
}

/// The audit log of partner requests, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin",
    params(("after" = Option<i64>, Query, description = "Entries with an id greater than this one"),
           ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "Page size (default 1,000, at most 10,000)")),
    responses((status = 200, description = "A page of the audit log and the `after` of the next page", body = Object,
               example = json!({"audit": [{"id": 1, "at": "2026-11-30T10:00:00Z", "key_id": "3fa2b1c0", "method": "GET",
                                 "path": "/api/v1/breakdown", "query": "by=province", "status": 200}], "next_after": 1})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip(_authorized, state))]
pub(crate) async fn list_audit(
    _authorized: Authenticated,
    query: web::Query<RejectionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entries = state
        .store
        .audit(Page {
            after: query.after,
            limit: page_size(query.limit)?,
        })
        .await?;
    let next_after = entries.last().map(|e| e.id);
    Ok(HttpResponse::Ok().json(json!({ "audit": entries, "next_after": next_after })))
}

/// Writes every partner request to the audit log, with its answer's status, before answering.
/// A request that cannot be audited is not answered.
pub(crate) async fn audit_partners(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let response = next.call(req).await?;
    let caller = response.request().extensions().get::<Caller>().cloned();
    if let Some(caller) = caller.filter(|c| c.role == AccessRole::Partner) {
        let state = response
            .request()
            .app_data::<web::Data<AppState>>()
            .cloned();
        if let Some(state) = state {
            let entry = nigrani_store::AuditEntry {
                id: 0,
                at: state.clock.now(),
                key_id: caller.key_id,
                method: response.request().method().to_string(),
                path: response.request().path().to_owned(),
                query: response.request().query_string().to_owned(),
                status: response.status().as_u16(),
            };
            state
                .store
                .append_audit(&entry)
                .await
                .map_err(ApiError::from)?;
        }
    }
    Ok(response)
}

/// Conditional GETs for polling dashboards: every successful `GET /api/v1/…` answer carries an
/// `ETag` (a hash of its body) and `Cache-Control: private, no-cache`; a request whose
/// `If-None-Match` names the current tag gets `304 Not Modified` and no body.
pub(crate) async fn conditional_get(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::body::{BoxBody, to_bytes};
    use actix_web::http::{Method, StatusCode};

    // The live stream never ends, so it cannot be buffered for a tag.
    let eligible = req.method() == Method::GET
        && req.path().starts_with("/api/v1/")
        && req.path() != "/api/v1/stream";
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = next.call(req).await?;
    if !eligible || response.status() != StatusCode::OK {
        return Ok(response.map_into_boxed_body());
    }
    // Answers rendered once and kept (see `rendered`) come with their tag.
    let tagged = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(etag) = tagged {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-cache"),
        );
        if if_none_match.is_some_and(|tags| matches_tag(&tags, &etag)) {
            let (request, response) = response.into_parts();
            let mut response = response.set_body(BoxBody::new(()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(actix_web::dev::ServiceResponse::new(request, response));
        }
        return Ok(response.map_into_boxed_body());
    }
    let (request, response) = response.into_parts();
    let (mut head, body) = response.into_parts();
    let bytes = to_bytes(body).await.map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "the answer could not be read back for its ETag",
        )
    })?;
    let etag = crate::rendered::etag_of(&bytes);
    let headers = head.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-cache"),
    );
    let unchanged = if_none_match.is_some_and(|tags| matches_tag(&tags, &etag));
    let response = if unchanged {
        *head.status_mut() = StatusCode::NOT_MODIFIED;
        head.set_body(BoxBody::new(()))
    } else {
        head.set_body(BoxBody::new(bytes))
    };
    Ok(actix_web::dev::ServiceResponse::new(request, response))
}

/// Whether an `If-None-Match` list names `etag` (weakly) or is `*`.
fn matches_tag(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
}

/// The content type of Prometheus' text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The service's Prometheus metrics in the text format (no key: nothing in them is about
/// learners).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format: the service's own metrics", content_type = "text/plain", body = String),
              crate::error::ErrorResponses))]
pub(crate) async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    match connector_health(&state).await {
        Ok(health) => state.metrics.set_connectors(&health),
        Err(e) => {
            tracing::warn!(error = %e, "The connectors' health could not be read for /metrics.")
        }
    }
    HttpResponse::Ok()
        .content_type(PROMETHEUS_TEXT)
        .body(state.metrics.render(&state.engine))
}

/// The program gauges in Prometheus' text format: learners by track, province and status, and
/// each cohort's completion ratio — exact figures, so for manager and admin keys only.
#[utoipa::path(get, path = "/metrics/program", tag = "health",
    responses((status = 200, description = "Prometheus text format: the program gauges", content_type = "text/plain", body = String),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn program_metrics(
    _caller: crate::auth::Authenticated,
    state: web::Data<AppState>,
) -> HttpResponse {
    HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(
        state
            .metrics
            .render_program(&state.engine, state.clock.now())
            .await,
    )
}

/// Counts and times every request by route pattern (never the raw path, so labels stay bounded).
pub(crate) async fn observe_http(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = crate::access::method_label(req.method());
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| std::sync::Arc::clone(&state.metrics));
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = crate::access::route_label(response.request());
        metrics.observe_request(
            &route,
            method,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(response)
}
