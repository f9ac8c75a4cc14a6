//! The program's metrics and dimensions: their names and what they mean, in one place. The
//! correctness test (`tests/analytics_vs_sql.rs`) restates each definition in SQL over the raw
//! events; the two must agree exactly.
//!
//! Every metric is computed per learner *as of* a moment `T`, then aggregated. `T` is the moment
//! asked (`as_of`/`to`), and by default *now* — the same now on every route. Only events with
//! `occurred_at ≤ T` count: an event a platform dated after `T` (ingest accepts up to a day
//! ahead) counts once `T` reaches its date, on every route alike, and with nothing further
//! arriving (the live state holds such events back until their time; see [`crate::engine`]).
//! A moment asked that lies after now has no figures yet and is answered as of now, so no
//! event ever counts before its date.
//! A learner counts when they are on the roster; events of learners the roster does not know
//! yet count once it learns them. Until then they are *unmatched* activity, a figure of its own
//! per source (the store's [`nigrani_store::Store::unmatched_by_source`], shown by
//! `GET /api/v1/status`), never part of these metrics.
//!
//! **Learning events** are all kinds but `enrolled` and `withdrawn` (see [`is_learning`]):
//! `started`, `progressed`, `module_completed`, `assessment_passed`, `assessment_failed`,
//! `course_completed`, `certificate_earned`, `session_attended`.
//!
//! Per learner, as of `T`:
//! - **enrolled**: on the roster and enrolled by `T`. The enrolment moment is the learner's
//!   first `enrolled` event if there is one (whether before or after the cohort's start),
//!   otherwise the start of their cohort's first day (`starts_on`, 00:00 in Pakistan); but if
//!   their first learning event came earlier than that, it is that event (nobody learns before
//!   enrolling). A learner enrolled after `T` — a cohort that had not started, an enrolment
//!   dated later — is in no figure as of `T`: every metric below is over the learners enrolled
//!   by `T`, and so is each row's `learners`.
//! - **started**: has a learning event (any of the kinds above — a `started` event with or
//!   without progress, progress, a completion, a session attended, …); the start is the first.
//! - **active_7d / active_30d**: has a learning event with `occurred_at` in `(T − 7 days, T]`
//!   (resp. 30 days). Enrolling or withdrawing does not make anyone active.
//! - **completed**: has a `course_completed` for every required course of their track; the
//!   completion time is the latest of those (each course's first completion).
//! - **certified**: has a `certificate_earned`.
//! - **trained**: completed (soft track) or certified (hard track) — what each track's target
//!   counts.
//! - **withdrawn**: has a `withdrawn` event and is not completed.
//! - **inactive**: started, not completed, not withdrawn, and no learning event in
//!   `(T − 14 days, T]`.
//! - **progress**: the mean over the track's required courses of the course's progress — the
//!   highest `progress` any event reported for it, 1 once completed, 0 when nothing was reported.
//! - **score**: the best `score` of any event; none when no event had one.
//! - **days_to_complete**: from the learner's first event of any kind (usually the `enrolled`
//!   event) to completion, in days.
//!
//! With `from`, the milestones — started, completed, certified, trained, withdrawn — count only
//! when they happened in `[from, T]`; stocks (enrolled, active, inactive, progress, score) are as
//! of `T` regardless. A breakdown by period evaluates each period as of its end (the last one as
//! of `T`) with `from` at its start.
//!
//! Aggregated over a group of learners (those enrolled by `T`):
//! counts (`enrolled` … `withdrawn`), `completion_rate` = completed / enrolled,
//! `certification_rate` = certified / enrolled, `avg_progress` (mean over learners),
//! `avg_score` (mean over learners with a score), `median_days_to_complete` (over the completers
//! the same row's `completed` counts: with `from`, those who completed in `[from, T]`). A group
//! with no learner enrolled by `T` is not a row (the total row always is).

use nigrani_domain::EventKind;
use serde::{Deserialize, Serialize};

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// Days without activity after which a started learner counts as inactive.
pub const INACTIVE_AFTER_DAYS: i64 = 14;

/// Whether an event of this kind is *learning activity*: every kind but `enrolled` and
/// `withdrawn`. Signing up and leaving are not learning, so neither makes a learner active or
/// started.
pub fn is_learning(kind: EventKind) -> bool {
    !matches!(kind, EventKind::Enrolled | EventKind::Withdrawn)
}

/// Something a breakdown can group or filter learners by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Province,
    Institution,
    Sector,
    Discipline,
    Track,
    Cohort,
    Gender,
    Role,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: &'static [Dimension] = &[
        Dimension::Province,
        Dimension::Institution,
        Dimension::Sector,
        Dimension::Discipline,
        Dimension::Track,
        Dimension::Cohort,
        Dimension::Gender,
        Dimension::Role,
    ];

    /// The wire name, also the column name in frames and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Province => "province",
            Dimension::Institution => "institution",
            Dimension::Sector => "sector",
            Dimension::Discipline => "discipline",
            Dimension::Track => "track",
            Dimension::Cohort => "cohort",
            Dimension::Gender => "gender",
            Dimension::Role => "role",
        }
    }
}

