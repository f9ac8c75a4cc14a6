//! Breakdowns: learners grouped by dimensions, filtered, with chosen metrics, as of a moment —
//! computed with polars over the learner frame (one row per learner on the roster).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::definitions::{DAY_MICROS, Dimension, INACTIVE_AFTER_DAYS, Metric};
pub use crate::frame::QueryError;
use crate::frame::{cell, columns};
use crate::record_key::cell_key;
use crate::state::{Roster, States};

/// Most dimensions one breakdown may group by.
pub const MAX_BY: usize = 4;

/// What a breakdown asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakdownQuery {
    /// Group by these, in this order (may be empty: one row for everyone).
    pub by: Vec<Dimension>,
    /// Keep only learners whose value of each dimension is one of these names.
    pub filters: BTreeMap<Dimension, Vec<String>>,
    /// Metrics to compute, in this order.
    pub metrics: Vec<Metric>,
    /// Count milestones (started, completed, certified, trained, withdrawn) only when they
    /// happened at or after this moment; stocks (enrolled, active, inactive, averages) are as of
    /// `as_of` regardless.
    pub from: Option<DateTime<Utc>>,
    /// The moment the figures are computed as of.
    pub as_of: DateTime<Utc>,
    /// Add a total row and, for more than one dimension, subtotals over each leading prefix.
    pub totals: bool,
    /// Also group by calendar period: the rows repeat for each period from `from` to `as_of`,
    /// each evaluated as of the period's end with milestones counted within the period.
    pub period: Option<crate::period::Interval>,
    /// Answer from the latest data — the live state, which holds every event dated up to the
    /// moment it was last brought up to date and none dated later (see [`crate::engine`]) — as
    /// of the later of that moment and `as_of` (which callers round down, so that pollers share
    /// answers); `as_of` places the activity windows. This is what "now" means on every route;
    /// an explicit `as_of` leaves it false.
    pub latest: bool,
}

impl BreakdownQuery {
    /// Checks the query on its own (names are already typed; this checks their combination).
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.metrics.is_empty() {
            return Err(QueryError::Invalid("ask for at least one metric".into()));
        }
        if self.by.len() > MAX_BY {
            return Err(QueryError::Invalid(format!(
                "group by at most {MAX_BY} dimensions, not {}",
                self.by.len()
            )));
        }
        for (i, d) in self.by.iter().enumerate() {
            if self.by[..i].contains(d) {
                return Err(QueryError::Invalid(format!(
                    "dimension `{}` appears twice in `by`",
                    d.as_str()
                )));
            }
        }
        if self.period.is_some() && self.from.is_none() {
            return Err(QueryError::Invalid(
                "grouping by period needs `from` (or a relative `period` range)".into(),
            ));
        }
        if let Some(from) = self.from
            && from > self.as_of
        {
            return Err(QueryError::Invalid(format!(
                "`from` ({}) lies after `to`/`as_of` ({})",
                from.to_rfc3339(),
                self.as_of.to_rfc3339()
            )));
        }
        for (dimension, values) in &self.filters {
            if values.is_empty() {
                return Err(QueryError::Invalid(format!(
                    "the filter on `{}` lists no values",
                    dimension.as_str()
                )));
            }
        }
        Ok(())
    }
}

/// One row of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownRow {
    /// The calendar period, when the query groups by period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The group's value of each `by` dimension; `None` in a total or subtotal over it.
    pub keys: Vec<Option<String>>,
    /// Learners in the group enrolled by the moment asked (everyone the figures are over).
    pub learners: u64,
    /// One value per metric, in query order; `None` where undefined (e.g. an average over none).
    pub values: Vec<Option<f64>>,
    /// Who the row's figures are about, for disclosure control ([`crate::disclosure`]); never
    /// serialised.
    #[serde(skip)]
    pub subjects: RowSubjects,
}

/// The learners a figure is about: how many, and the key of their set (see
/// [`crate::record_key`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subjects {
    pub count: u64,
    pub key: u32,
}

