//! Rendered answers, kept per request for polling dashboards.
//!
//! Dashboards repeat the very same requests. Once the analytics answer behind a request is
//! known (cheaply: see `nigrani_analytics::answers`), a request whose answer has not changed
//! gets the bytes rendered for the previous one, with their `ETag`, instead of JSON being built
//! and hashed again.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use nigrani_analytics::answers::Stamped;

/// Most requests, and bytes, kept; beyond either the table starts afresh. Dashboards poll a few
/// dozen requests; the bound keeps clients that vary their queries from filling the memory.
const MAX_ENTRIES: usize = 1_024;
const MAX_BYTES: usize = 64 << 20;

/// Which data an answer reflects: enough to tell whether a rendering is still current.
pub(crate) type Stamp = Vec<i64>;

/// The stamp of one analytics answer.
pub(crate) fn stamp_of<T>(answer: &Stamped<T>) -> [i64; 3] {
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    [
        micros(answer.data_as_of),
        answer.last_seq,
        micros(answer.as_of),
    ]
}

/// One rendered answer.
#[derive(Clone)]
pub(crate) struct Rendering {
    stamp: Stamp,
    content_type: &'static str,
    body: Bytes,
    etag: String,
}

impl Rendering {
    /// The answer, with its `ETag` (which spares `conditional_get` from hashing it again).
    pub(crate) fn respond(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type(self.content_type)
            .insert_header((header::ETAG, self.etag.as_str()))
            .body(self.body.clone())
    }
}

/// Rendered answers by request.
#[derive(Default)]
pub(crate) struct Rendered {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_request: HashMap<String, Rendering>,
    bytes: usize,
}

impl Rendered {
    /// The rendering of `request` if it was made from the answer stamped `stamp`.
    pub(crate) fn get(&self, request: &str, stamp: &[i64]) -> Option<Rendering> {
        let entries = self.entries.lock().ok()?;
        entries
            .by_request
            .get(request)
            .filter(|r| r.stamp == stamp)
            .cloned()
    }

    /// Keeps a new rendering of `request` and returns it.
    pub(crate) fn put(
        &self,
        request: String,
        stamp: Stamp,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Rendering {
        let rendering = Rendering {
            etag: etag_of(&body),
            stamp,
            content_type,
            body: Bytes::from(body),
        };
        if let Ok(mut entries) = self.entries.lock() {
            let size = rendering.body.len();
            if entries.by_request.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
                *entries = Entries::default();
            }
            if size <= MAX_BYTES {
                entries.bytes += size;
                if let Some(old) = entries.by_request.insert(request, rendering.clone()) {
                    entries.bytes -= old.body.len();
                }
            }
        }
        rendering
    }
}

/// A strong `ETag` for a body: a hash of it.
pub(crate) fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &nigrani_domain::roster::sha256_hex(body)[..32])
}
