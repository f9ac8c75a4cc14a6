//! Calendar periods, cut in Pakistan time (UTC+5): day, ISO week, month, quarter, and the fiscal
//! year, which starts on 1 July. Plus the relative periods dashboards ask for.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::definitions::DAY_MICROS;
use crate::state::{PAKISTAN_OFFSET_MICROS, pakistan_day};

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    Month,
    Quarter,
    FiscalYear,
}

impl Interval {
    /// Every interval.
    pub const ALL: &'static [Interval] = &[
        Interval::Day,
        Interval::Week,
        Interval::Month,
        Interval::Quarter,
        Interval::FiscalYear,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Quarter => "quarter",
            Interval::FiscalYear => "fiscal_year",
        }
    }

    /// The first day of the period holding `day`.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        let first_of_month =
            |year: i32, month: u32| NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(day);
        match self {
            Interval::Day => day,
            Interval::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Interval::Month => first_of_month(day.year(), day.month()),
            Interval::Quarter => first_of_month(day.year(), (day.month() - 1) / 3 * 3 + 1),
            Interval::FiscalYear => {
                let year = if day.month() >= 7 {
                    day.year()
                } else {
                    day.year() - 1
                };
                first_of_month(year, 7)
            }
        }
    }

    /// The first day of the next period, given the first day of one.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        let months = |n: u32| start.checked_add_months(Months::new(n)).unwrap_or(start);
        match self {
            Interval::Day => start + Duration::days(1),
            Interval::Week => start + Duration::days(7),
            Interval::Month => months(1),
            Interval::Quarter => months(3),
            Interval::FiscalYear => months(12),
        }
    }

    /// How a period is named: `2026-11-30`, `2026-W48`, `2026-11`, `2026-Q4`, `FY2026-27`.
    pub fn label(self, start: NaiveDate) -> String {
        match self {
            Interval::Day => start.to_string(),
            Interval::Week => {
                let week = start.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Interval::Month => format!("{}-{:02}", start.year(), start.month()),
            Interval::Quarter => format!("{}-Q{}", start.year(), (start.month() - 1) / 3 + 1),
            Interval::FiscalYear => format!("FY{}-{:02}", start.year(), (start.year() + 1) % 100),
        }
    }
}

impl std::str::FromStr for Interval {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .iter()
            .copied()
            .find(|i| i.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown interval `{value}`; expected one of: day, week, month, quarter, \
                     fiscal_year"
                )
            })
    }
}

/// The moment a calendar day starts in Pakistan, in microseconds since the epoch.
pub fn day_start_micros(day: NaiveDate) -> i64 {
    let days = (day - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(day)).num_days();
    days * DAY_MICROS - PAKISTAN_OFFSET_MICROS
}

/// The calendar day (in Pakistan) of a moment.
pub fn day_of(moment: DateTime<Utc>) -> NaiveDate {
    let days = pakistan_day(moment.timestamp_micros());
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + Duration::days(days)
}

/// A window relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelativePeriod {
    Last7Days,
    Last30Days,
    Last12Weeks,
    Last12Months,
    ThisFiscalYear,
    SinceStart,
}

impl RelativePeriod {
    /// Every relative period.
    pub const ALL: &'static [RelativePeriod] = &[
        RelativePeriod::Last7Days,
        RelativePeriod::Last30Days,
        RelativePeriod::Last12Weeks,
        RelativePeriod::Last12Months,
        RelativePeriod::ThisFiscalYear,
        RelativePeriod::SinceStart,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RelativePeriod::Last7Days => "last_7_days",
            RelativePeriod::Last30Days => "last_30_days",
            RelativePeriod::Last12Weeks => "last_12_weeks",
            RelativePeriod::Last12Months => "last_12_months",
            RelativePeriod::ThisFiscalYear => "this_fiscal_year",
            RelativePeriod::SinceStart => "since_start",
        }
    }

    /// The start of the window ending at `now` (the window is `[start, now]`), the current day,
    /// week or month counting as one. `program_start` is the first day of the earliest cohort.
    pub fn start(self, now: DateTime<Utc>, program_start: NaiveDate) -> DateTime<Utc> {
        let today = day_of(now);
        let day = match self {
            RelativePeriod::Last7Days => today - Duration::days(6),
            RelativePeriod::Last30Days => today - Duration::days(29),
            RelativePeriod::Last12Weeks => Interval::Week.start_of(today) - Duration::weeks(11),
            RelativePeriod::Last12Months => Interval::Month
                .start_of(today)
                .checked_sub_months(Months::new(11))
                .unwrap_or(today),
            RelativePeriod::ThisFiscalYear => Interval::FiscalYear.start_of(today),
            RelativePeriod::SinceStart => program_start.min(today),
        };
        DateTime::from_timestamp_micros(day_start_micros(day)).unwrap_or(now)
    }
}

impl std::str::FromStr for RelativePeriod {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        RelativePeriod::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown period `{value}`; expected one of: {}",
                    RelativePeriod::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn periods_start_and_are_named_as_people_expect() {
        let day = d(2026, 11, 30); // a Monday
        assert_eq!(Interval::Week.start_of(day), day);
        assert_eq!(Interval::Week.start_of(d(2026, 12, 6)), day);
        assert_eq!(Interval::Quarter.start_of(day), d(2026, 10, 1));
        assert_eq!(Interval::FiscalYear.start_of(day), d(2026, 7, 1));
        assert_eq!(Interval::FiscalYear.start_of(d(2027, 6, 30)), d(2026, 7, 1));
        assert_eq!(Interval::FiscalYear.label(d(2026, 7, 1)), "FY2026-27");
        assert_eq!(Interval::Quarter.label(d(2026, 10, 1)), "2026-Q4");
        assert_eq!(Interval::Week.label(day), "2026-W49");
        assert_eq!(Interval::Month.next(d(2026, 12, 1)), d(2027, 1, 1));
    }

    #[test]
    fn days_are_cut_in_pakistan_time() {
        // 19:30 UTC is 00:30 the next day in Pakistan.
        let late = Utc.with_ymd_and_hms(2026, 11, 30, 19, 30, 0).unwrap();
        assert_eq!(day_of(late), d(2026, 12, 1));
        assert_eq!(
            day_start_micros(d(2026, 12, 1)),
            Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0)
                .unwrap()
                .timestamp_micros()
        );
    }

    #[test]
    fn relative_periods_count_the_current_day() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let start = RelativePeriod::Last7Days.start(now, d(2026, 1, 1));
        assert_eq!(day_of(start), d(2026, 11, 24));
        assert_eq!(
            day_of(RelativePeriod::ThisFiscalYear.start(now, d(2026, 1, 1))),
            d(2026, 7, 1)
        );
        assert_eq!(
            day_of(RelativePeriod::SinceStart.start(now, d(2026, 2, 3))),
            d(2026, 2, 3)
        );
    }
}
