//! Times as typed on the command line, and as printed: UTC, to the minute.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

const EXPECTED: &str = "expected a date (2024-01-01: midnight UTC), a time (2024-01-01T06:00 \
                        in UTC, or RFC 3339 with an offset), now, today, or a time relative to \
                        now (+2h, -7d)";

/// A time as typed: `2024-01-01` (midnight UTC), `2024-01-01T06:00[:SS]` or with a space (UTC),
/// RFC 3339 with an offset, `now`, `today` (midnight UTC), or `+2h` / `-7d` / `-1h30m` from now.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    parse_at(text, Utc::now())
}

/// [`parse`], with `now` given.
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let midnight = |date: NaiveDate| date.and_time(NaiveTime::MIN).and_utc();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if text.eq_ignore_ascii_case("today") {
        return Ok(midnight(now.date_naive()));
    }
    if let Some((sign, span)) = text
        .strip_prefix('+')
        .map(|s| (1, s))
        .or_else(|| text.strip_prefix('-').map(|s| (-1, s)))
    {
        let span = parse_span(span).ok_or_else(|| format!("{EXPECTED}; got {text:?}"))?;
        return now
            .checked_add_signed(span * sign)
            .ok_or_else(|| format!("{text:?} is out of range"));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(midnight(date));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    Err(format!("{EXPECTED}; got {text:?}"))
}

/// `1h30m`, `7d`, `45s`, `2w`: a sum of numbers with units s, m, h, d, w.
fn parse_span(text: &str) -> Option<TimeDelta> {
    let mut total = TimeDelta::zero();
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: i64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let part = match unit {
            's' => TimeDelta::try_seconds(number)?,
            'm' => TimeDelta::try_minutes(number)?,
            'h' => TimeDelta::try_hours(number)?,
            'd' => TimeDelta::try_days(number)?,
            'w' => TimeDelta::try_weeks(number)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Some(total)
}

/// `START..END`: two times.
pub fn parse_range(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, like 2024-01-01..2024-01-02; got {text:?}"))?;
    let (start, end) = (parse(start)?, parse(end)?);
    if start >= end {
        return Err(format!("the start must be before the end; got {text:?}"));
    }
    Ok((start, end))
}

/// `2026-11-28 01:00Z` (seconds when there are some).
pub fn show(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 && t.timestamp() % 60 == 0 {
        t.format("%Y-%m-%d %H:%MZ").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%SZ").to_string()
    }
}

/// `2024-01-01` at midnight UTC, else the time.
pub fn day_or_time(t: DateTime<Utc>) -> String {
    if is_midnight(t) {
        t.format("%Y-%m-%d").to_string()
    } else {
        show(t)
    }
}

/// Whether `t` is midnight UTC.
fn is_midnight(t: DateTime<Utc>) -> bool {
    t.time() == NaiveTime::MIN
}

/// A date interval as short as it is clear: `2024-01-01` (one whole day),
/// `2024-01-01 → 2024-01-08` (whole days), else both times.
pub fn interval(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    if is_midnight(start) && is_midnight(end) {
        if end - start == TimeDelta::days(1) {
            return start.format("%Y-%m-%d").to_string();
        }
        return format!("{} → {}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d"));
    }
    if start.date_naive() == end.date_naive() {
        return format!("{} → {}", show(start), end.format("%H:%MZ"));
    }
    format!("{} → {}", show(start), show(end))
}

/// `in 3h`, `5m ago`, `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = t - now;
    let seconds = delta.num_seconds().abs();
    if seconds < 5 {
        return "now".into();
    }
    let span = if seconds < 90 {
        format!("{seconds}s")
    } else if seconds < 90 * 60 {
        format!("{}m", (seconds + 30) / 60)
    } else if seconds < 36 * 3600 {
        format!("{}h", (seconds + 1800) / 3600)
    } else {
        format!("{}d", (seconds + 43_200) / 86_400)
    };
    if delta > TimeDelta::zero() {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `2026-11-28 01:00Z (in 13h)`.
pub fn show_relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", show(t), relative(t, now))
}

/// A run's duration: `850ms`, `12.3s`, `2m 03s`, `1h 02m`.
pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return String::new();
    }
    if ms < 1000.0 {
        return format!("{}ms", ms.round() as u64);
    }
    let seconds = ms / 1000.0;
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let seconds = seconds.round() as u64;
    if seconds < 3600 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn times_are_read_in_every_documented_form() {
        let now = at("2026-11-27T12:34:56Z");
        for (text, expected) in [
            ("2024-01-01", "2024-01-01T00:00:00Z"),
            ("2024-01-01T06:30", "2024-01-01T06:30:00Z"),
            ("2024-01-01 06:30:15", "2024-01-01T06:30:15Z"),
            ("2024-01-01T06:30:00+02:00", "2024-01-01T04:30:00Z"),
            ("now", "2026-11-27T12:34:56Z"),
            ("today", "2026-11-27T00:00:00Z"),
            ("+2h", "2026-11-27T14:34:56Z"),
            ("-7d", "2026-11-20T12:34:56Z"),
            ("-1h30m", "2026-11-27T11:04:56Z"),
        ] {
            assert_eq!(parse_at(text, now), Ok(at(expected)), "{text}");
        }
        for bad in [
            "yesterday",
            "2024-13-01",
            "+",
            "+5x",
            "-h",
            "2024-01-01T25:00",
        ] {
            let error = parse_at(bad, now).expect_err(bad);
            assert!(error.contains("expected a date"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_range_needs_its_start_before_its_end() {
        let (start, end) = parse_range("2024-01-01..2024-01-02").expect("a range");
        assert_eq!(
            (start, end),
            (at("2024-01-01T00:00:00Z"), at("2024-01-02T00:00:00Z"))
        );
        assert!(parse_range("2024-01-02..2024-01-01").is_err());
        assert!(parse_range("2024-01-01").is_err());
    }

    #[test]
    fn intervals_and_durations_print_short() {
        let day = interval(at("2024-01-01T00:00:00Z"), at("2024-01-02T00:00:00Z"));
        assert_eq!(day, "2024-01-01");
        let week = interval(at("2024-01-01T00:00:00Z"), at("2024-01-08T00:00:00Z"));
        assert_eq!(week, "2024-01-01 → 2024-01-08");
        let hour = interval(at("2024-01-01T05:00:00Z"), at("2024-01-01T06:00:00Z"));
        assert_eq!(hour, "2024-01-01 05:00Z → 06:00Z");
        assert_eq!(duration_ms(850.2), "850ms");
        assert_eq!(duration_ms(12_345.0), "12.3s");
        assert_eq!(duration_ms(123_000.0), "2m 03s");
        assert_eq!(duration_ms(3_720_000.0), "1h 02m");
        let now = at("2026-11-27T12:00:00Z");
        assert_eq!(relative(at("2026-11-28T01:00:00Z"), now), "in 13h");
        assert_eq!(relative(at("2026-11-27T11:57:00Z"), now), "3m ago");
    }
}
