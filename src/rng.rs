//! The crate's one seeded pseudo-random generator, splitmix64: the sender draws its backoff
//! jitter from it, the simulated kubelet its pods and stats, and tests their reproducible cases
//! (a seed names a case). A leaf: it imports nothing of the crate. It is not for anything that
//! must be unpredictable, and it does not own what the numbers mean (the simulator's names and
//! IDs live in `testkit::simulator::rng`).

/// splitmix64: small, well distributed, and no dependency. One seed, one sequence, on every
/// platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed` (the first output mixes `seed` plus the golden
    /// ratio increment).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..n`; the modulo bias is irrelevant at the sizes tests and the simulator ask for.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Inclusive range; the modulo bias is irrelevant at these sizes.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference splitmix64 outputs for seed 0 (Vigna's `splitmix64.c`): demo output and
    /// seeded test cases depend on this exact sequence.
    #[test]
    fn matches_the_reference_sequence() {
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next_u64(), 0x06C4_5D18_8009_454F);
    }
}
