//! One suite, both backends: every behaviour the `Store` trait promises, run against SQLite in a
//! temporary folder and against a fresh PostgreSQL database.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use nigrani_domain::event::content_hash;
use nigrani_domain::{
    Cohort, Discipline, EventKind, Institution, Learner, LearnerRef, LearningEvent, Province,
    RejectReason, Rejection, Role, Sector, Track, TrackPlan,
};
use nigrani_store::adapters::{
    ConnectorState, CourseMapping, StatementBatch, StatementFilter, StatementRecord,
    StatementsWrite,
};
use nigrani_store::testing::TestDatabase;
use nigrani_store::{
    EventWrite, Page, ROSTER_LOG_KEPT, RosterPart, Store, StoreConfig, StoreError,
};

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..StoreConfig::default()
    };
    let (store, applied) = nigrani_store::open(&config).await.unwrap();
    assert!(!applied.is_empty(), "a new database gets every migration");
    (store, dir)
}

async fn postgres(label: &str) -> Option<(Arc<dyn Store>, TestDatabase)> {
    let db = TestDatabase::create(label)?;
    let config = StoreConfig {
        database_url: Some(db.url().to_owned()),
        ..StoreConfig::default()
    };
    let (store, applied) = nigrani_store::open(&config).await.unwrap();
    assert!(!applied.is_empty(), "a new database gets every migration");
    Some((store, db))
}

/// Declares one test per backend for a suite function.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { let (store, _dir) = super::sqlite().await; super::$name(store).await; })+
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() {
                if let Some((store, _db)) = super::postgres(stringify!($name)).await { super::$name(store).await; }
            })+
        }
    };
}

both_backends!(
    reference_data_round_trips_and_upserts,
    learners_must_name_known_institutions,
    events_are_idempotent_and_conflicts_are_kept,
    unmatched_events_are_attributed_when_the_roster_learns_the_learner,
    change_feed_pages_in_sequence_order,
    rejections_are_listed_in_order,
    rejected_payloads_are_capped_and_purged_after_their_retention,
    an_event_stored_with_its_earlier_hash_is_a_duplicate,
    api_keys_and_the_audit_log,
    the_roster_log_names_what_each_change_touched,
    statements_are_written_once_and_conflicts_refuse_the_batch,
    voiding_retracts_the_event_and_restates_its_learner,
    statement_filters_and_paging,
    the_course_mapping_round_trips,
    connector_state_round_trips,
);

/// Opening a migrated database again applies no migration and keeps what it holds.
async fn reopening_applies_no_migration(config: StoreConfig) {
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    seed_reference(store.as_ref()).await;
    let institutions = store.institutions().await.unwrap();
    drop(store);
    let (store, applied) = nigrani_store::open(&config).await.unwrap();
    assert!(applied.is_empty(), "applied again: {applied:?}");
    assert_eq!(store.institutions().await.unwrap(), institutions);
}

#[tokio::test]
async fn reopening_sqlite_applies_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    reopening_applies_no_migration(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..StoreConfig::default()
    })
    .await;
}

#[tokio::test]
async fn reopening_postgres_applies_no_migration() {
    let Some(db) = TestDatabase::create("reopening_applies_no_migration") else {
        return;
    };
    reopening_applies_no_migration(StoreConfig {
        database_url: Some(db.url().to_owned()),
        ..StoreConfig::default()
    })
    .await;
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, 9, 30, 0).unwrap()
}

fn institution(hec_id: &str) -> Institution {
    Institution {
        hec_id: hec_id.into(),
        name: format!("University {hec_id}"),
        name_ur: "جامعہ".into(),
        province: Province::Sindh,
        city: "Karachi".into(),
        sector: Sector::Public,
    }
}

async fn seed_reference(store: &dyn Store) {
    store
        .upsert_institutions(&[institution("PK-SD-001"), institution("PK-SD-002")])
        .await
        .unwrap();
    store
        .upsert_disciplines(&[Discipline {
            code: "education".into(),
            name: "Education".into(),
            name_ur: "تعلیم".into(),
            stem: false,
        }])
        .await
        .unwrap();
    store
        .upsert_cohorts(&[Cohort {
            cohort_id: "soft-1".into(),
            name: "Soft 1".into(),
            name_ur: "سافٹ ۱".into(),
            track: Track::Soft,
            starts_on: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
            ends_on: NaiveDate::from_ymd_opt(2026, 5, 31).unwrap(),
            target: 300,
        }])
        .await
        .unwrap();
}

