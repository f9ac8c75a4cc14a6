//! The program's targets — per track (soft: 1,000 trained; hard: 250 certified, 500 stretch) and
//! per cohort — with attainment, the pace of the last 14 days and the date the target is met at
//! that pace.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::definitions::{DAY_MICROS, Dimension, Metric};
use crate::period::day_of;
use crate::query::{At, QueryError, Subjects, aggregate};
use crate::state::Roster;

/// Days over which the pace is measured.
pub const PACE_DAYS: i64 = 14;

/// Where a track or cohort stands against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    /// `track` or `cohort`.
    pub scope: &'static str,
    /// The track or cohort id.
    pub id: String,
    /// Learners that count towards the target: trained (completed for the soft track, certified
    /// for the hard track).
    pub attained: u64,
    pub target: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stretch_target: Option<u32>,
    /// `attained / target`.
    pub attainment: Option<f64>,
    /// Learners trained per day over the last 14 days.
    pub pace_per_day: f64,
    /// The day the target is met at that pace (today when already met; none at zero pace).
    pub projected_date: Option<NaiveDate>,
    /// The same for the stretch target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_stretch_date: Option<NaiveDate>,
    /// Cohorts: the last day, and whether the projection meets the target by then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_track: Option<bool>,
    /// Who `attained` counts, and who was trained in the last 14 days (the pace), for disclosure
    /// control ([`crate::disclosure`]); never serialised.
    #[serde(skip)]
    pub subjects: TargetSubjects,
}

/// Who a target's counts are about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetSubjects {
    pub attained: Subjects,
    pub recent: Subjects,
    /// The day the projections start from.
    pub today: NaiveDate,
}

impl TargetStatus {
    /// The status with other counts of attained and recently trained learners (a partner's
    /// perturbed ones): attainment, pace and projections follow from them.
    pub fn recounted(&self, attained: u64, recent: u64) -> TargetStatus {
        let today = self.subjects.today;
        let pace = recent as f64 / PACE_DAYS as f64;
        let projected_date = projection(attained, self.target, pace, today);
        TargetStatus {
            attained,
            attainment: (self.target > 0).then(|| attained as f64 / f64::from(self.target)),
            pace_per_day: pace,
            projected_date,
            projected_stretch_date: self
                .stretch_target
                .and_then(|s| projection(attained, s, pace, today)),
            on_track: self
                .ends_on
                .map(|end| projected_date.is_some_and(|d| d <= end)),
            ..self.clone()
        }
    }
}

fn projection(attained: u64, target: u32, pace: f64, today: NaiveDate) -> Option<NaiveDate> {
    let missing = f64::from(target) - attained as f64;
    if missing <= 0.0 {
        return Some(today);
    }
    if pace <= 0.0 {
        return None;
    }
    let days = (missing / pace).ceil();
    (days < 36_500.0).then(|| today + Duration::days(days as i64))
}

/// Targets of every track and cohort, as of `now`, over a frame of the latest data, which holds
/// nothing after `held_until` (milestones count up to the later of the two, as in a breakdown
/// of the latest data).
pub fn targets(
    frame: &DataFrame,
    roster: &Roster,
    now: DateTime<Utc>,
    held_until: i64,
) -> Result<Vec<TargetStatus>, QueryError> {
    targets_of(frame, roster, now, held_until, None)
}

/// The target of one cohort (none when there is no such cohort), as [`targets`] gives it, from
/// its members only.
pub fn cohort_target(
    frame: &DataFrame,
    roster: &Roster,
    now: DateTime<Utc>,
    held_until: i64,
    cohort_id: &str,
) -> Result<Vec<TargetStatus>, QueryError> {
    if !roster.cohorts.iter().any(|c| c.cohort_id == cohort_id) {
        return Ok(Vec::new());
    }
    targets_of(frame, roster, now, held_until, Some(cohort_id))
}

