//! The Coursera pull against a local stand-in of its API: every documented failure mode, and
//! that a whole pull yields each row's events exactly once after de-duplication by event id.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support {
    pub(crate) mod coursera_standin;
}

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use nigrani_domain::LearningEvent;
use nigrani_domain::clock::ManualClock;
use nigrani_ingest::coursera::{
    Client, Cursor, PullError, PullSummary, ReportRow, RowAt, RowError, pull_program, row_events,
};
use nigrani_ingest::native::Item;
use nigrani_ingest::{CourseMap, Ingestor, Limits};
use serde_json::{Value, json};
use support::coursera_standin::{Behaviour, FailWith, Failure, Standin};

const PROGRAM: &str = "pKx7Qm2aEe6uGw4bNcR1sA";
const SOURCE: &str = "coursera";

fn fixture_rows() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures/coursera/enrollment_report_api.json"))
        .expect("the fixture is JSON")
}

fn courses() -> CourseMap {
    CourseMap::new(
        [
            ("tC2xJ0t5EeuZ7w6y0kX1qA", "genai-in-teaching-and-learning"),
            ("Hw3kN6s2EeuPq1b8Yx4zCd", "ai-fundamentals-for-educators"),
            ("Lm4pR8u1EeyQ2g5aT7vW3b", "ai-ethics-in-academia"),
        ]
        .map(|(platform, course)| (SOURCE.to_owned(), platform.to_owned(), course.to_owned())),
    )
}

/// A client of the stand-in that records its waits instead of sleeping.
fn standin_client(standin: &Standin, page_size: u64) -> (Client, Arc<Mutex<Vec<Duration>>>) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&waits);
    let client = Client::new(standin.config(page_size))
        .expect("a valid configuration")
        .with_sleep(move |wait| recorded.lock().unwrap().push(wait));
    (client, waits)
}

/// What a run handed over: the pages' rows and the cursor after each page.
#[derive(Default)]
struct Kept {
    rows: Vec<ReportRow>,
    errors: Vec<RowError>,
    cursors: Vec<Cursor>,
}

fn run(client: &mut Client, cursor: Cursor, kept: &mut Kept) -> Result<PullSummary, PullError> {
    pull_program(client, PROGRAM, cursor, &mut |rows, cursor| {
        for row in rows {
            match row {
                Ok(row) => kept.rows.push(row),
                Err(error) => kept.errors.push(error),
            }
        }
        kept.cursors.push(cursor);
        Ok(())
    })
}

/// Events by id, as the store keeps them; a repeated id must carry the same content.
fn by_id(rows: &[ReportRow]) -> BTreeMap<String, LearningEvent> {
    let mut events = BTreeMap::new();
    for row in rows {
        for event in row_events(row, SOURCE, &courses()).expect("fixture rows are valid") {
            if let Some(earlier) = events.insert(event.event_id.clone(), event.clone()) {
                assert_eq!(earlier, event, "one id, two contents");
            }
        }
    }
    events
}

fn expected(rows: &[Value]) -> BTreeMap<String, LearningEvent> {
    let rows: Vec<ReportRow> = rows
        .iter()
        .map(|row| ReportRow::from_json(row, RowAt::Unknown).unwrap())
        .collect();
    by_id(&rows)
}

fn starts(standin: &Standin) -> Vec<(u64, u16)> {
    standin
        .log()
        .into_iter()
        .filter(|l| l.kind == "page")
        .map(|l| (l.start, l.status))
        .collect()
}

