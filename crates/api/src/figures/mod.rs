//! The read API over analytics: breakdowns, time series, the funnel and targets.
//!
//! One concern per module, each below the next, so that none imports another in a circle:
//! - `render`: answers as JSON values and bytes, CSV, and people's labels.
//! - `partner`: the partner view — small counts hidden (uses `render`).
//! - `params`: the query parameters and the range they ask for (uses `render` for `Lang`).
//! - `handlers`: the routes (uses all three).
//!
//! The summary, the live stream and the Grafana datasource reuse the first three.

pub(crate) mod handlers;
pub(crate) mod params;
mod partner;
mod render;

pub(crate) use params::{LangParam, Params, RowsFormat, flat_rows, language, rounded_now};
pub(crate) use partner::{hide_attained, partner_count, suppressed, target_json};
pub(crate) use render::{Labels, Lang, json_bytes, metric_value, row_figures, to_json};
