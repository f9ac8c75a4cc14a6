//! Grafana's JSON datasource protocol under `/grafana`, over the same analytics queries as the
//! read API.
//!
//! A panel's *metric* is one of nigrani's metrics; its *payload* chooses the shape: `format`
//! `timeseries` (default; optional `split` by a dimension, `interval`, `cumulative`) or `table`
//! (a breakdown, grouped `by` dimensions). The dashboard's time range is the query's `from`/`to`,
//! and ad-hoc filters (`key = value`, keys are dimensions) filter the learners. Variables list a
//! dimension's values; tag keys and values feed the ad-hoc filter picker. Keys and roles are those
//! of the API: partner keys get the figures of the disclosure policy, as on every route.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use nigrani_analytics::period::{Interval, day_start_micros};
use nigrani_analytics::query::{MAX_BY, dimension_names};
use nigrani_analytics::series::SeriesQuery;
use nigrani_analytics::{BreakdownQuery, Dimension, Metric};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::audience;
use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::figures::{Labels, Lang, metric_value, rounded_now};
use crate::{ApiError, AppState};

/// Registers the datasource's routes under `/grafana`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/grafana")
            .app_data(web::JsonConfig::default().error_handler(|e, _| {
                use actix_web::error::JsonPayloadError;
                match e {
                    JsonPayloadError::ContentType => ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        "send the body as `application/json`",
                    ),
                    JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::new(
                        ErrorCode::InvalidBody,
                        format!("the body is not what this route takes: {e}"),
                    ),
                    JsonPayloadError::Deserialize(e) => ApiError::new(
                        ErrorCode::MalformedJson,
                        format!("the body is not JSON: {e}"),
                    ),
                    JsonPayloadError::Payload(e) => crate::body::unreadable(&e),
                    JsonPayloadError::Overflow { .. }
                    | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        "the body is larger than the limit of 2 MiB",
                    ),
                    other => ApiError::new(
                        ErrorCode::InvalidBody,
                        format!("the body could not be read: {other}"),
                    ),
                }
                .into()
            }))
            .route("", web::get().to(connection_test))
            .route("/", web::get().to(connection_test))
            .route("/metrics", web::post().to(metrics))
            .route("/metric-payload-options", web::post().to(payload_options))
            .route("/query", web::post().to(query))
            .route("/variable", web::post().to(variable))
            .route("/tag-keys", web::post().to(tag_keys))
            .route("/tag-values", web::post().to(tag_values)),
    );
}

/// A body or field read only from a JSON object. Serde would also read a struct from an array
/// of its fields in order, which the protocol (and the document) do not allow.
#[derive(Debug)]
pub(crate) struct Object<T>(T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        serde_json::from_value(Value::Object(fields))
            .map(Object)
            .map_err(serde::de::Error::custom)
    }
}

impl<T> std::ops::Deref for Object<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Connection test: answers 200 when the key may read figures.
#[utoipa::path(get, path = "/grafana", tag = "grafana",
    responses((status = 200, description = "The key may read figures", body = Object, example = json!({"status": "ok"})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn connection_test(_authorized: Authenticated) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "status": "ok" })))
}

