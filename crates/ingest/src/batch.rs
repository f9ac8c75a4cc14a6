//! A batch of events from receipt to a durable, per-event answer.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nigrani_domain::{LearningEvent, RejectReason, Rejection};
use nigrani_store::{EventWrite, Store, StoreError};
use serde::Serialize;

use crate::native::{self, BodyError, BodyFormat, Item};

/// Limits on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events in one batch.
    pub max_events: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Largest single event, in bytes of its text; a larger one is refused alone
    /// (`event_too_large`), so no one event can make the batch's memory balloon.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_events: 5_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_event_bytes: 256 * 1024,
        }
    }
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored, and the roster knows its learner.
    Accepted,
    /// Stored; the roster does not know its learner yet. It will be attributed when it does.
    Unmatched,
    /// Stored before with the same content; nothing changed.
    Duplicate,
    /// Stored before with other content; the stored event was kept, this one is kept as a
    /// rejection.
    Conflict,
    /// Not valid; kept as a rejection with its reason.
    Rejected,
}

/// The answer for one event, in the order the batch listed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    /// Position in the batch, from 0.
    pub index: usize,
    /// The event's `source`, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The event's `event_id`, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// Sequence number of the stored event this one is (or duplicates, or conflicts with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// Machine-readable reason, for `rejected` and `conflict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// A sentence for people, for `rejected` and `conflict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counts of a batch's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub accepted: usize,
    pub unmatched: usize,
    pub duplicate: usize,
    pub conflict: usize,
    pub rejected: usize,
}

impl OutcomeCounts {
    /// Adds another batch's counts to these.
    pub fn add(&mut self, other: OutcomeCounts) {
        self.accepted += other.accepted;
        self.unmatched += other.unmatched;
        self.duplicate += other.duplicate;
        self.conflict += other.conflict;
        self.rejected += other.rejected;
    }
}

/// The answer to a batch: every outcome in it is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    /// Counts by outcome.
    pub counts: OutcomeCounts,
    /// One entry per event, in batch order.
    pub results: Vec<EventResult>,
}

/// Why a batch was refused as a whole. Nothing of it was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch held no events.
    #[error("the batch holds no events")]
    Empty,
    /// The batch held more events than allowed.
    #[error("the batch holds {count} events; at most {max} are allowed per request")]
    TooManyEvents { count: usize, max: usize },
    /// The body could not be split into events; it was kept as a rejection.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The store failed; nothing of the batch was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates batches and writes them to the store.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
    limits: Limits,
    /// When set, events of any other source are rejected (`source_mismatch`).
    source: Option<String>,
}

