//! Random encoder inputs the `v1` and `v2` tests draw from the crate's seeded generator
//! (`crate::rng`): label text with the characters that need escaping or are more than one
//! byte, values with every special float, timestamps with the extremes. Test-only; it owns
//! what a random case looks like, not the generator, nor the encoders' checks.

use crate::metadata;
use crate::rng::SplitMix64;
use crate::series::STALE_NAN_BITS;

impl SplitMix64 {
    pub(super) fn text(&mut self, max: u64) -> String {
        const ALPHABET: &[&str] = &[
            "a", "b", "z", "_", "0", "é", "名", "\"", "\\", "\n", "-", "A", "Z", "\u{0}",
        ];
        let len = self.below(max + 1);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }

    /// A known family now and then (so an encoder writes its metadata), a random name
    /// otherwise.
    pub(super) fn metric_name(&mut self) -> String {
        let all = metadata::all();
        match self.below(3) {
            0 => all[self.below(all.len() as u64) as usize].name.to_owned(),
            _ => self.text(12),
        }
    }

    pub(super) fn value(&mut self) -> f64 {
        match self.below(10) {
            0 => 0.0,
            1 => -0.0,
            2 => f64::NAN,
            3 => f64::from_bits(STALE_NAN_BITS),
            4 => f64::INFINITY,
            5 => f64::NEG_INFINITY,
            6 => f64::MIN_POSITIVE,
            7 => self.below(1 << 40) as f64,
            _ => f64::from_bits(self.next_u64()),
        }
    }

    pub(super) fn timestamp(&mut self) -> i64 {
        match self.below(6) {
            0 => 0,
            1 => -(self.below(1 << 40) as i64),
            2 => i64::MAX,
            3 => i64::MIN,
            _ => 1_700_000_000_000 + self.below(1 << 30) as i64,
        }
    }

    /// A start timestamp: absent half the time; otherwise anything, extremes included (the
    /// encoder writes what it is given; `convert` decides what is sensible).
    pub(super) fn start(&mut self) -> i64 {
        match self.below(2) {
            0 => 0,
            _ => self.timestamp(),
        }
    }
}