#[test]
fn a_full_pull_yields_every_row_once_and_ends_the_pass() {
    let standin = Standin::start(PROGRAM, fixture_rows(), Behaviour::default());
    let (mut client, waits) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();

    assert_eq!((summary.pages, summary.rows), (3, 12));
    assert_eq!((summary.duplicates, summary.rejected_rows), (0, 0));
    assert_eq!(summary.total, Some(12));
    assert!(summary.finished && summary.stopped_by.is_none());
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
    // 5, 5, then a short last page.
    assert_eq!(starts(&standin), [(0, 200), (5, 200), (10, 200)]);
    assert_eq!(standin.page_requests(), 3);
    assert_eq!(standin.token_requests(), 1);
    assert!(waits.lock().unwrap().is_empty());

    // The cursor moves page by page, then is back at 0 with the pass's end.
    let nexts: Vec<u64> = kept.cursors.iter().map(|c| c.next_start).collect();
    assert_eq!(nexts, [5, 10, 0]);
    assert!(kept.cursors[..2].iter().all(Cursor::in_pass));
    let last = kept.cursors.last().unwrap();
    assert!(!last.in_pass() && last.last_complete_at.is_some());
    let greatest = fixture_rows()
        .iter()
        .filter_map(|r| r["updatedAt"].as_i64())
        .max();
    assert_eq!(last.max_updated_at, greatest);
}

#[test]
fn paging_without_total_with_numeric_next_ends_on_the_short_page() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            omit_total: true,
            next_as_number: true,
            next_on_last_page: true,
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    // The last page is short but names a next page (the API may cap `limit` below the page
    // size asked): that page is read, and being empty, ends the pass.
    assert_eq!(starts(&standin), [(0, 200), (5, 200), (10, 200), (15, 200)]);
    assert_eq!(summary.total, None);
    assert!(summary.finished);
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn an_api_that_gives_fewer_rows_than_asked_is_read_to_the_end() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            max_limit: Some(3),
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert!(summary.finished);
    assert_eq!((summary.pages, summary.rows), (4, 12));
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn a_report_that_fills_its_last_page_ends_on_an_empty_page() {
    let rows: Vec<Value> = fixture_rows().into_iter().take(10).collect();
    let standin = Standin::start(
        PROGRAM,
        rows.clone(),
        Behaviour {
            omit_total: true,
            next_on_last_page: true,
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert_eq!(starts(&standin), [(0, 200), (5, 200), (10, 200)]);
    assert_eq!((summary.pages, summary.rows), (3, 10));
    assert!(summary.finished);
    assert_eq!(by_id(&kept.rows), expected(&rows));

    // With `paging.total` (and no `next` on the last page) the full page is the last one.
    let standin = Standin::start(PROGRAM, rows, Behaviour::default());
    let (mut client, _) = standin_client(&standin, 5);
    run(&mut client, Cursor::default(), &mut Kept::default()).unwrap();
    assert_eq!(starts(&standin), [(0, 200), (5, 200)]);
}

#[test]
fn a_token_used_up_after_some_requests_is_renewed_once() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            token_requests_allowed: Some(2),
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert!(summary.finished);
    assert_eq!(standin.token_requests(), 2);
    assert_eq!(starts(&standin), [(0, 200), (5, 200), (10, 401), (10, 200)]);
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn a_token_that_expires_after_some_time_is_renewed_on_its_401() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            token_lifetime: Some(Duration::from_millis(200)),
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = pull_program(&mut client, PROGRAM, Cursor::default(), &mut |rows, _| {
        kept.rows.extend(rows.into_iter().flatten());
        // Writing the page takes longer than the token lives.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    })
    .unwrap();
    assert!(summary.finished);
    assert_eq!(standin.token_requests(), 3);
    assert_eq!(
        starts(&standin),
        [(0, 200), (5, 401), (5, 200), (10, 401), (10, 200)]
    );
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn a_token_is_renewed_before_it_expires_by_the_client_s_clock() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            expires_in: 60,
            ..Behaviour::default()
        },
    );
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap());
    let (client, _) = standin_client(&standin, 5);
    let mut client = client.with_clock(Arc::new(clock.clone()));
    let summary = pull_program(&mut client, PROGRAM, Cursor::default(), &mut |_, _| {
        // 55 s later: past the renewal point (a tenth before the 60 s expiry).
        clock.advance(chrono::Duration::seconds(55));
        Ok(())
    })
    .unwrap();
    assert!(summary.finished);
    // A new token for each page, and never a 401.
    assert_eq!(standin.token_requests(), 3);
    assert_eq!(starts(&standin), [(0, 200), (5, 200), (10, 200)]);
}