/// Who a row's figures are about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSubjects {
    /// The row's learners.
    pub learners: Subjects,
    /// Per metric: a count's counted learners; a rate's numerator; an average's or a median's
    /// learners with a value.
    pub metrics: Vec<Subjects>,
}

/// The answer to a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<crate::period::Interval>,
    pub by: Vec<Dimension>,
    pub metrics: Vec<Metric>,
    pub rows: Vec<BreakdownRow>,
}

/// Builds the learner frame: one row per learner, dimension codes and the per-learner figures
/// (see [`crate::live`], which also keeps it current).
pub fn learner_frame(roster: &Roster, states: &States) -> Result<DataFrame, QueryError> {
    crate::live::LiveFrame::new(roster, states, false, states.held_until).frame()
}

/// The names of a dimension's codes, in code order.
pub fn dimension_names(roster: &Roster, dimension: Dimension) -> Vec<String> {
    fn wire<T: std::fmt::Display>(all: &[T]) -> Vec<String> {
        all.iter().map(ToString::to_string).collect()
    }
    match dimension {
        Dimension::Province => wire(nigrani_domain::Province::ALL),
        Dimension::Institution => roster
            .institutions
            .iter()
            .map(|i| i.hec_id.clone())
            .collect(),
        Dimension::Sector => wire(nigrani_domain::Sector::ALL),
        Dimension::Discipline => roster.disciplines.clone(),
        Dimension::Track => wire(nigrani_domain::Track::ALL),
        Dimension::Cohort => roster.cohorts.iter().map(|c| c.cohort_id.clone()).collect(),
        Dimension::Gender => {
            let mut names = wire(nigrani_domain::Gender::ALL);
            names.push("unknown".into());
            names
        }
        Dimension::Role => wire(nigrani_domain::Role::ALL),
    }
}

/// The moment and window metrics are evaluated at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    /// Evaluate as of this moment (microseconds): activity windows end here.
    pub(crate) as_of: i64,
    /// Milestones and enrolments count up to this moment: `as_of`, or for the latest data the
    /// moment the state was brought up to, if later.
    pub(crate) until: i64,
    /// Count milestones only from this moment on.
    pub(crate) from: Option<i64>,
    /// Read activity from the columns `active_7d`, `active_14d` and `active_30d` (computed for
    /// `as_of` from the activity calendar) instead of from `last_activity`, which is only right
    /// when the frame holds nothing after `as_of`.
    pub(crate) activity_columns: bool,
}

/// Activity flag columns, for frames evaluated at a moment before their latest event.
pub(crate) const ACTIVITY_WINDOWS: [i64; 3] = [7, INACTIVE_AFTER_DAYS, 30];

pub(crate) fn activity_column(days: i64) -> String {
    format!("active_{days}d")
}

/// A milestone that happened by `until` (and from `from`, when given).
fn milestone(column: &str, at: At) -> Expr {
    let happened = col(column)
        .is_not_null()
        .and(col(column).lt_eq(lit(at.until)));
    match at.from {
        Some(from) => happened.and(col(column).gt_eq(lit(from))),
        None => happened,
    }
}

/// A milestone that happened by `until`, whatever `from` says.
fn ever(column: &str, at: At) -> Expr {
    milestone(column, At { from: None, ..at })
}

fn active_within(days: i64, at: At) -> Expr {
    use columns::LAST_ACTIVITY;
    if at.activity_columns {
        col(activity_column(days))
    } else {
        col(LAST_ACTIVITY)
            .is_not_null()
            .and(col(LAST_ACTIVITY).gt(lit(at.as_of - days * DAY_MICROS)))
    }
}

