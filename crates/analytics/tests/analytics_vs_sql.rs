//! The engine against an independent statement of the same definitions: plain SQL over the raw
//! events in PostgreSQL. A demo program is loaded; many random breakdowns (dimensions, filters,
//! `from`, `as_of`, totals) are computed both ways and must agree — counts exactly, averages to
//! floating-point rounding.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use nigrani_analytics::{BreakdownQuery, Dimension, Engine, Metric};
use nigrani_ingest::demo::{self, DemoConfig, Generator, Rng};
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::testing::TestDatabase;
use nigrani_store::{Store, StoreConfig};
use tokio_postgres::NoTls;

const LEARNERS: usize = 500;

fn as_of_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

async fn load_demo(store: &Arc<dyn Store>) {
    let config = DemoConfig {
        learners: LEARNERS,
        seed: 11,
        as_of: as_of_now(),
    };
    let generator = Generator::from_store(config, store).await.unwrap();
    let learners: Vec<_> = (0..LEARNERS).map(|i| generator.learner(i)).collect();
    demo::store_roster(store, &learners).await.unwrap();
    let ingestor = Ingestor::new(Arc::clone(store), Limits::default());
    let events: Vec<_> = learners.into_iter().flat_map(|l| l.events).collect();
    demo::ingest_events(&ingestor, &events, 5000).await.unwrap();
}

fn sql_dimension(d: Dimension) -> &'static str {
    match d {
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

/// The definitions of `nigrani_analytics::definitions`, restated in SQL.
fn sql_metric(m: Metric) -> &'static str {
    match m {
        Metric::Enrolled => "count(*)::float8",
        Metric::Started => {
            "count(*) FILTER (WHERE started_at IS NOT NULL AND started_at >= $2)::float8"
        }
        Metric::Active7d => {
            "count(*) FILTER (WHERE last_activity > $1 - interval '7 days')::float8"
        }
        Metric::Active30d => {
            "count(*) FILTER (WHERE last_activity > $1 - interval '30 days')::float8"
        }
        Metric::Inactive => {
            "count(*) FILTER (WHERE started_at IS NOT NULL AND completed_at IS NULL \
            AND withdrawn_at IS NULL AND NOT coalesce(last_activity > $1 - interval '14 days', false))::float8"
        }
        Metric::Completed => "count(*) FILTER (WHERE completed_at >= $2)::float8",
        Metric::Certified => "count(*) FILTER (WHERE certified_at >= $2)::float8",
        Metric::Trained => {
            "count(*) FILTER (WHERE CASE WHEN track = 'soft' THEN completed_at >= $2 \
            ELSE certified_at >= $2 END)::float8"
        }
        Metric::Withdrawn => {
            "count(*) FILTER (WHERE withdrawn_at >= $2 AND completed_at IS NULL)::float8"
        }
        Metric::CompletionRate => {
            "(count(*) FILTER (WHERE completed_at >= $2))::float8 / nullif(count(*), 0)"
        }
        Metric::CertificationRate => {
            "(count(*) FILTER (WHERE certified_at >= $2))::float8 / nullif(count(*), 0)"
        }
        Metric::AvgProgress => "avg(progress)",
        Metric::AvgScore => "avg(score)",
        Metric::MedianDaysToComplete => {
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY \
            extract(epoch FROM completed_at - first_event)::float8 / 86400) \
            FILTER (WHERE completed_at >= $2)"
        }
    }
}

