//! An attacker with a partner's view of a demo program with many small groups.
//!
//! Each family of attack builds linear identities over partner answers — sums of subgroups,
//! totals, filters, windows and moments a day apart, cumulative against daily series, rate ×
//! base, funnel marginals, the pace, a cohort before and after its upload — to pin counts whose
//! truth is 1 to k − 1, and single learners' facts. For each family the test counts how often
//! the identity gives the exact truth, and compares it with how often it would by chance from
//! the perturbation table alone (the same identity over cells drawn independently from the
//! table's rows): the attacker must do no better than that. Every partner answer collected is
//! also checked for counts from 1 to k − 1.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use nigrani_analytics::disclosure::{Audience, Disclosure, DisclosureSettings};
use nigrani_analytics::funnel::FunnelQuery;
use nigrani_analytics::period::Interval;
use nigrani_analytics::series::SeriesQuery;
use nigrani_analytics::{Breakdown, BreakdownQuery, Clock, Dimension, Engine, Metric};
use nigrani_domain::{Cohort, Learner, LearnerRef, Role, Track};
use nigrani_ingest::demo;
use nigrani_ingest::roster::{self, Rows};
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::Store;

mod support;

const K: u64 = 5;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// One identity tried: its estimate, the truth, and the cells it used (coefficient, true count).
struct Trial {
    estimate: i64,
    truth: i64,
    terms: Vec<(i64, u64)>,
}

/// What an attack family achieved.
#[derive(Default)]
struct Family {
    trials: Vec<Trial>,
}

impl Family {
    fn try_identity(&mut self, published: &[(i64, u64)], truth_terms: &[(i64, u64)], truth: i64) {
        let estimate = published.iter().map(|(c, v)| c * *v as i64).sum();
        self.trials.push(Trial {
            estimate,
            truth,
            terms: truth_terms.to_vec(),
        });
    }

    /// Checks the hits against chance from the table and prints both.
    fn assert_no_better_than_chance(&self, name: &str, policy: &Disclosure) {
        if self.trials.is_empty() {
            // The demo had no small group of this kind among the days sampled.
            println!("{name}: no identity with a small truth among those sampled");
            return;
        }
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next_key = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u32
        };
        let (mut hits, mut expected, mut variance) = (0usize, 0.0, 0.0);
        for trial in &self.trials {
            hits += usize::from(trial.estimate == trial.truth);
            const DRAWS: usize = 300;
            let chance = (0..DRAWS)
                .filter(|_| {
                    let estimate: i64 = trial
                        .terms
                        .iter()
                        .map(|(c, n)| c * policy.table().perturb(*n, next_key()) as i64)
                        .sum();
                    estimate == trial.truth
                })
                .count() as f64
                / DRAWS as f64;
            expected += chance;
            variance += chance * (1.0 - chance);
        }
        let n = self.trials.len();
        println!(
            "{name}: {hits} of {n} identities gave the exact truth; chance from the table \
             {expected:.1}"
        );
        assert!(
            hits as f64 <= expected + 3.0 * variance.sqrt() + 2.0,
            "{name}: {hits} of {n} exact, against {expected:.1} by chance"
        );
        assert!(
            (hits as f64) < 0.6 * n as f64 + 2.0,
            "{name}: {hits} of {n} pinned"
        );
    }
}

struct World {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    policy: Disclosure,
    /// Every count a partner answer held.
    seen: std::sync::Mutex<Vec<u64>>,
    _dir: tempfile::TempDir,
}