/// A metric in two steps: a per-learner column computed before grouping (element-wise, which
/// polars does at full speed) and a plain aggregation of it (`sum`, `mean`, `median`), which
/// grouping runs on its fast path.
pub(crate) struct MetricParts {
    /// The per-learner column, if the metric needs one.
    pub(crate) per_learner: Option<Expr>,
    /// The aggregation, named after the metric.
    pub(crate) aggregate: Expr,
    /// Per learner, 1 for those the metric is about and 0 for the others (see [`Subjects`]);
    /// `None` when it is about every learner of the group.
    pub(crate) subjects: Option<Expr>,
}

/// The names of the aggregations of a metric's subjects: their count and their key sum.
fn subject_columns(name: &str) -> (String, String) {
    (format!("__n_{name}"), format!("__k_{name}"))
}

/// The column of the sum of a group's record keys.
const LEARNERS_KEY: &str = "__k_learners";

/// The aggregations of the subjects of a metric named `name` (see [`MetricParts::subjects`]).
fn subject_aggregates(name: &str, subjects: Option<Expr>) -> [Expr; 2] {
    let (count, key) = subject_columns(name);
    let record_key = || col(columns::RECORD_KEY);
    match subjects {
        None => [
            len().cast(DataType::Int64).alias(count),
            record_key().sum().alias(key),
        ],
        Some(flag) => [
            flag.clone().sum().alias(count),
            (flag * record_key()).sum().alias(key),
        ],
    }
}

/// The polars expressions of a metric — the definitions of [`crate::definitions`] in code.
pub(crate) fn metric_parts(metric: Metric, at: At) -> Result<MetricParts, QueryError> {
    use columns::*;
    let name = metric.as_str();
    let column = format!("__{name}");
    let completed = || milestone(COMPLETED_AT, at);
    let certified = || milestone(CERTIFIED_AT, at);
    // A per-learner 0/1 column, aggregated as a count or as a share of the group.
    let flag = |e: Expr| Some(e.cast(DataType::Int64).alias(column.as_str()));
    let flagged = || Some(col(column.as_str()));
    let sum = || col(column.as_str()).sum();
    let share =
        || col(column.as_str()).sum().cast(DataType::Float64) / len().cast(DataType::Float64);
    let (per_learner, aggregate) = match metric {
        Metric::Enrolled => (None, len().cast(DataType::Int64)),
        Metric::Started => (flag(milestone(STARTED_AT, at)), sum()),
        Metric::Active7d => (flag(active_within(7, at)), sum()),
        Metric::Active30d => (flag(active_within(30, at)), sum()),
        Metric::Inactive => (
            flag(
                ever(STARTED_AT, at)
                    .and(ever(COMPLETED_AT, at).not())
                    .and(ever(WITHDRAWN_AT, at).not())
                    .and(active_within(INACTIVE_AFTER_DAYS, at).not()),
            ),
            sum(),
        ),
        Metric::Completed => (flag(completed()), sum()),
        Metric::Certified => (flag(certified()), sum()),
        Metric::Trained => (
            flag(when(col(SOFT)).then(completed()).otherwise(certified())),
            sum(),
        ),
        Metric::Withdrawn => (
            flag(milestone(WITHDRAWN_AT, at).and(ever(COMPLETED_AT, at).not())),
            sum(),
        ),
        Metric::CompletionRate => (flag(completed()), share()),
        Metric::CertificationRate => (flag(certified()), share()),
        Metric::AvgProgress | Metric::AvgScore if at.activity_columns => {
            return Err(QueryError::Invalid(format!(
                "`{name}` is kept for the latest moment only; ask a breakdown `as_of` the moment \
                 you need instead of a time series"
            )));
        }
        Metric::AvgProgress => {
            return Ok(MetricParts {
                per_learner: None,
                aggregate: col(PROGRESS).mean().alias(name),
                subjects: None,
            });
        }
        Metric::AvgScore => {
            return Ok(MetricParts {
                per_learner: None,
                aggregate: col(SCORE).mean().alias(name),
                subjects: Some(col(SCORE).is_not_null().cast(DataType::Int64)),
            });
        }
        // Over the completers `completed` counts in the same row: within `from`, when given.
        Metric::MedianDaysToComplete => {
            return Ok(MetricParts {
                per_learner: Some(
                    when(completed())
                        .then(col(DAYS_TO_COMPLETE))
                        .otherwise(lit(NULL).cast(DataType::Float64))
                        .alias(column.as_str()),
                ),
                aggregate: col(column.as_str()).median().alias(name),
                subjects: Some(col(column.as_str()).is_not_null().cast(DataType::Int64)),
            });
        }
    };
    Ok(MetricParts {
        subjects: per_learner.as_ref().and(flagged()),
        per_learner,
        aggregate: aggregate.alias(name),
    })
}

