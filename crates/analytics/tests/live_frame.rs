//! The frame and cells kept current batch by batch, and a state resumed from the checkpoint, must
//! equal those built from scratch.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use nigrani_analytics::Engine;
use nigrani_ingest::demo::{self, DemoConfig, Generator};
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::{Store, StoreConfig};
use polars::prelude::*;

/// The cells sorted by their dimension codes, so that two groupings compare row by row.
fn sorted(cells: &DataFrame) -> DataFrame {
    let keys: Vec<String> = nigrani_analytics::Dimension::ALL
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    cells.sort(keys, SortMultipleOptions::default()).unwrap()
}

/// A SQLite store with the roster of a demo program of `learners` (with `seed`); returns the
/// program's events, not yet ingested.
async fn demo_store(
    dir: &std::path::Path,
    learners: usize,
    seed: u64,
) -> (Arc<dyn Store>, Vec<serde_json::Value>) {
    let config = StoreConfig {
        data_dir: dir.to_owned(),
        database_url: None,
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    nigrani_ingest::seed::install_if_empty(&store)
        .await
        .unwrap();
    let generator = Generator::from_store(
        DemoConfig {
            learners,
            seed,
            as_of: Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(),
        },
        &store,
    )
    .await
    .unwrap();
    let learners: Vec<_> = (0..learners).map(|i| generator.learner(i)).collect();
    demo::store_roster(&store, &learners).await.unwrap();
    let events = learners.into_iter().flat_map(|l| l.events).collect();
    (store, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_resumed_from_the_checkpoint_equals_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = demo_store(dir.path(), 800, 9).await;
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
    let (store, mut events) = demo_store(dir.path(), 1_500, 5).await;
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

    let (live_cells, rebuilt_cells) = (sorted(&live.cells), sorted(&rebuilt.cells));
    assert_eq!(live_cells.height(), rebuilt_cells.height());
    assert!(live_cells.height() > 100);
    // And both equal polars' own grouping of the frame (sums of floats to rounding).
    let grouped =
        sorted(&nigrani_analytics::query::cells(&rebuilt.frame, rebuilt.held_until).unwrap());
    for other in [&rebuilt_cells, &grouped] {
        for column in live_cells.columns() {
            let name = column.name().as_str();
            let theirs = other.column(name).unwrap();
            if column.dtype() == &DataType::Float64 {
                let (a, b) = (column.f64().unwrap(), theirs.f64().unwrap());
                for i in 0..a.len() {
                    let (x, y) = (a.get(i).unwrap(), b.get(i).unwrap());
                    assert!((x - y).abs() < 1e-9, "{name}: {x} ≠ {y}");
                }
            } else {
                let theirs = theirs.cast(column.dtype()).unwrap();
                assert!(column.equals_missing(&theirs), "cells differ in {name}");
            }
        }
    }
}
