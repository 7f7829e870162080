//! The exact (erf) GELU, `gelu(x) = x·Φ(x)`, and its gradient `Φ(x) + x·φ(x)`, on the CPU in
//! vectorized f32: DINO's head runs it on `[2n, 2048]` rows three times a step (student
//! forward, teacher forward, backward). burn's own GELU calls scalar `libm::erff` per value, one
//! tensor operation at a time: a DINO step cost 35 ms more with it than with ReLU, 10 ms with
//! this kernel (BENCHMARKS.md "Methods").
//!
//! `Φ(−|x|) = ½·erfc(|x|/√2)` comes from Abramowitz & Stegun 7.1.26 (`erfc(u) = t·P(t)·e^{−u²}`,
//! `t = 1/(1 + p·u)`, absolute error ≤ 1.5·10⁻⁷ in erf), with no cancellation in the left
//! tail; `e^{−x²/2}` (shared by Φ and φ) is [`exp_nonpositive`], which vectorizes. Against an
//! f64 reference the GELU is within 2.5·10⁻⁷·max(1, |x|), the same order as f32 rounding (the
//! test).

use std::f32::consts::FRAC_1_SQRT_2;
use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::exp::exp_nonpositive;
use super::filled;

/// Values per parallel task: large enough to amortize the task, small enough to spread a
/// `[512, 2048]` tensor over the threads.
const CHUNK: usize = 16 * 1024;

/// `(Φ(x), e^{−x²/2})`: the standard normal CDF and the unnormalized density.
#[inline(always)]
fn cdf_and_density(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152, 1.061_405_4];
    let u = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * u);
    let e = exp_nonpositive(-0.5 * x * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let left = 0.5 * poly * e; // Φ(−|x|)
    (if x >= 0.0 { 1.0 - left } else { left }, e)
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn forward_chunk(dst: &mut [MaybeUninit<f32>], x: &[f32]) {
    dst.iter_mut().zip(x).for_each(|(d, &v)| {
        d.write(v * cdf_and_density(v).0);
    });
}

#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn grad_chunk(dst: &mut [MaybeUninit<f32>], x: &[f32], dy: &[f32]) {
    dst.iter_mut().zip(x).zip(dy).for_each(|((d, &v), &g)| {
        let (cdf, e) = cdf_and_density(v);
        d.write(g * (cdf + v * e * FRAC_1_SQRT_2PI));
    });
}

/// `gelu(x)` elementwise.
pub fn forward(x: &[f32]) -> Vec<f32> {
    filled(x.len(), |dst| {
        dst.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(d, x)| forward_chunk(d, x));
    })
}

/// The input gradient `dy·gelu′(x)` elementwise.
pub fn backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "GELU gradient of another shape");
    filled(x.len(), |dst| {
        dst.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(d, (x, dy))| grad_chunk(d, x, dy));
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// erf in f64 from the series `erf(x) = 2/√π · e^{−x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1))`
    /// (every term positive, so no cancellation), odd in `x`.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 6.0 {
            return 1f64.copysign(x); // erfc(6) ≈ 2·10⁻¹⁷
        }
        let (a, mut term, mut sum) = (x.abs(), x.abs(), 0.0f64);
        let mut n = 0.0;
        while term > 1e-17 * sum.max(1e-300) {
            sum += term;
            n += 1.0;
            term *= 2.0 * a * a / (2.0 * n + 1.0);
        }
        let v = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
        v.copysign(x)
    }

    pub(crate) fn gelu_f64(x: f64) -> f64 {
        0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
    }

    pub(crate) fn gelu_grad_f64(x: f64) -> f64 {
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        0.5 * (1.0 + erf_f64(x / std::f64::consts::SQRT_2)) + x * pdf
    }

    /// Points over [−12, 12], denser near 0, and the edges where the branches meet.
    fn points() -> Vec<f32> {
        let mut xs: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
        xs.extend((-400..=400).map(|i| i as f32 * 0.03));
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 40.0, -40.0, 200.0, -200.0]);
        xs
    }

    #[test]
    fn the_reference_erf_matches_published_values() {
        // Abramowitz & Stegun, Table 7.1.
        for (x, want) in
            [(0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0), (0.1, 0.112_462_916_0)]
        {
            assert!((erf_f64(x) - want).abs() < 1e-10, "erf({x})");
            assert!((erf_f64(-x) + want).abs() < 1e-10, "erf(-{x})");
        }
    }

    #[test]
    fn forward_matches_f64_gelu() {
        let xs = points();
        let got = forward(&xs);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = gelu_f64(f64::from(x));
            let tol = 2.5e-7 * f64::from(x.abs()).max(1.0);
            assert!((f64::from(g) - want).abs() <= tol, "gelu({x}) = {g}, want {want}");
        }
    }

    #[test]
    fn gradient_matches_the_f64_derivative_and_finite_differences() {
        let xs = points();
        let dy: Vec<f32> = crate::cpu_kernels::test_values(xs.len(), 3, -2.0, 2.0);
        let got = backward(&xs, &dy);
        for ((&x, &d), &g) in xs.iter().zip(&dy).zip(&got) {
            let x64 = f64::from(x);
            let want = f64::from(d) * gelu_grad_f64(x64);
            assert!((f64::from(g) - want).abs() <= 5e-7 * f64::from(d.abs()).max(1.0), "gelu'({x})·{d}: {g} vs {want}");
        }
        // The derivative formula itself, by central differences of the f64 GELU.
        for x in [-6.0, -2.5, -1.0, -0.3, 0.0, 0.4, 1.7, 3.0, 7.0] {
            let h = 1e-5;
            let fd = (gelu_f64(x + h) - gelu_f64(x - h)) / (2.0 * h);
            assert!((fd - gelu_grad_f64(x)).abs() < 1e-8, "gelu'({x}): {fd} vs {}", gelu_grad_f64(x));
        }
    }
}
