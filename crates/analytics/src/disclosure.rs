//! Disclosure control: what a partner may see of the figures, decided here for every answer.
//!
//! Partners (Meta, HEC) may ask any number of questions for years and combine the answers, so
//! hiding small cells per answer is not enough: subtracting two answers would give a hidden cell
//! back. Partner figures follow the cell key method instead:
//!
//! - **Counts.** Every count a partner sees — a row's learners, each count metric, each funnel
//!   stage, a target's attained learners and its last 14 days, every series point — is a cell of
//!   its own, published through the [`PerturbationTable`] from its true count and its cell key
//!   (the key of the set of learners it counts; see [`crate::record_key`]). The same set of
//!   learners gets the same answer in every query, whatever the query's shape; sets that differ
//!   by a few learners get unrelated noise. Totals and subtotals are cells too, so a partner's
//!   table need not add up, and the answer says so.
//! - **Rates** (completion, certification) are a perturbed numerator over the perturbed
//!   learners of the row, and are shown only when those are at least `min_base`.
//! - **Averages** (progress, score) are a sum with noise over the count of learners with a
//!   value, shown when that count's perturbed value is at least `min_base`. The sum's noise is
//!   a draw of the table's noise (keyed by the set, the metric and the exact sum; up to
//!   `max_noise`) times the most one learner can add (1: both lie in 0–1), so one learner's
//!   value is hidden in it however the averages are differenced.
//! - **Medians** of days to complete are whole days, shown over at least `min_base` completers.
//! - **Rows** whose perturbed learners are 0 are left out, as groups with no learners are; so
//!   are such groups' points (and target trajectories) in a split time series.
//! - **Filters.** A partner filters on one value per dimension (see
//!   [`Disclosure::check_filters`]).
//! - **Time.** A partner's explicit moments (`from`, `to`, `as_of`) are floored to the start of
//!   their day in Pakistan, so that windows cannot be moved by less than a day to find when one
//!   learner's event happened. "Now" stays now: the latest figures change as events arrive, and
//!   each change of a set of learners is a fresh draw of noise.
//!
//! Managers and admins see exact figures. Routes render figures only from a [`Shown`], which
//! only this module builds, so that no route can forget the partner view.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definitions::{Dimension, Metric};
use crate::funnel::{CompletionTimes, FunnelRow};
use crate::perturbation::{PerturbationSettings, PerturbationTable};
use crate::query::{Breakdown, BreakdownRow, RowSubjects, Subjects};
use crate::series::Series;
use crate::targets::TargetStatus;

/// The start of the day in Pakistan that `at` falls on.
fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(crate::period::day_start_micros(crate::period::day_of(at)))
        .unwrap_or(at)
}

/// The key of the noise on a sum of values: the set's key, the metric and the sum itself.
///
/// The same set with the same sum always gets the same noise, so repeating a question gains
/// nothing. Were the noise keyed by the set alone, two polls of the same learners a day apart
/// would share it and their difference would be the exact change of the sum (one learner's
/// progress, say); and two metrics over one set would share it too. The sum is taken to
/// 1/1,000 of a learner's range, finer than any value one learner's change could hide under.
fn magnitude_key(set_key: u32, metric: Metric, sum: f64) -> u32 {
    let quantised = (sum * 1_000.0).round() as u64;
    let sum_bits = (quantised ^ (quantised >> 32)) as u32;
    let metric_bits = (metric as u32 + 1).wrapping_mul(0x9e37_79b9);
    set_key ^ metric_bits ^ sum_bits.wrapping_mul(0x85eb_ca6b)
}

/// The disclosure settings (`disclosure.*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureSettings {
    /// No count from 1 to `k − 1` is published.
    pub k: u32,
    /// The most a published count differs from the truth.
    pub max_noise: u32,
    /// The width of the noise (its standard deviation before tilting small counts).
    pub spread: f64,
    /// Rates, averages and medians are shown over at least this many (perturbed) learners.
    pub min_base: u64,
}

impl Default for DisclosureSettings {
    fn default() -> Self {
        let table = PerturbationSettings::default();
        Self {
            k: table.k,
            max_noise: table.max_noise,
            spread: table.spread,
            min_base: 25,
        }
    }
}

/// Who an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Managers and admins: exact figures.
    Exact,
    /// Partner keys: the figures of this module.
    Partner,
}

/// An answer as its audience may see it. Only [`Disclosure`] builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown<T> {
    value: T,
    audience: Audience,
}