/// The options of one payload field, as `[{label, value}]`.
fn options(name: &str) -> Option<Vec<Value>> {
    let option = |label: &str, value: &str| json!({ "label": label, "value": value });
    let dimensions = || {
        Dimension::ALL
            .iter()
            .map(|d| option(d.as_str(), d.as_str()))
            .collect()
    };
    Some(match name {
        "format" => vec![
            option("Time series", "timeseries"),
            option("Table", "table"),
        ],
        "split" | "by" => dimensions(),
        "interval" => Interval::ALL
            .iter()
            .map(|i| option(i.as_str(), i.as_str()))
            .collect(),
        "cumulative" => vec![option("No", "false"), option("Yes", "true")],
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetricsRequest {
    /// The metric being edited, if any (ignored: every metric takes the same payload).
    #[allow(
        dead_code,
        reason = "part of the protocol; every metric takes the same payload"
    )]
    metric: Option<String>,
}

/// Lists the metrics a panel can show, each with its payload fields.
#[utoipa::path(post, path = "/grafana/metrics", tag = "grafana",
    request_body(description = "Grafana sends `{metric}`; the body is optional and not read",
        content(("application/json", example = json!({"metric": "completed"})))),
    responses((status = 200, description = "Metrics and their payload fields", body = crate::schema::Rows,
               example = json!([{"label": "Completed", "value": "completed", "payloads": [{"label": "Format", "name": "format", "type": "select", "options": [{"label": "Time series", "value": "timeseries"}]}]}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn metrics(
    _authorized: Authenticated,
    _body: Option<web::Json<MetricsRequest>>,
) -> Result<HttpResponse, ApiError> {
    let field = |label: &str, name: &str, kind: &str| json!({ "label": label, "name": name, "type": kind, "options": options(name) });
    let payloads = vec![
        field("Format", "format", "select"),
        field("Split by (time series)", "split", "select"),
        field("Interval (time series)", "interval", "select"),
        field("Cumulative (time series)", "cumulative", "select"),
        field("Group by (table)", "by", "multi-select"),
    ];
    let list: Vec<Value> = Metric::ALL
        .iter()
        .map(|m| json!({ "label": m.label_en(), "value": m.as_str(), "payloads": payloads }))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

crate::schema::schema_type! {
    /// A payload field of a panel's metric.
    PayloadField => crate::schema::choices(
        PAYLOAD_FIELDS.iter().copied(),
        false,
        "A payload field",
    )
}

/// The payload fields of every metric, as [`options`] lists them.
const PAYLOAD_FIELDS: &[&str] = &["format", "split", "interval", "cumulative", "by"];

crate::schema::schema_type! {
    /// What a dashboard variable lists: a dimension's values, or the metrics.
    VariableTarget => crate::schema::choices(
        Dimension::ALL.iter().map(|d| d.as_str()).chain(["metric"]),
        false,
        "A dimension, or `metric`",
    )
}

crate::schema::schema_type! {
    /// The operators of ad-hoc filters.
    FilterOperator => crate::schema::choices(["="], false, "`=`")
}

crate::schema::schema_type! {
    /// A dimension, as an ad-hoc filter's key.
    DimensionName => crate::schema::choices(
        Dimension::ALL.iter().map(|d| d.as_str()),
        false,
        "A dimension",
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PayloadOptionsRequest {
    /// The payload field whose options are asked.
    #[schema(value_type = PayloadField)]
    name: String,
}

/// The options of one payload field.
#[utoipa::path(post, path = "/grafana/metric-payload-options", tag = "grafana",
    request_body(content_type = "application/json", content = PayloadOptionsRequest, example = json!({"metric": "completed", "payload": {}, "name": "split"})),
    responses((status = 200, description = "The field's options", body = crate::schema::Rows, example = json!([{"label": "province", "value": "province"}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn payload_options(
    _authorized: Authenticated,
    body: web::Json<Object<PayloadOptionsRequest>>,
) -> Result<HttpResponse, ApiError> {
    let list = options(&body.name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "no payload field `{}`; fields are format, split, interval, cumulative and by",
                body.name
            ),
        )
    })?;
    Ok(HttpResponse::Ok().json(list))
}

/// The dashboard's time range.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TimeRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// One query of a panel.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Target {
    /// The metric.
    target: Option<String>,
    #[serde(rename = "refId")]
    ref_id: Option<String>,
    /// The payload fields (`format`, `split`, `interval`, `cumulative`, `by`).
    #[serde(default)]
    #[schema(value_type = crate::schema::AnyJson)]
    payload: Value,
    #[serde(default)]
    hide: bool,
}

/// An ad-hoc filter: `key = value`, the key a dimension.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AdhocFilter {
    /// A dimension.
    #[schema(value_type = DimensionName)]
    key: String,
    /// `=`, the one operator taken.
    #[schema(value_type = FilterOperator)]
    operator: String,
    value: String,
}

/// A panel's query.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct QueryRequest {
    #[schema(value_type = TimeRange)]
    range: Object<TimeRange>,
    #[serde(default)]
    #[schema(value_type = Vec<Target>)]
    targets: Vec<Object<Target>>,
    #[serde(rename = "adhocFilters", default)]
    #[schema(value_type = Vec<AdhocFilter>)]
    adhoc_filters: Vec<Object<AdhocFilter>>,
    /// Grafana's bucket width in milliseconds (any unsigned 64-bit integer).
    #[serde(rename = "intervalMs")]
    #[schema(format = "uint64", minimum = 0)]
    interval_ms: Option<u64>,
}

/// A payload field as text (Grafana sends selects as strings, multi-selects as arrays).
fn payload_text(payload: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("payload field `{name}` must be text, not {other}"),
        )),
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// Ad-hoc filters as dimension filters. Two filters on one key must both hold, so their values
/// intersect.
fn adhoc_filters(
    filters: &[Object<AdhocFilter>],
) -> Result<BTreeMap<Dimension, Vec<String>>, ApiError> {
    let mut out: BTreeMap<Dimension, Vec<String>> = BTreeMap::new();
    for filter in filters {
        let dimension: Dimension = filter.key.parse().map_err(invalid)?;
        if filter.operator != "=" {
            return Err(invalid(format!(
                "ad-hoc filter operator `{}` is not supported; use `=`",
                filter.operator
            )));
        }
        match out.get_mut(&dimension) {
            Some(values) => values.retain(|v| *v == filter.value),
            None => {
                out.insert(dimension, vec![filter.value.clone()]);
            }
        }
    }
    Ok(out)
}

/// The interval of a time series: the payload's, or one that suits Grafana's bucket width.
fn interval_for(payload: &Value, interval_ms: Option<u64>) -> Result<Interval, ApiError> {
    if let Some(text) = payload_text(payload, "interval")? {
        return text.parse().map_err(invalid);
    }
    const DAY_MS: u64 = 86_400_000;
    Ok(match interval_ms.unwrap_or(DAY_MS) {
        ms if ms >= 28 * DAY_MS => Interval::Month,
        ms if ms >= 7 * DAY_MS => Interval::Week,
        _ => Interval::Day,
    })
}

/// Answers a panel's targets: time series `[{target, datapoints}]` and tables
/// `{type: "table", columns, rows}`, in the order asked.
#[utoipa::path(post, path = "/grafana/query", tag = "grafana",
    request_body(content_type = "application/json", content = QueryRequest, example = json!({
        "range": {"from": "2026-09-01T00:00:00Z", "to": "2026-11-30T00:00:00Z"}, "intervalMs": 86400000,
        "targets": [{"refId": "A", "target": "completed", "payload": {"split": "track", "cumulative": "true"}},
                    {"refId": "B", "target": "completion_rate", "payload": {"format": "table", "by": ["province"]}}],
        "adhocFilters": [{"key": "sector", "operator": "=", "value": "public"}]})),
    responses((status = 200, description = "One answer per target", body = crate::schema::Rows, example = json!([
        {"target": "completed soft", "datapoints": [[120, 1756666800000i64], [180, 1757271600000i64]]},
        {"type": "table", "columns": [{"text": "province", "type": "string"}, {"text": "learners", "type": "number"}, {"text": "completion_rate", "type": "number"}],
         "rows": [["punjab", 512, 0.41]]}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all)]
pub(crate) async fn query(
    Authenticated(caller): Authenticated,
    body: web::Json<Object<QueryRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner().0;
    let now = state.clock.now();
    if request.range.from > request.range.to {
        return Err(invalid("the range's `from` lies after its `to`".into()));
    }
    // Grafana computes "now" before sending: a range ending within a minute of ours (or later)
    // asks for the latest data, and shares answers with other pollers.
    let latest = request.range.to >= now - chrono::Duration::minutes(1);
    let audience = audience(caller.role);
    let as_of = if latest {
        rounded_now(now)
    } else {
        state.disclosure.end(audience, request.range.to)
    };
    let from = if latest {
        rounded_now(request.range.from)
    } else {
        request.range.from
    };
    let from = state.disclosure.start(audience, from).min(as_of);
    let filters = adhoc_filters(&request.adhoc_filters)?;
    state
        .disclosure
        .check_filters(audience, &filters)
        .map_err(invalid)?;
    let mut answers = Vec::new();
    for target in request.targets.iter().filter(|t| !t.hide) {
        let Some(name) = target.target.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        let metric: Metric = name.parse().map_err(invalid)?;
        let payload = &target.payload;
        let format = payload_text(payload, "format")?;
        match format.as_deref() {
            None | Some("timeseries") => {
                let split = payload_text(payload, "split")?
                    .map(|s| s.parse::<Dimension>().map_err(invalid))
                    .transpose()?;
                let cumulative = match payload_text(payload, "cumulative")?.as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(invalid(format!(
                            "`cumulative` must be true or false, not `{other}`"
                        )));
                    }
                };
                let series = state
                    .engine
                    .series(&SeriesQuery {
                        metric,
                        interval: interval_for(payload, request.interval_ms)?,
                        from,
                        as_of,
                        split,
                        filters: filters.clone(),
                        cumulative,
                        latest,
                    })
                    .await?;
                let shown = state.disclosure.series(audience, series);
                let mut lines: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for point in &shown.value().points {
                    let at = day_start_micros(point.starts_on) / 1000;
                    for (key, value) in &point.values {
                        let name = if key == "all" {
                            metric.as_str().to_owned()
                        } else {
                            format!("{} {key}", metric.as_str())
                        };
                        lines.entry(name).or_default().push(json!([value, at]));
                    }
                    for (key, value) in &point.targets {
                        lines
                            .entry(format!("{key} target"))
                            .or_default()
                            .push(json!([value, at]));
                    }
                }
                answers.extend(
                    lines
                        .into_iter()
                        .map(|(name, points)| json!({ "target": name, "refId": target.ref_id, "datapoints": points })),
                );
            }
            Some("table") => {
                let by = payload_text(payload, "by")?
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.parse::<Dimension>().map_err(invalid))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                if by.len() > MAX_BY {
                    return Err(invalid(format!("group by at most {MAX_BY} dimensions")));
                }
                let result = state
                    .engine
                    .breakdown(&BreakdownQuery {
                        by: by.clone(),
                        filters: filters.clone(),
                        metrics: vec![metric],
                        from: Some(from),
                        as_of,
                        totals: false,
                        period: None,
                        latest,
                    })
                    .await?;
                let shown = state.disclosure.breakdown(audience, result);
                let result = shown.value();
                let mut columns: Vec<Value> = by
                    .iter()
                    .map(|d| json!({ "text": d.as_str(), "type": "string" }))
                    .collect();
                columns.push(json!({ "text": "learners", "type": "number" }));
                columns.push(json!({ "text": metric.as_str(), "type": "number" }));
                let rows: Vec<Value> = result
                    .rows
                    .iter()
                    .map(|row| {
                        let mut cells: Vec<Value> = row.keys.iter().map(|k| json!(k)).collect();
                        cells.push(json!(row.learners));
                        cells.push(metric_value(metric, row.values[0]));
                        Value::Array(cells)
                    })
                    .collect();
                answers.push(json!({
                    "type": "table",
                    "refId": target.ref_id,
                    "columns": columns,
                    "rows": rows,
                }));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "payload `format` must be `timeseries` or `table`, not `{other}`"
                )));
            }
        }
    }
    Ok(HttpResponse::Ok().json(answers))
}

/// A dashboard variable's query.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct VariableRequest {
    #[schema(value_type = VariablePayload)]
    payload: Object<VariablePayload>,
}