fn learner(id: &str, refs: &[&str]) -> Learner {
    Learner {
        learner_id: id.into(),
        identities: refs.iter().map(|r| LearnerRef::parse(r).unwrap()).collect(),
        institution: "PK-SD-001".into(),
        discipline: "education".into(),
        track: Track::Soft,
        cohort: "soft-1".into(),
        role: Role::Faculty,
        gender: None,
    }
}

fn event(id: &str, learner: &str, progress: f64) -> LearningEvent {
    let raw = serde_json::json!({"source": "coursera", "event_id": id, "learner": learner, "progress": progress});
    LearningEvent {
        source: "coursera".into(),
        event_id: id.into(),
        learner: LearnerRef::parse(learner).unwrap(),
        course_id: "ai-for-educators".into(),
        kind: EventKind::Progressed,
        progress: Some(progress),
        score: None,
        duration_seconds: Some(600),
        occurred_at: at(2),
        content_hash: content_hash(&raw),
        earlier_content_hash: None,
        raw: raw.to_string(),
    }
}

async fn reference_data_round_trips_and_upserts(store: Arc<dyn Store>) {
    let before = store.roster_version().await.unwrap();
    seed_reference(store.as_ref()).await;
    let after_reference = store.roster_version().await.unwrap();
    assert!(
        after_reference > before,
        "reference changes move the roster version"
    );
    let plans = [
        TrackPlan {
            track: Track::Soft,
            required_courses: vec!["a".into(), "b".into()],
            target: 1000,
            stretch_target: None,
        },
        TrackPlan {
            track: Track::Hard,
            required_courses: vec!["c".into()],
            target: 250,
            stretch_target: Some(500),
        },
    ];
    store.upsert_track_plans(&plans).await.unwrap();
    assert_eq!(store.track_plans().await.unwrap(), plans);

    let mut renamed = institution("PK-SD-001");
    renamed.name = "Renamed University".into();
    renamed.sector = Sector::Private;
    store.upsert_institutions(&[renamed.clone()]).await.unwrap();
    let all = store.institutions().await.unwrap();
    assert_eq!(all, vec![renamed, institution("PK-SD-002")]);
    assert_eq!(store.disciplines().await.unwrap().len(), 1);
    let cohorts = store.cohorts().await.unwrap();
    assert_eq!(
        cohorts[0].ends_on,
        NaiveDate::from_ymd_opt(2026, 5, 31).unwrap()
    );

    let mut l = learner("L1", &["coursera:a1", "email:x@uni.edu.pk"]);
    l.gender = Some(nigrani_domain::Gender::Female);
    store.upsert_learners(&[l.clone()]).await.unwrap();
    let page = store
        .learners(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let mut expected = l.clone();
    expected.identities.sort();
    assert_eq!(page, vec![expected]);
    let dimensions = store
        .learner_dimensions(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let mut without = l.clone();
    without.identities.clear();
    assert_eq!(
        dimensions,
        vec![without],
        "the same learner, without identities"
    );

    // Replacing a learner's identities drops the old ones.
    store
        .upsert_learners(&[learner("L1", &["coursera:a2"])])
        .await
        .unwrap();
    let page = store
        .learners(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        page[0].identities,
        vec![LearnerRef::parse("coursera:a2").unwrap()]
    );
    assert_eq!(store.stats().await.unwrap().learners, 1);
}

async fn learners_must_name_known_institutions(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    let mut l = learner("L1", &["coursera:a1"]);
    l.institution = "PK-XX-999".into();
    let err = store.upsert_learners(&[l]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        store.stats().await.unwrap().learners,
        0,
        "nothing half-written"
    );
}

/// An event stored before numbers were canonical has the hash of its text as sent; resent, it
/// carries that hash as its earlier one and is a duplicate, not a conflict.
async fn an_event_stored_with_its_earlier_hash_is_a_duplicate(store: Arc<dyn Store>) {
    let stored = event("old", "coursera:a1", 1.0);
    store
        .write_batch(std::slice::from_ref(&stored), &[], at(3))
        .await
        .unwrap();
    let mut resent = stored.clone();
    resent.content_hash = "the hash of the canonical text".into();
    resent.earlier_content_hash = Some(stored.content_hash.clone());
    let outcomes = store
        .write_batch(&[resent.clone()], &[], at(4))
        .await
        .unwrap();
    assert!(
        matches!(outcomes[..], [EventWrite::Duplicate { .. }]),
        "{outcomes:?}"
    );
    resent.earlier_content_hash = Some("another".into());
    let outcomes = store.write_batch(&[resent], &[], at(4)).await.unwrap();
    assert!(
        matches!(outcomes[..], [EventWrite::Conflict { .. }]),
        "{outcomes:?}"
    );
}

async fn events_are_idempotent_and_conflicts_are_kept(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    store
        .upsert_learners(&[learner("L1", &["coursera:a1"])])
        .await
        .unwrap();
    let first = store
        .write_batch(
            &[
                event("e1", "coursera:a1", 0.2),
                event("e2", "coursera:zz", 0.3),
            ],
            &[],
            at(3),
        )
        .await
        .unwrap();
    let (seq1, seq2) = match first.as_slice() {
        [
            EventWrite::Accepted {
                seq: a,
                matched: true,
            },
            EventWrite::Accepted {
                seq: b,
                matched: false,
            },
        ] => (*a, *b),
        other => panic!("unexpected outcomes {other:?}"),
    };
    assert!(seq1 < seq2);

    let again = store
        .write_batch(
            &[
                event("e1", "coursera:a1", 0.2),
                event("e2", "coursera:zz", 0.9),
                event("e3", "coursera:a1", 0.5),
            ],
            &[],
            at(4),
        )
        .await
        .unwrap();
    assert_eq!(again[0], EventWrite::Duplicate { seq: seq1 });
    assert_eq!(again[1], EventWrite::Conflict { seq: seq2 });
    assert!(matches!(again[2], EventWrite::Accepted { seq, matched: true } if seq > seq2));

    let stored = store.events_after(0, 100).await.unwrap();
    assert_eq!(stored.len(), 3);
    let e2 = stored.iter().find(|s| s.event.event_id == "e2").unwrap();
    assert_eq!(e2.event.progress, Some(0.3), "a conflict never overwrites");
    assert_eq!(e2.event, event("e2", "coursera:zz", 0.3));
    assert_eq!(e2.received_at, at(3));

    let rejections = store
        .rejections(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].rejection.reason, RejectReason::Conflict);
    assert_eq!(rejections[0].rejection.event_id.as_deref(), Some("e2"));
    assert!(rejections[0].rejection.raw.contains("0.9"));

    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.unmatched_events, stats.rejections),
        (3, 1, 1)
    );
}

