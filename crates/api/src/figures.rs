//! The read API over analytics: breakdowns, time series, the funnel and targets.
//!
//! Query form (DHIS2-like): `by=` dimensions (and `period`), one parameter per dimension to filter
//! on (`province=punjab,sindh`), `metrics=`, a range as `from`/`to` or a relative `period=`, and
//! `as_of`. Unknown parameters, dimensions and metrics are errors, never empty answers.

use std::collections::{BTreeMap, BTreeSet};

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
use crate::error::ErrorCode;
use crate::{ApiError, AppState};
use nigrani_domain::AccessRole::Partner;

/// The filters every figures route takes: one parameter per dimension, values comma-separated.
/// Only documents the query (the handlers read it as pairs, to reject unknown parameters).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documents the query; handlers read it as pairs")]
pub(crate) struct DimensionFilters {
    /// Keep these provinces, e.g. `punjab,sindh` (`punjab`, `sindh`, `khyber_pakhtunkhwa`,
    /// `balochistan`, `islamabad`, `gilgit_baltistan`, `azad_kashmir`).
    province: Option<String>,
    /// Keep these institutions (HEC ids).
    institution: Option<String>,
    /// Keep these sectors (`public`, `private`).
    sector: Option<String>,
    /// Keep these disciplines (codes).
    discipline: Option<String>,
    /// Keep these tracks (`soft`, `hard`).
    track: Option<String>,
    /// Keep these cohorts (ids).
    cohort: Option<String>,
    /// Keep these genders (`female`, `male`, `other`, `unknown`).
    gender: Option<String>,
    /// Keep these roles.
    role: Option<String>,
}

/// The cells a partner may not see, hidden in `result` (none for other callers).
pub(crate) fn suppressed(
    result: &mut nigrani_analytics::Breakdown,
    partner: bool,
    k: u64,
) -> BTreeSet<(usize, usize)> {
    if partner {
        nigrani_analytics::suppress::apply(result, k)
    } else {
        BTreeSet::new()
    }
}

/// Row `i`'s figures as JSON fields: `learners` and each metric, hidden cells as null.
pub(crate) fn row_figures(
    result: &nigrani_analytics::Breakdown,
    hidden: &BTreeSet<(usize, usize)>,
    i: usize,
) -> Map<String, Value> {
    let row = &result.rows[i];
    let mut out = Map::new();
    let learners = (!hidden.contains(&(i, 0))).then_some(row.learners);
    out.insert("learners".into(), json!(learners));
    for (m, value) in result.metrics.iter().zip(&row.values) {
        out.insert(m.as_str().into(), metric_value(*m, *value));
    }
    out
}

/// Target fields that hang on the attained count, hidden with it.
const TARGET_FIELDS: &[&str] = &[
    "attained",
    "attainment",
    "pace_per_day",
    "projected_date",
    "projected_stretch_date",
    "on_track",
];

/// Hides a target's attained count and what follows from it.
pub(crate) fn hide_attained(target: &mut Value) {
    for field in TARGET_FIELDS {
        if target.get(*field).is_some() {
            target[*field] = Value::Null;
        }
    }
}

/// A track's or cohort's target status as JSON; for partners, hidden when `attained` is a small
/// cell.
pub(crate) fn target_json(
    target: &nigrani_analytics::targets::TargetStatus,
    partner: bool,
    k: u64,
) -> Result<Value, ApiError> {
    let mut value = to_json(target)?;
    if partner && partner_count(Some(target.attained as f64), k).is_none() {
        hide_attained(&mut value);
    }
    Ok(value)
}

/// `format=rows`: answer a flat JSON array of rows (for Grafana's Infinity datasource) instead of
/// the full object; `format=json` (the default) answers the object.
pub(crate) fn flat_rows(params: &Params) -> Result<bool, ApiError> {
    match params.get("format") {
        None | Some("json") => Ok(false),
        Some("rows") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`format` must be `json` or `rows`, not `{other}`"),
        )),
    }
}

