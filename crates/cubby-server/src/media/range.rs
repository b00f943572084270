//! HTTP `Range` for blob downloads (RFC 9110 §14): one range of bytes, so that a device
//! on a flaky connection resumes a download instead of starting over.

use std::ops::Range;

/// What a `Range` header asks of a blob of a known size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole blob: no header, another unit, or several ranges (which the server may
    /// answer with the whole representation; devices ask for one).
    All,
    /// These bytes (never empty, within the blob).
    Part(Range<u64>),
    /// A range outside the blob, or a header that is no range at all: 416.
    Unsatisfiable,
}

/// Reads `header` (e.g. `bytes=100-`, `bytes=0-99`, `bytes=-500`) against `size`.
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(header) = header.map(str::trim) else { return Wanted::All };
    let Some(spec) = header.strip_prefix("bytes=") else { return Wanted::All };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Wanted::Unsatisfiable };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
    };
    let range = match (first.trim(), last.trim()) {
        // The last N bytes.
        ("", suffix) => match number(suffix) {
            Some(0) | None => None,
            Some(n) => Some(size.saturating_sub(n)..size),
        },
        (start, "") => number(start).map(|start| start..size),
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start <= end => Some(start..end.saturating_add(1).min(size)),
            _ => None,
        },
    };
    match range {
        Some(range) if range.start < range.end => Wanted::Part(range),
        _ => Wanted::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_honoured_and_clamped() {
        assert_eq!(wanted(None, 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-9"), 10), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=2-4"), 10), Wanted::Part(2..5));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4..10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7..10));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=5-500"), 10), Wanted::Part(5..10));
        assert_eq!(wanted(Some("bytes=0-18446744073709551615"), 10), Wanted::Part(0..10));
    }

    #[test]
    fn other_units_and_multiple_ranges_get_everything() {
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::All);
    }

    #[test]
    fn ranges_outside_the_blob_or_malformed_are_unsatisfiable() {
        for header in ["bytes=10-", "bytes=10-20", "bytes=5-4", "bytes=-0", "bytes=", "bytes=-", "bytes=a-b", "bytes=1", "bytes=+1-2", "bytes=99999999999999999999-"] {
            assert_eq!(wanted(Some(header), 10), Wanted::Unsatisfiable, "{header}");
        }
    }
}
