//! The handlers of the read API: breakdown, time series, funnel and targets. Each reads its
//! parameters ([`super::params`]), asks the analytics engine, has the disclosure policy show the
//! answer to its caller ([`crate::AppState::disclosure`]) and renders it ([`super::render`]).

use actix_web::{HttpResponse, web};
use nigrani_analytics::funnel::FunnelQuery;
use nigrani_analytics::period::{Interval, RelativePeriod};
use nigrani_analytics::query::MAX_BY;
use nigrani_analytics::series::SeriesQuery;
use nigrani_analytics::{BreakdownQuery, Dimension, Metric};
use serde_json::{Map, Value, json};

use super::params::{
    BreakdownFormat, DimensionFilters, DimensionParam, Flag, IntervalParam, LangParam, Params,
    PeriodParam, Range, RowsFormat, SeriesMetric, flat_rows, language, metrics, rounded_now,
};
use super::render::{
    Labels, Lang, breakdown_csv, disclosure_note, json_bytes, metric_value, row_figures, to_json,
};
use crate::access::audience;
use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::schema::ObjectOrRows;
use crate::{ApiError, AppState};

/// A breakdown: learners grouped by dimensions (and optionally by period), with metrics.
#[utoipa::path(
    get,
    path = "/api/v1/breakdown",
    tag = "figures",
    params(
        ("by" = Option<String>, Query, description = "Dimensions to group by, comma-separated (at most 4), and optionally `period`", example = "province,track"),
        ("metrics" = Option<String>, Query, description = "Metrics, comma-separated: enrolled, started, active_7d, active_30d, inactive, completed, certified, trained, withdrawn, completion_rate, certification_rate, avg_progress, avg_score, median_days_to_complete (default: enrolled, started, completed, certified, trained)", example = "enrolled,completed,completion_rate"),
        ("from" = Option<String>, Query, description = "Count only events from this moment (RFC 3339, or a date: its start in Pakistan)", example = "2026-09-01"),
        ("to" = Option<String>, Query, description = "Figures as of this moment (RFC 3339, or a date: its end in Pakistan); default now"),
        ("as_of" = Option<String>, Query, description = "Same as `to`"),
        ("period" = Option<PeriodParam>, Query, description = "A relative range instead of from/to: last_7_days, last_30_days, last_12_weeks, last_12_months, this_fiscal_year, since_start"),
        ("interval" = Option<IntervalParam>, Query, description = "With `by=period`: day, week, month (default), quarter or fiscal_year"),
        ("totals" = Option<Flag>, Query, description = "Add a total row and subtotals"),
        ("format" = Option<BreakdownFormat>, Query, description = "`json` (default), `csv` (also with `Accept: text/csv`) or `rows` (a flat JSON array)"),
        ("lang" = Option<LangParam>, Query, description = "`en` or `ur`: add labels of dimension values and metrics"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "The groups and their figures; partner keys get perturbed counts (see `disclosure`), and rates, averages and medians over small groups as null",
         content(
            (ObjectOrRows = "application/json", example = json!({
                "by": ["province", "track"], "metrics": ["enrolled", "completed", "completion_rate"],
                "from": null, "as_of": "2026-11-30T10:00:00Z", "data_as_of": "2026-11-30T10:00:03Z", "last_seq": 981234,
                "rows": [{"province": "punjab", "track": "soft", "learners": 412, "enrolled": 412, "completed": 170, "completion_rate": 0.4126}],
                "metric_labels": {}, "disclosure": {"perturbed": false, "additive": true}})),
            (String = "text/csv", example = "province,track,learners,enrolled,completed,completion_rate\npunjab,soft,412,412,170,0.4126\n"),
         )),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn breakdown(
    Authenticated(caller): Authenticated,
    req: actix_web::HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::new(
        query.into_inner(),
        &[
            "by", "metrics", "from", "to", "as_of", "period", "interval", "totals", "format",
            "lang",
        ],
    )?;
    let lang = language(&params)?;
    let rows_only = params.get("format") == Some("rows");
    let csv = match params.get("format") {
        Some("csv") => true,
        Some("json" | "rows") => false,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`format` must be `json`, `csv` or `rows`, not `{other}`"),
            ));
        }
        None => req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let now = state.clock.now();
    let audience = audience(caller.role);
    let mut by = Vec::new();
    let mut period_grouped = false;
    let names = params.list("by");
    if names.len() > MAX_BY + 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "group by at most {MAX_BY} dimensions (and `period`), not {}",
                names.len()
            ),
        ));
    }
    for name in names {
        if name == "period" {
            period_grouped = true;
        } else {
            by.push(
                name.parse()
                    .map_err(|e: String| ApiError::new(ErrorCode::InvalidQuery, e))?,
            );
        }
    }
    let interval: Option<Interval> = params.parse("interval")?;
    if interval.is_some() && !period_grouped {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "`interval` needs `by=period`",
        ));
    }
    let Range {
        from,
        as_of,
        latest,
    } = params.range(&state, now, audience)?;
    let query = BreakdownQuery {
        latest,
        by,
        filters: params.filters(&state, audience)?,
        metrics: metrics(&params)?,
        from,
        as_of,
        totals: params.flag("totals")?,
        period: period_grouped.then(|| interval.unwrap_or(Interval::Month)),
    };
    let snapshot = state.engine.snapshot();
    let answer = state.engine.breakdown_stamped(&query).await?;
    let request = format!("breakdown|{:?}|{csv}|{}", caller.role, req.query_string());
    let stamp = crate::rendered::stamp_of(&answer).to_vec();
    if let Some(rendering) = state.rendered.get(&request, &stamp) {
        return Ok(rendering.respond());
    }
    let shown = state.disclosure.breakdown(audience, answer.value.clone());
    let result = shown.value();
    let rows: Vec<Value> = result
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut out = Map::new();
            if let Some(period) = &row.period {
                out.insert("period".into(), json!(period));
            }
            for (d, key) in result.by.iter().zip(&row.keys) {
                out.insert(d.as_str().into(), json!(key));
            }
            out.extend(row_figures(&shown, i));
            Value::Object(out)
        })
        .collect();
    if csv {
        let body = breakdown_csv(&shown).into_bytes();
        let rendering = state
            .rendered
            .put(request, stamp, "text/csv; charset=utf-8", body);
        return Ok(rendering.respond());
    }
    let mut rows = rows;
    let mut metric_labels = Map::new();
    if let Some(lang) = lang {
        let labels = Labels::load(&state, &snapshot.roster, lang).await?;
        for row in rows.iter_mut() {
            let Value::Object(fields) = row else { continue };
            for d in &result.by {
                let label = fields
                    .get(d.as_str())
                    .and_then(Value::as_str)
                    .map(|value| labels.of(*d, value));
                fields.insert(format!("{}_label", d.as_str()), json!(label));
            }
        }
        for m in &result.metrics {
            let label = match lang {
                Lang::Ur => m.label_ur(),
                Lang::En => m.label_en(),
            };
            metric_labels.insert(m.as_str().into(), json!(label));
        }
    }
    let body = if rows_only {
        json_bytes(&rows)?
    } else {
        json_bytes(&json!({
            "by": result.by,
            "period": result.period,
            "metrics": result.metrics,
            "from": query.from,
            "as_of": answer.as_of,
            "data_as_of": answer.data_as_of,
            "last_seq": answer.last_seq,
            "rows": rows,
            "metric_labels": metric_labels,
            "disclosure": disclosure_note(&shown, &state.disclosure),
        }))?
    };
    let rendering = state.rendered.put(request, stamp, "application/json", body);
    Ok(rendering.respond())
}