/// A count a partner may see: 0, or at least `k`.
pub(crate) fn partner_count(value: Option<f64>, k: u64) -> Option<f64> {
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
                ApiError::new(ErrorCode::InvalidQuery, message)
            }
            AnalyticsError::Query(e) => {
                tracing::error!(error = %e, "An analytics query failed.");
                ApiError::new(
                    ErrorCode::InternalError,
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
pub(crate) struct Params {
    pairs: BTreeMap<String, String>,
}

impl Params {
    /// The parameters of a route that takes `allowed` and a filter per dimension.
    pub(crate) fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::read(pairs, allowed, true)
    }

    /// The parameters of a route that takes `allowed` and no filters.
    pub(crate) fn without_filters(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        Self::read(pairs, allowed, false)
    }

    fn read(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
        filters: bool,
    ) -> Result<Self, ApiError> {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let is_dimension = key.parse::<Dimension>().is_ok();
            if !filters && is_dimension && !allowed.contains(&key.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!(
                        "this route takes no filters (`{key}`); it takes {}. Ask a breakdown for \
                         a slice",
                        if allowed.is_empty() {
                            "no parameters".to_owned()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
            if !allowed.contains(&key.as_str()) && !is_dimension {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
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
                    ErrorCode::InvalidQuery,
                    format!("`{key}` is given more than once; list values with commas instead"),
                ));
            }
        }
        Ok(Self { pairs: map })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn parse<T: std::str::FromStr<Err = String>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e: String| ApiError::new(ErrorCode::InvalidQuery, e))
            })
            .transpose()
    }

    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`{key}` must be true or false, not `{other}`"),
            )),
        }
    }

    pub(crate) fn moment(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.get(key) else {
            return Ok(None);
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidQuery,
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

    pub(crate) fn filters(&self) -> Result<BTreeMap<Dimension, Vec<String>>, ApiError> {
        let mut filters = BTreeMap::new();
        for d in Dimension::ALL {
            let values = self.list(d.as_str());
            if self.pairs.contains_key(d.as_str()) && values.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
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
                ErrorCode::InvalidQuery,
                "give `to` or `as_of`, not both",
            ));
        }
        let relative: Option<RelativePeriod> = self.parse("period")?;
        let from = self.moment("from")?;
        let to = self.moment("to")?.or(self.moment("as_of")?);
        if relative.is_some() && (from.is_some() || to.is_some()) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
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
        if let Some(from) = from
            && from > as_of
        {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "`from` ({}) lies after `to` ({})",
                    from.to_rfc3339(),
                    as_of.to_rfc3339()
                ),
            ));
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
pub(crate) fn rounded_now(now: DateTime<Utc>) -> DateTime<Utc> {
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
                .map_err(|e: String| ApiError::new(ErrorCode::InvalidQuery, e))
        })
        .collect()
}

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
        ("period" = Option<String>, Query, description = "A relative range instead of from/to: last_7_days, last_30_days, last_12_weeks, last_12_months, this_fiscal_year, since_start"),
        ("interval" = Option<String>, Query, description = "With `by=period`: day, week, month (default), quarter or fiscal_year"),
        ("totals" = Option<bool>, Query, description = "Add a total row and subtotals"),
        ("format" = Option<String>, Query, description = "`json` (default), `csv` (also with `Accept: text/csv`) or `rows` (a flat JSON array)"),
        ("lang" = Option<String>, Query, description = "`en` or `ur`: add labels of dimension values and metrics"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "The groups and their figures; partner keys get small cells as null, listed in `suppressed`",
         content(
            (Object = "application/json", example = json!({
                "by": ["province", "track"], "metrics": ["enrolled", "completed", "completion_rate"],
                "from": null, "as_of": "2026-11-30T10:00:00Z", "data_as_of": "2026-11-30T10:00:03Z", "last_seq": 981234,
                "rows": [{"province": "punjab", "track": "soft", "learners": 412, "enrolled": 412, "completed": 170, "completion_rate": 0.4126}],
                "metric_labels": {}, "suppressed": []})),
            (String = "text/csv", example = "province,track,learners,enrolled,completed,completion_rate\npunjab,soft,412,412,170,0.4126\n"),
         )),
        (status = "4XX", description = "An error; `code` says which", body = crate::openapi::ErrorBody),
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
    let now = Utc::now();
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
    let answer = state.engine.breakdown_stamped(&query).await?;
    let request = format!("breakdown|{:?}|{csv}|{}", caller.role, req.query_string());
    let stamp = crate::rendered::stamp_of(&answer).to_vec();
    if let Some(rendering) = state.rendered.get(&request, &stamp) {
        return Ok(rendering.respond());
    }
    let mut result = answer.value.clone();
    let hidden = suppressed(&mut result, caller.role == Partner, state.suppression_k);
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
            out.extend(row_figures(&result, &hidden, i));
            Value::Object(out)
        })
        .collect();
    if csv {
        let body = breakdown_csv(&result, &hidden).into_bytes();
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
            "suppressed": suppressed,
        }))?
    };
    let rendering = state.rendered.put(request, stamp, "application/json", body);
    Ok(rendering.respond())
}

/// An answer as JSON bytes.
pub(crate) fn json_bytes(answer: &impl serde::Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(answer).map_err(|e| {
        tracing::error!(error = %e, "An answer could not be serialised.");
        ApiError::new(ErrorCode::InternalError, "the answer could not be written")
    })
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
pub(crate) enum Lang {
    En,
    Ur,
}

/// `lang=en|ur`: add people's labels to the answer (none when not asked).
pub(crate) fn language(params: &Params) -> Result<Option<Lang>, ApiError> {
    match params.get("lang") {
        None => Ok(None),
        Some("en") => Ok(Some(Lang::En)),
        Some("ur") => Ok(Some(Lang::Ur)),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`lang` must be `en` or `ur`, not `{other}`"),
        )),
    }
}

/// Labels of dimension values in one language.
pub(crate) struct Labels {
    lang: Lang,
    institutions: std::collections::HashMap<String, (String, String)>,
    disciplines: std::collections::HashMap<String, (String, String)>,
    cohorts: std::collections::HashMap<String, (String, String)>,
}