/// Every target, or only `cohort_id`'s over its members.
fn targets_of(
    frame: &DataFrame,
    roster: &Roster,
    now: DateTime<Utc>,
    held_until: i64,
    cohort_id: Option<&str>,
) -> Result<Vec<TargetStatus>, QueryError> {
    let as_of = now.timestamp_micros();
    let total = At {
        as_of,
        until: as_of.max(held_until),
        from: None,
        activity_columns: false,
    };
    let recent = At {
        from: Some(as_of - PACE_DAYS * DAY_MICROS + 1),
        ..total
    };
    let today = day_of(now);
    let scopes: &[(Dimension, &str)] = match cohort_id {
        Some(_) => &[(Dimension::Cohort, "cohort")],
        None => &[(Dimension::Track, "track"), (Dimension::Cohort, "cohort")],
    };
    // One cohort's target is over its members: the frame filtered by its code.
    let code = cohort_id.and_then(|id| roster.cohorts.iter().position(|c| c.cohort_id == id));
    let lazy = || match code {
        Some(code) => frame
            .clone()
            .lazy()
            .filter(col(Dimension::Cohort.as_str()).eq(lit(code as u32))),
        None => frame.clone().lazy(),
    };
    let mut out = Vec::new();
    for &(dimension, scope) in scopes {
        let by = [dimension];
        let all = aggregate(lazy(), roster, &by, &[Metric::Trained], false, total)?;
        let last = aggregate(lazy(), roster, &by, &[Metric::Trained], false, recent)?;
        let ids: Vec<String> = match (dimension, cohort_id) {
            (Dimension::Track, _) => nigrani_domain::Track::ALL
                .iter()
                .map(|t| t.to_string())
                .collect(),
            (_, Some(id)) => vec![id.to_owned()],
            _ => roster.cohorts.iter().map(|c| c.cohort_id.clone()).collect(),
        };
        for id in ids {
            let subjects = |rows: &[crate::query::BreakdownRow]| {
                rows.iter()
                    .find(|r| r.keys.first().cloned().flatten().as_deref() == Some(id.as_str()))
                    .and_then(|r| r.subjects.metrics.first().copied())
                    .unwrap_or_default()
            };
            let subjects = TargetSubjects {
                attained: subjects(&all),
                recent: subjects(&last),
                today,
            };
            let attained = subjects.attained.count;
            let pace = subjects.recent.count as f64 / PACE_DAYS as f64;
            let (target, stretch, ends_on) = match dimension {
                Dimension::Track => {
                    let code = nigrani_domain::Track::ALL
                        .iter()
                        .position(|t| t.as_str() == id)
                        .unwrap_or(0);
                    (
                        roster.track_targets.get(code).copied().unwrap_or(0),
                        roster.track_stretch_targets.get(code).copied().flatten(),
                        None,
                    )
                }
                _ => {
                    let cohort = roster.cohorts.iter().find(|c| c.cohort_id == id);
                    (
                        cohort.map_or(0, |c| c.target),
                        None,
                        cohort.map(|c| c.ends_on),
                    )
                }
            };
            let projected_date = projection(attained, target, pace, today);
            out.push(TargetStatus {
                scope,
                attainment: (target > 0).then(|| attained as f64 / f64::from(target)),
                projected_stretch_date: stretch.and_then(|s| projection(attained, s, pace, today)),
                on_track: ends_on.map(|end| projected_date.is_some_and(|d| d <= end)),
                id,
                attained,
                target,
                stretch_target: stretch,
                pace_per_day: pace,
                projected_date,
                ends_on,
                subjects,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_follow_the_pace() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(projection(100, 100, 0.0, today), Some(today));
        assert_eq!(projection(90, 100, 0.0, today), None);
        assert_eq!(
            projection(90, 100, 2.0, today),
            Some(today + Duration::days(5))
        );
        assert_eq!(
            projection(90, 100, 3.0, today),
            Some(today + Duration::days(4))
        );
    }
}
