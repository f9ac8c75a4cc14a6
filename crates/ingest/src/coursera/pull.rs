//! One pass over a program's enrollment report, page by page, resumable.
//!
//! Coursera has no webhooks and its report lags up to a day or two, so the report is read whole
//! again on every pass (daily, say): every row is a snapshot, and [`super::report::row_events`]
//! makes re-reading it free (the same events, duplicates on ingest). A pass reads pages in order
//! and hands each to the caller with the [`Cursor`] that follows it; the caller writes the
//! page's events durably and only then stores the cursor. A run that stops mid-pass (a page
//! still failing after its retries, the process stopped) is resumed from the stored cursor by
//! the next run: pages already kept are not read again; a page whose events were written but
//! whose cursor was not is read again, which changes nothing.
//!
//! Paging is by offset over a report that may change during the pass, so a row can move from one
//! page to the next and be read twice (harmless: same events; counted as `duplicates`) or move
//! back and be missed (the next pass reads it).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{Client, PullError};
use super::report::{ReportRow, RowError};

/// Where a program's pull stands, kept by the caller (as JSON) between runs.
///
/// Between passes `next_start` is 0 and `pass_started_at` empty; during a pass `next_start` is
/// the row the next page starts at. `max_updated_at` only grows: how fresh the data read so far
/// is by Coursera's own clock (its rows lag real time by up to two days), for a "data as of"
/// display and for telling a silent source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cursor {
    /// The row the next page starts at (`start`); 0 between passes.
    pub next_start: u64,
    /// When the pass in progress began; `None` between passes.
    pub pass_started_at: Option<DateTime<Utc>>,
    /// When the last full pass ended.
    pub last_complete_at: Option<DateTime<Utc>>,
    /// The greatest `updatedAt` (epoch milliseconds) of any row read, in any pass.
    pub max_updated_at: Option<i64>,
}

impl Cursor {
    /// Whether a pass is under way (a run stopped in its middle).
    pub fn in_pass(&self) -> bool {
        self.pass_started_at.is_some()
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullSummary {
    /// The row the run began at: 0, or where a stopped pass left off.
    pub began_at: u64,
    /// Pages read and delivered.
    pub pages: u64,
    /// Rows delivered, readable or not.
    pub rows: u64,
    /// Rows delivered as errors (to be kept as rejections).
    pub rejected_rows: u64,
    /// Rows read a second time in this run (the same program, learner and content on an
    /// earlier page): the report moved under the offset paging.
    pub duplicates: u64,
    /// The report's size, as the last page gave it (`paging.total`), when it did.
    pub total: Option<u64>,
    /// Whether the pass reached its end: the cursor delivered last is back at start 0.
    pub finished: bool,
    /// Why the run stopped before the end, after delivering at least one page. The cursor the
    /// caller stored last resumes the pass.
    pub stopped_by: Option<PullError>,
}

/// Reads program `program_id`'s report from `cursor` on: a new pass from row 0, or the rest of
/// a pass a previous run stopped in. Each page goes to `deliver` with the cursor that follows it;
/// after the last page that cursor is back at 0 with `last_complete_at` set. Rows arrive as read
/// (a row that cannot be read comes as its [`RowError`], for the caller to keep as a rejection).
///
/// A page still failing after the client's retries ends the run: with `Ok` and
/// [`PullSummary::stopped_by`] when pages were delivered before it (progress was kept), with
/// `Err` when none was. An error from `deliver` is always `Err` ([`PullError::Deliver`]): its
/// page's cursor was not handed over, so the next run reads that page again.
pub fn pull_program(
    client: &mut Client,
    program_id: &str,
    cursor: Cursor,
    deliver: &mut dyn FnMut(Vec<Result<ReportRow, RowError>>, Cursor) -> Result<(), String>,
) -> Result<PullSummary, PullError> {
    let mut cursor = cursor;
    if !cursor.in_pass() {
        cursor.next_start = 0;
        cursor.pass_started_at = Some(client.now());
    }
    let mut start = cursor.next_start;
    let mut summary = PullSummary {
        began_at: start,
        ..PullSummary::default()
    };
    let mut seen: HashSet<u64> = HashSet::new();
    let stop = |summary: PullSummary, error: PullError, start: u64| {
        if summary.pages == 0 {
            return Err(error);
        }
        tracing::warn!(
            program_id,
            next_start = start,
            pages = summary.pages,
            code = error.code(),
            error = %error,
            "The Coursera pull stopped before the end of its pass; the next run resumes it."
        );
        Ok(PullSummary {
            stopped_by: Some(error),
            ..summary
        })
    };

    loop {
        let page = match client.fetch_page(program_id, start) {
            Ok(page) => page,
            Err(error) => return stop(summary, error, start),
        };
        let count = page.rows.len() as u64;
        for row in &page.rows {
            match row {
                Ok(row) => {
                    if !seen.insert(key_hash(row)) {
                        summary.duplicates += 1;
                    }
                    if let Some(updated) = row.updated_at {
                        cursor.max_updated_at =
                            Some(cursor.max_updated_at.map_or(updated, |m| m.max(updated)));
                    }
                }
                Err(_) => summary.rejected_rows += 1,
            }
        }
        if page.total.is_some() {
            summary.total = page.total;
        }
        // A page shorter than asked does not end the pass by itself: the API may cap `limit`
        // below the page size asked for. The pass ends on an empty page, at `total`, or where
        // `next` is missing.
        let next = page
            .next
            .filter(|next| count > 0 && page.total.is_none_or(|total| *next < total));
        if let Some(next) = next
            && next <= start
        {
            return stop(summary, PullError::Paging { start, next }, start);
        }
        cursor = match next {
            Some(next) => Cursor {
                next_start: next,
                ..cursor
            },
            None => Cursor {
                next_start: 0,
                pass_started_at: None,
                last_complete_at: Some(client.now()),
                max_updated_at: cursor.max_updated_at,
            },
        };
        deliver(page.rows, cursor.clone()).map_err(PullError::Deliver)?;
        summary.pages += 1;
        summary.rows += count;
        match next {
            Some(next) => start = next,
            None => {
                summary.finished = true;
                tracing::info!(
                    program_id,
                    pages = summary.pages,
                    rows = summary.rows,
                    rejected_rows = summary.rejected_rows,
                    duplicates = summary.duplicates,
                    "The Coursera pull finished its pass over the report."
                );
                return Ok(summary);
            }
        }
    }
}

/// A row's key (program, learner, content), hashed to 64 bits: the set of keys seen in a pass
/// stays small for millions of rows, and a collision only miscounts a duplicate.
fn key_hash(row: &ReportRow) -> u64 {
    let mut hasher = DefaultHasher::new();
    row.key().hash(&mut hasher);
    hasher.finish()
}
