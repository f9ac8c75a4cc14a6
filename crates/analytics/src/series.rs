//! Time series: one metric per day, week, month, quarter or fiscal year, cumulative or not,
//! optionally split by one dimension, with the target trajectory of tracks and cohorts.
//!
//! Each point is the metric as of the end of its period (the last, unfinished period: as of the
//! query's moment). Milestones (started, completed, …) count within the period, or since the
//! beginning when cumulative. Activity of past periods comes from the per-learner calendar of
//! active days, so a point is exact without replaying events.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::definitions::{Dimension, Metric};
use crate::period::{Interval, day_of, day_start_micros};
use crate::query::{
    ACTIVITY_WINDOWS, At, Breakdown, BreakdownQuery, QueryError, RowSubjects, activity_column,
    aggregate, filtered, learner_frame,
};
use crate::state::{Roster, States, pakistan_day};

/// Most points one series may have.
pub const MAX_POINTS: usize = 400;
/// The key of the single series when there is no split.
pub const ALL: &str = "all";

/// What a time series asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub metric: Metric,
    pub interval: Interval,
    /// The first moment covered (its period is the first point).
    pub from: DateTime<Utc>,
    /// The last moment covered, and the moment the last point is computed as of.
    pub as_of: DateTime<Utc>,
    /// One series per value of this dimension.
    pub split: Option<Dimension>,
    pub filters: BTreeMap<Dimension, Vec<String>>,
    /// Milestones counted since the beginning rather than within each period.
    pub cumulative: bool,
    /// Computed on the latest data, the last point as of the later of `as_of` and the moment
    /// the live state was brought up to (see [`crate::BreakdownQuery::latest`]).
    pub latest: bool,
}

/// One period of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// The period's name, e.g. `2026-11` or `FY2026-27`.
    pub period: String,
    /// Its first day.
    pub starts_on: NaiveDate,
    /// The value per series key (`all` without a split).
    pub values: BTreeMap<String, Option<f64>>,
    /// The target trajectory per series key, where the series is one track or one cohort and the
    /// metric is trained, completed or certified, cumulative.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, f64>,
    /// Who each value is about, for disclosure control ([`crate::disclosure`]); never
    /// serialised.
    #[serde(skip)]
    pub subjects: BTreeMap<String, RowSubjects>,
}

/// A time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub metric: Metric,
    pub interval: Interval,
    pub cumulative: bool,
    pub split: Option<Dimension>,
    pub points: Vec<SeriesPoint>,
}

impl SeriesQuery {
    /// The periods the series covers: `(first day, first day of the next period)`.
    pub fn periods(&self) -> Result<Vec<(NaiveDate, NaiveDate)>, QueryError> {
        if matches!(self.metric, Metric::AvgProgress | Metric::AvgScore) {
            return Err(QueryError::Invalid(format!(
                "`{}` is kept for the latest moment only; ask a breakdown `as_of` the moment you \
                 need instead of a time series",
                self.metric.as_str()
            )));
        }
        if self.from > self.as_of {
            return Err(QueryError::Invalid(format!(
                "`from` ({}) lies after `to`/`as_of` ({})",
                self.from.to_rfc3339(),
                self.as_of.to_rfc3339()
            )));
        }
        let last = day_of(self.as_of);
        let mut start = self.interval.start_of(day_of(self.from));
        let mut periods = Vec::new();
        while start <= last {
            let next = self.interval.next(start);
            periods.push((start, next));
            if periods.len() > MAX_POINTS {
                return Err(QueryError::Invalid(format!(
                    "the series would have more than {MAX_POINTS} points; use a longer \
                     interval or a shorter range"
                )));
            }
            start = next;
        }
        Ok(periods)
    }
}

/// Computes a series over a state that holds nothing after `query.as_of`.
pub fn series(roster: &Roster, states: &States, query: &SeriesQuery) -> Result<Series, QueryError> {
    let periods = query.periods()?;
    let periods_frame =
        PeriodFrames::new(roster, states, &[query.metric], query.as_of, query.latest)?;
    let from = query.from.timestamp_micros();
    let split: Vec<Dimension> = query.split.into_iter().collect();
    let mut points = Vec::with_capacity(periods.len());
    for (start, next) in periods {
        let window_from = (!query.cumulative).then(|| day_start_micros(start).max(from));
        let (frame, at) = periods_frame.at(states, next, window_from)?;
        let lazy = filtered(frame.lazy(), roster, &query.filters)?;
        let rows = aggregate(lazy, roster, &split, &[query.metric], false, at)?;
        let mut values = BTreeMap::new();
        let mut subjects = BTreeMap::new();
        for row in rows {
            let key = row
                .keys
                .first()
                .cloned()
                .flatten()
                .unwrap_or_else(|| ALL.to_owned());
            values.insert(key.clone(), row.values.first().copied().flatten());
            subjects.insert(key, row.subjects);
        }
        let targets = trajectory(roster, query, at.as_of, values.keys());
        points.push(SeriesPoint {
            period: query.interval.label(start),
            starts_on: start,
            values,
            targets,
            subjects,
        });
    }
    Ok(Series {
        metric: query.metric,
        interval: query.interval,
        cumulative: query.cumulative,
        split: query.split,
        points,
    })
}

