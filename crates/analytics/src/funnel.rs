//! The funnel — enrolled → started → half-way → completed → certified — and how long completion
//! takes (median, 75th and 90th percentile, in days), per slice.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::Serialize;

use crate::definitions::Dimension;
use crate::query::{QueryError, dimension_names, enrolled_by, filtered};
use crate::state::Roster;

/// Progress from which a learner counts as half-way.
pub const HALF_WAY: f64 = 0.5;

/// What a funnel asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelQuery {
    pub by: Vec<Dimension>,
    pub filters: BTreeMap<Dimension, Vec<String>>,
}

/// Days from a learner's first event to completion, over a slice's completed learners.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompletionTimes {
    pub median: Option<f64>,
    pub p75: Option<f64>,
    pub p90: Option<f64>,
}

/// One slice of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelRow {
    pub keys: Vec<Option<String>>,
    pub enrolled: u64,
    pub started: u64,
    pub half_way: u64,
    pub completed: u64,
    pub certified: u64,
    pub days_to_complete: CompletionTimes,
}

/// Computes the funnel over a learner frame that holds nothing after `as_of`, over the learners
/// enrolled by then.
pub fn funnel(
    frame: &DataFrame,
    roster: &Roster,
    query: &FunnelQuery,
    as_of: i64,
) -> Result<Vec<FunnelRow>, QueryError> {
    let lazy = enrolled_by(
        filtered(frame.clone().lazy(), roster, &query.filters)?,
        as_of,
    );
    let count = |e: Expr, name: &str| e.cast(DataType::Int64).sum().alias(name);
    let days = || col("days_to_complete");
    let aggs = [
        len().cast(DataType::Int64).alias("enrolled"),
        count(col("started_at").is_not_null(), "started"),
        count(col("progress").gt_eq(lit(HALF_WAY)), "half_way"),
        count(col("completed_at").is_not_null(), "completed"),
        count(col("certified_at").is_not_null(), "certified"),
        days().median().alias("median"),
        days()
            .quantile(lit(0.75), QuantileMethod::Linear)
            .alias("p75"),
        days()
            .quantile(lit(0.90), QuantileMethod::Linear)
            .alias("p90"),
    ];
    let result = if query.by.is_empty() {
        lazy.select(aggs).collect()?
    } else {
        let keys: Vec<Expr> = query.by.iter().map(|d| col(d.as_str())).collect();
        lazy.group_by(keys.clone())
            .agg(aggs)
            .sort_by_exprs(keys, SortMultipleOptions::default())
            .collect()?
    };
    let names: Vec<Vec<String>> = query
        .by
        .iter()
        .map(|d| dimension_names(roster, *d))
        .collect();
    let int = |name: &str| -> Result<Int64Chunked, QueryError> {
        Ok(result.column(name)?.cast(&DataType::Int64)?.i64()?.clone())
    };
    let float = |name: &str| -> Result<Float64Chunked, QueryError> {
        Ok(result
            .column(name)?
            .cast(&DataType::Float64)?
            .f64()?
            .clone())
    };
    let (enrolled, started, half_way, completed, certified) = (
        int("enrolled")?,
        int("started")?,
        int("half_way")?,
        int("completed")?,
        int("certified")?,
    );
    let (median, p75, p90) = (float("median")?, float("p75")?, float("p90")?);
    let keys: Vec<UInt32Chunked> = query
        .by
        .iter()
        .map(|d| Ok(result.column(d.as_str())?.u32()?.clone()))
        .collect::<Result<_, QueryError>>()?;
    let n = |c: &Int64Chunked, i: usize| c.get(i).unwrap_or(0).max(0) as u64;
    Ok((0..result.height())
        .map(|i| FunnelRow {
            keys: keys
                .iter()
                .zip(&names)
                .map(|(k, names)| k.get(i).and_then(|code| names.get(code as usize).cloned()))
                .collect(),
            enrolled: n(&enrolled, i),
            started: n(&started, i),
            half_way: n(&half_way, i),
            completed: n(&completed, i),
            certified: n(&certified, i),
            days_to_complete: CompletionTimes {
                median: median.get(i),
                p75: p75.get(i),
                p90: p90.get(i),
            },
        })
        .collect())
}
