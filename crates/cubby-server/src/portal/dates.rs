//! Moments as the portal's pages say them. Always in UTC, and said so: without script the
//! server cannot know the reader's time zone.

use jiff::Timestamp;
use maud::{Markup, html};

fn timestamp(millis: i64) -> Timestamp {
    // Out of range only for a corrupt value; the epoch is a visible, harmless stand-in.
    Timestamp::from_millisecond(millis).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A day, e.g. `30 Nov 2026`.
pub fn day(millis: i64) -> String {
    timestamp(millis).strftime("%-d %b %Y").to_string()
}

/// A moment to the minute, e.g. `30 Nov 2026, 13:40 UTC`.
pub fn when(millis: i64) -> String {
    timestamp(millis).strftime("%-d %b %Y, %H:%M UTC").to_string()
}

/// [`when`] in a `<time>` element, so machines read it too.
pub fn when_markup(millis: i64) -> Markup {
    html! { time datetime=(timestamp(millis).strftime("%Y-%m-%dT%H:%MZ").to_string()) { (when(millis)) } }
}

/// `YYYY-MM-DD`, for file names.
pub fn iso_day(millis: i64) -> String {
    timestamp(millis).strftime("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::{day, iso_day, when, when_markup};

    #[test]
    fn dates_are_said_in_utc() {
        assert_eq!(when(0), "1 Jan 1970, 00:00 UTC");
        assert_eq!(when(1_709_211_900_000), "29 Feb 2024, 13:05 UTC");
        assert_eq!(day(1_796_000_000_000), "30 Nov 2026");
        assert_eq!(iso_day(1_798_675_200_000), "2026-12-31");
        assert_eq!(when_markup(0).into_string(), r#"<time datetime="1970-01-01T00:00Z">1 Jan 1970, 00:00 UTC</time>"#);
    }
}