impl<T> Shown<T> {
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Whether the figures were perturbed (a partner's view).
    pub fn perturbed(&self) -> bool {
        self.audience == Audience::Partner
    }
}

/// What an answer to a partner says of its figures.
pub const PARTNER_NOTE: &str = "Counts are perturbed by the cell key method (the same learners \
    always give the same count; no count from 1 to k-1 is shown), so rows need not add up to \
    their totals. Rates, averages and medians over fewer than min_base learners are null.";

/// The disclosure policy.
#[derive(Debug, Clone)]
pub struct Disclosure {
    table: PerturbationTable,
    min_base: u64,
}

impl Disclosure {
    /// The policy of these settings; an error says which one is out of range.
    pub fn new(settings: DisclosureSettings) -> Result<Self, String> {
        let table = PerturbationTable::new(PerturbationSettings {
            k: settings.k,
            max_noise: settings.max_noise,
            spread: settings.spread,
        })?;
        if settings.min_base < u64::from(settings.k) {
            return Err(format!(
                "`min_base` must be at least `k` ({}), not {}",
                settings.k, settings.min_base
            ));
        }
        Ok(Self {
            table,
            min_base: settings.min_base,
        })
    }

    pub fn settings(&self) -> DisclosureSettings {
        let table = self.table.settings();
        DisclosureSettings {
            k: table.k,
            max_noise: table.max_noise,
            spread: table.spread,
            min_base: self.min_base,
        }
    }

    pub fn table(&self) -> &PerturbationTable {
        &self.table
    }

    /// A start (`from`) a partner named, as it is answered: floored to the start of its day in
    /// Pakistan. Others' moments stay as they are.
    pub fn start(&self, audience: Audience, at: DateTime<Utc>) -> DateTime<Utc> {
        match audience {
            Audience::Exact => at,
            Audience::Partner => day_start(at),
        }
    }

    /// An end (`to`, `as_of`) a partner named, as it is answered: floored to the end of the
    /// last day in Pakistan that ended by then (a date's end stays as it is).
    pub fn end(&self, audience: Audience, at: DateTime<Utc>) -> DateTime<Utc> {
        match audience {
            Audience::Exact => at,
            Audience::Partner => {
                let just_after = at + chrono::Duration::microseconds(1);
                day_start(just_after) - chrono::Duration::microseconds(1)
            }
        }
    }

    /// Checks a partner's filters: one value per dimension. Unions of values would let an
    /// attacker build any number of sets that differ by the same learner, and average the noise
    /// of their differences away; with one value per dimension the cells a partner can ask for
    /// are the classification's own (as in a statistics office's table builder).
    pub fn check_filters(
        &self,
        audience: Audience,
        filters: &BTreeMap<Dimension, Vec<String>>,
    ) -> Result<(), String> {
        if audience == Audience::Exact {
            return Ok(());
        }
        match filters.iter().find(|(_, values)| values.len() > 1) {
            Some((dimension, _)) => Err(format!(
                "partner keys filter on one value per dimension; `{}` lists several (ask a \
                 breakdown by `{}` instead)",
                dimension.as_str(),
                dimension.as_str()
            )),
            None => Ok(()),
        }
    }

    /// The published count of a set of learners.
    pub fn count(&self, subjects: Subjects) -> u64 {
        self.table.perturb(subjects.count, subjects.key)
    }

    /// A breakdown as the audience may see it.
    pub fn breakdown(&self, audience: Audience, mut answer: Breakdown) -> Shown<Breakdown> {
        if audience == Audience::Partner {
            let metrics = answer.metrics.clone();
            answer.rows = answer
                .rows
                .into_iter()
                .filter_map(|row| self.partner_row(&metrics, row))
                .collect();
        }
        Shown {
            value: answer,
            audience,
        }
    }

    /// A partner's row, or none when its perturbed learners are 0 (the total row stays).
    fn partner_row(&self, metrics: &[Metric], row: BreakdownRow) -> Option<BreakdownRow> {
        let learners = self.count(row.subjects.learners);
        if learners == 0 && row.keys.iter().any(Option::is_some) {
            return None;
        }
        let values = metrics
            .iter()
            .zip(&row.values)
            .zip(&row.subjects.metrics)
            .map(|((metric, value), subjects)| {
                self.partner_value(*metric, *value, learners, *subjects)
            })
            .collect();
        Some(BreakdownRow {
            learners,
            values,
            subjects: RowSubjects::default(),
            ..row
        })
    }