async fn unmatched_events_are_attributed_when_the_roster_learns_the_learner(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    let outcomes = store
        .write_batch(
            &[
                event("e1", "coursera:late", 0.1),
                event("e2", "coursera:late", 0.2),
            ],
            &[],
            at(3),
        )
        .await
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, EventWrite::Accepted { matched: false, .. }))
    );
    assert!(
        store
            .events_after(0, 10)
            .await
            .unwrap()
            .iter()
            .all(|e| e.learner_id.is_none())
    );
    // Unmatched activity is a figure of its own, per source.
    assert_eq!(
        store.unmatched_by_source().await.unwrap(),
        vec![nigrani_store::UnmatchedSource {
            source: "coursera".into(),
            learner_refs: 1,
            events: 2,
        }]
    );

    let change = store
        .upsert_learners(&[learner("L9", &["coursera:late"])])
        .await
        .unwrap();
    assert_eq!(change.attributed_events, 2);
    let events = store.events_after(0, 10).await.unwrap();
    assert!(events.iter().all(|e| e.learner_id.as_deref() == Some("L9")));
    assert_eq!(store.stats().await.unwrap().unmatched_events, 0);
    assert!(store.unmatched_by_source().await.unwrap().is_empty());

    // Learning the same identity again attributes nothing new.
    let change = store
        .upsert_learners(&[learner("L9", &["coursera:late"])])
        .await
        .unwrap();
    assert_eq!(change.attributed_events, 0);
}

