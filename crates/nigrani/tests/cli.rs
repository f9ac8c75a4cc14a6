//! The command line as a user meets it: migrate, import, demo; run on the binary cargo built for
//! these tests (`CARGO_BIN_EXE_nigrani`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output};

fn nigrani(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nigrani"))
        .args(args)
        .env_remove("NIGRANI_DATABASE_URL")
        .env("NIGRANI_DATA_DIR", data)
        .env("NIGRANI_LOG", "error")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn migrate_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = nigrani(dir.path(), &["migrate"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("applied migration 0001 init"));
    let second = nigrani(dir.path(), &["migrate"]);
    assert!(
        text(&second.stdout).contains("up to date"),
        "{}",
        text(&second.stdout)
    );
}

#[test]
fn import_checks_files_and_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let cohorts = dir.path().join("cohorts.csv");
    std::fs::write(&cohorts, "cohort_id,name,track,starts_on,ends_on,target\nsoft-1,Soft 1,soft,2026-01-01,2026-04-30,100\n").unwrap();
    let out = nigrani(dir.path(), &["import", cohorts.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("imported 1 cohorts"));

    let learners = dir.path().join("bad.csv");
    std::fs::write(&learners, "learner_id,institution,discipline,track,cohort,role,identities\nL1,PK-NOPE,education,soft,soft-1,faculty,coursera:x\n").unwrap();
    let out = nigrani(dir.path(), &["import", learners.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown institution `PK-NOPE`"),
        "{}",
        text(&out.stderr)
    );

    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, "{\"source\":\"coursera\",\"event_id\":\"1\",\"learner\":\"coursera:x\",\"course_id\":\"c\",\"kind\":\"enrolled\",\"occurred_at\":\"2026-01-02T09:00:00Z\"}\n{broken\n").unwrap();
    let out = nigrani(dir.path(), &["import", events.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 unmatched, 0 duplicate, 0 conflict, 1 rejected"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn demo_is_deterministic_and_writes_ndjson() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let out = nigrani(
            dir.path(),
            &[
                "demo",
                "--learners",
                "60",
                "--seed",
                "3",
                "--as-of",
                "2026-11-30",
                "--ndjson",
                dir.path().join("events.ndjson").to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let first = std::fs::read(a.path().join("events.ndjson")).unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        first,
        std::fs::read(b.path().join("events.ndjson")).unwrap()
    );

    let out = nigrani(
        a.path(),
        &[
            "demo",
            "--learners",
            "60",
            "--seed",
            "3",
            "--as-of",
            "2026-11-30",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 rejected"),
        "{}",
        text(&out.stdout)
    );
}