    /// A partner's value of one metric, over a row of `learners` (perturbed) learners.
    fn partner_value(
        &self,
        metric: Metric,
        exact: Option<f64>,
        learners: u64,
        subjects: Subjects,
    ) -> Option<f64> {
        match metric {
            Metric::CompletionRate | Metric::CertificationRate => {
                exact?;
                (learners >= self.min_base)
                    .then(|| (self.count(subjects) as f64 / learners as f64).min(1.0))
            }
            Metric::AvgProgress | Metric::AvgScore => {
                let exact = exact?;
                let base = self.count(subjects);
                if base < self.min_base {
                    return None;
                }
                // The most one learner adds to the sum: both lie in 0–1.
                const UNIT: f64 = 1.0;
                // Over the true count, so that the average is the truth on average; the noise
                // of the sum is what hides each learner's value.
                let count = subjects.count.max(1) as f64;
                let sum = exact * count;
                let noise = self.table.noise(magnitude_key(subjects.key, metric, sum)) as f64;
                Some(((sum + noise * UNIT) / count).clamp(0.0, UNIT))
            }
            Metric::MedianDaysToComplete => {
                let exact = exact?;
                (self.count(subjects) >= self.min_base).then(|| exact.round())
            }
            _ => exact.map(|_| self.count(subjects) as f64),
        }
    }

    /// A time series as the audience may see it: each point a row of one metric.
    pub fn series(&self, audience: Audience, mut series: Series) -> Shown<Series> {
        if audience == Audience::Partner {
            for point in &mut series.points {
                let subjects = std::mem::take(&mut point.subjects);
                let values = std::mem::take(&mut point.values);
                // As a breakdown's rows: a group whose perturbed learners are 0 is left out, so
                // that a key's presence does not tell a small group from none (the program's
                // own series, without a split, stays).
                for (key, value) in values {
                    let row = subjects.get(&key).cloned().unwrap_or_default();
                    let learners = self.count(row.learners);
                    if learners == 0 && key != crate::series::ALL {
                        continue;
                    }
                    let shown = row.metrics.first().and_then(|metric_subjects| {
                        self.partner_value(series.metric, value, learners, *metric_subjects)
                    });
                    point.values.insert(key, shown);
                }
                point
                    .targets
                    .retain(|key, _| point.values.contains_key(key));
            }
        }
        Shown {
            value: series,
            audience,
        }
    }

    /// The funnel as the audience may see it: every stage a cell; times to completion in whole
    /// days over at least `min_base` completers.
    pub fn funnel(&self, audience: Audience, mut rows: Vec<FunnelRow>) -> Shown<Vec<FunnelRow>> {
        if audience == Audience::Partner {
            rows = rows
                .into_iter()
                .filter_map(|row| {
                    let [enrolled, started, half_way, completed, certified] =
                        row.subjects.map(|s| self.count(s));
                    if enrolled == 0 && row.keys.iter().any(Option::is_some) {
                        return None;
                    }
                    let times = &row.days_to_complete;
                    let whole = |v: Option<f64>| v.map(f64::round);
                    let days_to_complete = if completed >= self.min_base {
                        CompletionTimes {
                            median: whole(times.median),
                            p75: whole(times.p75),
                            p90: whole(times.p90),
                        }
                    } else {
                        CompletionTimes {
                            median: None,
                            p75: None,
                            p90: None,
                        }
                    };
                    Some(FunnelRow {
                        enrolled,
                        started,
                        half_way,
                        completed,
                        certified,
                        days_to_complete,
                        subjects: Default::default(),
                        keys: row.keys,
                    })
                })
                .collect();
        }
        Shown {
            value: rows,
            audience,
        }
    }

