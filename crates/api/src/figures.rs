//! The read API over analytics: breakdowns, time series, the funnel and targets.
//!
//! Query form (DHIS2-like): `by=` dimensions (and `period`), one parameter per dimension to filter
//! on (`province=punjab,sindh`), `metrics=`, a range as `from`/`to` or a relative `period=`, and
//! `as_of`. Unknown parameters, dimensions and metrics are errors, never empty answers.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use nigrani_analytics::definitions::MetricKind;
use nigrani_analytics::funnel::FunnelQuery;
use nigrani_analytics::period::{Interval, RelativePeriod, day_start_micros};
use nigrani_analytics::query::MAX_BY;
use nigrani_analytics::series::SeriesQuery;
use nigrani_analytics::{AnalyticsError, BreakdownQuery, Dimension, Metric};
use serde_json::{Map, Value, json};

use crate::auth::Authenticated;
use crate::{ApiError, AppState};
use nigrani_domain::AccessRole::{Admin, Manager, Partner};

/// A count a partner may see: 0, or at least `k`.
fn partner_count(value: Option<f64>, k: u64) -> Option<f64> {
    value.filter(|v| *v == 0.0 || *v >= k as f64)
}

/// Metrics a breakdown computes when `metrics` is not given.
const DEFAULT_METRICS: &[Metric] = &[
    Metric::Enrolled,
    Metric::Started,
    Metric::Completed,
    Metric::Certified,
    Metric::Trained,
];

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Store(e) => e.into(),
            AnalyticsError::Query(nigrani_analytics::query::QueryError::Invalid(message)) => {
                ApiError::new("invalid_query", message)
            }
            AnalyticsError::Query(e) => {
                tracing::error!(error = %e, "An analytics query failed.");
                ApiError::new(
                    "internal_error",
                    "nigrani could not compute the figures; the cause is in its log",
                )
            }
        }
    }
}

/// The moments a query covers.
struct Range {
    from: Option<DateTime<Utc>>,
    as_of: DateTime<Utc>,
    /// No end was given: the figures are as of now, on the latest data.
    latest: bool,
}

/// Query parameters, each given at most once.
struct Params {
    pairs: BTreeMap<String, String>,
}

impl Params {
    fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let is_dimension = key.parse::<Dimension>().is_ok();
            if !allowed.contains(&key.as_str()) && !is_dimension {
                return Err(ApiError::new(
                    "invalid_query",
                    format!(
                        "unknown parameter `{key}`; this route takes {} and a filter per \
                         dimension ({})",
                        allowed.join(", "),
                        Dimension::ALL
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::new(
                    "invalid_query",
                    format!("`{key}` is given more than once; list values with commas instead"),
                ));
            }
        }
        Ok(Self { pairs: map })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn parse<T: std::str::FromStr<Err = String>>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e: String| ApiError::new("invalid_query", e))
            })
            .transpose()
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::new(
                "invalid_query",
                format!("`{key}` must be true or false, not `{other}`"),
            )),
        }
    }

    fn moment(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.get(key) else {
            return Ok(None);
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::new(
                "invalid_query",
                format!("`{key}` must be an RFC 3339 time or a date YYYY-MM-DD, not `{text}`"),
            )
        })?;
        // A date means its start in Pakistan for `from`, its end for `to`/`as_of`.
        let start = day_start_micros(day);
        let micros = if key == "from" {
            start
        } else {
            day_start_micros(day.succ_opt().unwrap_or(day)) - 1
        };
        Ok(DateTime::from_timestamp_micros(micros))
    }

    fn filters(&self) -> Result<BTreeMap<Dimension, Vec<String>>, ApiError> {
        let mut filters = BTreeMap::new();
        for d in Dimension::ALL {
            let values = self.list(d.as_str());
            if self.pairs.contains_key(d.as_str()) && values.is_empty() {
                return Err(ApiError::new(
                    "invalid_query",
                    format!("the filter `{}` lists no values", d.as_str()),
                ));
            }
            if !values.is_empty() {
                filters.insert(*d, values.into_iter().map(str::to_owned).collect());
            }
        }
        Ok(filters)
    }

    /// `(from, as_of, latest)` from `from`/`to`/`as_of` or a relative `period`; `latest` when no
    /// end was given (the figures are then as of now, on the latest data).
    fn range(&self, state: &AppState, now: DateTime<Utc>) -> Result<Range, ApiError> {
        if self.get("to").is_some() && self.get("as_of").is_some() {
            return Err(ApiError::new(
                "invalid_query",
                "give `to` or `as_of`, not both",
            ));
        }
        let relative: Option<RelativePeriod> = self.parse("period")?;
        let from = self.moment("from")?;
        let to = self.moment("to")?.or(self.moment("as_of")?);
        if relative.is_some() && (from.is_some() || to.is_some()) {
            return Err(ApiError::new(
                "invalid_query",
                "give a relative `period` or `from`/`to`, not both",
            ));
        }
        if let Some(relative) = relative {
            let start = state
                .engine
                .program_start()
                .unwrap_or_else(|| now.date_naive());
            return Ok(Range {
                from: Some(relative.start(now, start)),
                as_of: rounded_now(now),
                latest: true,
            });
        }
        let latest = to.is_none();
        let as_of = to.unwrap_or_else(|| rounded_now(now));
        if let Some(from) = from {
            if from > as_of {
                return Err(ApiError::new(
                    "invalid_query",
                    format!(
                        "`from` ({}) lies after `to` ({})",
                        from.to_rfc3339(),
                        as_of.to_rfc3339()
                    ),
                ));
            }
        }
        Ok(Range {
            from,
            as_of,
            latest,
        })
    }
}

