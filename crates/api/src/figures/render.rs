//! Rendering answers: figures as JSON values (counts as integers, hidden values as null), JSON
//! bytes, a breakdown as CSV, what an answer says of its disclosure control, and people's
//! labels of dimension values in English or Urdu. Figures render only from a [`Shown`] answer,
//! which only the disclosure policy builds.

use std::collections::HashMap;

use nigrani_analytics::definitions::MetricKind;
use nigrani_analytics::disclosure::{Disclosure, PARTNER_NOTE, Shown};
use nigrani_analytics::{Breakdown, Dimension, Metric};
use serde_json::{Map, Value, json};

use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// Row `i`'s figures as JSON fields: `learners` and each metric, hidden values as null.
pub(crate) fn row_figures(shown: &Shown<Breakdown>, i: usize) -> Map<String, Value> {
    let result = shown.value();
    let row = &result.rows[i];
    let mut out = Map::new();
    out.insert("learners".into(), json!(row.learners));
    for (m, value) in result.metrics.iter().zip(&row.values) {
        out.insert(m.as_str().into(), metric_value(*m, *value));
    }
    out
}

/// What an answer says of its figures' disclosure control.
pub(crate) fn disclosure_note<T>(shown: &Shown<T>, policy: &Disclosure) -> Value {
    if !shown.perturbed() {
        return json!({ "perturbed": false, "additive": true });
    }
    let settings = policy.settings();
    json!({
        "perturbed": true,
        "additive": false,
        "k": settings.k,
        "max_noise": settings.max_noise,
        "min_base": settings.min_base,
        "time_grain": "day",
        "note": PARTNER_NOTE,
    })
}

/// An answer as JSON bytes.
pub(crate) fn json_bytes(answer: &impl serde::Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(answer).map_err(|e| {
        tracing::error!(error = %e, "An answer could not be serialised.");
        ApiError::new(ErrorCode::InternalError, "the answer could not be written")
    })
}

/// A breakdown as CSV: period (when grouped by it), the dimensions, `learners`, the metrics;
/// empty cells for totals' dimensions and for hidden or undefined values.
pub(super) fn breakdown_csv(shown: &Shown<Breakdown>) -> String {
    let result = shown.value();
    let mut header: Vec<&str> = Vec::new();
    if result.period.is_some() {
        header.push("period");
    }
    header.extend(result.by.iter().map(|d| d.as_str()));
    header.push("learners");
    header.extend(result.metrics.iter().map(|m| m.as_str()));
    let mut out = header.join(",");
    out.push('\n');
    for row in &result.rows {
        let mut cells: Vec<String> = Vec::new();
        if result.period.is_some() {
            cells.push(row.period.clone().unwrap_or_default());
        }
        cells.extend(row.keys.iter().map(|k| k.clone().unwrap_or_default()));
        cells.push(row.learners.to_string());
        for (metric, value) in result.metrics.iter().zip(&row.values) {
            cells.push(match metric_value(*metric, *value) {
                Value::Null => String::new(),
                other => other.to_string(),
            });
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The language of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Ur,
}

/// Labels of dimension values in one language.
pub(crate) struct Labels {
    lang: Lang,
    institutions: HashMap<String, (String, String)>,
    disciplines: HashMap<String, (String, String)>,
    cohorts: HashMap<String, (String, String)>,
}

impl Labels {
    pub(crate) async fn load(
        state: &AppState,
        roster: &nigrani_analytics::state::Roster,
        lang: Lang,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            lang,
            institutions: roster
                .institutions
                .iter()
                .map(|i| (i.hec_id.clone(), (i.name.clone(), i.name_ur.clone())))
                .collect(),
            disciplines: state
                .store
                .disciplines()
                .await?
                .into_iter()
                .map(|d| (d.code, (d.name, d.name_ur)))
                .collect(),
            cohorts: roster
                .cohorts
                .iter()
                .map(|c| (c.cohort_id.clone(), (c.name.clone(), c.name_ur.clone())))
                .collect(),
        })
    }

    pub(crate) fn pick<'a>(&self, en: &'a str, ur: &'a str) -> &'a str {
        match self.lang {
            Lang::En => en,
            Lang::Ur => ur,
        }
    }

    pub(crate) fn of(&self, dimension: Dimension, value: &str) -> String {
        use nigrani_domain::{Gender, Province, Role, Sector, Track};
        fn fixed<T: std::str::FromStr>(
            value: &str,
            f: impl Fn(T) -> &'static str,
        ) -> Option<String> {
            value.parse::<T>().ok().map(|v| f(v).to_owned())
        }
        let table = |map: &HashMap<String, (String, String)>| {
            map.get(value).map(|(en, ur)| self.pick(en, ur).to_owned())
        };
        let label = match dimension {
            Dimension::Province => {
                fixed(value, |p: Province| self.pick(p.label_en(), p.label_ur()))
            }
            Dimension::Track => fixed(value, |t: Track| self.pick(t.label_en(), t.label_ur())),
            Dimension::Sector => fixed(value, |s: Sector| self.pick(s.label_en(), s.label_ur())),
            Dimension::Role => fixed(value, |r: Role| self.pick(r.label_en(), r.label_ur())),
            Dimension::Gender => fixed(value, |g: Gender| self.pick(g.label_en(), g.label_ur())),
            Dimension::Institution => table(&self.institutions),
            Dimension::Discipline => table(&self.disciplines),
            Dimension::Cohort => table(&self.cohorts),
        };
        label.unwrap_or_else(|| value.to_owned())
    }
}

/// An answer as a JSON value, to edit (e.g. suppress) before sending.
pub(crate) fn to_json(answer: &impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| {
        tracing::error!(error = %e, "An answer could not be serialised.");
        ApiError::new(ErrorCode::InternalError, "the answer could not be written")
    })
}

/// Counts as JSON integers, rates and averages as numbers.
pub(crate) fn metric_value(metric: Metric, value: Option<f64>) -> Value {
    match (metric.kind(), value) {
        (MetricKind::Count, Some(v)) => json!(v.round() as i64),
        (_, value) => json!(value),
    }
}