#[test]
fn a_token_refused_even_when_new_fails_the_pull() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            token_requests_allowed: Some(0),
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let error = run(&mut client, Cursor::default(), &mut kept).unwrap_err();
    assert_eq!(error, PullError::Unauthorized);
    assert_eq!(error.code(), "unauthorized");
    assert_eq!(standin.token_requests(), 2);
    assert_eq!(starts(&standin), [(0, 401), (0, 401)]);
    assert!(kept.cursors.is_empty());
}

#[test]
fn wrong_credentials_and_an_unknown_program_fail_at_once() {
    let standin = Standin::start(PROGRAM, fixture_rows(), Behaviour::default());
    let mut config = standin.config(5);
    config.client_secret = "not-the-secret".into();
    let mut client = Client::new(config).unwrap();
    let error = run(&mut client, Cursor::default(), &mut Kept::default()).unwrap_err();
    assert_eq!(error.code(), "auth_failed");
    assert!(error.to_string().contains("invalid_client"), "{error}");
    assert!(!error.is_transient());
    assert_eq!(standin.token_requests(), 1);

    let (mut client, _) = standin_client(&standin, 5);
    let error = pull_program(
        &mut client,
        "no-such-program",
        Cursor::default(),
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert_eq!(error.code(), "program_not_found");
}

#[test]
fn a_500_mid_run_is_retried_after_the_backoff() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            failures: vec![Failure {
                start: 5,
                times: 1,
                with: FailWith::Status(500),
            }],
            ..Behaviour::default()
        },
    );
    let (mut client, waits) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert!(summary.finished);
    assert_eq!(starts(&standin), [(0, 200), (5, 500), (5, 200), (10, 200)]);
    assert_eq!(*waits.lock().unwrap(), [Duration::from_millis(1)]);
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn a_429_mid_run_waits_as_long_as_retry_after_asks() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            failures: vec![Failure {
                start: 5,
                times: 1,
                with: FailWith::TooManyRequests { retry_after: 2 },
            }],
            ..Behaviour::default()
        },
    );
    let (mut client, waits) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert!(summary.finished);
    assert_eq!(starts(&standin), [(0, 200), (5, 429), (5, 200), (10, 200)]);
    assert_eq!(*waits.lock().unwrap(), [Duration::from_secs(2)]);
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));
}

#[test]
fn a_page_failing_past_its_retries_stops_the_run_and_the_next_run_resumes_there() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            // Coursera is down for a while from the second page on.
            failures: vec![Failure {
                start: 5,
                times: 100,
                with: FailWith::Status(503),
            }],
            ..Behaviour::default()
        },
    );
    let (mut client, waits) = standin_client(&standin, 5);
    let mut first = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut first).unwrap();
    assert!(!summary.finished);
    assert_eq!(summary.pages, 1);
    let stopped = summary.stopped_by.clone().unwrap();
    assert_eq!(stopped.code(), "unavailable");
    assert!(stopped.is_transient());
    // Exponential: 1 ms, then 2 ms; three attempts in all.
    assert_eq!(
        *waits.lock().unwrap(),
        [Duration::from_millis(1), Duration::from_millis(2)]
    );
    let stored = first.cursors.last().cloned().unwrap();
    assert_eq!(stored.next_start, 5);
    assert!(stored.in_pass());

    // The caller kept the cursor as JSON; the next run resumes from it.
    let stored: Cursor = serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
    standin.change(|behaviour| behaviour.failures.clear());
    standin.clear_log();
    let mut second = Kept::default();
    let summary = run(&mut client, stored.clone(), &mut second).unwrap();
    assert!(summary.finished);
    assert_eq!(summary.began_at, 5);
    assert_eq!(starts(&standin), [(5, 200), (10, 200)]);
    assert!(
        second.cursors[..1]
            .iter()
            .all(|c| c.pass_started_at == stored.pass_started_at)
    );
    assert_eq!(second.cursors.last().unwrap().next_start, 0);

    // Between the two runs, every row exactly once.
    assert_eq!(first.rows.len() + second.rows.len(), 12);
    let all: Vec<ReportRow> = first.rows.into_iter().chain(second.rows).collect();
    assert_eq!(by_id(&all), expected(&fixture_rows()));
}