/// "Now" for figures: rounded down to 10 seconds, so that dashboards polling every few seconds
/// ask the same question and share one computed answer per data snapshot.
fn rounded_now(now: DateTime<Utc>) -> DateTime<Utc> {
    const STEP: i64 = 10_000_000;
    let micros = now.timestamp_micros();
    DateTime::from_timestamp_micros(micros - micros.rem_euclid(STEP)).unwrap_or(now)
}

fn metrics(params: &Params) -> Result<Vec<Metric>, ApiError> {
    let names = params.list("metrics");
    if names.is_empty() {
        return Ok(DEFAULT_METRICS.to_vec());
    }
    names
        .into_iter()
        .map(|n| {
            n.parse()
                .map_err(|e: String| ApiError::new("invalid_query", e))
        })
        .collect()
}

/// A breakdown: learners grouped by dimensions (and optionally by period), with metrics.
#[tracing::instrument(skip_all)]
pub(crate) async fn breakdown(
    Authenticated(caller): Authenticated,
    req: actix_web::HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Admin, Manager, Partner])?;
    let params = Params::new(
        query.into_inner(),
        &[
            "by", "metrics", "from", "to", "as_of", "period", "interval", "totals", "format",
            "lang",
        ],
    )?;
    let lang = language(&params)?;
    let csv = match params.get("format") {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::new(
                "invalid_query",
                format!("`format` must be `json` or `csv`, not `{other}`"),
            ));
        }
        None => req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let now = Utc::now();
    let mut by = Vec::new();
    let mut period_grouped = false;
    let names = params.list("by");
    if names.len() > MAX_BY + 1 {
        return Err(ApiError::new(
            "invalid_query",
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
                    .map_err(|e: String| ApiError::new("invalid_query", e))?,
            );
        }
    }
    let interval: Option<Interval> = params.parse("interval")?;
    if interval.is_some() && !period_grouped {
        return Err(ApiError::new(
            "invalid_query",
            "`interval` needs `by=period`",
        ));
    }
    let Range {
        from,
        as_of,
        latest,
    } = params.range(&state, now)?;
    let query = BreakdownQuery {
        latest,
        by,
        filters: params.filters()?,
        metrics: metrics(&params)?,
        from,
        as_of,
        totals: params.flag("totals")?,
        period: period_grouped.then(|| interval.unwrap_or(Interval::Month)),
    };
    let snapshot = state.engine.snapshot();
    let mut result = state.engine.breakdown(&query).await?;
    let hidden = if caller.role == Partner {
        nigrani_analytics::suppress::apply(&mut result, state.suppression_k)
    } else {
        Default::default()
    };
    let suppressed: Vec<Value> = hidden
        .iter()
        .map(|(row, column)| {
            let name = if *column == 0 {
                "learners"
            } else {
                result.metrics[column - 1].as_str()
            };
            json!({ "row": row, "column": name })
        })
        .collect();
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
            let learners = (!hidden.contains(&(i, 0))).then_some(row.learners);
            out.insert("learners".into(), json!(learners));
            for (m, value) in result.metrics.iter().zip(&row.values) {
                out.insert(m.as_str().into(), metric_value(*m, *value));
            }
            Value::Object(out)
        })
        .collect();
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(breakdown_csv(&result, &hidden)));
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
    Ok(HttpResponse::Ok().json(json!({
        "by": result.by,
        "period": result.period,
        "metrics": result.metrics,
        "from": query.from,
        "as_of": query.as_of,
        "data_as_of": snapshot.published_at,
        "last_seq": snapshot.last_seq,
        "rows": rows,
        "metric_labels": metric_labels,
        "suppressed": suppressed,
    })))
}