/// A time series of one metric, per day, week or month, optionally split by a dimension.
#[utoipa::path(
    get,
    path = "/api/v1/timeseries",
    tag = "figures",
    params(
        ("metric" = SeriesMetric, Query, description = "The metric (averages of progress and score are not kept over time)", example = "completed"),
        ("interval" = Option<IntervalParam>, Query, description = "day, week (default), month, quarter or fiscal_year"),
        ("split" = Option<DimensionParam>, Query, description = "A dimension: one series per value", example = "track"),
        ("cumulative" = Option<Flag>, Query, description = "Each point as of its period's end (true), or what happened within the period (false, default)"),
        ("from" = Option<String>, Query, description = "First moment (default: the program's start)"),
        ("to" = Option<String>, Query, description = "Last moment (default now)"),
        ("as_of" = Option<String>, Query, description = "Same as `to`"),
        ("period" = Option<PeriodParam>, Query, description = "A relative range instead of from/to"),
        ("format" = Option<RowsFormat>, Query, description = "`json` (default) or `rows`: a flat array `{period, starts_on, series, value}`"),
        ("lang" = Option<LangParam>, Query, description = "`en` or `ur`: add `labels` of the series keys and the metric's label"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "The points; a series of one track or cohort carries its target trajectory", body = ObjectOrRows,
         example = json!({"from": "2026-09-01T00:00:00Z", "as_of": "2026-11-30T10:00:00Z", "data_as_of": "2026-11-30T10:00:03Z",
            "series": {"metric": "completed", "interval": "week", "cumulative": true, "split": "track",
                       "points": [{"period": "2026-W36", "starts_on": "2026-08-31", "values": {"soft": 12, "hard": 0}}]}})),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn timeseries(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::new(
        query.into_inner(),
        &[
            "metric",
            "interval",
            "split",
            "cumulative",
            "from",
            "to",
            "as_of",
            "period",
            "format",
            "lang",
        ],
    )?;
    let rows_only = flat_rows(&params)?;
    let lang = language(&params)?;
    let now = state.clock.now();
    let metric: Metric = params
        .parse("metric")?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "`metric` is required"))?;
    let audience = audience(caller.role);
    let Range {
        from,
        as_of,
        latest,
    } = params.range(&state, now, audience)?;
    let from = match from {
        Some(from) => from,
        None => {
            let start = state
                .engine
                .program_start()
                .unwrap_or_else(|| now.date_naive());
            state
                .disclosure
                .start(audience, RelativePeriod::SinceStart.start(now, start))
                .min(as_of)
        }
    };
    let query = SeriesQuery {
        metric,
        interval: params.parse("interval")?.unwrap_or(Interval::Week),
        from,
        as_of,
        split: params.parse("split")?,
        filters: params.filters(&state, audience)?,
        cumulative: params.flag("cumulative")?,
        latest,
    };
    let shown = state
        .disclosure
        .series(audience, state.engine.series(&query).await?);
    let series = shown.value();
    if rows_only {
        let rows: Vec<Value> = series
            .points
            .iter()
            .flat_map(|point| {
                point.values.iter().map(move |(key, value)| {
                    json!({
                        "period": point.period,
                        "starts_on": point.starts_on,
                        "series": key,
                        "value": metric_value(metric, *value),
                        "target": point.targets.get(key),
                    })
                })
            })
            .collect();
        return Ok(HttpResponse::Ok().json(rows));
    }
    let mut answer = json!({
        "from": query.from,
        "as_of": query.as_of,
        "data_as_of": state.engine.snapshot().published_at,
        "series": series,
        "disclosure": disclosure_note(&shown, &state.disclosure),
    });
    if let Some(lang) = lang {
        let snapshot = state.engine.snapshot();
        let labels = Labels::load(&state, &snapshot.roster, lang).await?;
        let keys: std::collections::BTreeSet<&String> =
            series.points.iter().flat_map(|p| p.values.keys()).collect();
        let names: Map<String, Value> = keys
            .into_iter()
            .map(|key| {
                let label = match series.split {
                    Some(d) => labels.of(d, key),
                    None => labels.pick(metric.label_en(), metric.label_ur()).to_owned(),
                };
                (key.clone(), json!(label))
            })
            .collect();
        answer["labels"] = Value::Object(names);
        answer["metric_label"] = json!(labels.pick(metric.label_en(), metric.label_ur()));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// The funnel per slice — enrolled, started, half-way, completed, certified — with the time to
/// completion (median, p75, p90).
#[utoipa::path(
    get,
    path = "/api/v1/funnel",
    tag = "figures",
    params(
        ("by" = Option<String>, Query, description = "Dimensions to group by, comma-separated", example = "track"),
        ("as_of" = Option<String>, Query, description = "As of this moment (default now)"),
        ("format" = Option<RowsFormat>, Query, description = "`json` (default) or `rows`: only the rows, as a flat array"),
        ("lang" = Option<LangParam>, Query, description = "`en` or `ur`: add `labels` of each row's keys"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "One row per slice", body = ObjectOrRows,
         example = json!({"by": ["track"], "as_of": "2026-11-30T10:00:00Z", "rows": [{"keys": ["soft"], "enrolled": 1012, "started": 920,
            "half_way": 610, "completed": 388, "certified": 0, "days_to_complete": {"median": 31.5, "p75": 40.1, "p90": 52.0}}]})),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn funnel(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::new(query.into_inner(), &["by", "as_of", "format", "lang"])?;
    let rows_only = flat_rows(&params)?;
    let lang = language(&params)?;
    let by = params
        .list("by")
        .into_iter()
        .map(|n| {
            n.parse()
                .map_err(|e: String| ApiError::new(ErrorCode::InvalidQuery, e))
        })
        .collect::<Result<Vec<Dimension>, _>>()?;
    if by.len() > MAX_BY {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("group by at most {MAX_BY} dimensions"),
        ));
    }
    let audience = audience(caller.role);
    let as_of = params.moment("as_of", &state, audience)?;
    let shown = state.disclosure.funnel(
        audience,
        state
            .engine
            .funnel(
                &FunnelQuery {
                    by: by.clone(),
                    filters: params.filters(&state, audience)?,
                },
                as_of,
            )
            .await?,
    );
    let as_of = as_of.unwrap_or_else(|| state.clock.now());
    let labels = match lang {
        Some(lang) => Some(Labels::load(&state, &state.engine.snapshot().roster, lang).await?),
        None => None,
    };
    let mut rows = to_json(shown.value())?;
    if let Some(labels) = &labels {
        for row in rows.as_array_mut().into_iter().flatten() {
            let names: Vec<Value> = by
                .iter()
                .zip(row["keys"].as_array().cloned().unwrap_or_default())
                .map(|(d, key)| json!(key.as_str().map(|k| labels.of(*d, k))))
                .collect();
            row["labels"] = Value::Array(names);
        }
    }
    if rows_only {
        return Ok(HttpResponse::Ok().json(rows));
    }
    Ok(HttpResponse::Ok().json(json!({
        "by": by,
        "as_of": as_of,
        "rows": rows,
        "disclosure": disclosure_note(&shown, &state.disclosure),
    })))
}

