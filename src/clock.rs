//! Wall-clock time as Remote Write carries it: milliseconds since the Unix epoch. One home for
//! the conversion, so the poller, the pod metadata, the sender's age limit, the benches and the
//! tests all read the clock the same way. A leaf: it imports nothing of the crate. It does not
//! own timers or intervals (tokio's time does), only the conversion.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch; 0 for a time before it, `i64::MAX` past what fits.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now, in milliseconds since the Unix epoch (see [`unix_ms`]).
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}