const PER_LEARNER: &str = "
WITH ev AS (
    SELECT i.learner_id, e.course_id, e.kind, e.progress, e.score, e.occurred_at
    FROM events e JOIN learner_identities i ON i.learner_ref = e.learner_ref
    WHERE e.occurred_at <= $1
), req AS (
    SELECT track, unnest(required_courses) AS course_id FROM track_plans
), per_course AS (
    SELECT l.learner_id, r.course_id, max(ev.progress) AS progress,
           min(ev.occurred_at) FILTER (WHERE ev.kind = 'course_completed') AS completed_at
    FROM learners l JOIN req r ON r.track = l.track
    LEFT JOIN ev ON ev.learner_id = l.learner_id AND ev.course_id = r.course_id
    GROUP BY l.learner_id, r.course_id
), courses AS (
    SELECT learner_id,
           avg(CASE WHEN completed_at IS NOT NULL THEN 1.0::float8 ELSE coalesce(progress, 0) END)
               AS progress,
           CASE WHEN bool_and(completed_at IS NOT NULL) THEN max(completed_at) END AS completed_at
    FROM per_course GROUP BY learner_id
), acts AS (
    SELECT learner_id, min(occurred_at) AS first_event,
           max(occurred_at) FILTER (WHERE kind NOT IN ('enrolled', 'withdrawn')) AS last_activity,
           min(occurred_at) FILTER (WHERE kind NOT IN ('enrolled', 'withdrawn')) AS started_at,
           min(occurred_at) FILTER (WHERE kind = 'enrolled') AS enrolled_event,
           min(occurred_at) FILTER (WHERE kind = 'certificate_earned') AS certified_at,
           min(occurred_at) FILTER (WHERE kind = 'withdrawn') AS withdrawn_at,
           max(score) AS score
    FROM ev GROUP BY learner_id
), on_roster AS (
    SELECT l.learner_id, i.province, l.institution, i.sector, l.discipline, l.track, l.cohort,
           coalesce(l.gender, 'unknown') AS gender, l.role,
           coalesce(c.progress, 0) AS progress, c.completed_at,
           a.first_event, a.last_activity, a.started_at, a.certified_at, a.withdrawn_at, a.score,
           -- Enrolled: the first enrolled event, else the cohort's first day (its start in
           -- Pakistan, UTC+5), or the first learning event when that came earlier.
           least(coalesce(a.enrolled_event,
                          (co.starts_on::timestamp - interval '5 hours') AT TIME ZONE 'UTC'),
                 a.started_at) AS enrolled_at
    FROM learners l JOIN institutions i ON i.hec_id = l.institution
    JOIN cohorts co ON co.cohort_id = l.cohort
    LEFT JOIN courses c USING (learner_id) LEFT JOIN acts a USING (learner_id)
), per AS (
    SELECT * FROM on_roster WHERE enrolled_at <= $1
)";

type Rows2 = BTreeMap<Vec<Option<String>>, (u64, Vec<Option<f64>>)>;

async fn sql_breakdown(client: &tokio_postgres::Client, q: &BreakdownQuery) -> Rows2 {
    let mut groupings = vec![q.by.clone()];
    if q.totals && !q.by.is_empty() {
        for prefix in (0..q.by.len()).rev() {
            groupings.push(q.by[..prefix].to_vec());
        }
    }
    let mut out = Rows2::new();
    let from = q
        .from
        .unwrap_or_else(|| Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap());
    for grouping in groupings {
        let mut conditions = Vec::new();
        for (dimension, values) in &q.filters {
            let list: Vec<String> = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect();
            conditions.push(format!(
                "{} IN ({})",
                sql_dimension(*dimension),
                list.join(", ")
            ));
        }
        let select_keys: Vec<String> =
            q.by.iter()
                .map(|d| {
                    if grouping.contains(d) {
                        sql_dimension(*d).to_owned()
                    } else {
                        "NULL::text".to_owned()
                    }
                })
                .collect();
        let metrics: Vec<&str> = q.metrics.iter().map(|m| sql_metric(*m)).collect();
        let mut sql = format!(
            "{PER_LEARNER} SELECT {}count(*)::int8, {} FROM per",
            select_keys
                .iter()
                .map(|k| format!("{k}, "))
                .collect::<String>(),
            metrics.join(", ")
        );
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        if !grouping.is_empty() {
            let keys: Vec<&str> = grouping.iter().map(|d| sql_dimension(*d)).collect();
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        }
        let rows = client.query(&sql, &[&q.as_of, &from]).await.unwrap();
        for row in rows {
            let n = q.by.len();
            let keys: Vec<Option<String>> = (0..n).map(|i| row.get(i)).collect();
            let learners: i64 = row.get(n);
            if learners == 0 && !grouping.is_empty() {
                continue;
            }
            let values: Vec<Option<f64>> =
                (0..q.metrics.len()).map(|i| row.get(n + 1 + i)).collect();
            out.insert(keys, (learners as u64, values));
        }
    }
    out
}

