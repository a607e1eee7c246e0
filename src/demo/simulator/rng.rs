//! The simulator's pseudo-random numbers: a splitmix64 generator and the Kubernetes-style
//! strings drawn from it (name suffixes, hashes, UIDs, GUIDs). It owns determinism: a generator
//! is keyed by the values that identify what it generates, never by call order. It does not
//! own what the numbers mean; `model` does.

/// Alphabet of Kubernetes' `rand.SafeEncodeString`, used for pod-template hashes and name
/// suffixes; without vowels so generated names never spell words.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// splitmix64: small, well distributed, and no dependency, which is all a simulator needs.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Inclusive range; the modulo bias is irrelevant at these sizes.
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

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