/// Filters a frame to the learners whose dimension values are among the filters' names.
pub(crate) fn filtered(
    mut lazy: LazyFrame,
    roster: &Roster,
    filters: &BTreeMap<Dimension, Vec<String>>,
) -> Result<LazyFrame, QueryError> {
    for (dimension, values) in filters {
        let names = dimension_names(roster, *dimension);
        let mut codes = Vec::with_capacity(values.len());
        for value in values {
            let code = names.iter().position(|n| n == value).ok_or_else(|| {
                QueryError::Invalid(format!(
                    "`{value}` is not a value of `{}`",
                    dimension.as_str()
                ))
            })?;
            codes.push(code as u32);
        }
        let keep = codes
            .into_iter()
            .map(|c| col(dimension.as_str()).eq(lit(c)))
            .reduce(Expr::or)
            .unwrap_or_else(|| lit(false));
        lazy = lazy.filter(keep);
    }
    Ok(lazy)
}

/// Keeps the learners enrolled by `until`: every figure is over them (see
/// [`crate::definitions`]).
pub(crate) fn enrolled_by(lazy: LazyFrame, until: i64) -> LazyFrame {
    lazy.filter(col(columns::ENROLLED_AT).lt_eq(lit(until)))
}

/// Groups (with totals and subtotals when asked) and computes the metrics, over the learners
/// enrolled by `at.until`.
pub(crate) fn aggregate(
    lazy: LazyFrame,
    roster: &Roster,
    by: &[Dimension],
    metrics: &[Metric],
    totals: bool,
    at: At,
) -> Result<Vec<BreakdownRow>, QueryError> {
    let lazy = enrolled_by(lazy, at.until);
    let mut aggs: Vec<Expr> = vec![
        len().cast(DataType::Int64).alias("learners"),
        col(columns::RECORD_KEY).sum().alias(LEARNERS_KEY),
    ];
    let mut per_learner = Vec::new();
    for metric in metrics {
        let parts = metric_parts(*metric, at)?;
        per_learner.extend(parts.per_learner);
        aggs.push(parts.aggregate);
        aggs.extend(subject_aggregates(metric.as_str(), parts.subjects));
    }
    let lazy = if per_learner.is_empty() {
        lazy
    } else {
        lazy.with_columns(per_learner)
    };
    grouped_rows(lazy, roster, by, metrics, totals, &aggs)
}

/// Runs `aggs` per group of `by` (and per leading prefix of it when `totals`), into rows.
fn grouped_rows(
    lazy: LazyFrame,
    roster: &Roster,
    by: &[Dimension],
    metrics: &[Metric],
    totals: bool,
    aggs: &[Expr],
) -> Result<Vec<BreakdownRow>, QueryError> {
    let mut groupings: Vec<Vec<Dimension>> = vec![by.to_vec()];
    if totals && !by.is_empty() {
        for prefix in (0..by.len()).rev() {
            groupings.push(by[..prefix].to_vec());
        }
    }
    let names: Vec<Vec<String>> = by.iter().map(|d| dimension_names(roster, *d)).collect();
    let mut rows = Vec::new();
    for grouping in groupings {
        let result = if grouping.is_empty() {
            lazy.clone().select(aggs).collect()?
        } else {
            group(lazy.clone(), roster, &grouping, aggs)?
        };
        rows.extend(read_rows(&result, by, metrics, &grouping, &names)?);
    }
    Ok(rows)
}