impl Labels {
    pub(crate) async fn load(
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

    pub(crate) fn pick<'a>(&self, en: &'a str, ur: &'a str) -> &'a str {
        match self.lang {
            Lang::En => en,
            Lang::Ur => ur,
        }
    }

    pub(crate) fn of(&self, dimension: Dimension, value: &str) -> String {
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
pub(crate) fn to_json(answer: &impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| {
        tracing::error!(error = %e, "An answer could not be serialised.");
        ApiError::new(ErrorCode::InternalError, "the answer could not be written")
    })
}

/// Counts as JSON integers, rates and averages as numbers.
pub(crate) fn metric_value(metric: Metric, value: Option<f64>) -> Value {
    match (metric.kind(), value) {
        (MetricKind::Count, Some(v)) => json!(v.round() as i64),
        (_, value) => json!(value),
    }
}

/// A time series of one metric, per day, week or month, optionally split by a dimension.
#[utoipa::path(
    get,
    path = "/api/v1/timeseries",
    tag = "figures",
    params(
        ("metric" = String, Query, description = "The metric (averages of progress and score are not kept over time)", example = "completed"),
        ("interval" = Option<String>, Query, description = "day, week (default), month, quarter or fiscal_year"),
        ("split" = Option<String>, Query, description = "A dimension: one series per value", example = "track"),
        ("cumulative" = Option<bool>, Query, description = "Each point as of its period's end (true), or what happened within the period (false, default)"),
        ("from" = Option<String>, Query, description = "First moment (default: the program's start)"),
        ("to" = Option<String>, Query, description = "Last moment (default now)"),
        ("as_of" = Option<String>, Query, description = "Same as `to`"),
        ("period" = Option<String>, Query, description = "A relative range instead of from/to"),
        ("format" = Option<String>, Query, description = "`json` (default) or `rows`: a flat array `{period, starts_on, series, value}`"),
        ("lang" = Option<String>, Query, description = "`en` or `ur`: add `labels` of the series keys and the metric's label"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "The points; a series of one track or cohort carries its target trajectory", body = Object,
         example = json!({"from": "2026-09-01T00:00:00Z", "as_of": "2026-11-30T10:00:00Z", "data_as_of": "2026-11-30T10:00:03Z",
            "series": {"metric": "completed", "interval": "week", "cumulative": true, "split": "track",
                       "points": [{"period": "2026-W36", "starts_on": "2026-08-31", "values": {"soft": 12, "hard": 0}}]}})),
        (status = "4XX", description = "An error; `code` says which", body = crate::openapi::ErrorBody),
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
    let now = Utc::now();
    let metric: Metric = params
        .parse("metric")?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "`metric` is required"))?;
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
            ErrorCode::Forbidden,
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
        ("format" = Option<String>, Query, description = "`json` (default) or `rows`: only the rows, as a flat array"),
        ("lang" = Option<String>, Query, description = "`en` or `ur`: add `labels` of each row's keys"),
        DimensionFilters,
    ),
    responses(
        (status = 200, description = "One row per slice", body = Object,
         example = json!({"by": ["track"], "as_of": "2026-11-30T10:00:00Z", "rows": [{"keys": ["soft"], "enrolled": 1012, "started": 920,
            "half_way": 610, "completed": 388, "certified": 0, "days_to_complete": {"median": 31.5, "p75": 40.1, "p90": 52.0}}]})),
        (status = "4XX", description = "An error; `code` says which", body = crate::openapi::ErrorBody),
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
    let labels = match lang {
        Some(lang) => Some(Labels::load(&state, &state.engine.snapshot().roster, lang).await?),
        None => None,
    };
    let mut rows = to_json(&rows)?;
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
    if rows_only {
        return Ok(HttpResponse::Ok().json(rows));
    }
    Ok(HttpResponse::Ok().json(json!({ "by": by, "as_of": as_of, "rows": rows })))
}

/// Targets of every track and cohort: attainment, the pace of the last 14 days and the date the
/// target is met at that pace.
#[utoipa::path(
    get,
    path = "/api/v1/targets",
    tag = "figures",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `rows`: only the targets, as a flat array"),
        ("lang" = Option<String>, Query, description = "`en` or `ur`: add each track's or cohort's `label`"),
    ),
    responses(
        (status = 200, description = "Every track's and cohort's target status", body = Object,
         example = json!({"as_of": "2026-11-30T10:00:00Z", "targets": [{"scope": "track", "id": "hard", "attained": 96, "target": 250,
            "stretch_target": 500, "attainment": 0.384, "pace_per_day": 2.1, "projected_date": "2027-01-12", "projected_stretch_date": "2027-07-16"}]})),
        (status = "4XX", description = "An error; `code` says which", body = crate::openapi::ErrorBody),
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
    let now = rounded_now(Utc::now());
    let partner = caller.role == Partner;
    let mut targets: Vec<Value> = state
        .engine
        .targets(now)
        .await?
        .iter()
        .map(|t| target_json(t, partner, state.suppression_k))
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
    Ok(HttpResponse::Ok().json(json!({ "as_of": now, "targets": targets })))
}