/// What a variable lists.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct VariablePayload {
    /// A dimension, or `metric`.
    #[schema(value_type = VariableTarget)]
    target: String,
}

/// A dashboard variable's values: a dimension's values with English labels, or the metrics.
#[utoipa::path(post, path = "/grafana/variable", tag = "grafana",
    request_body(content_type = "application/json", content = VariableRequest, example = json!({"payload": {"target": "province"}})),
    responses((status = 200, description = "The values", body = crate::schema::Rows, example = json!([{"__text": "Punjab", "__value": "punjab"}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn variable(
    _authorized: Authenticated,
    body: web::Json<Object<VariableRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let target = body.payload.target.as_str();
    if target == "metric" {
        let list: Vec<Value> = Metric::ALL
            .iter()
            .map(|m| json!({ "__text": m.label_en(), "__value": m.as_str() }))
            .collect();
        return Ok(HttpResponse::Ok().json(list));
    }
    let dimension: Dimension = target.parse().map_err(|e: String| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("{e}; a variable lists a dimension's values, or `metric`"),
        )
    })?;
    let snapshot = state.engine.snapshot();
    let labels = Labels::load(&state, &snapshot.roster, Lang::En).await?;
    let list: Vec<Value> = dimension_names(&snapshot.roster, dimension)
        .into_iter()
        .map(|v| json!({ "__text": labels.of(dimension, &v), "__value": v }))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// The keys ad-hoc filters take: the dimensions.
#[utoipa::path(post, path = "/grafana/tag-keys", tag = "grafana",
    responses((status = 200, description = "The dimensions", body = crate::schema::Rows, example = json!([{"type": "string", "text": "province"}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn tag_keys(_authorized: Authenticated) -> Result<HttpResponse, ApiError> {
    let list: Vec<Value> = Dimension::ALL
        .iter()
        .map(|d| json!({ "type": "string", "text": d.as_str() }))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// The dimension whose values are asked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TagValuesRequest {
    /// A dimension.
    #[schema(value_type = DimensionName)]
    key: String,
}

/// The values an ad-hoc filter on one dimension can take.
#[utoipa::path(post, path = "/grafana/tag-values", tag = "grafana",
    request_body(content_type = "application/json", content = TagValuesRequest, example = json!({"key": "province"})),
    responses((status = 200, description = "The dimension's values", body = crate::schema::Rows, example = json!([{"text": "punjab"}])),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn tag_values(
    _authorized: Authenticated,
    body: web::Json<Object<TagValuesRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let dimension: Dimension = body
        .key
        .parse()
        .map_err(|e: String| ApiError::new(ErrorCode::InvalidBody, e))?;
    let snapshot = state.engine.snapshot();
    let list: Vec<Value> = dimension_names(&snapshot.roster, dimension)
        .into_iter()
        .map(|v| json!({ "text": v }))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_payload_fields_are_the_fields_with_options() {
        for field in PAYLOAD_FIELDS {
            assert!(options(field).is_some(), "{field} has no options");
        }
        assert!(options("metric").is_none());
    }

    #[test]
    fn bodies_are_read_from_objects_only() {
        let from_array = serde_json::from_str::<Object<TagValuesRequest>>(r#"["province"]"#);
        assert!(from_array.is_err());
        let from_object = serde_json::from_str::<Object<TagValuesRequest>>(r#"{"key": "sector"}"#);
        assert_eq!(from_object.map(|o| o.0.key).ok().as_deref(), Some("sector"));
        let nested = serde_json::from_str::<Object<QueryRequest>>(
            r#"{"range": {"from": "2026-09-01T00:00:00Z", "to": "2026-09-02T00:00:00Z"},
                "targets": [[null, null]]}"#,
        );
        assert!(nested.is_err());
    }
}