/// A breakdown as CSV: period (when grouped by it), the dimensions, `learners`, the metrics;
/// empty cells for totals' dimensions and for hidden or undefined values.
fn breakdown_csv(
    result: &nigrani_analytics::Breakdown,
    hidden: &std::collections::BTreeSet<(usize, usize)>,
) -> String {
    let mut header: Vec<&str> = Vec::new();
    if result.period.is_some() {
        header.push("period");
    }
    header.extend(result.by.iter().map(|d| d.as_str()));
    header.push("learners");
    header.extend(result.metrics.iter().map(|m| m.as_str()));
    let mut out = header.join(",");
    out.push('\n');
    for (i, row) in result.rows.iter().enumerate() {
        let mut cells: Vec<String> = Vec::new();
        if result.period.is_some() {
            cells.push(row.period.clone().unwrap_or_default());
        }
        cells.extend(row.keys.iter().map(|k| k.clone().unwrap_or_default()));
        cells.push(if hidden.contains(&(i, 0)) {
            String::new()
        } else {
            row.learners.to_string()
        });
        for (metric, value) in result.metrics.iter().zip(&row.values) {
            cells.push(match metric_value(*metric, *value) {
                Value::Null => String::new(),
                other => other.to_string(),
            });
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The language of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    Ur,
}

/// `lang=en|ur`: add people's labels to the answer (none when not asked).
fn language(params: &Params) -> Result<Option<Lang>, ApiError> {
    match params.get("lang") {
        None => Ok(None),
        Some("en") => Ok(Some(Lang::En)),
        Some("ur") => Ok(Some(Lang::Ur)),
        Some(other) => Err(ApiError::new(
            "invalid_query",
            format!("`lang` must be `en` or `ur`, not `{other}`"),
        )),
    }
}

/// Labels of dimension values in one language.
struct Labels {
    lang: Lang,
    institutions: std::collections::HashMap<String, (String, String)>,
    disciplines: std::collections::HashMap<String, (String, String)>,
    cohorts: std::collections::HashMap<String, (String, String)>,
}

impl Labels {
    async fn load(
        state: &AppState,
        roster: &nigrani_analytics::state::Roster,
        lang: Lang,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            lang,
            institutions: roster
                .institutions
                .iter()
                .map(|i| (i.hec_id.clone(), (i.name.clone(), i.name_ur.clone())))
                .collect(),
            disciplines: state
                .store
                .disciplines()
                .await?
                .into_iter()
                .map(|d| (d.code, (d.name, d.name_ur)))
                .collect(),
            cohorts: roster
                .cohorts
                .iter()
                .map(|c| (c.cohort_id.clone(), (c.name.clone(), c.name_ur.clone())))
                .collect(),
        })
    }

    fn pick<'a>(&self, en: &'a str, ur: &'a str) -> &'a str {
        match self.lang {
            Lang::En => en,
            Lang::Ur => ur,
        }
    }

    fn of(&self, dimension: Dimension, value: &str) -> String {
        use nigrani_domain::{Gender, Province, Role, Sector, Track};
        fn fixed<T: std::str::FromStr>(
            value: &str,
            f: impl Fn(T) -> &'static str,
        ) -> Option<String> {
            value.parse::<T>().ok().map(|v| f(v).to_owned())
        }
        let table = |map: &std::collections::HashMap<String, (String, String)>| {
            map.get(value).map(|(en, ur)| self.pick(en, ur).to_owned())
        };
        let label = match dimension {
            Dimension::Province => {
                fixed(value, |p: Province| self.pick(p.label_en(), p.label_ur()))
            }
            Dimension::Track => fixed(value, |t: Track| self.pick(t.label_en(), t.label_ur())),
            Dimension::Sector => fixed(value, |s: Sector| self.pick(s.label_en(), s.label_ur())),
            Dimension::Role => fixed(value, |r: Role| self.pick(r.label_en(), r.label_ur())),
            Dimension::Gender => fixed(value, |g: Gender| self.pick(g.label_en(), g.label_ur())),
            Dimension::Institution => table(&self.institutions),
            Dimension::Discipline => table(&self.disciplines),
            Dimension::Cohort => table(&self.cohorts),
        };
        label.unwrap_or_else(|| value.to_owned())
    }
}

