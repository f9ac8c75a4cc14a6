//! Query parameters of the read API: each given at most once, unknown ones refused; the range
//! (`from`/`to`/`as_of` or a relative `period`), filters per dimension, `metrics`, `format=rows`
//! and `lang`.
//!
//! Query form (DHIS2-like): `by=` dimensions (and `period`), one parameter per dimension to filter
//! on (`province=punjab,sindh`), `metrics=`, a range as `from`/`to` or a relative `period=`, and
//! `as_of`. Unknown parameters, dimensions and metrics are errors, never empty answers.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use nigrani_analytics::disclosure::Audience;
use nigrani_analytics::period::{RelativePeriod, day_start_micros};
use nigrani_analytics::{Dimension, Metric};

use super::render::Lang;
use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// The filters every figures route takes: one parameter per dimension, values comma-separated.
/// Only documents the query (the handlers read it as pairs, to reject unknown parameters).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documents the query; handlers read it as pairs")]
pub(crate) struct DimensionFilters {
    /// Keep these provinces, e.g. `punjab,sindh` (`punjab`, `sindh`, `khyber_pakhtunkhwa`,
    /// `balochistan`, `islamabad`, `gilgit_baltistan`, `azad_kashmir`). Partner keys give one
    /// value per filter.
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

/// Metrics a breakdown computes when `metrics` is not given.
const DEFAULT_METRICS: &[Metric] = &[
    Metric::Enrolled,
    Metric::Started,
    Metric::Completed,
    Metric::Certified,
    Metric::Trained,
];

/// The moments a query covers.
pub(super) struct Range {
    pub(super) from: Option<DateTime<Utc>>,
    pub(super) as_of: DateTime<Utc>,
    /// No end was given: the figures are as of now, on the latest data.
    pub(super) latest: bool,
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

    /// The moment parameter `key` names, as `audience` is answered: a partner's is whole days in
    /// Pakistan — `from` the start of its day, an end the end of the last day ended by then (see
    /// [`nigrani_analytics::disclosure`]).
    pub(crate) fn moment(
        &self,
        key: &str,
        state: &AppState,
        audience: Audience,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        Ok(self.named_moment(key)?.map(|at| {
            if key == "from" {
                state.disclosure.start(audience, at)
            } else {
                state.disclosure.end(audience, at)
            }
        }))
    }

    fn named_moment(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
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

    /// The dimension filters, as `audience` may give them (see
    /// [`nigrani_analytics::disclosure::Disclosure::check_filters`]).
    pub(crate) fn filters(
        &self,
        state: &AppState,
        audience: Audience,
    ) -> Result<BTreeMap<Dimension, Vec<String>>, ApiError> {
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
        state
            .disclosure
            .check_filters(audience, &filters)
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?;
        Ok(filters)
    }

    /// `(from, as_of, latest)` from `from`/`to`/`as_of` or a relative `period`; `latest` when no
    /// end was given (the figures are then as of now, on the latest data). A partner's moments
    /// are whole days (see [`Params::moment`]).
    pub(super) fn range(
        &self,
        state: &AppState,
        now: DateTime<Utc>,
        audience: Audience,
    ) -> Result<Range, ApiError> {
        if self.get("to").is_some() && self.get("as_of").is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "give `to` or `as_of`, not both",
            ));
        }
        let relative: Option<RelativePeriod> = self.parse("period")?;
        let from = self.moment("from", state, audience)?;
        let to = self
            .moment("to", state, audience)?
            .or(self.moment("as_of", state, audience)?);
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
                from: Some(state.disclosure.start(audience, relative.start(now, start))),
                as_of: rounded_now(now),
                latest: true,
            });
        }
        let latest = to.is_none();
        let as_of = to.unwrap_or_else(|| rounded_now(now));
        if let Some(from) = from
            && from > as_of
        {
            // A partner's moments were moved to whole days: say so, or the error would quote
            // times the partner never sent.
            let whole_days = match audience {
                Audience::Exact => "",
                Audience::Partner => {
                    "; partner times are whole days in Pakistan: `from` counts from the start \
                     of its day and `to`/`as_of` up to the end of the last day ended by then, so \
                     ask for at least one whole day"
                }
            };
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "`from` ({}) lies after `to` ({}){whole_days}",
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

/// The `metrics` of a breakdown, or the default ones.
pub(super) fn metrics(params: &Params) -> Result<Vec<Metric>, ApiError> {
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

crate::schema::schema_type! {
    /// `format` of the figures routes but the breakdown: `json` (the default) or `rows`.
    RowsFormat => crate::schema::choices(["json", "rows"], true, "`json` (the default; so is an empty value) or `rows`")
}

crate::schema::schema_type! {
    /// `format` of the breakdown: `json` (the default), `csv` or `rows`.
    BreakdownFormat => crate::schema::choices(["json", "csv", "rows"], true, "`json` (the default; so is an empty value, unless `Accept` asks for `text/csv`), `csv` or `rows`")
}

crate::schema::schema_type! {
    /// `lang` of the figures routes: `en` or `ur`.
    LangParam => crate::schema::choices(["en", "ur"], true, "`en` or `ur`; empty: no labels")
}

crate::schema::schema_type! {
    /// An interval of calendar periods.
    IntervalParam => crate::schema::choices(
        nigrani_analytics::period::Interval::ALL.iter().map(|i| i.as_str()),
        true,
        "A calendar interval; empty: the route's default",
    )
}

crate::schema::schema_type! {
    /// A relative range.
    PeriodParam => crate::schema::choices(
        RelativePeriod::ALL.iter().map(|p| p.as_str()),
        true,
        "A relative range; empty: none",
    )
}

crate::schema::schema_type! {
    /// A metric kept over time (every metric but the averages of progress and score).
    SeriesMetric => crate::schema::choices(
        Metric::ALL
            .iter()
            .filter(|m| !matches!(m, Metric::AvgProgress | Metric::AvgScore))
            .map(|m| m.as_str()),
        false,
        "A metric kept over time",
    )
}

crate::schema::schema_type! {
    /// A yes-or-no parameter, as [`Params::flag`] reads it.
    Flag => crate::schema::choices(["true", "false", "1", "0"], true, "`true` (or `1`), `false` (or `0`); empty: false")
}

crate::schema::schema_type! {
    /// A dimension.
    DimensionParam => crate::schema::choices(
        Dimension::ALL.iter().map(|d| d.as_str()),
        true,
        "A dimension; empty: none",
    )
}
