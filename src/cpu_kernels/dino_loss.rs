//! DINO's loss and its gradient for the student's logits, row by row on the CPU (the formula is
//! in [`crate::loss::dino`]). With burn's operations the loss of `[512, 2048]` logits took
//! 53 ms a step, forward and backward, on flex: about forty full passes over the logits, each
//! exponential a libm call per value. Here each row is read a few times while it sits in the
//! cache, the loops vectorize ([`exp_nonpositive`]), and the gradient comes out in closed form,
//! `∂L/∂s_r = (w_r·softmax(s_r/τ_s) − W_r) / (τ_s·pairs·n)`, where `W_r` is the sum of the
//! teacher distributions that row is compared with and `w_r = Σ W_r`; figure in BENCHMARKS.md
//! "Methods". Rows run in parallel and their losses are added in row order, so the result does
//! not depend on the thread count.

use multiversion::multiversion;
use rayon::prelude::*;

use super::exp::exp_nonpositive;

/// The inputs: `student` `[views·n, k]` (view-major: the two global views, then the small
/// ones), `teacher` `[2n, k]` (the global views), `center` `[k]`.
pub struct DinoLogits<'a> {
    pub student: &'a [f32],
    pub teacher: &'a [f32],
    pub center: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub student_t: f32,
    pub teacher_t: f32,
}

/// Independent accumulators, so that the reductions below vectorize.
const LANES: usize = 16;

#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            m[j] = m[j].max(c[j]);
        }
    }
    rest.iter().chain(&m).fold(f32::NEG_INFINITY, |a, &v| a.max(v))
}

/// `Σ a·b` in f32 lanes, totalled in f64.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f64::from(x * y)).sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + rest
}

#[inline(always)]
fn lane_sum(x: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += c[j];
        }
    }
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + rest
}

/// `dst = softmax((src − shift)·scale)`.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn softmax_row(dst: &mut [f32], src: &[f32], shift: &[f32], scale: f32) {
    dst.iter_mut().zip(src).zip(shift).for_each(|((d, &v), &c)| *d = (v - c) * scale);
    let m = lane_max(dst);
    dst.iter_mut().for_each(|d| *d = exp_nonpositive(*d - m));
    let inv = (1.0 / lane_sum(dst)) as f32;
    dst.iter_mut().for_each(|d| *d *= inv);
}

/// One student row `s` against its target `w`: writes `scale·∂/∂s` of the row's cross-entropy
/// `Σ_k w_k·(lse − x_k)` (`x = s/τ_s`, `lse` its log-sum-exp) into `grad`, returns the
/// cross-entropy.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn student_row(grad: &mut [f32], s: &[f32], w: &[f32], inv_t: f32, scale: f32) -> f64 {
    grad.iter_mut().zip(s).for_each(|(g, &v)| *g = v * inv_t);
    let m = lane_max(grad);
    grad.iter_mut().for_each(|g| *g = exp_nonpositive(*g - m));
    let (sum_e, sum_w) = (lane_sum(grad), lane_sum(w));
    let lse = f64::from(m) + sum_e.ln();
    let cross_entropy = lse * sum_w - lane_dot(w, s) * f64::from(inv_t);
    let (p_scale, w_scale) = ((sum_w / sum_e) as f32 * inv_t * scale, inv_t * scale);
    grad.iter_mut().zip(w).for_each(|(g, &wk)| *g = *g * p_scale - wk * w_scale);
    cross_entropy
}

/// The loss (the mean over (teacher view, other student view) pairs and images of the
/// cross-entropy) and its gradient for `student`, `[views·n, k]`.
pub fn loss_and_grad(l: &DinoLogits) -> (f64, Vec<f32>) {
    let (n, k) = (l.n, l.k);
    let rows = l.student.len() / k;
    assert!(rows % n == 0 && rows >= 2 * n && l.teacher.len() == 2 * n * k && l.center.len() == k);
    let views = rows / n;
    let pairs = 2 * (views - 1);
    let mut targets = vec![0.0f32; 2 * n * k];
    targets
        .par_chunks_mut(k)
        .zip(l.teacher.par_chunks(k))
        .for_each(|(d, t)| softmax_row(d, t, l.center, 1.0 / l.teacher_t));
    // A small view is compared with both global views: its target is their sum.
    let both: Vec<f32> = if views > 2 {
        targets[..n * k].iter().zip(&targets[n * k..]).map(|(a, b)| a + b).collect()
    } else {
        Vec::new()
    };
    let scale = 1.0 / (pairs * n) as f32;
    let mut grad = vec![0.0f32; rows * k];
    let losses: Vec<f64> = grad
        .par_chunks_mut(k)
        .zip(l.student.par_chunks(k))
        .enumerate()
        .map(|(r, (g, s))| {
            let img = r % n;
            let w = match r / n {
                0 => &targets[(n + img) * k..(n + img + 1) * k],
                1 => &targets[img * k..(img + 1) * k],
                _ => &both[img * k..(img + 1) * k],
            };
            student_row(g, s, w, 1.0 / l.student_t, scale)
        })
        .collect();
    (losses.iter().sum::<f64>() / (pairs * n) as f64, grad)
}