/// Metrics a breakdown of the latest data can take from the cells (see [`cells`]).
pub const CELL_METRICS: &[Metric] = &[
    Metric::Enrolled,
    Metric::Started,
    Metric::Completed,
    Metric::Certified,
    Metric::Trained,
    Metric::Withdrawn,
    Metric::CompletionRate,
    Metric::CertificationRate,
    Metric::AvgProgress,
    Metric::AvgScore,
];

/// The learners of a snapshot added up per combination of all dimensions: counts of the
/// learners enrolled by `moment` and of each milestone they reached, and sums for the averages.
/// Every combination of the roster has a cell, with no enrolled learners if need be. A
/// breakdown of the latest data with the [`CELL_METRICS`] and no `from` groups these few
/// thousand cells instead of every learner.
pub fn cells(frame: &DataFrame, moment: i64) -> Result<DataFrame, QueryError> {
    use columns::*;
    let enrolled = || col(ENROLLED_AT).lt_eq(lit(moment));
    let flag = |e: Expr, name: &str| enrolled().and(e).cast(DataType::Int64).alias(name);
    let completed = || col(COMPLETED_AT).is_not_null();
    let certified = || col(CERTIFIED_AT).is_not_null();
    let of_enrolled = |name: &str| {
        when(enrolled())
            .then(col(name))
            .otherwise(lit(NULL).cast(DataType::Float64))
    };
    let keys: Vec<Expr> = Dimension::ALL.iter().map(|d| col(d.as_str())).collect();
    let key_sum = |count: &str, key: &str| (col(count) * col(RECORD_KEY)).sum().alias(key);
    Ok(frame
        .clone()
        .lazy()
        .with_columns([
            flag(lit(true), cell::LEARNERS),
            flag(col(STARTED_AT).is_not_null(), cell::STARTED),
            flag(completed(), cell::COMPLETED),
            flag(certified(), cell::CERTIFIED),
            flag(
                when(col(SOFT)).then(completed()).otherwise(certified()),
                cell::TRAINED,
            ),
            flag(
                col(WITHDRAWN_AT).is_not_null().and(completed().not()),
                cell::WITHDRAWN,
            ),
            flag(col(SCORE).is_not_null(), cell::SCORED),
        ])
        .group_by(keys)
        .agg([
            col(cell::LEARNERS).sum(),
            col(cell::STARTED).sum(),
            col(cell::COMPLETED).sum(),
            col(cell::CERTIFIED).sum(),
            col(cell::TRAINED).sum(),
            col(cell::WITHDRAWN).sum(),
            of_enrolled(PROGRESS).sum().alias(cell::PROGRESS),
            of_enrolled(SCORE).sum().alias(cell::SCORE),
            col(cell::SCORED).sum(),
            key_sum(cell::LEARNERS, cell::LEARNERS_KEY),
            key_sum(cell::STARTED, cell::STARTED_KEY),
            key_sum(cell::COMPLETED, cell::COMPLETED_KEY),
            key_sum(cell::CERTIFIED, cell::CERTIFIED_KEY),
            key_sum(cell::TRAINED, cell::TRAINED_KEY),
            key_sum(cell::WITHDRAWN, cell::WITHDRAWN_KEY),
            key_sum(cell::SCORED, cell::SCORED_KEY),
        ])
        .collect()?)
}

/// Whether a breakdown can be answered from the cells.
pub fn cells_answer(query: &BreakdownQuery) -> bool {
    query.latest
        && query.from.is_none()
        && query.period.is_none()
        && query.metrics.iter().all(|m| CELL_METRICS.contains(m))
}

