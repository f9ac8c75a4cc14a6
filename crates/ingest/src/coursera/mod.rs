//! Coursera: enrollment reports, pulled from its API or imported as CSV, as normalised events.
//!
//! Coursera sends no webhooks; its enterprise API serves each program's enrollment report (one
//! row per learner and content item, lagging live data by up to a day or two), and its admin
//! pages export the same report as CSV. Both arrive here as [`report::ReportRow`]s and leave as
//! [`nigrani_domain::LearningEvent`]s that the batch pipeline takes as
//! [`crate::native::Item::Event`]. This module knows HTTP only as a client of Coursera's API; it
//! writes nothing itself: the caller writes each page's events, then keeps the cursor.
//!
//! Modules:
//! - [`report`]: the row, read from the API's JSON or the CSV export; a row's events
//!   ([`report::row_events`]), idempotent and forward-only.
//! - [`client`]: the blocking API client (OAuth2 client credentials, `start`/`limit` pages,
//!   retries with backoff).
//! - [`import`]: rows into the store through the batch pipeline (CSV files, pulled pages).
//! - [`pull`]: one resumable pass over a program's report, page by page, with its [`pull::Cursor`].
//! - [`connector`]: a scheduled run of the pull, writing each page before keeping its cursor,
//!   and the connector's health.
//!
//! What this relies on from Coursera's documentation: the report endpoint
//! `businesses.v1/{orgId}/…/enrollmentReports` and its lag of up to 24 h behind live data
//! (business.coursera.help, "Update to APIs launching 4 Feb 2019"); the e-mail address reported
//! as `externalId` when a learner has none (same page); access tokens of type Bearer that last
//! 1,800 s; `start`/`limit` paging with `paging.next` written as a string and absent at the end.
pub mod client;
pub mod connector;
pub mod import;
pub mod pull;
pub mod report;

pub use client::{Client, ClientConfig, Page, PullError};
pub use pull::{Cursor, PullSummary, pull_program};
pub use report::{ReportRow, RowAt, RowError, read_csv, row_events};
