//! Keyed, stateless randomness. Every random choice the simulator makes is a
//! hash of the seed and what the choice is about (an address, a port, the
//! n-th SYN to it), so the model needs no memory and a seeded run makes the
//! same choices whatever order the packets arrive in.
//!
//! The mixing function is SplitMix64's output step (Steele, Lea and Flood,
//! 2014), which is also the lab's generator: a bijection on 64 bits with full
//! avalanche, plenty for simulation and not meant for cryptography.

/// One independent stream of choices per kind of decision, so that, say, the
/// loss draw for a SYN is unrelated to the state of its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Stream {
    State = 1,
    HostLatency = 2,
    HostLatencyAngle = 3,
    Jitter = 4,
    SynLoss = 5,
    ReplyLoss = 6,
    Isn = 7,
    Middlebox = 8,
    SubnetSpread = 9,
    Speaks = 10,
    Service = 11,
    DataLoss = 12,
}

/// SplitMix64's step: add the golden gamma, then mix.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits fixed by `(seed, stream, a, b)`.
pub(crate) fn draw(seed: u64, stream: Stream, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ mix(stream as u64)) ^ a) ^ b)
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform `f64` in `(0, 1]`: safe to take the logarithm of.
pub(crate) fn unit_open0(bits: u64) -> f64 {
    ((bits >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_of_zero_is_splitmix64s_first_output() {
        // Vigna's splitmix64.c seeded with 0 first returns this value.
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn units_stay_in_their_intervals() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        assert!(unit_open0(0) > 0.0);
        assert_eq!(unit_open0(u64::MAX), 1.0);
    }

    #[test]
    fn streams_and_keys_give_unrelated_draws() {
        let a = draw(1, Stream::State, 10, 80);
        assert_eq!(a, draw(1, Stream::State, 10, 80));
        assert_ne!(a, draw(2, Stream::State, 10, 80));
        assert_ne!(a, draw(1, Stream::SynLoss, 10, 80));
        assert_ne!(a, draw(1, Stream::State, 80, 10));
        assert_ne!(a, draw(1, Stream::State, 10, 81));
    }

    #[test]
    fn unit_draws_are_roughly_uniform() {
        let n = 100_000u64;
        let below_tenth = (0..n)
            .filter(|&i| unit(draw(3, Stream::State, i, 0)) < 0.1)
            .count() as f64;
        let frac = below_tenth / n as f64;
        assert!((frac - 0.1).abs() < 0.005, "{frac}");
    }
}
