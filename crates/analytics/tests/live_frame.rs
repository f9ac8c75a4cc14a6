//! The frame and cells kept current batch by batch, a state resumed from the checkpoint, and
//! roster changes taken in without a rebuild must equal those built from scratch.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use nigrani_analytics::Engine;
use nigrani_analytics::engine::Snapshot;
use nigrani_domain::{Learner, LearnerRef, Province};
use nigrani_ingest::demo::{self, DemoConfig, Generator};
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::Store;
use polars::prelude::*;
use support::{demo_program, demo_store};

mod support;

/// The cells sorted by their dimension codes, so that two groupings compare row by row.
fn sorted(cells: &DataFrame) -> DataFrame {
    let keys: Vec<String> = nigrani_analytics::Dimension::ALL
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    cells.sort(keys, SortMultipleOptions::default()).unwrap()
}

/// The demo programs of these tests are as of this moment.
fn as_of() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_resumed_from_the_checkpoint_equals_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = demo_store(dir.path(), 800, 9, as_of()).await;
    let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
    let (first, rest) = events.split_at(events.len() / 2);
    demo::ingest_events(&ingestor, first, 5_000).await.unwrap();
    let options = || nigrani_analytics::EngineOptions {
        checkpoint: Some(dir.path().join("analytics.checkpoint")),
        ..Default::default()
    };
    let engine = Engine::start_with(Arc::clone(&store), options())
        .await
        .unwrap();
    assert_eq!(engine.started().from_checkpoint, 0, "no checkpoint yet");
    let (second, third) = rest.split_at(rest.len() / 2);
    demo::ingest_events(&ingestor, second, 5_000).await.unwrap();
    engine.refresh().await.unwrap();
    drop(engine);
    // A crash tears the last record; events arrive while nigrani is down.
    let path = dir.path().join("analytics.checkpoint");
    let length = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 7)
        .unwrap();
    demo::ingest_events(&ingestor, third, 5_000).await.unwrap();

    let resumed = Engine::start_with(Arc::clone(&store), options())
        .await
        .unwrap();
    let started = resumed.started();
    assert!(started.from_checkpoint > events.len() / 2, "{started:?}");
    assert!(started.from_store < events.len() / 2, "{started:?}");
    // A second process on the same file goes without it, and leaves it alone.
    let second = Engine::start_with(Arc::clone(&store), options())
        .await
        .unwrap();
    assert_eq!(second.started().from_checkpoint, 0);
    drop(second);
    let rebuilt = Engine::start(Arc::clone(&store)).await.unwrap();
    assert_eq!(rebuilt.started().from_checkpoint, 0);
    let (a, b) = (resumed.snapshot(), rebuilt.snapshot());
    assert_eq!(a.last_seq, b.last_seq);
    assert!(a.frame.equals_missing(&b.frame), "resumed state differs");
    drop(resumed);
    let again = Engine::start_with(Arc::clone(&store), options())
        .await
        .unwrap();
    // Everything the last start read from the store went into the checkpoint (but events of
    // learners off the roster, which the state does not keep).
    assert!(again.started().from_checkpoint > started.from_checkpoint);
    assert_eq!(again.started().from_store, 0);
    drop(again);

    // A roster change makes the checkpoint unusable: the state is read from the store again.
    let mut extra = Generator::from_store(
        DemoConfig {
            learners: 801,
            seed: 9,
            as_of: Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(),
        },
        &store,
    )
    .await
    .unwrap()
    .learner(800);
    extra.events.clear();
    demo::store_roster(&store, &[extra]).await.unwrap();
    let after_change = Engine::start_with(Arc::clone(&store), options())
        .await
        .unwrap();
    assert_eq!(after_change.started().from_checkpoint, 0);
    let rebuilt = Engine::start(store).await.unwrap();
    assert!(
        after_change
            .snapshot()
            .frame
            .equals_missing(&rebuilt.snapshot().frame)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_frame_and_cells_equal_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut events) = demo_store(dir.path(), 1_500, 5, as_of()).await;
    // Out of order, as platforms send them.
    events.sort_by_key(|e| e["event_id"].as_str().map(str::to_owned));
    let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
    let (first, rest) = events.split_at(events.len() * 2 / 3);
    demo::ingest_events(&ingestor, first, 5_000).await.unwrap();

    let engine = Engine::start(Arc::clone(&store) as Arc<dyn Store>)
        .await
        .unwrap();
    for chunk in rest.chunks(997) {
        demo::ingest_events(&ingestor, chunk, 5_000).await.unwrap();
        assert!(engine.refresh().await.unwrap().events > 0);
    }
    let live = engine.snapshot();
    let rebuilt = Engine::start(store).await.unwrap().snapshot();
    assert_eq!(live.last_seq, rebuilt.last_seq);
    assert!(
        live.frame.equals_missing(&rebuilt.frame),
        "the frame kept current differs from a rebuild"
    );

    assert_cells_equal(&live.cells, &rebuilt.cells, "batches");
    assert!(live.cells.height() > 100);
    // And both equal polars' own grouping of the frame.
    let grouped = nigrani_analytics::query::cells(&rebuilt.frame, rebuilt.held_until).unwrap();
    assert_cells_equal(&live.cells, &grouped, "polars' grouping");
}

