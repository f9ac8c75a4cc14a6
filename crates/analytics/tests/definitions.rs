//! The rules of `nigrani_analytics::definitions` that the issue "Solid ground" decided, each on a
//! small program built by hand so that the expected figure can be read off the timeline:
//! activity is learning activity, enrolment has a date, the median of a window is over that
//! window's completers, and an event dated after the moment asked does not count until it comes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use nigrani_analytics::{BreakdownQuery, Clock, Dimension, Engine, EngineOptions, Metric};
use nigrani_domain::{Cohort, Learner, LearnerRef, Role, Track};
use nigrani_ingest::native::Item;
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::{Store, StoreConfig};
use serde_json::json;

/// "Now" for the engine, unless a test moves it.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

struct Program {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    ingestor: Ingestor,
    engine: Arc<Engine>,
    now: Arc<AtomicI64>,
    soft_courses: Vec<String>,
}

fn cohort(id: &str, starts_on: NaiveDate, ends_on: NaiveDate) -> Cohort {
    Cohort {
        cohort_id: id.into(),
        name: id.into(),
        name_ur: id.into(),
        track: Track::Soft,
        starts_on,
        ends_on,
        target: 10,
    }
}

fn event(id: &str, learner: &str, kind: &str, course: &str, at: DateTime<Utc>) -> Item<'static> {
    Item::Json(json!({
        "source": "coursera",
        "event_id": id,
        "learner": format!("coursera:{learner}"),
        "course_id": course,
        "kind": kind,
        "occurred_at": at.to_rfc3339(),
    }))
}