impl Ingestor {
    /// An ingestor writing to `store`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Self {
            store,
            limits,
            source: None,
        }
    }

    /// The same ingestor, accepting only events of `source` (for keys bound to one source).
    pub fn bound_to(&self, source: Option<&str>) -> Self {
        Self {
            source: source.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The store it writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps what an adapter could not read (a report row, an envelope) as rejections, with
    /// their reasons: nothing received is dropped.
    pub async fn keep_rejections(
        &self,
        rejections: &[Rejection],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let storable: Vec<Rejection> = rejections
            .iter()
            .cloned()
            .map(Rejection::storable)
            .collect();
        self.store
            .write_batch(&[], &storable, now)
            .await
            .map(|_| ())
    }

    /// Ingests a request body. A body that cannot be split into events is kept as one rejection
    /// and refused whole.
    pub async fn ingest_body(
        &self,
        body: &[u8],
        format: BodyFormat,
        now: DateTime<Utc>,
    ) -> Result<BatchReport, IngestError> {
        match native::split_body(body, format, self.limits.max_events) {
            Ok(items) => self.ingest_items(items, now).await,
            Err(BodyError::TooManyEvents { count, max }) => {
                Err(IngestError::TooManyEvents { count, max })
            }
            Err(error) => {
                let rejection = Rejection {
                    reason: RejectReason::MalformedJson,
                    message: error.to_string(),
                    source: None,
                    event_id: None,
                    raw: String::from_utf8_lossy(body).into_owned(),
                }
                .storable();
                self.store.write_batch(&[], &[rejection], now).await?;
                Err(IngestError::Body(error))
            }
        }
    }

    /// An item's JSON, or its rejection when it is too large or not JSON.
    fn read_item(&self, item: Item<'_>) -> Result<serde_json::Value, Rejection> {
        if let Some(bytes) = item.text_len()
            && bytes > self.limits.max_event_bytes
        {
            return Err(Rejection {
                reason: RejectReason::EventTooLarge,
                message: format!(
                    "the event is {bytes} bytes; at most {} are allowed per event",
                    self.limits.max_event_bytes
                ),
                source: None,
                event_id: None,
                raw: item.lossy_text(),
            });
        }
        item.into_value().map_err(|(raw, message)| Rejection {
            reason: RejectReason::MalformedJson,
            message,
            source: None,
            event_id: None,
            raw,
        })
    }

    /// The event, or its rejection when this ingestor is bound to another source.
    fn of_bound_source(&self, event: LearningEvent) -> Result<LearningEvent, Rejection> {
        match &self.source {
            Some(bound) if *bound != event.source => Err(Rejection {
                reason: RejectReason::SourceMismatch,
                message: format!(
                    "this key may send events of source `{bound}` only, not `{}`",
                    event.source
                ),
                source: Some(event.source),
                event_id: Some(event.event_id),
                raw: event.raw,
            }),
            _ => Ok(event),
        }
    }

    /// Validates items, writes the valid events and the rejections in one transaction, and
    /// answers for each item.
    pub async fn ingest_items(
        &self,
        items: Vec<Item<'_>>,
        now: DateTime<Utc>,
    ) -> Result<BatchReport, IngestError> {
        if items.is_empty() {
            return Err(IngestError::Empty);
        }
        if items.len() > self.limits.max_events {
            return Err(IngestError::TooManyEvents {
                count: items.len(),
                max: self.limits.max_events,
            });
        }

        let mut results: Vec<EventResult> = Vec::with_capacity(items.len());
        let mut events: Vec<LearningEvent> = Vec::with_capacity(items.len());
        // Index into `results` of the event each stored event answers for.
        let mut event_result: Vec<usize> = Vec::with_capacity(items.len());
        // First occurrence of each key in this batch: (index into `events`, content hash).
        let mut first_seen: HashMap<(String, String), (usize, String)> = HashMap::new();
        // Later occurrences that repeat an earlier event of this batch: (result, event index).
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut rejections: Vec<Rejection> = Vec::new();

        for (index, item) in items.into_iter().enumerate() {
            let parsed = match item {
                Item::Event(event) => checked(*event, now),
                item => self
                    .read_item(item)
                    .and_then(|value| native::parse_event(value, now)),
            }
            .and_then(|event| self.of_bound_source(event));
            match parsed {
                Ok(event) => {
                    let key = (event.source.clone(), event.event_id.clone());
                    let mut result = EventResult {
                        index,
                        source: Some(event.source.clone()),
                        event_id: Some(event.event_id.clone()),
                        outcome: Outcome::Accepted,
                        seq: None,
                        reason: None,
                        message: None,
                    };
                    if let Some((first, hash)) = first_seen.get(&key) {
                        if *hash == event.content_hash {
                            result.outcome = Outcome::Duplicate;
                        } else {
                            let message = format!(
                                "event `{}` appears twice in this batch with different \
                                 content; the first was kept",
                                event.event_id
                            );
                            result.outcome = Outcome::Conflict;
                            result.reason = Some(RejectReason::Conflict.code());
                            result.message = Some(message.clone());
                            rejections.push(Rejection {
                                reason: RejectReason::Conflict,
                                message,
                                source: Some(event.source),
                                event_id: Some(event.event_id),
                                raw: event.raw,
                            });
                        }
                        repeats.push((results.len(), *first));
                    } else {
                        first_seen.insert(key, (events.len(), event.content_hash.clone()));
                        event_result.push(results.len());
                        events.push(event);
                    }
                    results.push(result);
                }
                Err(rejection) => {
                    results.push(EventResult {
                        index,
                        source: rejection.source.clone(),
                        event_id: rejection.event_id.clone(),
                        outcome: Outcome::Rejected,
                        seq: None,
                        reason: Some(rejection.reason.code()),
                        message: Some(rejection.message.clone()),
                    });
                    rejections.push(rejection);
                }
            }
        }

        let rejections: Vec<Rejection> = rejections.into_iter().map(Rejection::storable).collect();
        let writes = self.store.write_batch(&events, &rejections, now).await?;
        let mut seq_of_event = Vec::with_capacity(writes.len());
        for (write, &result_index) in writes.iter().zip(&event_result) {
            let result = &mut results[result_index];
            let seq = match *write {
                EventWrite::Accepted { seq, matched } => {
                    result.outcome = if matched {
                        Outcome::Accepted
                    } else {
                        Outcome::Unmatched
                    };
                    seq
                }
                EventWrite::Duplicate { seq } => {
                    result.outcome = Outcome::Duplicate;
                    seq
                }
                EventWrite::Conflict { seq } => {
                    result.outcome = Outcome::Conflict;
                    result.reason = Some(RejectReason::Conflict.code());
                    result.message = Some(format!(
                        "event `{}` was stored before (seq {seq}) with other content; the \
                         stored event was kept",
                        events[seq_of_event.len()].event_id
                    ));
                    seq
                }
            };
            result.seq = Some(seq);
            seq_of_event.push(seq);
        }
        for (result_index, first) in repeats {
            results[result_index].seq = seq_of_event.get(first).copied();
        }

        let mut counts = OutcomeCounts::default();
        for result in &results {
            match result.outcome {
                Outcome::Accepted => counts.accepted += 1,
                Outcome::Unmatched => counts.unmatched += 1,
                Outcome::Duplicate => counts.duplicate += 1,
                Outcome::Conflict => counts.conflict += 1,
                Outcome::Rejected => counts.rejected += 1,
            }
        }
        Ok(BatchReport { counts, results })
    }
}

/// An adapter's event, checked against the rules of every format.
fn checked(event: LearningEvent, now: DateTime<Utc>) -> Result<LearningEvent, Rejection> {
    match event.check(now) {
        Ok(()) => Ok(event),
        Err((reason, message)) => Err(Rejection {
            reason,
            message,
            source: Some(event.source),
            event_id: Some(event.event_id),
            raw: event.raw,
        }),
    }
}
