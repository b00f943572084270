//! Quiet hours and a daily limit for a child's toys, in the family's time zone.
//!
//! During a quiet window (school 08:30–15:00, bedtime 19:30–07:00) the child's toys receive
//! nothing but guardians' messages marked urgent; the rest waits in the queue and arrives
//! when the window ends. A window may cross midnight and may apply on some weekdays only
//! (it belongs to the day it starts on). Times are wall-clock times in the family's time
//! zone, so "07:00" stays 07:00 across daylight-saving changes.
//!
//! Everything here takes the time as an argument: the rules are tested with any clock.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode};

/// Most windows per child: a few cover school, bedtime and meals.
pub const MAX_WINDOWS: usize = 8;
/// The highest daily limit accepted (messages a child's toys may send per day).
pub const MAX_DAILY_LIMIT: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// An IANA time zone name, e.g. `Europe/Paris`.
    pub time_zone: String,
    #[serde(default)]
    pub windows: Vec<Window>,
    /// Messages the child's toys may send per day (from local midnight); none: no limit.
    #[serde(default)]
    pub daily_limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `HH:MM`, local time.
    pub start: String,
    /// `HH:MM`, local time; earlier than `start` means the next day.
    pub end: String,
    /// Days the window starts on (`mon` … `sun`); empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidBody, message)
}

fn parse_time(text: &str, what: &str) -> Result<Time, Error> {
    let (hour, minute) = text.trim().split_once(':').ok_or_else(|| invalid(format!("{what} must be HH:MM")))?;
    let (Ok(hour), Ok(minute)) = (hour.parse::<i8>(), minute.parse::<i8>()) else {
        return Err(invalid(format!("{what} must be HH:MM")));
    };
    Time::new(hour, minute, 0, 0).map_err(|_| invalid(format!("{what} must be a time of day between 00:00 and 23:59")))
}

fn parse_day(text: &str) -> Result<Weekday, Error> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return Err(invalid("days are mon, tue, wed, thu, fri, sat or sun")),
    })
}

/// A window, parsed.
struct Parsed {
    start: Time,
    end: Time,
    days: Vec<Weekday>,
}

impl QuietHours {
    /// Checks a schedule a guardian sent; errors name the field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        self.zone()?;
        if self.windows.len() > MAX_WINDOWS {
            return Err(invalid(format!("at most {MAX_WINDOWS} quiet windows")));
        }
        self.parsed()?;
        if self.daily_limit.is_some_and(|limit| limit == 0 || limit > MAX_DAILY_LIMIT) {
            return Err(invalid(format!("daily_limit must be between 1 and {MAX_DAILY_LIMIT}")));
        }
        Ok(())
    }

    fn zone(&self) -> Result<TimeZone, Error> {
        TimeZone::get(self.time_zone.trim()).map_err(|_| invalid("time_zone must be an IANA time zone such as Europe/Paris"))
    }

    fn parsed(&self) -> Result<Vec<Parsed>, Error> {
        self.windows
            .iter()
            .map(|w| {
                let start = parse_time(&w.start, "start")?;
                let end = parse_time(&w.end, "end")?;
                if start == end {
                    return Err(invalid("a quiet window must not start and end at the same time"));
                }
                let days = w.days.iter().map(|d| parse_day(d)).collect::<Result<Vec<_>, _>>()?;
                Ok(Parsed { start, end, days })
            })
            .collect()
    }

    /// If `now` (milliseconds since the Unix epoch) falls in a quiet window, when that
    /// window ends (milliseconds); overlapping windows are followed to their last end.
    pub fn quiet_until(&self, now: i64) -> Option<i64> {
        let zone = self.zone().ok()?;
        let windows = self.parsed().ok()?;
        let mut until = None;
        let mut at = now;
        // Follow chains of windows (bedtime then early morning) a few steps at most.
        for _ in 0..=MAX_WINDOWS {
            let end = windows.iter().filter_map(|w| window_end_if_inside(w, &zone, at)).max()?;
            until = Some(end);
            if end <= at {
                break;
            }
            at = end;
            if !windows.iter().any(|w| window_end_if_inside(w, &zone, at).is_some()) {
                break;
            }
        }
        until
    }

    /// Local midnight that began the day `now` is in, in milliseconds (for the daily limit).
    pub fn day_start(&self, now: i64) -> Option<i64> {
        let zone = self.zone().ok()?;
        let local = Timestamp::from_millisecond(now).ok()?.to_zoned(zone);
        let start = local.start_of_day().ok()?;
        Some(start.timestamp().as_millisecond())
    }
}

