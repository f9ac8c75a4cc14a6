//! The read API over analytics: breakdowns, time series, the funnel and targets.
//!
//! One concern per module, each below the next, so that none imports another in a circle:
//! - `render`: answers as JSON values and bytes, CSV, the disclosure note and people's labels.
//! - `params`: the query parameters and the range they ask for (uses `render` for `Lang`).
//! - `handlers`: the routes (uses both).
//!
//! What a partner sees is decided by [`nigrani_analytics::disclosure`], through
//! [`crate::AppState::disclosure`]: figures render only from its [`Shown`] answers. The summary,
//! the live stream and the Grafana datasource reuse the first two.
//!
//! [`Shown`]: nigrani_analytics::disclosure::Shown

pub(crate) mod handlers;
pub(crate) mod params;
mod render;

pub(crate) use params::{LangParam, Params, RowsFormat, flat_rows, language, rounded_now};
pub(crate) use render::{
    Labels, Lang, disclosure_note, json_bytes, metric_value, row_figures, to_json,
};
