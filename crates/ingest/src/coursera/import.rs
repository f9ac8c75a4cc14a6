//! Rows of an enrollment report into the store — from a CSV export (`nigrani import --format
//! coursera`, `POST /api/v1/imports/coursera`) or a page of the API pull — through the batch
//! pipeline, in batches within its limits. Unreadable rows are kept as rejections. Re-importing
//! the same report changes nothing: every event it yields is a duplicate.

use chrono::{DateTime, Utc};
use nigrani_domain::Rejection;
use serde::Serialize;

use crate::batch::OutcomeCounts;
use crate::coursera::report::{ReportRow, RowError, row_events};
use crate::native::Item;
use crate::{CourseMap, IngestError, Ingestor};

/// What an import came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Report rows read, readable or not.
    pub rows: u64,
    /// Rows kept as rejections (unreadable, or without a usable learner or time).
    pub rejected_rows: u64,
    /// The events the readable rows yielded, by outcome.
    pub events: OutcomeCounts,
}

impl ImportSummary {
    /// Adds another part's figures to these.
    pub fn add(&mut self, other: ImportSummary) {
        self.rows += other.rows;
        self.rejected_rows += other.rejected_rows;
        self.events.add(other.events);
    }
}

/// Writes rows' events (and their rejections) durably; returns what became of them.
pub async fn import_rows(
    ingestor: &Ingestor,
    rows: Vec<Result<ReportRow, RowError>>,
    source: &str,
    courses: &CourseMap,
    now: DateTime<Utc>,
) -> Result<ImportSummary, IngestError> {
    let mut summary = ImportSummary {
        rows: rows.len() as u64,
        ..ImportSummary::default()
    };
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut items: Vec<Item<'static>> = Vec::new();
    for row in rows {
        match row.and_then(|row| row_events(&row, source, courses)) {
            Ok(events) => items.extend(events.into_iter().map(|e| Item::Event(Box::new(e)))),
            Err(error) => {
                summary.rejected_rows += 1;
                rejections.push(error.into_rejection(source));
            }
        }
    }
    ingestor.keep_rejections(&rejections, now).await?;
    let max = ingestor.limits().max_events;
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(max));
        let batch = std::mem::replace(&mut items, rest);
        let report = ingestor.ingest_items(batch, now).await?;
        summary.events.add(report.counts);
    }
    Ok(summary)
}

/// Why a CSV import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The header lacks a required column (or is not CSV): nothing of the file was read, and
    /// nothing was stored.
    #[error("{0}")]
    Header(String),
    /// A batch could not be stored; the batches before it were.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Imports a CSV export, `batch_rows` rows at a time; `progress` hears the bytes read so far.
/// A header that cannot be read refuses the file before anything is stored.
pub async fn import_csv(
    ingestor: &Ingestor,
    reader: impl std::io::Read,
    source: &str,
    courses: &CourseMap,
    batch_rows: usize,
    now: DateTime<Utc>,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    let counted = Counted {
        inner: reader,
        read: std::sync::Arc::default(),
    };
    let read = std::sync::Arc::clone(&counted.read);
    let mut rows = crate::coursera::report::read_csv(counted).peekable();
    if let Some(Err(error)) = rows.peek()
        && error.is_header_error()
    {
        return Err(ImportError::Header(error.message.clone()));
    }
    let mut summary = ImportSummary::default();
    loop {
        let chunk: Vec<_> = rows.by_ref().take(batch_rows.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        summary.add(import_rows(ingestor, chunk, source, courses, now).await?);
        progress(read.load(std::sync::atomic::Ordering::Relaxed));
    }
    Ok(summary)
}

/// A reader that counts the bytes it gave.
struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