/// An answer as a JSON value, to edit (e.g. suppress) before sending.
fn to_json(answer: &impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| {
        tracing::error!(error = %e, "An answer could not be serialised.");
        ApiError::new("internal_error", "the answer could not be written")
    })
}

/// Counts as JSON integers, rates and averages as numbers.
fn metric_value(metric: Metric, value: Option<f64>) -> Value {
    match (metric.kind(), value) {
        (MetricKind::Count, Some(v)) => json!(v.round() as i64),
        (_, value) => json!(value),
    }
}

/// A time series of one metric.
#[tracing::instrument(skip_all)]
pub(crate) async fn timeseries(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Admin, Manager, Partner])?;
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
        ],
    )?;
    let now = Utc::now();
    let metric: Metric = params
        .parse("metric")?
        .ok_or_else(|| ApiError::new("invalid_query", "`metric` is required"))?;
    let Range {
        from,
        as_of,
        latest,
    } = params.range(&state, now)?;
    let from = match from {
        Some(from) => from,
        None => {
            let start = state
                .engine
                .program_start()
                .unwrap_or_else(|| now.date_naive());
            RelativePeriod::SinceStart.start(now, start).min(as_of)
        }
    };
    let query = SeriesQuery {
        metric,
        interval: params.parse("interval")?.unwrap_or(Interval::Week),
        from,
        as_of,
        split: params.parse("split")?,
        filters: params.filters()?,
        cumulative: params.flag("cumulative")?,
        latest,
    };
    if caller.role == Partner && metric.kind() == MetricKind::Ratio {
        return Err(ApiError::new(
            "forbidden",
            "rates and averages over time are not available to partner keys (their group sizes \
             are not in the answer to judge small cells); ask a breakdown",
        ));
    }
    let mut series = state.engine.series(&query).await?;
    if caller.role == Partner {
        for point in &mut series.points {
            for value in point.values.values_mut() {
                *value = partner_count(*value, state.suppression_k);
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "from": query.from,
        "as_of": query.as_of,
        "data_as_of": state.engine.snapshot().published_at,
        "series": series,
    })))
}

/// The funnel per slice.
#[tracing::instrument(skip_all)]
pub(crate) async fn funnel(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Admin, Manager, Partner])?;
    let params = Params::new(query.into_inner(), &["by", "as_of"])?;
    let by = params
        .list("by")
        .into_iter()
        .map(|n| {
            n.parse()
                .map_err(|e: String| ApiError::new("invalid_query", e))
        })
        .collect::<Result<Vec<Dimension>, _>>()?;
    if by.len() > MAX_BY {
        return Err(ApiError::new(
            "invalid_query",
            format!("group by at most {MAX_BY} dimensions"),
        ));
    }
    let as_of = params.moment("as_of")?;
    let rows = state
        .engine
        .funnel(
            &FunnelQuery {
                by: by.clone(),
                filters: params.filters()?,
            },
            as_of,
        )
        .await?;
    let as_of = as_of.unwrap_or_else(Utc::now);
    let mut rows = to_json(&rows)?;
    if caller.role == Partner {
        let k = state.suppression_k;
        for row in rows.as_array_mut().into_iter().flatten() {
            let small_completed = row["completed"]
                .as_f64()
                .and_then(|c| partner_count(Some(c), k))
                .is_none();
            for field in ["enrolled", "started", "half_way", "completed", "certified"] {
                let kept = partner_count(row[field].as_f64(), k);
                row[field] = json!(kept.map(|v| v as u64));
            }
            if small_completed {
                row["days_to_complete"] = json!({ "median": null, "p75": null, "p90": null });
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "by": by, "as_of": as_of, "rows": rows })))
}

/// Targets of every track and cohort.
#[tracing::instrument(skip_all)]
pub(crate) async fn targets(
    Authenticated(caller): Authenticated,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Admin, Manager, Partner])?;
    Params::new(query.into_inner(), &[])?;
    let now = Utc::now();
    let mut targets = to_json(&state.engine.targets(now).await?)?;
    if caller.role == Partner {
        for target in targets.as_array_mut().into_iter().flatten() {
            if partner_count(target["attained"].as_f64(), state.suppression_k).is_none() {
                for field in [
                    "attained",
                    "attainment",
                    "pace_per_day",
                    "projected_date",
                    "projected_stretch_date",
                    "on_track",
                ] {
                    if target.get(field).is_some() {
                        target[field] = Value::Null;
                    }
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "as_of": now, "targets": targets })))
}