/// Checks a breakdown against the SQL's rows: the same groups, learners exactly, every metric
/// within rounding. Returns the breakdown's non-empty rows by key.
fn assert_agrees(
    ours: &nigrani_analytics::Breakdown,
    theirs: &Rows2,
    query: &BreakdownQuery,
    round: usize,
) -> Rows2 {
    let ours: Rows2 = ours
        .rows
        .iter()
        .filter(|r| r.learners > 0 || r.keys.iter().all(Option::is_none))
        .map(|r| (r.keys.clone(), (r.learners, r.values.clone())))
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "round {round}: groups differ for {query:?}"
    );
    for (keys, (learners, values)) in &ours {
        let (sql_learners, sql_values) = &theirs[keys];
        assert_eq!(
            learners, sql_learners,
            "round {round} {keys:?} learners, {query:?}"
        );
        for (i, metric) in query.metrics.iter().enumerate() {
            assert!(
                close(values[i], sql_values[i]),
                "round {round} {keys:?} {}: nigrani {:?}, SQL {:?}; {query:?}",
                metric.as_str(),
                values[i],
                sql_values[i]
            );
        }
    }
    ours
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

fn random_query(rng: &mut Rng, values: &BTreeMap<Dimension, Vec<String>>) -> BreakdownQuery {
    let pick = |rng: &mut Rng, n: usize| rng.between(0, n as i64 - 1) as usize;
    let mut by = Vec::new();
    for _ in 0..rng.between(0, 2) {
        let d = Dimension::ALL[pick(rng, Dimension::ALL.len())];
        if !by.contains(&d) {
            by.push(d);
        }
    }
    let mut filters = BTreeMap::new();
    if rng.chance(0.5) {
        let d = Dimension::ALL[pick(rng, Dimension::ALL.len())];
        let options = &values[&d];
        let chosen: Vec<String> = (0..rng.between(1, 3))
            .map(|_| options[pick(rng, options.len())].clone())
            .collect();
        filters.insert(d, chosen);
    }
    let as_of = as_of_now()
        - Duration::days(if rng.chance(0.4) {
            0
        } else {
            rng.between(1, 250)
        });
    let from = rng
        .chance(0.3)
        .then(|| as_of - Duration::days(rng.between(1, 120)));
    BreakdownQuery {
        by,
        filters,
        metrics: Metric::ALL.to_vec(),
        from,
        as_of,
        totals: rng.chance(0.5),
        period: None,
        latest: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_agrees_with_sql_on_random_slices() {
    let Some(db) = TestDatabase::create("analytics_vs_sql") else {
        return;
    };
    let config = StoreConfig {
        database_url: Some(db.url().to_owned()),
        ..StoreConfig::default()
    };
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    load_demo(&store).await;
    let engine = Engine::start(Arc::clone(&store)).await.unwrap();
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    tokio::spawn(connection);

    let mut values = BTreeMap::new();
    let snapshot = engine.snapshot();
    for d in Dimension::ALL {
        values.insert(
            *d,
            nigrani_analytics::query::dimension_names(&snapshot.roster, *d),
        );
    }
    let mut rng = Rng::new(2026);
    let mut compared_rows = 0;
    // Each metric must be non-zero somewhere, or agreeing on it would prove nothing.
    let mut seen_nonzero = vec![false; Metric::ALL.len()];
    for round in 0..40 {
        let query = random_query(&mut rng, &values);
        let ours = engine.breakdown(&query).await.unwrap();
        let theirs = sql_breakdown(&client, &query).await;
        let ours_map = assert_agrees(&ours, &theirs, &query, round);
        for (_, values) in ours_map.values() {
            for (i, value) in values.iter().enumerate() {
                if value.is_some_and(|v| v > 0.0) {
                    seen_nonzero[i] = true;
                }
            }
            compared_rows += 1;
        }
    }
    assert!(compared_rows > 100, "compared {compared_rows} rows");
    for (metric, seen) in Metric::ALL.iter().zip(seen_nonzero) {
        assert!(seen, "{} was zero in every compared row", metric.as_str());
    }
}

async fn setup(label: &str) -> Option<(TestDatabase, Arc<Engine>, tokio_postgres::Client)> {
    let db = TestDatabase::create(label)?;
    let config = StoreConfig {
        database_url: Some(db.url().to_owned()),
        ..StoreConfig::default()
    };
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    load_demo(&store).await;
    let engine = Engine::start(Arc::clone(&store)).await.unwrap();
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    Some((db, engine, client))
}

/// Each point of a series is the metric as of its period's end, milestones counted within the
/// period: the same as a breakdown (checked against SQL above) asked for that moment.
#[tokio::test(flavor = "multi_thread")]
async fn series_points_agree_with_breakdowns_at_each_period_end() {
    use nigrani_analytics::period::{Interval, day_start_micros};
    use nigrani_analytics::series::SeriesQuery;
    let Some((_db, engine, _client)) = setup("series").await else {
        return;
    };
    let as_of = as_of_now();
    for (metric, interval, cumulative, split) in [
        (
            Metric::Active7d,
            Interval::Week,
            false,
            Some(Dimension::Track),
        ),
        (Metric::Inactive, Interval::Month, false, None),
        (
            Metric::Active30d,
            Interval::Month,
            false,
            Some(Dimension::Province),
        ),
        (
            Metric::Completed,
            Interval::Month,
            true,
            Some(Dimension::Cohort),
        ),
        (
            Metric::Trained,
            Interval::Quarter,
            false,
            Some(Dimension::Track),
        ),
        (Metric::Withdrawn, Interval::Week, false, None),
        (Metric::MedianDaysToComplete, Interval::Month, true, None),
    ] {
        let query = SeriesQuery {
            metric,
            interval,
            from: as_of - Duration::days(150),
            as_of,
            split,
            filters: BTreeMap::new(),
            cumulative,
            latest: false,
        };
        let series = engine.series(&query).await.unwrap();
        assert!(series.points.len() >= 2);
        for point in &series.points {
            let end = day_start_micros(interval.next(point.starts_on)) - 1;
            let moment =
                DateTime::from_timestamp_micros(end.min(as_of.timestamp_micros())).unwrap();
            let start = DateTime::from_timestamp_micros(day_start_micros(point.starts_on)).unwrap();
            let breakdown = engine
                .breakdown(&BreakdownQuery {
                    by: split.into_iter().collect(),
                    filters: BTreeMap::new(),
                    metrics: vec![metric],
                    from: (!cumulative).then(|| start.max(query.from)),
                    as_of: moment,
                    totals: false,
                    period: None,
                    latest: false,
                })
                .await
                .unwrap();
            for row in &breakdown.rows {
                let key = row
                    .keys
                    .first()
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "all".into());
                let ours = point.values.get(&key).copied().flatten();
                assert!(
                    close(ours, row.values[0]),
                    "{} {} {key}: series {ours:?}, breakdown {:?}",
                    metric.as_str(),
                    point.period,
                    row.values[0]
                );
            }
        }
    }
    // Target trajectories for one-track series.
    let series = engine
        .series(&SeriesQuery {
            metric: Metric::Trained,
            interval: Interval::Month,
            from: as_of - Duration::days(365),
            as_of,
            split: Some(Dimension::Track),
            filters: BTreeMap::new(),
            cumulative: true,
            latest: false,
        })
        .await
        .unwrap();
    let last = series.points.last().unwrap();
    assert!(
        last.targets["soft"] > 0.0 && last.targets["soft"] <= 1000.0,
        "{:?}",
        last.targets
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn funnel_agrees_with_sql() {
    use nigrani_analytics::funnel::FunnelQuery;
    let Some((_db, engine, client)) = setup("funnel").await else {
        return;
    };
    for as_of in [as_of_now(), as_of_now() - Duration::days(60)] {
        let rows = engine
            .funnel(
                &FunnelQuery {
                    by: vec![Dimension::Track],
                    filters: BTreeMap::new(),
                },
                Some(as_of),
            )
            .await
            .unwrap();
        let sql = format!(
            "{PER_LEARNER} SELECT track, count(*), count(started_at), count(*) FILTER (WHERE progress >= 0.5),
                count(completed_at), count(certified_at),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - first_event)::float8 / 86400),
                percentile_cont(0.75) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - first_event)::float8 / 86400),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - first_event)::float8 / 86400)
             FROM per GROUP BY track ORDER BY track DESC"
        );
        let expected = client.query(&sql, &[&as_of]).await.unwrap();
        assert_eq!(rows.len(), expected.len());
        for (row, sql) in rows.iter().zip(&expected) {
            assert_eq!(
                row.keys[0].as_deref(),
                Some(sql.get::<_, String>(0).as_str())
            );
            let counts = [
                row.enrolled,
                row.started,
                row.half_way,
                row.completed,
                row.certified,
            ];
            let sql_counts: Vec<u64> = (1..6).map(|i| sql.get::<_, i64>(i) as u64).collect();
            assert_eq!(counts.to_vec(), sql_counts, "{row:?}");
            let times = [
                row.days_to_complete.median,
                row.days_to_complete.p75,
                row.days_to_complete.p90,
            ];
            for (i, ours) in times.iter().enumerate() {
                assert!(close(*ours, sql.get(6 + i)), "{row:?}");
            }
            assert!(row.started >= row.half_way && row.half_way >= row.completed);
        }
    }
    let targets = engine.targets(as_of_now()).await.unwrap();
    let soft = targets
        .iter()
        .find(|t| t.scope == "track" && t.id == "soft")
        .unwrap();
    assert_eq!(soft.target, 1000);
    assert!(soft.attained > 0);
    let hard = targets
        .iter()
        .find(|t| t.scope == "track" && t.id == "hard")
        .unwrap();
    assert_eq!(hard.stretch_target, Some(500));
    assert!(
        targets
            .iter()
            .any(|t| t.scope == "cohort" && t.on_track == Some(false))
    );
}

