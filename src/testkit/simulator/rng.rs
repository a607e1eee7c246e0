//! The simulator's pseudo-random numbers: the crate's splitmix64 generator (`crate::rng`) and
//! the Kubernetes-style strings drawn from it (name suffixes, hashes, UIDs, GUIDs). It owns
//! determinism: a generator is keyed by the values that identify what it generates, never by
//! call order. It does not own what the numbers mean; `model` does.

/// Alphabet of Kubernetes' `rand.SafeEncodeString`, used for pod-template hashes and name
/// suffixes; without vowels so generated names never spell words.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

use crate::rng::SplitMix64;

/// The simulator's strings, drawn from the crate's generator.
impl SplitMix64 {
    pub(super) fn safe_string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                let i = (self.next_u64() % SAFE_ALPHABET.len() as u64) as usize;
                char::from(SAFE_ALPHABET[i])
            })
            .collect()
    }

    pub(super) fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[(self.next_u64() % 16) as usize]))
            .collect()
    }

    pub(super) fn guid(&mut self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(4),
            self.hex(4),
            self.hex(12)
        )
    }
}

/// A generator keyed by several values, so every pod incarnation's parameters depend only on
/// (seed, slot, generation) and not on how often or in which order `summary_json` was called.
///
/// Each part is folded into the state through the generator's output function: SplitMix64's
/// state only ever advances by a constant, so xoring parts into it directly made keys such as
/// (seed, 0, 7) and (seed, 7, 0) collide (two pods with one UID, found by the `/pods` test).
pub(super) fn keyed(parts: &[u64]) -> SplitMix64 {
    let mut g = SplitMix64(0x6B75_6265_6C65_7421);
    for p in parts {
        g.0 ^= *p;
        g.0 = g.next_u64();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_keys_give_different_streams() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..64u64 {
            for generation in 0..64u64 {
                let first = keyed(&[42, slot, generation]).next_u64();
                assert!(seen.insert(first), "({slot}, {generation}) collides");
            }
        }
    }
}