/// Answers a breakdown from the cells (only when [`cells_answer`] says so).
pub fn breakdown_from_cells(
    cells: &DataFrame,
    roster: &Roster,
    query: &BreakdownQuery,
) -> Result<Breakdown, QueryError> {
    query.validate()?;
    let total = |name: &str| col(name).sum();
    let share = |name: &str| {
        total(name).cast(DataType::Float64) / total(cell::LEARNERS).cast(DataType::Float64)
    };
    let mut aggs = vec![
        total(cell::LEARNERS).alias("learners"),
        total(cell::LEARNERS_KEY).alias(LEARNERS_KEY),
    ];
    for metric in &query.metrics {
        // Each metric's value, and the cells' count and key sum of the learners it is about.
        use cell::{
            CERTIFIED, CERTIFIED_KEY, COMPLETED, COMPLETED_KEY, PROGRESS, SCORE, SCORED,
            SCORED_KEY, STARTED, STARTED_KEY, TRAINED, TRAINED_KEY, WITHDRAWN, WITHDRAWN_KEY,
        };
        let everyone = (cell::LEARNERS, cell::LEARNERS_KEY);
        let (expr, subjects) = match metric {
            Metric::Enrolled => (total(cell::LEARNERS), everyone),
            Metric::Started => (total(STARTED), (STARTED, STARTED_KEY)),
            Metric::Completed => (total(COMPLETED), (COMPLETED, COMPLETED_KEY)),
            Metric::Certified => (total(CERTIFIED), (CERTIFIED, CERTIFIED_KEY)),
            Metric::Trained => (total(TRAINED), (TRAINED, TRAINED_KEY)),
            Metric::Withdrawn => (total(WITHDRAWN), (WITHDRAWN, WITHDRAWN_KEY)),
            Metric::CompletionRate => (share(COMPLETED), (COMPLETED, COMPLETED_KEY)),
            Metric::CertificationRate => (share(CERTIFIED), (CERTIFIED, CERTIFIED_KEY)),
            Metric::AvgProgress => (share(PROGRESS), everyone),
            Metric::AvgScore => (
                total(SCORE) / total(SCORED).cast(DataType::Float64),
                (SCORED, SCORED_KEY),
            ),
            other => {
                return Err(QueryError::Engine(format!(
                    "`{}` is not kept in cells",
                    other.as_str()
                )));
            }
        };
        aggs.push(expr.alias(metric.as_str()));
        let (count, key) = subject_columns(metric.as_str());
        aggs.push(total(subjects.0).alias(count));
        aggs.push(total(subjects.1).alias(key));
    }
    let lazy = filtered(cells.clone().lazy(), roster, &query.filters)?;
    let mut rows = grouped_rows(lazy, roster, &query.by, &query.metrics, query.totals, &aggs)?;
    // A group whose cells hold no enrolled learner (a cohort yet to start) is no group, as in
    // the learner-level path; the total row stays.
    rows.retain(|r| r.learners > 0 || r.keys.iter().all(Option::is_none));
    Ok(Breakdown {
        period: None,
        by: query.by.clone(),
        metrics: query.metrics.clone(),
        rows,
    })
}

/// Answers a breakdown over a learner frame that holds no event dated after `held_until`, nor
/// — unless the query is of the latest data — after `query.as_of`.
pub fn breakdown(
    frame: &DataFrame,
    roster: &Roster,
    query: &BreakdownQuery,
    held_until: i64,
) -> Result<Breakdown, QueryError> {
    query.validate()?;
    let as_of = query.as_of.timestamp_micros();
    let at = At {
        as_of,
        until: if query.latest {
            as_of.max(held_until)
        } else {
            as_of
        },
        from: query.from.map(|f| f.timestamp_micros()),
        activity_columns: false,
    };
    let lazy = filtered(frame.clone().lazy(), roster, &query.filters)?;
    let rows = aggregate(lazy, roster, &query.by, &query.metrics, query.totals, at)?;
    Ok(Breakdown {
        period: None,
        by: query.by.clone(),
        metrics: query.metrics.clone(),
        rows,
    })
}

