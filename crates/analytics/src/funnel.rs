//! The funnel — enrolled → started → half-way → completed → certified — and how long completion
//! takes (median, 75th and 90th percentile, in days), per slice.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::Serialize;

use crate::definitions::Dimension;
use crate::frame::columns;
use crate::query::{QueryError, Subjects, dimension_names, enrolled_by, filtered};
use crate::record_key::cell_key;
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
    /// Who each stage counts — enrolled, started, half-way, completed, certified — for
    /// disclosure control ([`crate::disclosure`]); never serialised.
    #[serde(skip)]
    pub subjects: [Subjects; 5],
}

/// The stages of a funnel, in order.
const STAGES: [&str; 5] = ["enrolled", "started", "half_way", "completed", "certified"];

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
    let days = || col("days_to_complete");
    // Every learner left is enrolled (a literal would not broadcast inside an aggregation).
    let stage_flags = [
        col(columns::ENROLLED_AT).is_not_null(),
        col("started_at").is_not_null(),
        col("progress").gt_eq(lit(HALF_WAY)),
        col("completed_at").is_not_null(),
        col("certified_at").is_not_null(),
    ];
    let mut aggs = Vec::new();
    for (flag, name) in stage_flags.into_iter().zip(STAGES) {
        let flag = flag.cast(DataType::Int64);
        aggs.push(flag.clone().sum().alias(name));
        aggs.push(
            (flag * col(columns::RECORD_KEY))
                .sum()
                .alias(format!("{name}_key")),
        );
    }
    aggs.extend([
        days().median().alias("median"),
        days()
            .quantile(lit(0.75), QuantileMethod::Linear)
            .alias("p75"),
        days()
            .quantile(lit(0.90), QuantileMethod::Linear)
            .alias("p90"),
    ]);
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
    let stages: Vec<(Int64Chunked, Int64Chunked)> = STAGES
        .iter()
        .map(|name| Ok((int(name)?, int(&format!("{name}_key"))?)))
        .collect::<Result<_, QueryError>>()?;
    let (median, p75, p90) = (float("median")?, float("p75")?, float("p90")?);
    let keys: Vec<UInt32Chunked> = query
        .by
        .iter()
        .map(|d| Ok(result.column(d.as_str())?.u32()?.clone()))
        .collect::<Result<_, QueryError>>()?;
    Ok((0..result.height())
        .map(|i| {
            let subjects: [Subjects; 5] = std::array::from_fn(|stage| {
                let (count, key) = &stages[stage];
                Subjects {
                    count: count.get(i).unwrap_or(0).max(0) as u64,
                    key: cell_key(key.get(i).unwrap_or(0)),
                }
            });
            FunnelRow {
                keys: keys
                    .iter()
                    .zip(&names)
                    .map(|(k, names)| k.get(i).and_then(|code| names.get(code as usize).cloned()))
                    .collect(),
                enrolled: subjects[0].count,
                started: subjects[1].count,
                half_way: subjects[2].count,
                completed: subjects[3].count,
                certified: subjects[4].count,
                days_to_complete: CompletionTimes {
                    median: median.get(i),
                    p75: p75.get(i),
                    p90: p90.get(i),
                },
                subjects,
            }
        })
        .collect())
}
