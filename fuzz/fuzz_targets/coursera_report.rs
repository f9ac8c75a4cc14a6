//! Any file given to `nigrani import --format coursera` (CSV), and any element of an API page
//! (JSON): rows read or refused with their line, and readable rows turned into events, never a
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nigrani_ingest::CourseMap;
use nigrani_ingest::coursera::{ReportRow, RowAt, read_csv, row_events};

fuzz_target!(|data: &[u8]| {
    let courses = CourseMap::default();
    for row in read_csv(data).take(10_000) {
        if let Ok(row) = row {
            let _ = row_events(&row, "coursera", &courses);
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(row) = ReportRow::from_json(&value, RowAt::Unknown)
    {
        let _ = row_events(&row, "coursera", &courses);
    }
});