/// Targets of every track and cohort: attainment, the pace of the last 14 days and the date the
/// target is met at that pace.
#[utoipa::path(
    get,
    path = "/api/v1/targets",
    tag = "figures",
    params(
        ("format" = Option<RowsFormat>, Query, description = "`json` (default) or `rows`: only the targets, as a flat array"),
        ("lang" = Option<LangParam>, Query, description = "`en` or `ur`: add each track's or cohort's `label`"),
    ),
    responses(
        (status = 200, description = "Every track's and cohort's target status", body = ObjectOrRows,
         example = json!({"as_of": "2026-11-30T10:00:00Z", "targets": [{"scope": "track", "id": "hard", "attained": 96, "target": 250,
            "stretch_target": 500, "attainment": 0.384, "pace_per_day": 2.1, "projected_date": "2027-01-12", "projected_stretch_date": "2027-07-16"}]})),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn targets(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::without_filters(query.into_inner(), &["format", "lang"])?;
    let rows_only = flat_rows(&params)?;
    let lang = language(&params)?;
    let now = rounded_now(state.clock.now());
    let shown = state
        .disclosure
        .targets(audience(caller.role), state.engine.targets(now).await?);
    let mut targets: Vec<Value> = shown
        .value()
        .iter()
        .map(to_json)
        .collect::<Result<_, _>>()?;
    if let Some(lang) = lang {
        let labels = Labels::load(&state, &state.engine.snapshot().roster, lang).await?;
        for target in &mut targets {
            let dimension = if target["scope"] == "track" {
                Dimension::Track
            } else {
                Dimension::Cohort
            };
            let label = target["id"].as_str().map(|id| labels.of(dimension, id));
            target["label"] = json!(label);
        }
    }
    if rows_only {
        return Ok(HttpResponse::Ok().json(targets));
    }
    Ok(HttpResponse::Ok().json(json!({
        "as_of": now,
        "targets": targets,
        "disclosure": disclosure_note(&shown, &state.disclosure),
    })))
}
