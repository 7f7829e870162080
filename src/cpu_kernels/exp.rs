//! `e^a` for `a ≤ 0` in f32, written without branches or calls so that the compiler
//! vectorizes the loops that use it (`f32::exp` is a call to libm per value): the GELU's
//! `e^{−x²/2}` and the softmaxes of DINO's loss, whose arguments are at most 0.

use std::f32::consts::LOG2_E;

/// `e^a` for `a ≤ 0` (values below −87 give about 0): `a = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-6
/// Taylor polynomial for `e^r` (truncation below 2·10⁻¹⁰ relative), `2^n` written into the
/// exponent bits. No branches or calls, so it vectorizes.
#[inline(always)]
pub fn exp_nonpositive(a: f32) -> f32 {
    // Round to nearest by the 1.5·2²³ trick (vectorizes where `round` may not); `k`'s bits
    // then hold `n` as an offset from MAGIC's, so `2^n` needs integer operations only.
    const MAGIC: f32 = 12_582_912.0;
    let a = a.max(-87.0);
    let k = a * LOG2_E + MAGIC;
    let n = k - MAGIC;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2⁹.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = (a - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let n = k.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_to_a_few_ulps() {
        for i in 0..=86_900 {
            let a = -(i as f32) * 1e-3;
            let got = f64::from(exp_nonpositive(a));
            let want = f64::from(a).exp();
            assert!((got - want).abs() <= 3e-7 * want, "exp({a}): {got} vs {want}");
        }
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }
}