fn query(
    by: &[Dimension],
    filters: &[(Dimension, &str)],
    metrics: &[Metric],
    totals: bool,
) -> BreakdownQuery {
    BreakdownQuery {
        by: by.to_vec(),
        filters: filters
            .iter()
            .map(|(d, v)| (*d, vec![(*v).to_owned()]))
            .collect(),
        metrics: metrics.to_vec(),
        from: None,
        as_of: now(),
        totals,
        period: None,
        latest: true,
    }
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (store, events) = support::demo_store(dir.path(), 1_500, 42, now()).await;
        let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
        demo::ingest_events(&ingestor, &events, 5_000)
            .await
            .unwrap();
        let engine = Engine::start_with(
            Arc::clone(&store),
            nigrani_analytics::EngineOptions {
                clock: Clock::from_fn(now),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        World {
            engine,
            store,
            policy: Disclosure::new(DisclosureSettings::default()).unwrap(),
            seen: Default::default(),
            _dir: dir,
        }
    }

    async fn exact(&self, q: &BreakdownQuery) -> Breakdown {
        self.engine.breakdown(q).await.unwrap()
    }

    async fn partner(&self, q: &BreakdownQuery) -> Breakdown {
        let shown = self
            .policy
            .breakdown(Audience::Partner, self.exact(q).await);
        let answer = shown.value().clone();
        let mut seen = self.seen.lock().unwrap();
        for row in &answer.rows {
            seen.push(row.learners);
            for (m, v) in answer.metrics.iter().zip(&row.values) {
                if m.kind() == nigrani_analytics::definitions::MetricKind::Count {
                    seen.extend(v.map(|v| v as u64));
                }
            }
        }
        answer
    }
}

/// A row's value of metric `i` (0 for a row not there: the attacker reads a missing group as
/// none); `learners` for `None`.
fn value(answer: &Breakdown, keys: &[Option<&str>], metric: Option<usize>) -> u64 {
    answer
        .rows
        .iter()
        .find(|r| {
            r.keys.len() == keys.len() && r.keys.iter().zip(keys).all(|(a, b)| a.as_deref() == *b)
        })
        .map_or(0, |r| match metric {
            None => r.learners,
            Some(i) => r.values[i].unwrap_or(0.0) as u64,
        })
}

const GENDERS: [&str; 4] = ["female", "male", "other", "unknown"];

/// Institutions with a gender group of 1 to k − 1 learners, and those groups.
async fn small_groups(world: &World) -> Vec<(String, &'static str, u64)> {
    let all = world
        .exact(&query(
            &[Dimension::Institution, Dimension::Gender],
            &[],
            &[Metric::Enrolled],
            false,
        ))
        .await;
    let mut out = Vec::new();
    for row in &all.rows {
        let (Some(institution), Some(gender)) = (&row.keys[0], &row.keys[1]) else {
            continue;
        };
        if (1..K).contains(&row.learners) {
            let gender = GENDERS.iter().find(|g| **g == gender).unwrap();
            out.push((institution.clone(), *gender, row.learners));
        }
    }
    out.truncate(60);
    out
}

/// A group's count as (a published whole) − (the published rest), where `whole` and `parts`
/// are the answers holding them.
fn differencing(
    family: &mut Family,
    whole: (&Breakdown, &Breakdown, &[Option<&str>], Option<usize>),
    parts: (
        &Breakdown,
        &Breakdown,
        Vec<Vec<Option<&str>>>,
        Option<usize>,
    ),
    truth: u64,
) {
    let (whole_p, whole_x, whole_keys, metric) = whole;
    let (parts_p, parts_x, part_keys, part_metric) = parts;
    let mut published = vec![(1, value(whole_p, whole_keys, metric))];
    let mut truths = vec![(1, value(whole_x, whole_keys, metric))];
    for keys in &part_keys {
        published.push((-1, value(parts_p, keys, part_metric)));
        truths.push((-1, value(parts_x, keys, part_metric)));
    }
    family.try_identity(&published, &truths, truth as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_does_no_better_than_the_perturbation_table_allows() {
    let world = World::new().await;
    let policy = &world.policy;
    let targets = small_groups(&world).await;
    assert!(
        targets.len() >= 20,
        "the demo has small groups: {}",
        targets.len()
    );

    let mut marginals = Family::default();
    let mut totals = Family::default();
    let mut dimensions = Family::default();
    let mut complements = Family::default();
    let mut rate_times_base = Family::default();
    let mut funnel = Family::default();
    let by_institution = query(&[Dimension::Institution], &[], &[Metric::Enrolled], false);
    let by_both = query(
        &[Dimension::Institution, Dimension::Gender],
        &[],
        &[Metric::Enrolled],
        false,
    );
    let (inst_p, inst_x) = (
        world.partner(&by_institution).await,
        world.exact(&by_institution).await,
    );
    let (both_p, both_x) = (world.partner(&by_both).await, world.exact(&by_both).await);
    for (institution, gender, truth) in &targets {
        let i = Some(institution.as_str());
        let others = || -> Vec<Vec<Option<&str>>> {
            GENDERS
                .iter()
                .filter(|g| *g != gender)
                .map(|g| vec![i, Some(*g)])
                .collect()
        };
        // Marginals from another query: by=institution against by=institution,gender, both
        // filtered to the institution.
        let filter = [(Dimension::Institution, institution.as_str())];
        let whole_q = query(
            &[Dimension::Institution],
            &filter,
            &[Metric::Enrolled],
            false,
        );
        let parts_q = query(
            &[Dimension::Institution, Dimension::Gender],
            &filter,
            &[Metric::Enrolled],
            false,
        );
        let (wp, wx) = (world.partner(&whole_q).await, world.exact(&whole_q).await);
        let (pp, px) = (world.partner(&parts_q).await, world.exact(&parts_q).await);
        differencing(
            &mut marginals,
            (&wp, &wx, &[i], None),
            (&pp, &px, others(), None),
            *truth,
        );
        // The subtotal of the same answer, with totals=true.
        let with_totals = query(
            &[Dimension::Institution, Dimension::Gender],
            &filter,
            &[Metric::Enrolled],
            true,
        );
        let (tp, tx) = (
            world.partner(&with_totals).await,
            world.exact(&with_totals).await,
        );
        differencing(
            &mut totals,
            (&tp, &tx, &[i, None], None),
            (&tp, &tx, others(), None),
            *truth,
        );
        // Adding a dimension, over the whole program.
        differencing(
            &mut dimensions,
            (&inst_p, &inst_x, &[i], None),
            (&both_p, &both_x, others(), None),
            *truth,
        );
        // A filter and its complement, value by value (unions are refused to partners).
        let union: BTreeMap<_, _> = [(
            Dimension::Gender,
            GENDERS
                .iter()
                .filter(|g| *g != gender)
                .map(|g| (*g).to_owned())
                .collect::<Vec<_>>(),
        )]
        .into();
        assert!(policy.check_filters(Audience::Partner, &union).is_err());
        let mut published = vec![(1, value(&wp, &[i], None))];
        let mut truths = vec![(1, value(&wx, &[i], None))];
        for g in GENDERS.iter().filter(|g| *g != gender) {
            let q = query(
                &[],
                &[
                    (Dimension::Institution, institution.as_str()),
                    (Dimension::Gender, g),
                ],
                &[Metric::Enrolled],
                false,
            );
            published.push((-1, value(&world.partner(&q).await, &[], None)));
            truths.push((-1, value(&world.exact(&q).await, &[], None)));
        }
        complements.try_identity(&published, &truths, *truth as i64);
        // The funnel's marginals: started, by institution against by institution and gender.
        let funnel_of = |by: Vec<Dimension>| FunnelQuery {
            by,
            filters: [(Dimension::Institution, vec![institution.clone()])].into(),
        };
        let whole = world
            .engine
            .funnel(&funnel_of(vec![Dimension::Institution]), None)
            .await
            .unwrap();
        let parts = world
            .engine
            .funnel(
                &funnel_of(vec![Dimension::Institution, Dimension::Gender]),
                None,
            )
            .await
            .unwrap();
        let started = |rows: &[nigrani_analytics::funnel::FunnelRow], g: Option<&str>| {
            rows.iter()
                .find(|r| r.keys.get(1).map(|k| k.as_deref()) == Some(g) || g.is_none())
                .map_or(0, |r| r.started)
        };
        let whole_p = policy.funnel(Audience::Partner, whole.clone());
        let parts_p = policy.funnel(Audience::Partner, parts.clone());
        let truth_started = started(&parts, Some(gender));
        if (1..K).contains(&truth_started) {
            let mut published = vec![(1, started(whole_p.value(), None))];
            let mut truths = vec![(1, started(&whole, None))];
            for g in GENDERS.iter().filter(|g| *g != gender) {
                published.push((-1, started(parts_p.value(), Some(g))));
                truths.push((-1, started(&parts, Some(g))));
            }
            funnel.try_identity(&published, &truths, truth_started as i64);
        }
    }
    // A rate published with its base: rate × learners is a perturbed count, not the truth.
    let rates_q = query(
        &[Dimension::Institution],
        &[],
        &[Metric::Completed, Metric::CompletionRate],
        false,
    );
    let (rp, rx) = (world.partner(&rates_q).await, world.exact(&rates_q).await);
    for row in &rp.rows {
        let Some(rate) = row.values[1] else { continue };
        let keys: Vec<Option<&str>> = row.keys.iter().map(|k| k.as_deref()).collect();
        let truth = value(&rx, &keys, Some(0));
        if (1..K).contains(&truth) || rate_times_base.trials.len() < 20 {
            let estimate = (rate * row.learners as f64).round() as u64;
            rate_times_base.try_identity(&[(1, estimate)], &[(1, truth)], truth as i64);
        }
    }

    // Time: as_of a day apart, `from` a day apart, cumulative against daily series.
    let mut as_of_days = Family::default();
    let mut from_days = Family::default();
    let mut series_days = Family::default();
    let day = |d: NaiveDate| -> DateTime<Utc> {
        DateTime::from_timestamp_micros(nigrani_analytics::period::day_start_micros(d)).unwrap()
    };
    let institutions: BTreeSet<String> = targets.iter().map(|t| t.0.clone()).collect();
    let first = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    for institution in institutions.iter().take(12) {
        let filter = [(Dimension::Institution, institution.as_str())];
        for offset in (0..84).step_by(3) {
            let d = first + Duration::days(offset);
            // Completed as of the end of day d and of day d + 1.
            let at = |end: NaiveDate| {
                let mut q = query(&[], &filter, &[Metric::Completed], false);
                q.as_of = policy.end(Audience::Partner, day(end + Duration::days(1)));
                q.latest = false;
                q
            };
            let (a, b) = (at(d), at(d + Duration::days(1)));
            let truth = value(&world.exact(&b).await, &[], Some(0)) as i64
                - value(&world.exact(&a).await, &[], Some(0)) as i64;
            if (1..K as i64).contains(&truth) {
                as_of_days.try_identity(
                    &[
                        (1, value(&world.partner(&b).await, &[], Some(0))),
                        (-1, value(&world.partner(&a).await, &[], Some(0))),
                    ],
                    &[
                        (1, value(&world.exact(&b).await, &[], Some(0))),
                        (-1, value(&world.exact(&a).await, &[], Some(0))),
                    ],
                    truth,
                );
            }
            // Completed from day d and from day d + 1, as of now.
            let from = |start: NaiveDate| {
                let mut q = query(&[], &filter, &[Metric::Completed], false);
                q.from = Some(policy.start(Audience::Partner, day(start)));
                q
            };
            let (a, b) = (from(d), from(d + Duration::days(1)));
            let (ax, bx) = (
                value(&world.exact(&a).await, &[], Some(0)),
                value(&world.exact(&b).await, &[], Some(0)),
            );
            let truth = ax as i64 - bx as i64;
            if (1..K as i64).contains(&truth) {
                from_days.try_identity(
                    &[
                        (1, value(&world.partner(&a).await, &[], Some(0))),
                        (-1, value(&world.partner(&b).await, &[], Some(0))),
                    ],
                    &[(1, ax), (-1, bx)],
                    truth,
                );
            }
        }
        // Cumulative against daily: point d − point d − 1 of the cumulative series.
        let series = |cumulative: bool| SeriesQuery {
            metric: Metric::Completed,
            interval: Interval::Day,
            from: day(first),
            as_of: now(),
            split: None,
            filters: [(Dimension::Institution, vec![institution.clone()])].into(),
            cumulative,
            latest: true,
        };
        let cumulative = world.engine.series(&series(true)).await.unwrap();
        let shown = policy.series(Audience::Partner, cumulative.clone());
        for (i, pair) in cumulative.points.windows(2).enumerate() {
            let count = |p: &nigrani_analytics::series::SeriesPoint| {
                p.values.get("all").copied().flatten().unwrap_or(0.0) as u64
            };
            let truth = count(&pair[1]) as i64 - count(&pair[0]) as i64;
            if (1..K as i64).contains(&truth) {
                let published = &shown.value().points[i..i + 2];
                series_days.try_identity(
                    &[(1, count(&published[1])), (-1, count(&published[0]))],
                    &[(1, count(&pair[1])), (-1, count(&pair[0]))],
                    truth,
                );
            }
        }
    }

    // The pace on the targets: pace × 14 is a perturbed count.
    let mut pace = Family::default();
    let exact_targets = world.engine.targets(now()).await.unwrap();
    let shown_targets = policy.targets(Audience::Partner, exact_targets.clone());
    for (exact, shown) in exact_targets.iter().zip(shown_targets.value()) {
        let truth = (exact.pace_per_day * 14.0).round() as u64;
        let estimate = (shown.pace_per_day * 14.0).round() as u64;
        pace.try_identity(&[(1, estimate)], &[(1, truth)], truth as i64);
    }

    // A 3-learner cohort, before and after its upload: the program's learners.
    let mut upload = Family::default();
    let program = query(&[], &[], &[Metric::Enrolled], false);
    let institution = targets[0].0.clone();
    for n in 0..8 {
        let before = (world.partner(&program).await, world.exact(&program).await);
        let cohort_id = format!("tiny-{n}");
        roster::apply(
            &world.store,
            &Rows::Cohorts(vec![Cohort {
                cohort_id: cohort_id.clone(),
                name: cohort_id.clone(),
                name_ur: cohort_id.clone(),
                track: Track::Soft,
                starts_on: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                ends_on: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
                target: 3,
            }]),
        )
        .await
        .unwrap();
        let learners = (0..3)
            .map(|j| Learner {
                learner_id: format!("T{n}-{j}"),
                identities: vec![LearnerRef::parse(&format!("coursera:t{n}-{j}")).unwrap()],
                institution: institution.clone(),
                discipline: "education".into(),
                track: Track::Soft,
                cohort: cohort_id.clone(),
                role: Role::Faculty,
                gender: None,
            })
            .collect();
        roster::apply(&world.store, &Rows::Learners(learners))
            .await
            .unwrap();
        world.engine.refresh().await.unwrap();
        let after = (world.partner(&program).await, world.exact(&program).await);
        let truth = value(&after.1, &[], None) as i64 - value(&before.1, &[], None) as i64;
        assert_eq!(truth, 3);
        upload.try_identity(
            &[
                (1, value(&after.0, &[], None)),
                (-1, value(&before.0, &[], None)),
            ],
            &[
                (1, value(&after.1, &[], None)),
                (-1, value(&before.1, &[], None)),
            ],
            truth,
        );
    }

    for (name, family) in [
        ("marginals from another query", &marginals),
        ("totals=true against the rows", &totals),
        ("adding a dimension", &dimensions),
        ("a filter against its complement", &complements),
        ("rate × learners", &rate_times_base),
        ("funnel marginals", &funnel),
        ("as_of a day apart", &as_of_days),
        ("from a day apart", &from_days),
        ("cumulative against daily series", &series_days),
        ("pace × 14", &pace),
        ("a cohort before and after its upload", &upload),
    ] {
        family.assert_no_better_than_chance(name, policy);
    }
    let seen = world.seen.lock().unwrap();
    assert!(
        seen.iter().all(|n| *n == 0 || *n >= K),
        "a count from 1 to k - 1 was published"
    );
}

/// Single learners: those alone in their institution and gender. The attacker differences the
/// institution's completed count against its other genders' to learn whether each completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_single_learner_s_status_is_pinned() {
    let world = World::new().await;
    let policy = &world.policy;
    let alone: Vec<_> = small_groups(&world)
        .await
        .into_iter()
        .filter(|t| t.2 == 1)
        .collect();
    assert!(alone.len() >= 10, "{}", alone.len());
    let mut status = Family::default();
    for (institution, gender, _) in &alone {
        let filter = [(Dimension::Institution, institution.as_str())];
        let q = query(
            &[Dimension::Institution, Dimension::Gender],
            &filter,
            &[Metric::Completed, Metric::AvgProgress],
            true,
        );
        let (p, x) = (world.partner(&q).await, world.exact(&q).await);
        let i = Some(institution.as_str());
        let truth = value(&x, &[i, Some(gender)], Some(0));
        let mut published = vec![(1, value(&p, &[i, None], Some(0)))];
        let mut truths = vec![(1, value(&x, &[i, None], Some(0)))];
        for g in GENDERS.iter().filter(|g| *g != gender) {
            published.push((-1, value(&p, &[i, Some(g)], Some(0))));
            truths.push((-1, value(&x, &[i, Some(g)], Some(0))));
        }
        status.try_identity(&published, &truths, truth as i64);
        // Nothing is averaged over one person.
        let row = p.rows.iter().find(|r| r.keys[1].as_deref() == Some(gender));
        assert!(row.is_none_or(|r| r.values[1].is_none()), "{row:?}");
    }
    status.assert_no_better_than_chance("a single learner's completion", policy);
}

/// The same learners give the same partner figures whatever the query's shape, across a
/// restart and on a second engine over the same store (a replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_cell_gets_the_same_answer_everywhere() {
    let world = World::new().await;
    let metrics = [Metric::Enrolled, Metric::Completed, Metric::Certified];
    let by_province = world
        .partner(&query(&[Dimension::Province], &[], &metrics, true))
        .await;
    let by_two = world
        .partner(&query(
            &[Dimension::Province, Dimension::Track],
            &[],
            &metrics,
            true,
        ))
        .await;
    for row in by_province.rows.iter() {
        let twin = by_two
            .rows
            .iter()
            .find(|r| r.keys[0] == row.keys[0] && r.keys[1].is_none())
            .unwrap();
        assert_eq!(
            (row.learners, &row.values),
            (twin.learners, &twin.values),
            "a subtotal is the same cell as the row of the shorter breakdown"
        );
    }
    // Filtered to one province, the program row is that province's row.
    let punjab = world
        .partner(&query(
            &[],
            &[(Dimension::Province, "punjab")],
            &metrics,
            false,
        ))
        .await;
    let row = by_province
        .rows
        .iter()
        .find(|r| r.keys[0].as_deref() == Some("punjab"))
        .unwrap();
    assert_eq!(punjab.rows[0].values, row.values);
    // The learner-level path (an explicit moment) and the cells agree on the same learners.
    let mut explicit = query(&[Dimension::Province], &[], &metrics, true);
    explicit.latest = false;
    explicit.as_of = now() + Duration::days(30);
    assert_eq!(world.partner(&explicit).await.rows, by_province.rows);
    // A replica, and a restart: a new engine over the same store.
    let replica = Engine::start_with(
        Arc::clone(&world.store),
        nigrani_analytics::EngineOptions {
            clock: Clock::from_fn(now),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let shown = world.policy.breakdown(
        Audience::Partner,
        replica
            .breakdown(&query(&[Dimension::Province], &[], &metrics, true))
            .await
            .unwrap(),
    );
    assert_eq!(shown.value().rows, by_province.rows);
}