/// The end of `window` (ms) if `now` is inside an occurrence of it that started today or
/// yesterday (local dates).
fn window_end_if_inside(window: &Parsed, zone: &TimeZone, now: i64) -> Option<i64> {
    let local: Zoned = Timestamp::from_millisecond(now).ok()?.to_zoned(zone.clone());
    let today = local.date();
    for start_date in [today, today.checked_sub(1.day()).ok()?] {
        if !window.days.is_empty() && !window.days.contains(&start_date.weekday()) {
            continue;
        }
        let end_date = if window.end > window.start { start_date } else { start_date.checked_add(1.day()).ok()? };
        let start = start_date.to_datetime(window.start).to_zoned(zone.clone()).ok()?.timestamp().as_millisecond();
        let end = end_date.to_datetime(window.end).to_zoned(zone.clone()).ok()?.timestamp().as_millisecond();
        if start <= now && now < end {
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Zoned>().map(|z| z.timestamp().as_millisecond()).unwrap_or(i64::MIN)
    }

    fn schedule(windows: &[(&str, &str, &[&str])]) -> QuietHours {
        QuietHours {
            time_zone: "Europe/Paris".into(),
            windows: windows
                .iter()
                .map(|(start, end, days)| Window {
                    start: (*start).into(),
                    end: (*end).into(),
                    days: days.iter().map(|d| (*d).to_string()).collect(),
                })
                .collect(),
            daily_limit: None,
        }
    }

    #[test]
    fn school_hours_hold_on_weekdays_only() {
        let school = schedule(&[("08:30", "15:00", &["mon", "tue", "wed", "thu", "fri"])]);
        assert!(school.validate().is_ok());
        // Monday 2026-11-30, 10:00 in Paris: quiet until 15:00 Paris.
        assert_eq!(school.quiet_until(at("2026-11-30T10:00[Europe/Paris]")), Some(at("2026-11-30T15:00[Europe/Paris]")));
        assert_eq!(school.quiet_until(at("2026-11-30T08:29[Europe/Paris]")), None);
        assert_eq!(school.quiet_until(at("2026-11-30T15:00[Europe/Paris]")), None, "the end is not quiet");
        // Saturday: no school.
        assert_eq!(school.quiet_until(at("2026-12-05T10:00[Europe/Paris]")), None);
    }

    #[test]
    fn bedtime_crosses_midnight_and_chains_into_the_morning() {
        let nights = schedule(&[("19:30", "07:00", &[]), ("06:30", "08:00", &[])]);
        assert_eq!(nights.quiet_until(at("2026-11-30T23:00[Europe/Paris]")), Some(at("2026-12-01T08:00[Europe/Paris]")));
        assert_eq!(nights.quiet_until(at("2026-12-01T06:45[Europe/Paris]")), Some(at("2026-12-01T08:00[Europe/Paris]")));
        assert_eq!(nights.quiet_until(at("2026-12-01T12:00[Europe/Paris]")), None);
    }

    #[test]
    fn wall_clock_times_hold_across_daylight_saving() {
        let bedtime = schedule(&[("19:30", "07:00", &[])]);
        // The night clocks go forward (2026-03-29 in Europe): still ends at 07:00 local.
        assert_eq!(bedtime.quiet_until(at("2026-03-28T22:00[Europe/Paris]")), Some(at("2026-03-29T07:00[Europe/Paris]")));
        // The same instant seen from another zone's family is not quiet there.
        let london = QuietHours { time_zone: "America/New_York".into(), ..bedtime };
        assert_eq!(london.quiet_until(at("2026-03-28T22:00[Europe/Paris]")), None);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_field_named() {
        let mut bad = schedule(&[("25:00", "07:00", &[])]);
        assert!(bad.validate().is_err_and(|e| e.message.contains("start")));
        bad = schedule(&[("08:00", "08:00", &[])]);
        assert!(bad.validate().is_err());
        bad = schedule(&[("08:00", "09:00", &["someday"])]);
        assert!(bad.validate().is_err_and(|e| e.message.contains("days")));
        bad = QuietHours { time_zone: "Mars/Olympus_Mons".into(), ..schedule(&[]) };
        assert!(bad.validate().is_err_and(|e| e.message.contains("time_zone")));
        bad = QuietHours { daily_limit: Some(0), ..schedule(&[]) };
        assert!(bad.validate().is_err_and(|e| e.message.contains("daily_limit")));
    }

    #[test]
    fn the_day_starts_at_local_midnight() {
        let plan = schedule(&[]);
        assert_eq!(plan.day_start(at("2026-11-30T10:00[Europe/Paris]")), Some(at("2026-11-30T00:00[Europe/Paris]")));
    }
}