async fn change_feed_pages_in_sequence_order(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    for batch in 0..5 {
        let events: Vec<_> = (0..7)
            .map(|i| event(&format!("b{batch}-{i}"), "coursera:a1", 0.5))
            .collect();
        store.write_batch(&events, &[], at(5)).await.unwrap();
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.events_after(after, 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in &page {
            assert!(e.seq > after);
            after = e.seq;
            seen.push(e.event.event_id.clone());
        }
    }
    assert_eq!(seen.len(), 35);
    let feed = store.feed_after(0, 100).await.unwrap();
    let full = store.events_after(0, 100).await.unwrap();
    assert_eq!(feed.len(), full.len());
    for (light, heavy) in feed.iter().zip(&full) {
        assert_eq!(light.seq, heavy.seq);
        assert_eq!(light.learner_id, heavy.learner_id);
        assert_eq!(light.kind, heavy.event.kind);
        assert_eq!(light.progress, heavy.event.progress);
        assert_eq!(light.occurred_at, heavy.event.occurred_at);
        assert_eq!(light.course_id, heavy.event.course_id);
    }
    assert_eq!(seen[0], "b0-0");
    assert_eq!(seen[34], "b4-6");
    assert_eq!(store.stats().await.unwrap().last_seq, after);
}

async fn rejected_payloads_are_capped_and_purged_after_their_retention(store: Arc<dyn Store>) {
    let rejection = |raw: String| Rejection {
        reason: RejectReason::MalformedJson,
        message: "not JSON".into(),
        source: None,
        event_id: None,
        raw,
    };
    // Just under, at and over the cap; a multi-byte character straddling it is not split.
    let cap = nigrani_store::MAX_KEPT_PAYLOAD_BYTES;
    let payloads = [
        "a".repeat(cap - 1),
        "b".repeat(cap),
        "c".repeat(cap + 1),
        format!("{}é", "d".repeat(cap - 1)),
    ];
    store
        .write_batch(
            &[],
            &[
                rejection(payloads[0].clone()),
                rejection(payloads[1].clone()),
            ],
            at(3),
        )
        .await
        .unwrap();
    store
        .write_batch(
            &[],
            &[
                rejection(payloads[2].clone()),
                rejection(payloads[3].clone()),
            ],
            at(5),
        )
        .await
        .unwrap();
    let kept = store
        .rejections(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let shape: Vec<_> = kept
        .iter()
        .map(|r| (r.rejection.raw.len(), r.raw_bytes, r.raw_truncated))
        .collect();
    assert_eq!(
        shape,
        [
            (cap - 1, cap as u64 - 1, false),
            (cap, cap as u64, false),
            (cap, cap as u64 + 1, true),
            (cap - 1, cap as u64 + 1, true),
        ]
    );
    assert_eq!(
        kept[2].raw_sha256.as_deref(),
        Some(nigrani_domain::roster::sha256_hex(payloads[2].as_bytes()).as_str())
    );
    // Retention: what was received before the cut-off goes, the rest stays.
    assert_eq!(store.purge_rejections(at(4)).await.unwrap(), 2);
    let left = store
        .rejections(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|r| r.received_at == at(5)));
    assert_eq!(store.purge_rejections(at(4)).await.unwrap(), 0);
}

async fn rejections_are_listed_in_order(store: Arc<dyn Store>) {
    let rejections: Vec<Rejection> = (0..5)
        .map(|i| Rejection {
            reason: RejectReason::MalformedJson,
            message: format!("line {i} is not JSON"),
            source: None,
            event_id: None,
            raw: format!("{{oops {i}"),
        })
        .collect();
    let outcomes = store.write_batch(&[], &rejections, at(6)).await.unwrap();
    assert!(outcomes.is_empty());
    let first = store
        .rejections(Page {
            after: None,
            limit: 3,
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    let rest = store
        .rejections(Page {
            after: Some(first[2].id),
            limit: 3,
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].rejection.raw, "{oops 4");
    assert_eq!(rest[1].received_at, at(6));
}

async fn api_keys_and_the_audit_log(store: Arc<dyn Store>) {
    use nigrani_domain::AccessRole;
    use nigrani_store::{ApiKeyRecord, AuditEntry};
    let key = ApiKeyRecord {
        key_id: "nk_0000abcd".into(),
        name: "meta".into(),
        role: AccessRole::Partner,
        source: None,
        key_hash: "f".repeat(64),
        created_at: at(1),
        revoked_at: None,
    };
    store.create_api_key(&key).await.unwrap();
    let err = store.create_api_key(&key).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "key ids are unique: {err:?}"
    );
    assert_eq!(store.api_keys().await.unwrap(), vec![key.clone()]);
    assert!(store.revoke_api_key("nk_0000abcd", at(2)).await.unwrap());
    assert!(
        !store.revoke_api_key("nk_0000abcd", at(3)).await.unwrap(),
        "revoked once"
    );
    assert_eq!(store.api_keys().await.unwrap()[0].revoked_at, Some(at(2)));

    for status in [200, 403] {
        store
            .append_audit(&AuditEntry {
                id: 0,
                at: at(4),
                key_id: key.key_id.clone(),
                method: "GET".into(),
                path: "/api/v1/breakdown".into(),
                query: "by=province".into(),
                status,
            })
            .await
            .unwrap();
    }
    let log = store
        .audit(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[1].status, log[1].query.as_str()), (403, "by=province"));
    assert!(log[0].id < log[1].id);
}

async fn the_roster_log_names_what_each_change_touched(store: Arc<dyn Store>) {
    let start = store.roster_version().await.unwrap();
    seed_reference(store.as_ref()).await;
    let log = store.roster_log_after(start).await.unwrap().unwrap();
    let parts: Vec<RosterPart> = log.iter().map(|e| e.part).collect();
    assert_eq!(
        parts,
        [
            RosterPart::Institutions,
            RosterPart::Disciplines,
            RosterPart::Cohorts
        ]
    );
    assert!(log.iter().all(|e| e.learner_ids.is_empty()));
    assert_eq!(log.last().unwrap().version, start + 3);

    // An event stored before its learner is known, then the learners.
    let unmatched = event("e-1", "coursera:u-3", 0.5);
    store.write_batch(&[unmatched], &[], at(3)).await.unwrap();
    let before = store.roster_version().await.unwrap();
    store
        .upsert_learners(&[
            learner("L-1", &["coursera:u-1"]),
            learner("L-2", &["coursera:u-2"]),
        ])
        .await
        .unwrap();
    // L-3 takes over L-1's identity and learns u-3: L-1 changes too (it loses events).
    store
        .upsert_learners(&[learner("L-3", &["coursera:u-1", "coursera:u-3"])])
        .await
        .unwrap();
    let log = store.roster_log_after(before).await.unwrap().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].part, RosterPart::Learners);
    assert_eq!(log[0].learner_ids, ["L-1", "L-2"]);
    assert_eq!(
        log[0].restated,
        ["L-1", "L-2"],
        "new learners are read whole"
    );
    assert_eq!(log[1].learner_ids, ["L-1", "L-3"]);
    assert_eq!(log[1].restated, ["L-1", "L-3"], "L-1 lost an identity");
    // L-2 only moves: its state stands. L-3 leaves for the other track: read again.
    let mut moved = learner("L-2", &["coursera:u-2"]);
    moved.institution = "PK-SD-002".to_owned();
    let mut other_track = learner("L-3", &["coursera:u-1", "coursera:u-3"]);
    other_track.track = Track::Hard;
    let version = store.roster_version().await.unwrap();
    store.upsert_learners(&[moved, other_track]).await.unwrap();
    let log = store.roster_log_after(version).await.unwrap().unwrap();
    assert_eq!(log[0].learner_ids, ["L-2", "L-3"]);
    assert_eq!(log[0].restated, ["L-3"]);
    assert_eq!(log[0].version, store.roster_version().await.unwrap());
    assert_eq!(
        store.roster_log_after(log[0].version).await.unwrap(),
        Some(Vec::new()),
        "nothing after the latest version"
    );

    let ids = ["L-3".to_owned(), "L-1".to_owned(), "nobody".to_owned()];
    let found = store.learners_by_id(&ids).await.unwrap();
    let found: Vec<&str> = found.iter().map(|l| l.learner_id.as_str()).collect();
    assert_eq!(found, ["L-1", "L-3"], "in id order, unknown ids left out");
    let latest = store.stats().await.unwrap().last_seq;
    let feed = store.feed_of_learners(&ids, latest).await.unwrap();
    assert_eq!(feed.len(), 1, "the event of u-3, now L-3's");
    assert_eq!(feed[0].learner_id.as_deref(), Some("L-3"));
    assert!(store.feed_of_learners(&ids, 0).await.unwrap().is_empty());

    // The log keeps the latest ROSTER_LOG_KEPT versions: a reader further behind rebuilds.
    let oldest_kept = before;
    for _ in 0..ROSTER_LOG_KEPT {
        store.upsert_disciplines(&[]).await.unwrap();
    }
    assert_eq!(store.roster_log_after(oldest_kept).await.unwrap(), None);
    let latest = store.roster_version().await.unwrap();
    let kept = store
        .roster_log_after(latest - ROSTER_LOG_KEPT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.len() as i64, ROSTER_LOG_KEPT);
}