/// Two soft cohorts — `open` (from 1 August) and `later` (from 20 December) — and six learners:
/// - D1 (open): enrolled 2 Aug, completes every course 20 Aug (18 days).
/// - D2 (open): enrolled 2 Aug, completes every course 12 Oct (71 days).
/// - D3 (open): only an `enrolled` event, the day before now.
/// - D4 (open): progress on 1 Oct, withdrawn the day before now; no `enrolled` event.
/// - D5 (later): no events.
/// - D6 (later): a `started` event without progress on 28 Nov, before the cohort starts; no
///   `enrolled` event.
async fn program() -> Program {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: dir.path().to_owned(),
        database_url: None,
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    nigrani_ingest::seed::install_if_empty(&store)
        .await
        .unwrap();
    let institution = store.institutions().await.unwrap()[0].hec_id.clone();
    let discipline = store.disciplines().await.unwrap()[0].code.clone();
    let soft_courses = store
        .track_plans()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.track == Track::Soft)
        .unwrap()
        .required_courses;
    store
        .upsert_cohorts(&[
            cohort("open", date(2026, 8, 1), date(2027, 1, 31)),
            cohort("later", date(2026, 12, 20), date(2027, 3, 31)),
        ])
        .await
        .unwrap();
    let learner = |id: &str, cohort: &str| Learner {
        learner_id: id.into(),
        identities: vec![LearnerRef::on_platform("coursera", &id.to_lowercase()).unwrap()],
        institution: institution.clone(),
        discipline: discipline.clone(),
        track: Track::Soft,
        cohort: cohort.into(),
        role: Role::Faculty,
        gender: None,
    };
    store
        .upsert_learners(&[
            learner("D1", "open"),
            learner("D2", "open"),
            learner("D3", "open"),
            learner("D4", "open"),
            learner("D5", "later"),
            learner("D6", "later"),
        ])
        .await
        .unwrap();
    let first = &soft_courses[0];
    let mut items = vec![
        event("d1-e", "d1", "enrolled", first, day(2026, 8, 2)),
        event("d2-e", "d2", "enrolled", first, day(2026, 8, 2)),
        event("d3-e", "d3", "enrolled", first, day(2026, 11, 30)),
        event("d4-w", "d4", "withdrawn", first, day(2026, 11, 30)),
        event("d6-s", "d6", "started", first, day(2026, 11, 28)),
    ];
    items.push(Item::Json(json!({
        "source": "coursera", "event_id": "d4-p", "learner": "coursera:d4",
        "course_id": first, "kind": "progressed", "progress": 0.3,
        "occurred_at": day(2026, 10, 1).to_rfc3339(),
    })));
    for (i, course) in soft_courses.iter().enumerate() {
        items.push(event(
            &format!("d1-c{i}"),
            "d1",
            "course_completed",
            course,
            day(2026, 8, 20),
        ));
        items.push(event(
            &format!("d2-c{i}"),
            "d2",
            "course_completed",
            course,
            day(2026, 10, 12),
        ));
    }
    let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
    let report = ingestor.ingest_items(items, t0()).await.unwrap();
    assert_eq!(report.counts.accepted, 6 + 2 * soft_courses.len());
    let now = Arc::new(AtomicI64::new(t0().timestamp_micros()));
    let clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || DateTime::from_timestamp_micros(now.load(Ordering::SeqCst)).unwrap())
    };
    let engine = Engine::start_with(
        Arc::clone(&store),
        EngineOptions {
            clock,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Program {
        _dir: dir,
        store,
        ingestor,
        engine,
        now,
        soft_courses,
    }
}

impl Program {
    /// The total row's figures, as of `as_of` (`None`: now, on the latest data).
    async fn figures(
        &self,
        metrics: &[Metric],
        from: Option<DateTime<Utc>>,
        as_of: Option<DateTime<Utc>>,
    ) -> Vec<Option<f64>> {
        let now = DateTime::from_timestamp_micros(self.now.load(Ordering::SeqCst)).unwrap();
        let answer = self
            .engine
            .breakdown(&BreakdownQuery {
                by: Vec::new(),
                filters: BTreeMap::new(),
                metrics: metrics.to_vec(),
                from,
                as_of: as_of.unwrap_or(now),
                totals: false,
                period: None,
                latest: as_of.is_none(),
            })
            .await
            .unwrap();
        assert_eq!(answer.rows.len(), 1);
        answer.rows[0].values.clone()
    }

    fn set_now(&self, now: DateTime<Utc>) {
        self.now.store(now.timestamp_micros(), Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_or_withdrawing_is_not_activity() {
    let p = program().await;
    // D3 enrolled and D4 withdrew the day before: neither is active. D6's `started` event three
    // days ago is learning activity, without progress. Started: D1 and D2 by their completions,
    // D4 by progress, D6 by its `started` event; not D3.
    let metrics = [
        Metric::Active7d,
        Metric::Active30d,
        Metric::Started,
        Metric::Inactive,
        Metric::Withdrawn,
    ];
    for as_of in [None, Some(t0())] {
        assert_eq!(
            p.figures(&metrics, None, as_of).await,
            [Some(1.0), Some(1.0), Some(4.0), Some(0.0), Some(1.0)],
            "as of {as_of:?}"
        );
    }
    // On 20 October D2's completion and D4's progress were within 30 days, D4 was inactive (not
    // withdrawn yet), and neither D3 nor D6 was enrolled.
    assert_eq!(
        p.figures(&metrics, None, Some(day(2026, 10, 20))).await,
        [Some(0.0), Some(2.0), Some(3.0), Some(1.0), Some(0.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_is_dated_and_every_rate_is_over_the_enrolled_of_then() {
    let p = program().await;
    let metrics = [Metric::Enrolled, Metric::Completed, Metric::CompletionRate];
    // Before any cohort started, nobody was enrolled.
    assert_eq!(
        p.figures(&metrics, None, Some(day(2026, 7, 15))).await,
        [Some(0.0), Some(0.0), None]
    );
    // Now: the four of `open` (D4 by its cohort's start, having no `enrolled` event), and D6,
    // whose learning came before the `later` cohort starts; not D5.
    let now = [Some(5.0), Some(2.0), Some(0.4)];
    assert_eq!(p.figures(&metrics, None, Some(t0())).await, now);
    assert_eq!(p.figures(&metrics, None, None).await, now);
    // A moment after now has no figures yet: it is answered as of now.
    assert_eq!(
        p.figures(&metrics, None, Some(day(2026, 12, 21))).await,
        now
    );
    // Learners with no enrolled event enrol on the cohort's first day, in Pakistan: the live
    // state enrols them when it starts, with no event arriving — from the cells (counts only)
    // and from the learner frame alike — from the very moment it starts.
    p.set_now(Utc.with_ymd_and_hms(2026, 12, 19, 19, 30, 0).unwrap());
    p.engine.refresh().await.unwrap();
    let start = Utc.with_ymd_and_hms(2026, 12, 19, 19, 0, 0).unwrap();
    assert_eq!(
        p.figures(&metrics, None, Some(start)).await,
        [Some(6.0), Some(2.0), Some(2.0 / 6.0)]
    );
    assert_eq!(
        p.figures(
            &metrics,
            None,
            Some(start - chrono::Duration::microseconds(1))
        )
        .await,
        now
    );
    assert_eq!(
        p.figures(&[Metric::Enrolled], None, None).await,
        [Some(6.0)]
    );
    assert_eq!(
        p.figures(&[Metric::Enrolled, Metric::Active30d], None, None)
            .await,
        [Some(6.0), Some(1.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_median_of_a_window_is_over_the_window_s_completers() {
    let p = program().await;
    let metrics = [Metric::Completed, Metric::MedianDaysToComplete];
    // D1 took 18 days (completed in August), D2 71 (October).
    assert_eq!(
        p.figures(&metrics, None, Some(t0())).await,
        [Some(2.0), Some((18.0 + 71.0) / 2.0)]
    );
    assert_eq!(
        p.figures(&metrics, Some(day(2026, 10, 1)), Some(t0()))
            .await,
        [Some(1.0), Some(71.0)]
    );
    assert_eq!(
        p.figures(&metrics, Some(day(2026, 11, 1)), Some(t0()))
            .await,
        [Some(0.0), None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dated_after_now_counts_once_its_time_comes() {
    let p = program().await;
    let soon = t0() + chrono::Duration::hours(1);
    let items = vec![event(
        "d1-cert",
        "d1",
        "certificate_earned",
        &p.soft_courses[0],
        soon,
    )];
    let report = p.ingestor.ingest_items(items, t0()).await.unwrap();
    assert_eq!(report.counts.accepted, 1, "ingest takes up to a day ahead");
    p.engine.refresh().await.unwrap();
    // Counts (answered from the cells) and the learner frame (with an activity window) agree:
    // the certificate does not count yet, whichever way now is asked.
    let cells = [Metric::Certified, Metric::CertificationRate];
    let frame = [Metric::Certified, Metric::Active7d];
    assert_eq!(p.figures(&cells, None, None).await, [Some(0.0), Some(0.0)]);
    assert_eq!(p.figures(&frame, None, None).await, [Some(0.0), Some(1.0)]);
    assert_eq!(
        p.figures(&frame, None, Some(t0())).await,
        [Some(0.0), Some(1.0)]
    );
    // Nor when asked as of a moment after its date that has not come yet: that is answered as
    // of now.
    let later = soon + chrono::Duration::minutes(1);
    assert_eq!(
        p.figures(&frame, None, Some(later)).await,
        [Some(0.0), Some(1.0)]
    );
    // Its time comes: the next refresh counts it, though nothing new arrived.
    p.set_now(later);
    let refresh = p.engine.refresh().await.unwrap();
    assert_eq!(refresh.events, 0);
    assert_eq!(p.figures(&cells, None, None).await, [Some(1.0), Some(0.2)]);
    assert_eq!(p.figures(&frame, None, None).await, [Some(1.0), Some(2.0)]);
    // And as of a moment between now and its date, from a replay, it does not.
    assert_eq!(
        p.figures(&frame, None, Some(soon - chrono::Duration::seconds(1)))
            .await,
        [Some(0.0), Some(1.0)]
    );
    // A restart holds it back the same way while its time has not come.
    p.set_now(t0());
    let restarted = Engine::start_with(
        Arc::clone(&p.store),
        EngineOptions {
            clock: Clock::from_fn(t0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let answer = restarted
        .breakdown(&BreakdownQuery {
            by: vec![Dimension::Track],
            filters: BTreeMap::new(),
            metrics: cells.to_vec(),
            from: None,
            as_of: t0(),
            totals: false,
            period: None,
            latest: true,
        })
        .await
        .unwrap();
    assert_eq!(answer.rows[0].values, [Some(0.0), Some(0.0)]);
}