/// A breakdown grouped by calendar period as well: for each period, the query's groups as of the
/// period's end (the last period: as of `query.as_of`), milestones counted within the period.
pub fn period_breakdown(
    roster: &Roster,
    states: &States,
    query: &BreakdownQuery,
) -> Result<Breakdown, QueryError> {
    query.validate()?;
    let (Some(interval), Some(from)) = (query.period, query.from) else {
        return Err(QueryError::Invalid(
            "grouping by period needs `period` and `from`".into(),
        ));
    };
    let periods = SeriesQuery {
        metric: Metric::Enrolled,
        interval,
        from,
        as_of: query.as_of,
        split: None,
        filters: BTreeMap::new(),
        cumulative: false,
        latest: query.latest,
    }
    .periods()?;
    let periods_frame =
        PeriodFrames::new(roster, states, &query.metrics, query.as_of, query.latest)?;
    let mut rows = Vec::new();
    for (start, next) in periods {
        let window_from = Some(day_start_micros(start).max(from.timestamp_micros()));
        let (frame, at) = periods_frame.at(states, next, window_from)?;
        let lazy = filtered(frame.lazy(), roster, &query.filters)?;
        let label = interval.label(start);
        for mut row in aggregate(lazy, roster, &query.by, &query.metrics, query.totals, at)? {
            row.period = Some(label.clone());
            rows.push(row);
        }
    }
    Ok(Breakdown {
        period: Some(interval),
        by: query.by.clone(),
        metrics: query.metrics.clone(),
        rows,
    })
}

/// The learner frame, and what a period needs of it: each period is evaluated as of its end
/// (the last, unfinished one as of the query's moment), with activity flags from the calendar
/// for periods that ended before that moment.
struct PeriodFrames {
    frame: DataFrame,
    as_of: i64,
    /// Milestones and enrolments of the last period count up to here: `as_of`, or on the
    /// latest data the moment the state was brought up to, if later (as in a breakdown).
    until: i64,
    needs_activity: bool,
}

impl PeriodFrames {
    fn new(
        roster: &Roster,
        states: &States,
        metrics: &[Metric],
        as_of: DateTime<Utc>,
        latest: bool,
    ) -> Result<Self, QueryError> {
        let as_of = as_of.timestamp_micros();
        Ok(Self {
            frame: learner_frame(roster, states)?,
            as_of,
            until: if latest {
                as_of.max(states.held_until)
            } else {
                as_of
            },
            needs_activity: metrics
                .iter()
                .any(|m| matches!(m, Metric::Active7d | Metric::Active30d | Metric::Inactive)),
        })
    }

    /// The frame and the evaluation moment of the period that ends where `next` begins.
    fn at(
        &self,
        states: &States,
        next: NaiveDate,
        from: Option<i64>,
    ) -> Result<(DataFrame, At), QueryError> {
        let end = day_start_micros(next) - 1;
        let past = end < self.as_of;
        let at = At {
            as_of: end.min(self.as_of),
            until: if past { end } else { self.until },
            from,
            activity_columns: past,
        };
        let frame = if past && self.needs_activity {
            with_activity(&self.frame, states, pakistan_day(end))?
        } else {
            self.frame.clone()
        };
        Ok((frame, at))
    }
}

/// The frame with activity flags for the windows ending on `last_day` (inclusive).
fn with_activity(
    frame: &DataFrame,
    states: &States,
    last_day: i64,
) -> Result<DataFrame, QueryError> {
    let mut out = frame.clone();
    for days in ACTIVITY_WINDOWS {
        let flags: Vec<bool> = (0..states.learners.len())
            .map(|row| states.active_between(row, last_day - days + 1, last_day))
            .collect();
        out.with_column(Column::new(activity_column(days).into(), flags))?;
    }
    Ok(out)
}

/// The target trajectory at `moment` for each series key that is one track or one cohort: the
/// target grows linearly from 0 at the start to the full target at the end.
fn trajectory<'a>(
    roster: &Roster,
    query: &SeriesQuery,
    moment: i64,
    keys: impl Iterator<Item = &'a String>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if !query.cumulative
        || !matches!(
            query.metric,
            Metric::Trained | Metric::Completed | Metric::Certified
        )
    {
        return out;
    }
    let single = |d: Dimension| match query.filters.get(&d) {
        Some(values) if values.len() == 1 => Some(values[0].clone()),
        _ => None,
    };
    for key in keys {
        let (track, cohort) = match query.split {
            Some(Dimension::Track) => (Some(key.clone()), single(Dimension::Cohort)),
            Some(Dimension::Cohort) => (single(Dimension::Track), Some(key.clone())),
            _ => (single(Dimension::Track), single(Dimension::Cohort)),
        };
        let plan = match (cohort, track) {
            (Some(cohort), _) => roster
                .cohorts
                .iter()
                .find(|c| c.cohort_id == cohort)
                .map(|c| (c.starts_on, c.ends_on, f64::from(c.target))),
            (None, Some(track)) => track_plan(roster, &track),
            (None, None) => None,
        };
        if let Some((starts_on, ends_on, target)) = plan {
            let start = day_start_micros(starts_on);
            let end = day_start_micros(ends_on.succ_opt().unwrap_or(ends_on));
            let share = ((moment - start) as f64 / (end - start).max(1) as f64).clamp(0.0, 1.0);
            out.insert(key.clone(), (target * share).round());
        }
    }
    out
}

/// A track's span (first cohort start to last cohort end) and target.
pub(crate) fn track_plan(roster: &Roster, track: &str) -> Option<(NaiveDate, NaiveDate, f64)> {
    let code = nigrani_domain::Track::ALL
        .iter()
        .position(|t| t.as_str() == track)?;
    let track_value = nigrani_domain::Track::ALL[code];
    let cohorts: Vec<_> = roster
        .cohorts
        .iter()
        .filter(|c| c.track == track_value)
        .collect();
    let start = cohorts.iter().map(|c| c.starts_on).min()?;
    let end = cohorts.iter().map(|c| c.ends_on).max()?;
    Some((start, end, f64::from(*roster.track_targets.get(code)?)))
}