const VOIDED: &str = "http://adlnet.gov/expapi/verbs/voided";
const COMPLETED: &str = "http://adlnet.gov/expapi/verbs/completed";

fn statement_record(id: &str, verb: &str, voids: Option<&str>, hash: &str) -> StatementRecord {
    StatementRecord {
        statement_id: id.into(),
        source: "moodle".into(),
        verb_id: verb.into(),
        registration: None,
        voids: voids.map(str::to_owned),
        refs: vec![
            ("agent:mbox_sha1sum:ab".into(), true),
            ("activity:https://lms.example/course/1".into(), true),
            ("activity:https://lms.example/program".into(), false),
        ],
        content_hash: hash.into(),
        statement: format!(r#"{{"id":"{id}","verb":{{"id":"{verb}"}}}}"#),
    }
}

/// The event a statement maps to: its id is the statement's.
fn statement_event(id: &str, learner: &str) -> LearningEvent {
    let mut e = event(id, learner, 1.0);
    e.source = "moodle".into();
    e.kind = EventKind::CourseCompleted;
    e.progress = None;
    e
}

async fn write(
    store: &dyn Store,
    statements: &[StatementRecord],
    events: &[LearningEvent],
) -> StatementsWrite {
    store
        .write_statements(StatementBatch { statements, events }, at(4))
        .await
        .unwrap()
}

async fn statements_are_written_once_and_conflicts_refuse_the_batch(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    let a = statement_record(
        "00000000-0000-4000-8000-00000000000a",
        COMPLETED,
        None,
        "h-a",
    );
    let b = statement_record(
        "00000000-0000-4000-8000-00000000000b",
        COMPLETED,
        None,
        "h-b",
    );
    let events = [statement_event(&a.statement_id, "moodle:u1")];
    let StatementsWrite::Written {
        statements,
        events: written,
    } = write(store.as_ref(), &[a.clone(), b.clone()], &events).await
    else {
        panic!("a new batch is written");
    };
    assert_eq!(statements, [true, true]);
    assert!(matches!(written[..], [EventWrite::Accepted { .. }]));
    // The same again changes nothing.
    let again = write(store.as_ref(), &[a.clone(), b.clone()], &events).await;
    assert!(
        matches!(&again, StatementsWrite::Written { statements, events } if statements == &[false, false] && events.is_empty()),
        "{again:?}"
    );
    // Other content under a stored id: the whole batch is refused, a new statement included.
    let c = statement_record(
        "00000000-0000-4000-8000-00000000000c",
        COMPLETED,
        None,
        "h-c",
    );
    let changed = statement_record(&b.statement_id, COMPLETED, None, "h-other");
    assert_eq!(
        write(store.as_ref(), &[c.clone(), changed], &[]).await,
        StatementsWrite::Conflict {
            statement_id: b.statement_id.clone()
        }
    );
    assert!(store.statement(&c.statement_id).await.unwrap().is_none());
    let stored = store.statement(&a.statement_id).await.unwrap().unwrap();
    assert_eq!(stored.statement, a.statement);
    assert!(!stored.voided);
    assert_eq!(store.feed_after(0, 10).await.unwrap().len(), 1);
}

async fn voiding_retracts_the_event_and_restates_its_learner(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    store
        .upsert_learners(&[learner("L-1", &["moodle:u1"])])
        .await
        .unwrap();
    let target = statement_record(
        "00000000-0000-4000-8000-000000000001",
        COMPLETED,
        None,
        "h-1",
    );
    let events = [statement_event(&target.statement_id, "moodle:u1")];
    write(store.as_ref(), std::slice::from_ref(&target), &events).await;
    assert_eq!(store.feed_after(0, 10).await.unwrap().len(), 1);
    let version = store.roster_version().await.unwrap();

    let voiding = statement_record(
        "00000000-0000-4000-8000-000000000002",
        VOIDED,
        Some(&target.statement_id),
        "h-2",
    );
    // Another source's voiding statement voids nothing.
    let mut foreign = statement_record(
        "00000000-0000-4000-8000-0000000000f1",
        VOIDED,
        Some(&target.statement_id),
        "h-f",
    );
    foreign.source = "canvas".into();
    write(store.as_ref(), std::slice::from_ref(&foreign), &[]).await;
    assert_eq!(
        store.feed_after(0, 10).await.unwrap().len(),
        1,
        "not voided by canvas"
    );
    assert!(
        !store
            .statement(&target.statement_id)
            .await
            .unwrap()
            .unwrap()
            .voided
    );

    write(store.as_ref(), std::slice::from_ref(&voiding), &[]).await;
    assert!(
        store.feed_after(0, 10).await.unwrap().is_empty(),
        "retracted from the feed"
    );
    let latest = store.stats().await.unwrap().last_seq;
    assert!(
        store
            .feed_of_learners(&["L-1".to_owned()], latest)
            .await
            .unwrap()
            .is_empty(),
        "and from the learner's replay"
    );
    let log = store.roster_log_after(version).await.unwrap().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].restated, ["L-1"], "the learner is read again");
    let kept = store
        .statement(&target.statement_id)
        .await
        .unwrap()
        .unwrap();
    assert!(kept.voided, "the voided statement stays stored");
    let listed = store
        .statements(&StatementFilter {
            limit: 10,
            ..StatementFilter::default()
        })
        .await
        .unwrap();
    let listed: Vec<bool> = listed.iter().map(|s| s.voided).collect();
    assert_eq!(
        listed,
        [false, false],
        "lists leave voided statements out (two voiders stay)"
    );

    // A voiding statement that arrives before its target voids it when it comes.
    let early = statement_record(
        "00000000-0000-4000-8000-000000000003",
        VOIDED,
        Some("00000000-0000-4000-8000-000000000004"),
        "h-3",
    );
    write(store.as_ref(), std::slice::from_ref(&early), &[]).await;
    let late = statement_record(
        "00000000-0000-4000-8000-000000000004",
        COMPLETED,
        None,
        "h-4",
    );
    let events = [statement_event(&late.statement_id, "moodle:u1")];
    write(store.as_ref(), std::slice::from_ref(&late), &events).await;
    assert!(
        store
            .statement(&late.statement_id)
            .await
            .unwrap()
            .unwrap()
            .voided
    );
    assert!(store.feed_after(0, 10).await.unwrap().is_empty());
}