impl std::str::FromStr for Dimension {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown dimension `{value}`; expected one of: {}",
                    names(Dimension::ALL.iter().map(|d| d.as_str()))
                )
            })
    }
}

/// A figure a breakdown can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Enrolled,
    Started,
    #[serde(rename = "active_7d")]
    Active7d,
    #[serde(rename = "active_30d")]
    Active30d,
    Inactive,
    Completed,
    Certified,
    Trained,
    Withdrawn,
    CompletionRate,
    CertificationRate,
    AvgProgress,
    AvgScore,
    MedianDaysToComplete,
}

/// How a metric aggregates, which decides how small cells are suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A count of learners.
    Count,
    /// A rate or average over the group's learners.
    Ratio,
}

impl Metric {
    /// Every metric.
    pub const ALL: &'static [Metric] = &[
        Metric::Enrolled,
        Metric::Started,
        Metric::Active7d,
        Metric::Active30d,
        Metric::Inactive,
        Metric::Completed,
        Metric::Certified,
        Metric::Trained,
        Metric::Withdrawn,
        Metric::CompletionRate,
        Metric::CertificationRate,
        Metric::AvgProgress,
        Metric::AvgScore,
        Metric::MedianDaysToComplete,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Enrolled => "enrolled",
            Metric::Started => "started",
            Metric::Active7d => "active_7d",
            Metric::Active30d => "active_30d",
            Metric::Inactive => "inactive",
            Metric::Completed => "completed",
            Metric::Certified => "certified",
            Metric::Trained => "trained",
            Metric::Withdrawn => "withdrawn",
            Metric::CompletionRate => "completion_rate",
            Metric::CertificationRate => "certification_rate",
            Metric::AvgProgress => "avg_progress",
            Metric::AvgScore => "avg_score",
            Metric::MedianDaysToComplete => "median_days_to_complete",
        }
    }

    /// The label shown to people, in English.
    pub fn label_en(self) -> &'static str {
        match self {
            Metric::Enrolled => "Enrolled",
            Metric::Started => "Started",
            Metric::Active7d => "Active in the last 7 days",
            Metric::Active30d => "Active in the last 30 days",
            Metric::Inactive => "Inactive",
            Metric::Completed => "Completed",
            Metric::Certified => "Certified",
            Metric::Trained => "Trained",
            Metric::Withdrawn => "Withdrawn",
            Metric::CompletionRate => "Completion rate",
            Metric::CertificationRate => "Certification rate",
            Metric::AvgProgress => "Average progress",
            Metric::AvgScore => "Average score",
            Metric::MedianDaysToComplete => "Median days to complete",
        }
    }

    /// The label shown to people, in Urdu.
    pub fn label_ur(self) -> &'static str {
        match self {
            Metric::Enrolled => "داخل شدہ",
            Metric::Started => "آغاز کرنے والے",
            Metric::Active7d => "گزشتہ 7 دنوں میں فعال",
            Metric::Active30d => "گزشتہ 30 دنوں میں فعال",
            Metric::Inactive => "غیر فعال",
            Metric::Completed => "مکمل کرنے والے",
            Metric::Certified => "سند یافتہ",
            Metric::Trained => "تربیت یافتہ",
            Metric::Withdrawn => "دستبردار",
            Metric::CompletionRate => "تکمیل کی شرح",
            Metric::CertificationRate => "سند کی شرح",
            Metric::AvgProgress => "اوسط پیش رفت",
            Metric::AvgScore => "اوسط اسکور",
            Metric::MedianDaysToComplete => "تکمیل کے درمیانی دن",
        }
    }

    /// Count or ratio.
    pub fn kind(self) -> MetricKind {
        match self {
            Metric::CompletionRate
            | Metric::CertificationRate
            | Metric::AvgProgress
            | Metric::AvgScore
            | Metric::MedianDaysToComplete => MetricKind::Ratio,
            _ => MetricKind::Count,
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown metric `{value}`; expected one of: {}",
                    names(Metric::ALL.iter().map(|m| m.as_str()))
                )
            })
    }
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_explained() {
        for metric in Metric::ALL {
            assert_eq!(metric.as_str().parse::<Metric>(), Ok(*metric));
            assert_eq!(serde_json::to_value(metric).unwrap(), metric.as_str());
        }
        for dimension in Dimension::ALL {
            assert_eq!(dimension.as_str().parse::<Dimension>(), Ok(*dimension));
        }
        let err = "completions".parse::<Metric>().unwrap_err();
        assert!(err.contains("completed"), "{err}");
    }
}
