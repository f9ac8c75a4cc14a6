//! The summary's figures per track and its targets come from one snapshot, also when answers
//! may lag the newest data while their successors are computed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use nigrani_analytics::answers::Stamped;
use nigrani_analytics::{BreakdownQuery, Dimension, Engine, EngineOptions, Metric, Summary};
use nigrani_ingest::demo;
use nigrani_ingest::{Ingestor, Limits};
use support::demo_store;

mod support;

fn summary_query(as_of: DateTime<Utc>) -> BreakdownQuery {
    BreakdownQuery {
        by: vec![Dimension::Track],
        filters: Default::default(),
        metrics: vec![Metric::Trained],
        from: None,
        as_of,
        totals: false,
        period: None,
        latest: true,
    }
}

/// Each track's trained learners, from the breakdown and from the targets.
fn trained_both_ways(summary: &Stamped<Summary>) -> Vec<(String, u64, u64)> {
    summary
        .value
        .targets
        .iter()
        .filter(|t| t.scope == "track")
        .map(|target| {
            let counted = summary
                .value
                .breakdown
                .rows
                .iter()
                .find(|r| r.keys[0].as_deref() == Some(target.id.as_str()))
                .and_then(|r| r.values[0])
                .unwrap_or(0.0);
            (target.id.clone(), counted as u64, target.attained)
        })
        .collect()
}

fn assert_agrees(summary: &Stamped<Summary>, step: &str) -> u64 {
    let mut total = 0;
    for (track, counted, attained) in trained_both_ways(summary) {
        assert_eq!(counted, attained, "{step}: track {track}");
        total += counted;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_summary_still_has_its_figures_and_targets_from_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let as_of = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let (store, events) = demo_store(dir.path(), 400, 11, as_of).await;
    let ingestor = Ingestor::new(Arc::clone(&store), Limits::default());
    let (first, rest) = events.split_at(events.len() / 3);
    demo::ingest_events(&ingestor, first, 5_000).await.unwrap();
    let engine = Engine::start_with(
        Arc::clone(&store),
        EngineOptions {
            max_staleness: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // One moment for every poll, as callers round "now" so that pollers share answers.
    let now = Utc::now();
    // Targets asked alone keep an answer from the first snapshot.
    let early_targets = engine.targets_stamped(now).await.unwrap();
    let before = engine.summary_stamped(&summary_query(now)).await.unwrap();
    let trained_before = assert_agrees(&before, "first snapshot");

    demo::ingest_events(&ingestor, rest, 5_000).await.unwrap();
    engine.refresh().await.unwrap();
    let newest = engine.snapshot().published_at;
    assert!(newest > early_targets.data_as_of);

    // Until the successor is computed the previous summary stands in, whole.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let summary = engine.summary_stamped(&summary_query(now)).await.unwrap();
        let trained = assert_agrees(&summary, "while the successor is computed");
        if summary.data_as_of >= newest {
            assert!(
                trained > trained_before,
                "the rest of the events train more learners: {trained} vs {trained_before}"
            );
            break;
        }
        assert_eq!(summary.data_as_of, before.data_as_of);
        assert!(
            std::time::Instant::now() < deadline,
            "the summary never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A cohort's page: its own target only, the one the summary gives it.
    let summary = engine.summary_stamped(&summary_query(now)).await.unwrap();
    let cohorts: Vec<_> = summary
        .value
        .targets
        .iter()
        .filter(|t| t.scope == "cohort")
        .collect();
    assert!(cohorts.len() > 1, "the demo has several cohorts");
    for target in cohorts {
        let page = BreakdownQuery {
            by: Vec::new(),
            filters: [(Dimension::Cohort, vec![target.id.clone()])].into(),
            ..summary_query(now)
        };
        let page = engine
            .cohort_summary_stamped(&page, &target.id)
            .await
            .unwrap();
        assert_eq!(page.data_as_of, summary.data_as_of);
        let own = &page.value.targets;
        assert_eq!(own.len(), 1, "{}", target.id);
        assert_eq!(
            (own[0].attained, own[0].pace_per_day, own[0].projected_date),
            (target.attained, target.pace_per_day, target.projected_date),
            "{}",
            target.id
        );
        assert_eq!(
            page.value.breakdown.rows[0].values[0].unwrap_or(0.0) as u64,
            target.attained,
            "{}: the members trained are the target's",
            target.id
        );
    }
    assert!(
        engine
            .cohort_summary_stamped(&summary_query(now), "no-such-cohort")
            .await
            .unwrap()
            .value
            .targets
            .is_empty()
    );

    // Only the latest data is summarised.
    let past = BreakdownQuery {
        latest: false,
        ..summary_query(as_of)
    };
    assert!(engine.summary_stamped(&past).await.is_err());
}
