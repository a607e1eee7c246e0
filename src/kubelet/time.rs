//! RFC 3339 timestamps as the kubelet writes them (Go's `metav1.Time`), parsed to Unix
//! milliseconds. Hand-written because it runs once per summary section on the hot path and
//! needs no calendar beyond UTC arithmetic; it accepts `Z` or a numeric offset, optional
//! fractional seconds, and `T`, `t` or a space between date and time.

use std::fmt;

/// A timestamp string that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RFC 3339 time {:?}", self.0)
    }
}

impl std::error::Error for TimeError {}

/// Parses `2018-09-10T01:44:52Z`, `2018-09-10T01:44:52.123456789+02:00` and the like into
/// milliseconds since the Unix epoch (fractions below a millisecond are truncated).
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, TimeError> {
    parse(s.as_bytes()).ok_or_else(|| TimeError(s.to_owned()))
}

fn parse(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; Go never writes one, but it is valid RFC 3339.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_seconds = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1000 + millis)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_metav1_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        // Cross-checked with `date -u -d 2018-09-10T01:44:52Z +%s`.
        assert_eq!(
            parse_rfc3339_ms("2018-09-10T01:44:52Z"),
            Ok(1_536_543_892_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-01-13T18:40:14Z"),
            Ok(1_768_329_614_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T12:00:00Z"),
            Ok(951_825_600_000)
        );
    }

    #[test]
    fn parses_fractions_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.123456789Z"), Ok(1123));
        assert_eq!(parse_rfc3339_ms("1970-01-01T02:00:00+02:00"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:30:00-00:30"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01 00:00:00z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("0001-01-01T00:00:00Z"),
            Ok(-62_135_596_800_000)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2018-09-10",
            "2018-09-10T01:44:52",
            "2018-13-10T01:44:52Z",
            "2018-02-30T01:44:52Z",
            "2018-09-10T24:00:00Z",
            "2018-09-10T01:44:52.Z",
            "2018-09-10T01:44:52+0200",
            "2018-09-10T01:44:52Zjunk",
            "2018/09/10T01:44:52Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