#[test]
fn a_first_page_failing_past_its_retries_is_an_error() {
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            failures: vec![Failure {
                start: 0,
                times: 3,
                with: FailWith::TooManyRequests { retry_after: 0 },
            }],
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let error = run(&mut client, Cursor::default(), &mut kept).unwrap_err();
    assert_eq!(error.code(), "rate_limited");
    assert!(kept.cursors.is_empty());
}

#[test]
fn rows_that_move_under_the_paging_come_twice_and_are_counted() {
    let newcomers = vec![
        json!({"programId": PROGRAM, "externalId": "NED-KHI-02290", "email": "rabia.ansari@neduet.edu.pk",
               "contentId": "tC2xJ0t5EeuZ7w6y0kX1qA", "contentType": "COURSE", "isCompleted": false,
               "overallProgress": 8, "enrolledAt": 1_771_200_000_000_i64, "lastActivityAt": 1_771_300_000_000_i64,
               "updatedAt": 1_771_310_000_000_i64, "membershipState": "MEMBER"}),
        json!({"programId": PROGRAM, "externalId": "IUB-BWP-01733", "email": "usman.chaudhry@iub.edu.pk",
               "contentId": "Hw3kN6s2EeuPq1b8Yx4zCd", "contentType": "COURSE", "isCompleted": false,
               "overallProgress": 0, "enrolledAt": 1_771_250_000_000_i64, "updatedAt": 1_771_260_000_000_i64,
               "membershipState": "MEMBER"}),
    ];
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            insert_after_first_page: newcomers.clone(),
            ..Behaviour::default()
        },
    );
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    // Two rows were pushed from page 1 onto page 2: read twice, counted, same events.
    assert_eq!(summary.duplicates, 2);
    assert_eq!(summary.rows, 14);
    assert_eq!(by_id(&kept.rows), expected(&fixture_rows()));

    // The newcomers, pushed in ahead of the offset, come with the next pass.
    let mut next = Kept::default();
    let summary = run(
        &mut client,
        kept.cursors.last().cloned().unwrap(),
        &mut next,
    )
    .unwrap();
    assert_eq!(summary.duplicates, 0);
    let all_rows: Vec<Value> = newcomers.into_iter().chain(fixture_rows()).collect();
    assert_eq!(by_id(&next.rows), expected(&all_rows));
}

#[test]
fn a_bad_row_comes_as_its_error_and_spoils_nothing_else() {
    let mut rows = fixture_rows();
    rows[6].as_object_mut().unwrap().remove("contentId");
    let standin = Standin::start(PROGRAM, rows.clone(), Behaviour::default());
    let (mut client, _) = standin_client(&standin, 5);
    let mut kept = Kept::default();
    let summary = run(&mut client, Cursor::default(), &mut kept).unwrap();
    assert_eq!(summary.rejected_rows, 1);
    assert_eq!(kept.rows.len(), 11);
    let error = &kept.errors[0];
    assert_eq!(
        (error.at, error.field),
        (RowAt::Element(6), Some("contentId"))
    );
    assert!(!error.raw.contains('@'), "{}", error.raw);
    let rejection = error.clone().into_rejection(SOURCE);
    assert!(rejection.message.starts_with("report row 6:"));
    rows.remove(6);
    assert_eq!(by_id(&kept.rows), expected(&rows));
}