    /// Targets as the audience may see them: attained and the last 14 days' trained learners are
    /// cells; attainment, pace and projections follow from them.
    pub fn targets(
        &self,
        audience: Audience,
        targets: Vec<TargetStatus>,
    ) -> Shown<Vec<TargetStatus>> {
        let value = match audience {
            Audience::Exact => targets,
            Audience::Partner => targets
                .iter()
                .map(|t| {
                    let mut shown = t.recounted(
                        self.count(t.subjects.attained),
                        self.count(t.subjects.recent),
                    );
                    shown.subjects = Default::default();
                    shown
                })
                .collect(),
        };
        Shown { value, audience }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> Disclosure {
        Disclosure::new(DisclosureSettings::default()).unwrap()
    }

    const METRICS: [Metric; 5] = [
        Metric::Enrolled,
        Metric::Completed,
        Metric::CompletionRate,
        Metric::AvgProgress,
        Metric::MedianDaysToComplete,
    ];

    /// A row of `learners` learners (key `key`), `completed` of them completed (key
    /// `completed_key`), with the values those give.
    fn row(learners: u64, key: u32, completed: u64, completed_key: u32) -> BreakdownRow {
        let everyone = Subjects {
            count: learners,
            key,
        };
        let completers = Subjects {
            count: completed,
            key: completed_key,
        };
        let over = |n: u64, v: f64| (n > 0).then_some(v);
        BreakdownRow {
            period: None,
            keys: vec![Some("a".into())],
            learners,
            values: vec![
                Some(learners as f64),
                Some(completed as f64),
                over(learners, completed as f64 / learners.max(1) as f64),
                over(learners, 0.5),
                over(completed, 20.4),
            ],
            subjects: RowSubjects {
                learners: everyone,
                metrics: vec![everyone, completers, completers, everyone, completers],
            },
        }
    }

    fn shown(rows: Vec<BreakdownRow>) -> Vec<BreakdownRow> {
        let answer = Breakdown {
            period: None,
            by: vec![Dimension::Province],
            metrics: METRICS.to_vec(),
            rows,
        };
        policy()
            .breakdown(Audience::Partner, answer)
            .value()
            .rows
            .clone()
    }

    proptest! {
        #[test]
        fn partner_rows_publish_no_small_count_and_no_rate_over_a_small_base(
            learners in 0u64..200, share in 0.0f64..=1.0, key in any::<u32>(), other in any::<u32>()
        ) {
            let completed = (learners as f64 * share) as u64;
            for published in shown(vec![row(learners, key, completed, other)]) {
                prop_assert!(published.learners == 0 || published.learners >= 5);
                prop_assert!(published.learners > 0, "rows with no learners are left out");
                prop_assert!(published.learners.abs_diff(learners) <= 5);
                for count in [published.values[0], published.values[1]] {
                    let count = count.unwrap();
                    prop_assert!(count == 0.0 || count >= 5.0, "{count}");
                }
                prop_assert_eq!(published.values[0], Some(published.learners as f64),
                    "enrolled and learners are the same cell");
                if published.learners < 25 {
                    prop_assert_eq!(published.values[2], None);
                    prop_assert_eq!(published.values[3], None);
                }
                if let Some(rate) = published.values[2] {
                    prop_assert!((0.0..=1.0).contains(&rate));
                    let base = published.learners as f64;
                    prop_assert!((rate * base - published.values[1].unwrap()).abs() < 1e-6
                        || rate == 1.0, "rate × learners is the perturbed count");
                }
                if let Some(median) = published.values[4] {
                    prop_assert_eq!(median, 20.0, "whole days");
                }
                prop_assert_eq!(published.subjects.clone(), RowSubjects::default(),
                    "nothing of the keys leaves");
            }
        }

        #[test]
        fn the_same_learners_get_the_same_figures(
            learners in 1u64..500, key in any::<u32>(), other in any::<u32>()
        ) {
            let a = shown(vec![row(learners, key, learners / 2, other)]);
            let b = shown(vec![row(learners, key, learners / 2, other)]);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_series_leaves_out_groups_with_no_learners_once_perturbed() {
        let policy = policy();
        // A key whose one learner is published as 0, and one published from k on.
        let key_with = |zero: bool| {
            (0u32..)
                .find(|k| (policy.count(Subjects { count: 1, key: *k }) == 0) == zero)
                .unwrap()
        };
        let one = |key: u32| RowSubjects {
            learners: Subjects { count: 1, key },
            metrics: vec![Subjects { count: 1, key }],
        };
        let point = crate::series::SeriesPoint {
            period: "2026-11".into(),
            starts_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            values: [("a".to_owned(), Some(1.0)), ("b".to_owned(), Some(1.0))].into(),
            targets: [("a".to_owned(), 3.0), ("b".to_owned(), 3.0)].into(),
            subjects: [
                ("a".to_owned(), one(key_with(true))),
                ("b".to_owned(), one(key_with(false))),
            ]
            .into(),
        };
        let series = Series {
            metric: Metric::Enrolled,
            interval: crate::period::Interval::Month,
            cumulative: true,
            split: Some(Dimension::Cohort),
            points: vec![point],
        };
        let shown = policy.series(Audience::Partner, series);
        let point = &shown.value().points[0];
        assert_eq!(point.values.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(point.targets.keys().collect::<Vec<_>>(), ["b"]);
        assert!(point.values["b"].unwrap() >= 5.0);
    }

    #[test]
    fn managers_see_exact_figures() {
        let exact = Breakdown {
            period: None,
            by: vec![Dimension::Province],
            metrics: METRICS.to_vec(),
            rows: vec![row(3, 7, 1, 9)],
        };
        let shown = policy().breakdown(Audience::Exact, exact.clone());
        assert_eq!(shown.value(), &exact);
        assert!(!shown.perturbed());
    }

    #[test]
    fn partners_filter_on_one_value_per_dimension() {
        let one: BTreeMap<_, _> = [(Dimension::Gender, vec!["female".to_owned()])].into();
        let two: BTreeMap<_, _> = [(
            Dimension::Gender,
            vec!["female".to_owned(), "male".to_owned()],
        )]
        .into();
        assert!(policy().check_filters(Audience::Partner, &one).is_ok());
        assert!(policy().check_filters(Audience::Exact, &two).is_ok());
        let refused = policy().check_filters(Audience::Partner, &two).unwrap_err();
        assert!(refused.contains("`gender`"), "{refused}");
    }

    #[test]
    fn averages_carry_noise_of_one_learner() {
        // Over many keys, the average of 30 learners moves by up to max_noise / 30: the most
        // max_noise learners' full range could move it.
        let policy = policy();
        let mut moved = 0;
        for key in 0..2_000u32 {
            let value = policy
                .partner_value(
                    Metric::AvgProgress,
                    Some(0.5),
                    30,
                    Subjects {
                        count: 30,
                        key: key.wrapping_mul(2_654_435_761),
                    },
                )
                .unwrap();
            assert!((value - 0.5).abs() <= 5.0 / 30.0 + 1e-9, "{value}");
            moved += usize::from((value - 0.5).abs() > 1e-9);
        }
        assert!(moved > 1_500, "{moved}");
    }

    #[test]
    fn average_noise_is_fresh_when_the_sum_or_the_metric_changes() {
        // One learner's progress moving by 0.1 must not come out exactly in the difference of
        // two polls of the same learners, nor may two metrics over one set share their noise.
        let policy = policy();
        let (mut same_noise_polls, mut same_noise_metrics) = (0, 0);
        let trials = 1_000u32;
        for key in 0..trials {
            let set = Subjects {
                count: 40,
                key: key.wrapping_mul(2_654_435_761),
            };
            let before = policy.partner_value(Metric::AvgProgress, Some(0.5), 40, set);
            let after = policy.partner_value(Metric::AvgProgress, Some(0.5 + 0.1 / 40.0), 40, set);
            let exact_change = 0.1 / 40.0;
            let published_change = after.unwrap() - before.unwrap();
            same_noise_polls += usize::from((published_change - exact_change).abs() < 1e-9);
            let score = policy.partner_value(Metric::AvgScore, Some(0.5), 40, set);
            same_noise_metrics += usize::from((score.unwrap() - before.unwrap()).abs() < 1e-9);
            // The same question, the same answer.
            assert_eq!(
                before,
                policy.partner_value(Metric::AvgProgress, Some(0.5), 40, set)
            );
        }
        // The table's noise is 0 with some probability, so some pairs agree by chance; were
        // the noise shared, all of them would.
        assert!(same_noise_polls < 400, "{same_noise_polls} of {trials}");
        assert!(same_noise_metrics < 400, "{same_noise_metrics} of {trials}");
    }

    #[test]
    fn partner_moments_are_whole_days_in_pakistan() {
        let policy = Disclosure::new(DisclosureSettings::default()).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        // 13:00 in Pakistan on 15 July.
        let moment = at("2026-07-15T08:00:00Z");
        assert_eq!(policy.start(Audience::Exact, moment), moment);
        assert_eq!(policy.end(Audience::Exact, moment), moment);
        assert_eq!(
            policy.start(Audience::Partner, moment),
            at("2026-07-14T19:00:00Z")
        );
        assert_eq!(
            policy.end(Audience::Partner, moment),
            at("2026-07-14T18:59:59.999999Z")
        );
        let end_of_day = at("2026-07-15T18:59:59.999999Z");
        assert_eq!(policy.end(Audience::Partner, end_of_day), end_of_day);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Disclosure::new(DisclosureSettings::default()).is_ok());
        let low_base = DisclosureSettings {
            min_base: 3,
            ..Default::default()
        };
        assert!(Disclosure::new(low_base).unwrap_err().contains("min_base"));
        let bad_k = DisclosureSettings {
            k: 1,
            ..Default::default()
        };
        assert!(Disclosure::new(bad_k).unwrap_err().contains("`k`"));
    }
}