/// Two groupings into cells hold the same cells with the same sums (of floats, to rounding:
/// members are added in another order).
fn assert_cells_equal(ours: &DataFrame, theirs: &DataFrame, step: &str) {
    let (ours, theirs) = (sorted(ours), sorted(theirs));
    assert_eq!(ours.height(), theirs.height(), "{step}: cells");
    for column in ours.columns() {
        let name = column.name().as_str();
        let other = theirs.column(name).unwrap();
        if column.dtype() == &DataType::Float64 {
            let (a, b) = (column.f64().unwrap(), other.f64().unwrap());
            for i in 0..a.len() {
                let (x, y) = (a.get(i).unwrap(), b.get(i).unwrap());
                assert!((x - y).abs() < 1e-9, "{step}: {name}: {x} ≠ {y}");
            }
        } else {
            let other = other.cast(column.dtype()).unwrap();
            assert!(
                column.equals_missing(&other),
                "{step}: cells differ in {name}"
            );
        }
    }
}

/// The engine's live state equals one built from the store now: the same learners, the same
/// figures per learner, the same cells and the same member lists.
async fn assert_equals_a_rebuild(engine: &Engine, store: &Arc<dyn Store>, step: &str) {
    let live = engine.snapshot();
    let rebuilt = Engine::start(Arc::clone(store)).await.unwrap().snapshot();
    assert_eq!(live.last_seq, rebuilt.last_seq, "{step}");
    let ids = |s: &Snapshot| -> Vec<String> {
        s.roster
            .by_id
            .iter()
            .map(|&row| s.roster.ids[row as usize].to_owned())
            .collect()
    };
    assert_eq!(ids(&live), ids(&rebuilt), "{step}: learners");
    assert_eq!(
        live.roster.cohorts, rebuilt.roster.cohorts,
        "{step}: cohorts"
    );
    assert_eq!(
        live.roster.institutions, rebuilt.roster.institutions,
        "{step}: institutions"
    );
    let in_id_order = |s: &Snapshot| {
        let rows = IdxCa::from_vec(PlSmallStr::EMPTY, s.roster.by_id.clone());
        s.frame.take(&rows).unwrap()
    };
    assert!(
        in_id_order(&live).equals_missing(&in_id_order(&rebuilt)),
        "{step}: the frame differs from a rebuild"
    );
    assert_cells_equal(&live.cells, &rebuilt.cells, step);
    let fresh = Engine::start(Arc::clone(store)).await.unwrap();
    for cohort in &rebuilt.roster.cohorts {
        assert_eq!(
            engine.cohort_members(&cohort.cohort_id),
            fresh.cohort_members(&cohort.cohort_id),
            "{step}: members of {}",
            cohort.cohort_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_changes_taken_in_without_a_rebuild_equal_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (store, learners) = demo_program(dir.path(), 1_200, 11, as_of()).await;
    let rows: Vec<Learner> = learners.iter().filter_map(|l| l.roster.clone()).collect();
    let (first, later) = rows.split_at(rows.len() * 3 / 4);
    store.upsert_learners(first).await.unwrap();
    let events: Vec<_> = learners.iter().flat_map(|l| l.events.clone()).collect();
    let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
    demo::ingest_events(&ingestor, &events, 5_000)
        .await
        .unwrap();
    let engine = Engine::start(Arc::clone(&store)).await.unwrap();
    let incremental = |refresh: nigrani_analytics::engine::Refresh, step: &str| {
        assert!(!refresh.rebuilt, "{step}: rebuilt");
        assert!(refresh.roster_learners > 0, "{step}: nothing taken in");
    };

    // New learners whose events were stored before them (unmatched until now).
    store.upsert_learners(later).await.unwrap();
    let refresh = engine.refresh().await.unwrap();
    incremental(refresh, "added");
    assert_eq!(refresh.roster_learners, later.len());
    assert_equals_a_rebuild(&engine, &store, "learners added").await;

    // Learners left off the demo roster get rows: their unmatched events are attributed.
    let template = &first[0];
    let off_roster: Vec<Learner> = learners
        .iter()
        .filter(|l| l.roster.is_none() && !l.events.is_empty())
        .take(30)
        .enumerate()
        .map(|(i, l)| Learner {
            learner_id: format!("late-{i:03}"),
            identities: vec![LearnerRef::parse(l.events[0]["learner"].as_str().unwrap()).unwrap()],
            ..template.clone()
        })
        .collect();
    assert!(!off_roster.is_empty());
    store.upsert_learners(&off_roster).await.unwrap();
    incremental(engine.refresh().await.unwrap(), "attributed");
    assert_equals_a_rebuild(&engine, &store, "unmatched events attributed").await;

    // Moves: another institution and discipline; another track (with a cohort of it).
    let other_track = rows.iter().find(|l| l.track != template.track).unwrap();
    let moved: Vec<Learner> = rows
        .iter()
        .step_by(17)
        .enumerate()
        .map(|(i, l)| {
            let mut l = l.clone();
            if i % 3 == 0 {
                l.track = other_track.track;
                l.cohort = other_track.cohort.clone();
            } else if let Some(other_cohort) = (i % 3 == 1)
                .then(|| {
                    rows.iter()
                        .find(|o| o.track == l.track && o.cohort != l.cohort)
                })
                .flatten()
            {
                // Another cohort of the same track: the state stands, the enrolment moves.
                l.cohort = other_cohort.cohort.clone();
            } else {
                l.institution = rows[i * 7 % rows.len()].institution.clone();
                l.discipline = rows[i * 11 % rows.len()].discipline.clone();
            }
            l
        })
        .collect();
    store.upsert_learners(&moved).await.unwrap();
    // An identity moves: one learner's identities go to another, who keeps its own too.
    let (giver, taker) = (&rows[3], &rows[4]);
    let mut taken = taker.clone();
    taken.identities.extend(giver.identities.iter().cloned());
    store.upsert_learners(&[taken]).await.unwrap();
    incremental(engine.refresh().await.unwrap(), "moved");
    assert_equals_a_rebuild(&engine, &store, "learners moved, an identity moved").await;

    // Reference data: an institution changes province, a cohort starts later, new entries.
    let mut institutions = store.institutions().await.unwrap();
    let used = institutions
        .iter_mut()
        .find(|i| i.hec_id == template.institution)
        .unwrap();
    used.province = *Province::ALL.iter().find(|p| **p != used.province).unwrap();
    let mut added = used.clone();
    added.hec_id = "PK-ZZ-999".into();
    let changed = vec![used.clone(), added];
    store.upsert_institutions(&changed).await.unwrap();
    let mut cohort = store
        .cohorts()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.cohort_id == template.cohort)
        .unwrap();
    cohort.starts_on += chrono::Duration::days(20);
    store.upsert_cohorts(&[cohort]).await.unwrap();
    let refresh = engine.refresh().await.unwrap();
    assert!(!refresh.rebuilt, "reference data rebuilt");
    assert_equals_a_rebuild(&engine, &store, "reference data changed").await;

    // A track plan changes what every course slot means: that one rebuilds.
    let plans = store.track_plans().await.unwrap();
    store.upsert_track_plans(&plans).await.unwrap();
    assert!(engine.refresh().await.unwrap().rebuilt);
    assert_equals_a_rebuild(&engine, &store, "after the rebuild").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_change_is_taken_in_when_the_follower_is_woken_not_at_its_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (store, learners) = demo_program(dir.path(), 200, 5, as_of()).await;
    let rows: Vec<Learner> = learners.iter().filter_map(|l| l.roster.clone()).collect();
    let (first, later) = rows.split_at(rows.len() / 2);
    store.upsert_learners(first).await.unwrap();
    let engine = Engine::start(Arc::clone(&store)).await.unwrap();
    let stopping = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    // A tick so far apart that only the wake-up can explain a refresh within the test.
    engine.spawn_follower(
        std::time::Duration::from_secs(3_600),
        &tasks,
        stopping.clone(),
    );
    // The first tick is at once; the next is an hour away.
    while engine.refresh_stats().0 == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (refreshes, _) = engine.refresh_stats();
    store.upsert_learners(later).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        engine.snapshot().roster.len(),
        first.len(),
        "no refresh before the wake-up"
    );
    engine.roster_changed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.snapshot().roster.len() < rows.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the woken follower did not take the roster change in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(engine.refresh_stats().0, refreshes + 1);
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
}