#[test]
fn a_page_the_caller_cannot_keep_is_read_again_next_run() {
    let standin = Standin::start(PROGRAM, fixture_rows(), Behaviour::default());
    let (mut client, _) = standin_client(&standin, 5);
    let mut cursors = Vec::new();
    let error = pull_program(&mut client, PROGRAM, Cursor::default(), &mut |_, cursor| {
        if cursor.next_start == 10 {
            return Err("the store is unavailable".into());
        }
        cursors.push(cursor);
        Ok(())
    })
    .unwrap_err();
    assert_eq!(error.code(), "deliver_failed");
    let stored = cursors.pop().unwrap();
    assert_eq!(stored.next_start, 5);
    standin.clear_log();
    let summary = run(&mut client, stored, &mut Kept::default()).unwrap();
    assert!(summary.finished);
    assert_eq!(starts(&standin), [(5, 200), (10, 200)]);
}

#[test]
fn the_cursor_is_plain_json() {
    let cursor = Cursor {
        next_start: 200,
        pass_started_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()),
        last_complete_at: None,
        max_updated_at: Some(1_772_096_400_000),
    };
    let text = serde_json::to_string(&cursor).unwrap();
    assert_eq!(
        text,
        r#"{"next_start":200,"pass_started_at":"2026-03-02T01:00:00Z","last_complete_at":null,"max_updated_at":1772096400000}"#
    );
    assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), cursor);
    assert_eq!(
        serde_json::from_str::<Cursor>("{}").unwrap(),
        Cursor::default()
    );
    assert!(serde_json::from_str::<Cursor>(r#"{"next":1}"#).is_err());
}

/// Pulls into a real (SQLite) store through the batch pipeline, as the importer will: a
/// re-pull changes nothing, a newer report adds only what is new, and nothing conflicts.
#[test]
fn pulled_events_are_idempotent_in_the_store() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let store = runtime.block_on(async {
        let store = nigrani_store::sqlite::SqliteStore::open(folder.path())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    });
    let ingestor = Ingestor::new(Arc::new(store), Limits::default());
    let now = Utc::now();
    let standin = Standin::start(PROGRAM, fixture_rows(), Behaviour::default());
    let (mut client, _) = standin_client(&standin, 5);

    let mut pull = |cursor: Cursor| {
        let mut counts = nigrani_ingest::batch::OutcomeCounts::default();
        let mut last = cursor.clone();
        pull_program(&mut client, PROGRAM, cursor, &mut |rows, cursor| {
            let items: Vec<Item<'_>> = rows
                .iter()
                .flatten()
                .flat_map(|row| row_events(row, SOURCE, &courses()).unwrap())
                .map(|event| Item::Event(Box::new(event)))
                .collect();
            if !items.is_empty() {
                let report = runtime
                    .block_on(ingestor.ingest_items(items, now))
                    .map_err(|e| e.to_string())?;
                counts.add(report.counts);
            }
            last = cursor;
            Ok(())
        })
        .unwrap();
        (counts, last)
    };

    let (first, cursor) = pull(Cursor::default());
    let events = expected(&fixture_rows()).len();
    assert_eq!(first.accepted + first.unmatched, events);
    assert_eq!((first.conflict, first.rejected, first.duplicate), (0, 0, 0));

    let (again, cursor) = pull(cursor);
    assert_eq!(again.duplicate, events);
    assert_eq!(again.accepted + again.unmatched + again.conflict, 0);

    // A newer report: every row's `updatedAt` moved a day, and one learner progressed.
    let mut newer = fixture_rows();
    for row in &mut newer {
        let updated = row["updatedAt"].as_i64().unwrap() + 86_400_000;
        row["updatedAt"] = json!(updated);
    }
    newer[0]["overallProgress"] = json!(55);
    newer[0]["lastActivityAt"] = json!(1_771_500_000_000_i64);
    standin.set_rows(newer);
    let (third, _) = pull(cursor);
    // New: the progress level, and the withdrawal of the learner removed from the program
    // (its time is the row's `updatedAt`, which moved). Everything else is a duplicate.
    assert_eq!(third.accepted + third.unmatched, 2);
    assert_eq!(third.conflict, 0);
    assert_eq!(third.duplicate, events - 2);
}

