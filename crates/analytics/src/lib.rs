//! The program's figures, computed from what the store holds.
//!
//! This crate will own the learner-state frame (polars), dimension queries, time series, funnel,
//! targets, small-cell suppression and stalled-cohort rules. It reads through the
//! [`nigrani_store::Store`] trait and must not know about HTTP or wire formats.
//!
//! Today it holds the piece everything else here builds on:
//! - [`feed`]: [`feed::FeedFollower`], which follows the store's change feed by sequence number,
//!   so that a snapshot (this process's or another replica's) sees each committed event once, in
//!   commit order.

pub mod feed;
