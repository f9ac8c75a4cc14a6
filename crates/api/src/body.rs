//! Request bodies within limits: their size, and the rate they arrive at.
//!
//! Every body is read through a deadline ([`with_deadline`]): after a grace period, the bytes
//! received must keep up with a minimum rate, or the request ends with 408 `body_timeout`. A
//! client declaring 10 MiB and sending 100 bytes every few seconds cannot hold a connection (and
//! a worker's buffer) open, while an honest client on a slow link is never cut off.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    /// Time every body gets before the rate counts (and the longest a body may stall at first).
    pub grace: Duration,
    /// Bytes a second a body must average after the grace period.
    pub min_bytes_per_second: u64,
}

impl Default for BodyRate {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            min_bytes_per_second: 16 * 1024,
        }
    }
}

/// Puts every request body that has one behind the deadline of the server's [`BodyRate`].
pub(crate) async fn with_deadline(
    mut req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let rate = req.app_data::<web::Data<AppState>>().map(|s| s.body_rate);
    if let (true, Some(rate)) = (has_body, rate) {
        let inner = req.take_payload();
        let started = Instant::now();
        let limited = Deadline {
            inner,
            started,
            received: 0,
            rate,
            timer: Box::pin(tokio::time::sleep_until(started + rate.grace)),
            expired: false,
        };
        req.set_payload(Payload::Stream {
            payload: Box::pin(limited),
        });
    }
    next.call(req).await
}

/// A body stream that fails once it falls behind its deadline.
struct Deadline {
    inner: Payload,
    started: Instant,
    received: u64,
    rate: BodyRate,
    timer: Pin<Box<Sleep>>,
    expired: bool,
}

impl Deadline {
    /// The grace period plus the time the bytes so far may take at the minimum rate.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(
            self.received as f64 / self.rate.min_bytes_per_second.max(1) as f64,
        );
        self.started + self.rate.grace + earned
    }
}

impl Stream for Deadline {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                let deadline = this.deadline();
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.expired = true;
                    return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the body arrived too slowly",
                    )))));
                }
                Poll::Pending
            }
            done => done,
        }
    }
}

/// The error for a body that could not be read: 408 when it came too slowly.
pub(crate) fn unreadable(error: &PayloadError) -> ApiError {
    match error {
        PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            ErrorCode::BodyTimeout,
            "the body arrived too slowly; send it again on a faster connection or in smaller \
             batches",
        ),
        other => ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body could not be read: {other}"),
        ),
    }
}

/// The media type of a request, without parameters, lower-cased.
pub(crate) fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a body up to `limit` bytes; a larger one is refused with 413 before it is buffered.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes; send smaller batches"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    // What is declared is not yet sent: reserve at most 1 MiB up front.
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(1 << 20));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| unreadable(&e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