/// A connector of the stand-in writing to a fresh SQLite store.
async fn connector_store() -> (Ingestor, tempfile::TempDir) {
    let folder = tempfile::tempdir().unwrap();
    let store = nigrani_store::sqlite::SqliteStore::open(folder.path())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (Ingestor::new(Arc::new(store), Limits::default()), folder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_writes_every_page_keeps_its_cursor_and_reports_its_health() {
    use nigrani_ingest::coursera::connector::{Health, connector_name, run_once};
    let standin = Standin::start(
        PROGRAM,
        fixture_rows(),
        Behaviour {
            failures: vec![Failure {
                start: 5,
                times: 100,
                with: FailWith::Status(503),
            }],
            ..Behaviour::default()
        },
    );
    let (ingestor, _folder) = connector_store().await;
    let (client, _) = standin_client(&standin, 5);

    // The first run stops at the failing second page: the first page is stored, and so is
    // the cursor after it, with the error.
    let (client, report) = run_once(&ingestor, client, PROGRAM, Arc::default()).await;
    let report = report.unwrap();
    assert_eq!((report.pages, report.rows, report.finished), (1, 5, false));
    assert!(
        report.error.as_deref().unwrap().starts_with("unavailable"),
        "{report:?}"
    );
    let store = Arc::clone(ingestor.store());
    let [state] = &store.connector_states().await.unwrap()[..] else {
        panic!("one connector");
    };
    assert_eq!(state.name, connector_name(PROGRAM));
    assert_eq!(state.rows_total, 5);
    assert!(state.last_success_at.is_none());
    let health = Health::of(state, Utc::now());
    assert!(health.in_pass && health.lag_seconds.is_none());
    assert!(health.last_error.is_some());
    let stored_after_first = store.stats().await.unwrap().last_seq;
    assert!(stored_after_first > 0, "the first page's events are stored");

    // Coursera is back: the next run resumes at row 5 and ends the pass.
    standin.change(|behaviour| behaviour.failures.clear());
    standin.clear_log();
    let (client, report) = run_once(&ingestor, client.unwrap(), PROGRAM, Arc::default()).await;
    let report = report.unwrap();
    assert!(report.finished && report.error.is_none(), "{report:?}");
    assert_eq!(starts(&standin), [(5, 200), (10, 200)]);
    let state = store.connector_states().await.unwrap().remove(0);
    assert_eq!(state.rows_total, 12);
    assert!(state.last_success_at.is_some() && state.last_error.is_none());
    let health = Health::of(&state, Utc::now());
    assert!(!health.in_pass);
    assert!(health.lag_seconds.unwrap() < 60);
    assert_eq!(
        health.data_as_of,
        fixture_rows()
            .iter()
            .filter_map(|row| row["updatedAt"].as_i64())
            .max()
            .and_then(chrono::DateTime::from_timestamp_millis)
    );
    let stored = store.stats().await.unwrap().last_seq;
    let expected_events = expected(&fixture_rows()).len() as i64;
    let events = store.events_after(0, 1000).await.unwrap();
    assert_eq!(
        events.len() as i64,
        expected_events,
        "every row's events, once"
    );

    // A new pass over the same report changes nothing.
    let (_, report) = run_once(&ingestor, client.unwrap(), PROGRAM, Arc::default()).await;
    let report = report.unwrap();
    assert!(report.finished);
    assert_eq!(
        report.imported.events.accepted + report.imported.events.unmatched,
        0
    );
    assert_eq!(store.stats().await.unwrap().last_seq, stored);

    // A run told to stop writes nothing more, and says why.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (client, _) = standin_client(&standin, 5);
    let (_, report) = run_once(&ingestor, client, PROGRAM, stop).await;
    let error = match report {
        Ok(report) => report.error.expect("the run says why it stopped"),
        Err(error) => error,
    };
    assert!(error.contains("stopping"), "{error}");
    assert_eq!(store.stats().await.unwrap().last_seq, stored);
}