async fn statement_filters_and_paging(store: Arc<dyn Store>) {
    seed_reference(store.as_ref()).await;
    let records: Vec<StatementRecord> = (0..5)
        .map(|i| {
            let mut r = statement_record(
                &format!("00000000-0000-4000-8000-00000000010{i}"),
                if i % 2 == 0 {
                    COMPLETED
                } else {
                    "http://adlnet.gov/expapi/verbs/attempted"
                },
                None,
                &format!("h{i}"),
            );
            if i == 4 {
                r.refs = vec![("agent:mbox_sha1sum:cd".into(), true)];
                r.registration = Some("reg-4".into());
            }
            r
        })
        .collect();
    write(store.as_ref(), &records, &[]).await;
    // Everything stored so far is at or before the consistent-through moment.
    let through = store.statements_consistent_through().await.unwrap();
    let stored = store
        .statement(&records[4].statement_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.stored <= through, "{} > {through}", stored.stored);
    let ids = |list: Vec<nigrani_store::adapters::StoredStatement>| -> Vec<String> {
        list.iter().map(|s| s.statement[7..43].to_owned()).collect()
    };
    let filter = |f: StatementFilter| StatementFilter { limit: 10, ..f };
    let newest_first = store
        .statements(&filter(StatementFilter::default()))
        .await
        .unwrap();
    assert_eq!(newest_first.len(), 5);
    assert!(newest_first[0].seq > newest_first[4].seq);
    let completed = store
        .statements(&filter(StatementFilter {
            verb: Some(COMPLETED.into()),
            ascending: true,
            ..StatementFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        ids(completed),
        [&records[0], &records[2], &records[4]].map(|r| r.statement_id.clone())
    );
    let by_agent = store
        .statements(&filter(StatementFilter {
            agent: Some("agent:mbox_sha1sum:cd".into()),
            ..StatementFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(by_agent), [records[4].statement_id.clone()]);
    let related = |related_activities| StatementFilter {
        activity: Some("activity:https://lms.example/program".into()),
        related_activities,
        ..StatementFilter::default()
    };
    assert!(
        store
            .statements(&filter(related(false)))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .statements(&filter(related(true)))
            .await
            .unwrap()
            .len(),
        4
    );
    let registered = store
        .statements(&filter(StatementFilter {
            registration: Some("reg-4".into()),
            ..StatementFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(registered.len(), 1);
    // Two pages of two, then one.
    let mut after_seq = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .statements(&StatementFilter {
                ascending: true,
                after_seq,
                limit: 2,
                ..StatementFilter::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after_seq = page.last().map(|s| s.seq);
        seen.extend(ids(page));
    }
    assert_eq!(
        seen,
        records
            .iter()
            .map(|r| r.statement_id.clone())
            .collect::<Vec<_>>()
    );
    let stored_at = newest_first[0].stored;
    assert!(
        store
            .statements(&filter(StatementFilter {
                since: Some(stored_at),
                ..StatementFilter::default()
            }))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .statements(&filter(StatementFilter {
                until: Some(stored_at),
                ..StatementFilter::default()
            }))
            .await
            .unwrap()
            .len(),
        5
    );

    // A statement written after a consistent-through moment is stored after it, so polling
    // with `since` that moment finds it, even in the same microsecond.
    let through = store.statements_consistent_through().await.unwrap();
    let later = statement_record(
        "00000000-0000-4000-8000-0000000001ff",
        COMPLETED,
        None,
        "h-later",
    );
    write(store.as_ref(), std::slice::from_ref(&later), &[]).await;
    let stored = store.statement(&later.statement_id).await.unwrap().unwrap();
    assert!(stored.stored > through, "{} <= {through}", stored.stored);
    let since = store
        .statements(&StatementFilter {
            since: Some(through),
            limit: 10,
            ..StatementFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
}

async fn the_course_mapping_round_trips(store: Arc<dyn Store>) {
    let mapping = |source: &str, platform: &str, course: &str| CourseMapping {
        source: source.into(),
        platform_course_id: platform.into(),
        course_id: course.into(),
    };
    let rows = [
        mapping("moodle", "https://lms.example/course/1", "ai-for-educators"),
        mapping("coursera", "ai-for-everyone", "ai-foundations"),
    ];
    assert_eq!(store.upsert_course_mappings(&rows).await.unwrap(), 2);
    store
        .upsert_course_mappings(&[mapping(
            "moodle",
            "https://lms.example/course/1",
            "ml-basics",
        )])
        .await
        .unwrap();
    let map = store.course_map().await.unwrap();
    assert_eq!(
        map,
        [
            mapping("coursera", "ai-for-everyone", "ai-foundations"),
            mapping("moodle", "https://lms.example/course/1", "ml-basics"),
        ]
    );
    // Events stored before their course was mapped move to the mapped course, and their
    // learners are read again.
    seed_reference(store.as_ref()).await;
    store
        .upsert_learners(&[learner("L-1", &["coursera:u1"])])
        .await
        .unwrap();
    let mut early = event("e-early", "coursera:u1", 0.5);
    early.course_id = "platform-course-7".into();
    store.write_batch(&[early], &[], at(3)).await.unwrap();
    let version = store.roster_version().await.unwrap();
    store
        .upsert_course_mappings(&[mapping("coursera", "platform-course-7", "ai-for-educators")])
        .await
        .unwrap();
    let latest = store.stats().await.unwrap().last_seq;
    let feed = store
        .feed_of_learners(&["L-1".to_owned()], latest)
        .await
        .unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].course_id, "ai-for-educators");
    let log = store.roster_log_after(version).await.unwrap().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].restated, ["L-1"]);

    assert!(
        store
            .delete_course_mapping("coursera", "ai-for-everyone")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_course_mapping("coursera", "ai-for-everyone")
            .await
            .unwrap()
    );
    assert_eq!(store.course_map().await.unwrap().len(), 2);
}

async fn connector_state_round_trips(store: Arc<dyn Store>) {
    assert!(store.connector_states().await.unwrap().is_empty());
    let mut state = ConnectorState {
        name: "coursera/program-1".into(),
        cursor: r#"{"start":100}"#.into(),
        last_run_at: Some(at(3)),
        last_success_at: None,
        rows_total: 100,
        last_error: Some("HTTP 503 after 5 tries".into()),
    };
    store.save_connector_state(&state).await.unwrap();
    state.cursor = r#"{"start":0}"#.into();
    state.last_success_at = Some(at(4));
    state.rows_total = 250;
    state.last_error = None;
    store.save_connector_state(&state).await.unwrap();
    assert_eq!(store.connector_states().await.unwrap(), [state]);
}
