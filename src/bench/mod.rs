//! `selfsup bench`: measured throughput of the pipeline's stages, run on this machine. These
//! are benchmarks, not tests: each prints medians over repeated rounds, never asserts a speed.

pub mod augment;
pub mod decode;
pub mod ops;
pub mod scan;
pub mod train;

use std::time::Instant;

/// Runs `f` `rounds` times and returns each round's seconds.
pub fn time_rounds(rounds: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    (0..rounds)
        .map(|r| {
            let t = Instant::now();
            f(r);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// The median of a non-empty slice.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