/// Grouping by period gives, for each period, the breakdown as of the period's end.
#[tokio::test(flavor = "multi_thread")]
async fn breakdowns_by_period_agree_with_breakdowns_as_of_each_period_end() {
    use nigrani_analytics::period::{Interval, day_start_micros};
    let Some((_db, engine, _client)) = setup("period").await else {
        return;
    };
    let as_of = as_of_now();
    let metrics = vec![
        Metric::Enrolled,
        Metric::Completed,
        Metric::Active7d,
        Metric::Inactive,
        Metric::Trained,
    ];
    let by_period = engine
        .breakdown(&BreakdownQuery {
            by: vec![Dimension::Track],
            filters: BTreeMap::new(),
            metrics: metrics.clone(),
            from: Some(as_of - Duration::days(100)),
            as_of,
            totals: true,
            period: Some(Interval::Month),
            latest: false,
        })
        .await
        .unwrap();
    let periods: std::collections::BTreeSet<_> = by_period
        .rows
        .iter()
        .map(|r| r.period.clone().unwrap())
        .collect();
    assert!(periods.len() >= 4, "{periods:?}");
    for period in periods {
        let starts_on =
            chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").unwrap();
        let end = day_start_micros(Interval::Month.next(starts_on)) - 1;
        let start = DateTime::from_timestamp_micros(day_start_micros(starts_on)).unwrap();
        let single = engine
            .breakdown(&BreakdownQuery {
                by: vec![Dimension::Track],
                filters: BTreeMap::new(),
                metrics: metrics.clone(),
                from: Some(start.max(as_of - Duration::days(100))),
                as_of: DateTime::from_timestamp_micros(end.min(as_of.timestamp_micros())).unwrap(),
                totals: true,
                period: None,
                latest: false,
            })
            .await
            .unwrap();
        let ours: Vec<_> = by_period
            .rows
            .iter()
            .filter(|r| r.period.as_deref() == Some(&period))
            .collect();
        assert_eq!(ours.len(), single.rows.len());
        for (a, b) in ours.iter().zip(&single.rows) {
            assert_eq!((&a.keys, a.learners), (&b.keys, b.learners));
            for (x, y) in a.values.iter().zip(&b.values) {
                assert!(close(*x, *y), "{period} {:?}: {x:?} vs {y:?}", a.keys);
            }
        }
    }
}

/// Breakdowns of the latest data are answered from the per-dimension cells; they must agree with
/// the SQL just like the learner-level path.
#[tokio::test(flavor = "multi_thread")]
async fn latest_breakdowns_from_cells_agree_with_sql() {
    use nigrani_analytics::query::{CELL_METRICS, cells_answer};
    let Some((_db, engine, client)) = setup("cells").await else {
        return;
    };
    let mut values = BTreeMap::new();
    let snapshot = engine.snapshot();
    for d in Dimension::ALL {
        values.insert(
            *d,
            nigrani_analytics::query::dimension_names(&snapshot.roster, *d),
        );
    }
    let mut rng = Rng::new(77);
    for round in 0..25 {
        let mut query = random_query(&mut rng, &values);
        query.as_of = as_of_now();
        query.from = None;
        query.latest = true;
        query.metrics = CELL_METRICS.to_vec();
        assert!(cells_answer(&query));
        let ours = engine.breakdown(&query).await.unwrap();
        let theirs = sql_breakdown(&client, &query).await;
        assert_agrees(&ours, &theirs, &query, round);
    }
}
