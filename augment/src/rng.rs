//! Seeded random streams for augmentation.
//!
//! Every view gets its own generator, keyed by `(seed, epoch, sample index, view)` and nothing
//! else. That makes augmentation reproducible whatever the number of threads, the batch
//! composition or the order in which samples are processed: the same key always yields the same
//! draws. The generator is xoshiro256++ (fast, and its output is specified, unlike `SmallRng`).

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// The random generator a single view draws from.
pub type ViewRng = Xoshiro256PlusPlus;

/// SplitMix64 finalizer: a bijective 64-bit mix with good avalanche, used to fold key parts.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for view `view` of sample `sample` in epoch `epoch` of a run seeded `seed`.
pub fn view_rng(seed: u64, epoch: u64, sample: u64, view: u8) -> ViewRng {
    let key = mix(mix(mix(mix(seed) ^ epoch) ^ sample) ^ u64::from(view));
    ViewRng::seed_from_u64(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_key_same_stream_and_keys_differ() {
        let draw = |mut r: ViewRng| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        assert_eq!(draw(view_rng(1, 2, 3, 0)), draw(view_rng(1, 2, 3, 0)));
        let firsts: Vec<u64> = [
            view_rng(1, 2, 3, 0),
            view_rng(1, 2, 3, 1),
            view_rng(1, 2, 4, 0),
            view_rng(1, 3, 3, 0),
            view_rng(2, 2, 3, 0),
        ]
        .into_iter()
        .map(|mut r| r.next_u64())
        .collect();
        for i in 0..firsts.len() {
            for j in i + 1..firsts.len() {
                assert_ne!(firsts[i], firsts[j], "keys {i} and {j} collide");
            }
        }
    }
}