/// Groups by several dimension codes at once through one packed key — `code₁·n₂·n₃ + code₂·n₃ +
/// code₃` — because grouping on one integer column is several times faster than on several, then
/// unpacks the codes of the (few) result rows.
fn group(
    lazy: LazyFrame,
    roster: &Roster,
    grouping: &[Dimension],
    aggs: &[Expr],
) -> Result<DataFrame, QueryError> {
    const PACKED: &str = "__group";
    let sizes: Vec<u64> = grouping
        .iter()
        .map(|d| dimension_names(roster, *d).len().max(1) as u64)
        .collect();
    let mut strides = vec![1u64; grouping.len()];
    for i in (0..grouping.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(sizes[i + 1]);
    }
    let packed = grouping
        .iter()
        .zip(&strides)
        .map(|(d, stride)| col(d.as_str()).cast(DataType::UInt64) * lit(*stride))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| lit(0u64))
        .alias(PACKED);
    let unpack: Vec<Expr> = grouping
        .iter()
        .zip(strides.iter().zip(&sizes))
        .map(|(d, (stride, size))| {
            ((col(PACKED) / lit(*stride)) % lit(*size))
                .cast(DataType::UInt32)
                .alias(d.as_str())
        })
        .collect();
    Ok(lazy
        .group_by([packed])
        .agg(aggs)
        .sort([PACKED], SortMultipleOptions::default())
        .with_columns(unpack)
        .collect()?)
}

fn read_rows(
    result: &DataFrame,
    by: &[Dimension],
    metrics: &[Metric],
    grouping: &[Dimension],
    names: &[Vec<String>],
) -> Result<Vec<BreakdownRow>, QueryError> {
    let height = result.height();
    let key_columns: Vec<Option<&UInt32Chunked>> = by
        .iter()
        .map(|d| {
            if grouping.contains(d) {
                result.column(d.as_str()).and_then(|c| c.u32()).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect::<PolarsResult<_>>()?;
    let learners = result.column("learners")?.cast(&DataType::Float64)?;
    let learners = learners.f64()?;
    let metric_columns: Vec<Column> = metrics
        .iter()
        .map(|m| result.column(m.as_str())?.cast(&DataType::Float64))
        .collect::<PolarsResult<_>>()?;
    let metric_values: Vec<&Float64Chunked> = metric_columns
        .iter()
        .map(|c| c.f64())
        .collect::<PolarsResult<_>>()?;
    let int = |name: &str| -> PolarsResult<Int64Chunked> {
        Ok(result.column(name)?.cast(&DataType::Int64)?.i64()?.clone())
    };
    let learners_key = int(LEARNERS_KEY)?;
    let subject_values: Vec<(Int64Chunked, Int64Chunked)> = metrics
        .iter()
        .map(|m| {
            let (count, key) = subject_columns(m.as_str());
            Ok((int(&count)?, int(&key)?))
        })
        .collect::<PolarsResult<_>>()?;
    let subjects = |count: &Int64Chunked, key: &Int64Chunked, i: usize| Subjects {
        count: count.get(i).unwrap_or(0).max(0) as u64,
        key: cell_key(key.get(i).unwrap_or(0)),
    };
    let mut rows = Vec::with_capacity(height);
    for i in 0..height {
        let keys = key_columns
            .iter()
            .zip(names)
            .map(|(column, names)| {
                column.and_then(|c| c.get(i)).map(|code| {
                    names
                        .get(code as usize)
                        .cloned()
                        .unwrap_or_else(|| code.to_string())
                })
            })
            .collect();
        let learners = learners.get(i).unwrap_or(0.0) as u64;
        rows.push(BreakdownRow {
            period: None,
            keys,
            learners,
            values: metric_values
                .iter()
                .map(|c| c.get(i).filter(|v| v.is_finite()))
                .collect(),
            subjects: RowSubjects {
                learners: Subjects {
                    count: learners,
                    key: cell_key(learners_key.get(i).unwrap_or(0)),
                },
                metrics: subject_values
                    .iter()
                    .map(|(count, key)| subjects(count, key, i))
                    .collect(),
            },
        });
    }
    Ok(rows)
}
