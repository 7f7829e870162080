//! Training-mode batch normalization, optionally fused with the ReLU after it, on the CPU
//! (f32, `[n, c, spatial…]` contiguous). Two passes each way:
//!
//! - forward: per-channel sum and sum of squares of `x − K_c` (`K_c` the channel's first
//!   value: shifted sums, so a mean far larger than the spread loses no precision; f32 lanes,
//!   f64 totals), then `y = max(0, (x − μ_c)·a_c + β_c)` with `a_c = γ_c/σ_c`;
//! - backward: per-channel `Σg` and `Σg·x̂` (with `g = dy` masked by `y > 0` when fused), then
//!   `dx = γ_c/σ_c · (g − Σg/M − x̂·Σg·x̂/M)`, `dγ = Σg·x̂`, `dβ = Σg`.
//!
//! The variance is the biased (population) one, as burn's `batch_norm_train` returns it.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::filled;

/// `[n, c, spatial]` sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub spatial: usize,
}

impl BnShape {
    fn m(&self) -> f64 {
        (self.n * self.spatial) as f64
    }
}

/// Per-channel sums of `f(image, channel, offset)` over every image: computed in parallel per
/// image, added in image order, so the result is the same whatever the thread count (resumed
/// runs must reproduce uninterrupted ones bit for bit).
fn channel_sums<const K: usize>(s: &BnShape, f: impl Fn(usize, usize, usize) -> [f64; K] + Sync) -> Vec<[f64; K]> {
    let per_image: Vec<Vec<[f64; K]>> = (0..s.n)
        .into_par_iter()
        .map(|img| (0..s.c).map(|ch| f(img, ch, (img * s.c + ch) * s.spatial)).collect())
        .collect();
    let mut total = vec![[0.0f64; K]; s.c];
    for img in per_image {
        for (t, v) in total.iter_mut().zip(img) {
            for k in 0..K {
                t[k] += v[k];
            }
        }
    }
    total
}

/// Per-channel sums of `f(image, channel)` for rows (`spatial == 1`: `[n, c]`, the layout of a
/// projection head's batch norm): blocks of channels in parallel, each block reading its slice
/// of every row, each channel's terms added in image order, so the result is the same whatever
/// the thread count. (Through [`channel_sums`] such a tensor cost one call per element and one
/// allocation per image: 9.4 ms for the forward of a `[256, 4096]` batch norm + ReLU with
/// autodiff, against this path's figure in BENCHMARKS.md "Methods".)
fn row_sums<const K: usize>(s: &BnShape, f: impl Fn(usize, usize) -> [f64; K] + Sync) -> Vec<[f64; K]> {
    const BLOCK: usize = 128;
    let mut total = vec![[0.0f64; K]; s.c];
    total.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
        for img in 0..s.n {
            for (j, acc) in block.iter_mut().enumerate() {
                let v = f(img, b * BLOCK + j);
                for k in 0..K {
                    acc[k] += v[k];
                }
            }
        }
    });
    total
}

/// Sum and sum of squares of `row − shift`, in f32 lanes then f64.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn sum_sq(row: &[f32], shift: f32) -> [f64; 2] {
    let mut s = [0.0f32; 8];
    let mut q = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            let v = c[k] - shift;
            s[k] += v;
            q[k] += v * v;
        }
    }
    let (mut a, mut b) = (s.iter().map(|&v| f64::from(v)).sum::<f64>(), q.iter().map(|&v| f64::from(v)).sum::<f64>());
    for &v in rest {
        let v = f64::from(v - shift);
        a += v;
        b += v * v;
    }
    [a, b]
}

/// `dst = (src − mu)·a + b`, then `max(0, ·)` when `relu`; writes every element of `dst`.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn scale_shift(dst: &mut [MaybeUninit<f32>], src: &[f32], mu: f32, a: f32, b: f32, relu: bool) {
    if relu {
        dst.iter_mut().zip(src).for_each(|(d, &v)| {
            d.write(((v - mu) * a + b).max(0.0));
        });
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &v)| {
            d.write((v - mu) * a + b);
        });
    }
}

/// One row of `[n, c]` (`spatial == 1`): `dst_c = (src_c − mu_c)·a_c + b_c`, then `max(0, ·)`
/// when `relu`; writes every element of `dst`.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn row_scale_shift(dst: &mut [MaybeUninit<f32>], src: &[f32], mu: &[f32], a: &[f32], b: &[f32], relu: bool) {
    let lanes = dst.iter_mut().zip(src).zip(mu).zip(a).zip(b);
    if relu {
        lanes.for_each(|((((d, &v), &mu), &a), &b)| {
            d.write(((v - mu) * a + b).max(0.0));
        });
    } else {
        lanes.for_each(|((((d, &v), &mu), &a), &b)| {
            d.write((v - mu) * a + b);
        });
    }
}

/// `dy` where the ReLU let the value through (`y > 0`), else 0 (no mask without ReLU).
#[inline(always)]
fn masked(dy: f32, y: f32, relu: bool) -> f32 {
    if !relu || y > 0.0 { dy } else { 0.0 }
}

/// `[Σg, Σg·x̂]` of one row (`x̂ = (x − μ)·is`), in f32 lanes then f64.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn grad_sums(xs: &[f32], ys: &[f32], ds: &[f32], mu: f32, is: f32, relu: bool) -> [f64; 2] {
    let (mut sg, mut sgx) = ([0.0f32; 8], [0.0f32; 8]);
    let n = xs.len() / 8 * 8;
    for ((xc, yc), dc) in xs[..n].chunks_exact(8).zip(ys[..n].chunks_exact(8)).zip(ds[..n].chunks_exact(8)) {
        for k in 0..8 {
            let g = masked(dc[k], yc[k], relu);
            sg[k] += g;
            sgx[k] += g * (xc[k] - mu) * is;
        }
    }
    let (mut a, mut b) =
        (sg.iter().map(|&v| f64::from(v)).sum::<f64>(), sgx.iter().map(|&v| f64::from(v)).sum::<f64>());
    for k in n..xs.len() {
        let g = masked(ds[k], ys[k], relu);
        a += f64::from(g);
        b += f64::from(g * (xs[k] - mu) * is);
    }
    [a, b]
}

/// `dx = k·(g − mg − x̂·mgx)` over one row; writes every element of `dst`.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn input_grad_row(
    dst: &mut [MaybeUninit<f32>],
    xs: &[f32],
    ys: &[f32],
    ds: &[f32],
    mu: f32,
    is: f32,
    k: f32,
    mg: f32,
    mgx: f32,
    relu: bool,
) {
    for (((d, &x), &y), &dy) in dst.iter_mut().zip(xs).zip(ys).zip(ds) {
        let g = masked(dy, y, relu);
        d.write(k * (g - mg - (x - mu) * is * mgx));
    }
}

/// One row of `[n, c]` (`spatial == 1`): `dx_c = k_c·(g_c − mg_c − x̂_c·mgx_c)`; writes every
/// element of `dst`.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn row_input_grad(
    dst: &mut [MaybeUninit<f32>],
    (xs, ys, ds): (&[f32], &[f32], &[f32]),
    mu: &[f32],
    is: &[f32],
    k: &[f32],
    mg: &[f32],
    mgx: &[f32],
    relu: bool,
) {
    for c in 0..dst.len() {
        let g = masked(ds[c], ys[c], relu);
        dst[c].write(k[c] * (g - mg[c] - (xs[c] - mu[c]) * is[c] * mgx[c]));
    }
}

/// Sums per-channel statistics over the ranks of a synchronized batch norm
/// ([`crate::dist::sync_bn`]): `None` normalizes over this process's images alone.
pub type Reduce<'a> = Option<&'a dyn Fn(&mut [f64])>;

/// Per-channel `[Σ(x − K_c), Σ(x − K_c)²]`.
fn shifted_sums(x: &[f32], s: &BnShape, shift: &[f32]) -> Vec<[f64; 2]> {
    if s.spatial == 1 {
        row_sums::<2>(s, |img, ch| {
            let v = f64::from(x[img * s.c + ch] - shift[ch]);
            [v, v * v]
        })
    } else {
        channel_sums::<2>(s, |_, ch, off| sum_sq(&x[off..off + s.spatial], shift[ch]))
    }
}

/// Per-channel `(mean, biased variance)` of `x`, over the images of every rank when `reduce`
/// is given: the sums of `x − K_c` and their squares with a shift `K_c` all ranks share — the
/// channel's first value alone, else the global mean from a first pass (one more pass over
/// `x`, and two small all-reduces).
fn statistics(x: &[f32], s: &BnShape, reduce: Reduce) -> (Vec<f32>, Vec<f64>) {
    let shift: Vec<f32> = match reduce {
        None => (0..s.c).map(|ch| x.get(ch * s.spatial).copied().unwrap_or(0.0)).collect(),
        Some(reduce) => {
            let sums = shifted_sums(x, s, &vec![0.0; s.c]);
            let mut buf: Vec<f64> = sums.iter().map(|v| v[0]).chain([s.m()]).collect();
            reduce(&mut buf);
            let m = buf[s.c].max(1.0);
            buf[..s.c].iter().map(|v| (v / m) as f32).collect()
        }
    };
    let sums = shifted_sums(x, s, &shift);
    let mut buf: Vec<f64> = sums.iter().flat_map(|v| *v).chain([s.m()]).collect();
    if let Some(reduce) = reduce {
        reduce(&mut buf);
    }
    let m = buf[2 * s.c].max(1.0);
    let shifted_mean: Vec<f64> = (0..s.c).map(|ch| buf[2 * ch] / m).collect();
    let var: Vec<f64> = (0..s.c).map(|ch| (buf[2 * ch + 1] / m - shifted_mean[ch].powi(2)).max(0.0)).collect();
    let mean: Vec<f32> = shift.iter().zip(&shifted_mean).map(|(&k, mu)| (f64::from(k) + mu) as f32).collect();
    (mean, var)
}

/// Forward: returns `(y, mean, var)`; statistics over every rank's images with `reduce`.
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
    s: &BnShape,
    reduce: Reduce,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = statistics(x, s, reduce);
    let a: Vec<f32> = (0..s.c).map(|ch| (f64::from(gamma[ch]) / (var[ch] + eps).sqrt()) as f32).collect();
    let y = filled(x.len(), |y| {
        if s.spatial == 1 {
            let beta = &beta[..s.c];
            y.par_chunks_mut(s.c).zip(x.par_chunks(s.c)).for_each(|(yi, xi)| {
                row_scale_shift(yi, xi, &mean, &a, beta, relu);
            });
            return;
        }
        y.par_chunks_mut(s.c * s.spatial).zip(x.par_chunks(s.c * s.spatial)).for_each(|(yi, xi)| {
            for ch in 0..s.c {
                let range = ch * s.spatial..(ch + 1) * s.spatial;
                scale_shift(&mut yi[range.clone()], &xi[range], mean[ch], a[ch], beta[ch], relu);
            }
        });
    });
    (y, mean, var.iter().map(|&v| v as f32).collect())
}

/// Backward: returns `(dx, dgamma, dbeta)`. `y` is the forward's output (for the ReLU mask).
/// With `reduce`, `dx` uses `Σg` and `Σg·x̂` over every rank's images, while `dgamma` and
/// `dbeta` stay this rank's share (the ranks' parameter gradients are summed afterwards).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    relu: bool,
    s: &BnShape,
    reduce: Reduce,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let invstd: Vec<f32> = var.iter().map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32).collect();
    let sums = if s.spatial == 1 {
        row_sums::<2>(s, |img, ch| {
            let i = img * s.c + ch;
            let g = masked(dy[i], y[i], relu);
            [f64::from(g), f64::from(g * (x[i] - mean[ch]) * invstd[ch])]
        })
    } else {
        channel_sums::<2>(s, |_, ch, off| {
            let r = off..off + s.spatial;
            grad_sums(&x[r.clone()], &y[r.clone()], &dy[r], mean[ch], invstd[ch], relu)
        })
    };
    let dbeta: Vec<f32> = sums.iter().map(|v| v[0] as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|v| v[1] as f32).collect();
    let (sums, m) = match reduce {
        None => (sums, s.m()),
        Some(reduce) => {
            let mut buf: Vec<f64> = sums.iter().flat_map(|v| *v).chain([s.m()]).collect();
            reduce(&mut buf);
            ((0..s.c).map(|ch| [buf[2 * ch], buf[2 * ch + 1]]).collect(), buf[2 * s.c])
        }
    };
    let block = s.c * s.spatial;
    if s.spatial == 1 {
        let k: Vec<f32> = (0..s.c).map(|ch| gamma[ch] * invstd[ch]).collect();
        let mg: Vec<f32> = sums.iter().map(|v| (v[0] / m) as f32).collect();
        let mgx: Vec<f32> = sums.iter().map(|v| (v[1] / m) as f32).collect();
        let dx = filled(x.len(), |dx| {
            dx.par_chunks_mut(block).enumerate().for_each(|(img, dxi)| {
                let r = img * block..(img + 1) * block;
                let rows = (&x[r.clone()], &y[r.clone()], &dy[r]);
                row_input_grad(dxi, rows, mean, &invstd, &k, &mg, &mgx, relu);
            });
        });
        return (dx, dgamma, dbeta);
    }
    let dx = filled(x.len(), |dx| {
        dx.par_chunks_mut(block).enumerate().for_each(|(img, dxi)| {
            for ch in 0..s.c {
                let off = img * block + ch * s.spatial;
                let (mu, is) = (mean[ch], invstd[ch]);
                let (mg, mgx) = ((sums[ch][0] / m) as f32, (sums[ch][1] / m) as f32);
                let r = off..off + s.spatial;
                input_grad_row(
                    &mut dxi[ch * s.spatial..(ch + 1) * s.spatial],
                    &x[r.clone()],
                    &y[r.clone()],
                    &dy[r],
                    mu,
                    is,
                    gamma[ch] * is,
                    mg,
                    mgx,
                    relu,
                );
            }
        });
    });
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform test values in `[-0.7, 1.3)`.
    fn data(len: usize, seed: u64) -> Vec<f32> {
        super::super::test_values(len, seed, -0.7, 1.3)
    }

    /// Naive f64 batch norm (+ReLU) as a function of x, gamma, beta, reduced with weights `r`:
    /// L = Σ r · y. Returns L.
    fn naive_loss(x: &[f64], gamma: &[f64], beta: &[f64], r: &[f64], eps: f64, relu: bool, s: &BnShape) -> f64 {
        let mut l = 0.0;
        for ch in 0..s.c {
            let idx: Vec<usize> =
                (0..s.n).flat_map(|i| (0..s.spatial).map(move |p| (i * s.c + ch) * s.spatial + p)).collect();
            let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let z = (x[i] - mean) / (var + eps).sqrt() * gamma[ch] + beta[ch];
                l += r[i] * if relu { z.max(0.0) } else { z };
            }
        }
        l
    }

    /// A channel whose mean is 10⁴ times its spread (common deep in a network, where a
    /// `Σx² − (Σx)²` variance in f32 would be noise): statistics and outputs against f64.
    #[test]
    fn large_mean_small_spread_keeps_precision() {
        for s in [BnShape { n: 12, c: 3, spatial: 9 }, BnShape { n: 108, c: 3, spatial: 1 }] {
            large_mean_small_spread_keeps_precision_of(s);
        }
    }

    fn large_mean_small_spread_keeps_precision_of(s: BnShape) {
        let len = s.n * s.c * s.spatial;
        let x: Vec<f32> = data(len, 7).iter().map(|u| 300.0 + 0.03 * u).collect();
        let (gamma, beta) = (vec![1.0f32; s.c], vec![0.0f32; s.c]);
        let (y, mean, var) = forward(&x, &gamma, &beta, 1e-9, false, &s, None);
        for ch in 0..s.c {
            let idx: Vec<usize> =
                (0..s.n).flat_map(|i| (0..s.spatial).map(move |p| (i * s.c + ch) * s.spatial + p)).collect();
            let mu = idx.iter().map(|&i| f64::from(x[i])).sum::<f64>() / idx.len() as f64;
            let v = idx.iter().map(|&i| (f64::from(x[i]) - mu).powi(2)).sum::<f64>() / idx.len() as f64;
            assert!((f64::from(var[ch]) - v).abs() < 1e-3 * v, "var {} vs {v}", var[ch]);
            assert!((f64::from(mean[ch]) - mu).abs() < 1e-4);
            for &i in &idx {
                let want = (f64::from(x[i]) - mu) / v.sqrt();
                assert!((f64::from(y[i]) - want).abs() < 2e-2, "y {} vs {want}", y[i]);
            }
        }
    }

    #[test]
    fn forward_and_backward_match_naive_f64_and_finite_differences() {
        for (s, relu) in [
            (BnShape { n: 3, c: 4, spatial: 10 }, true),
            (BnShape { n: 5, c: 2, spatial: 17 }, false),
            (BnShape { n: 1, c: 3, spatial: 9 }, true),
            // Rows (a projection head's [n, c]), over more than one block of channels.
            (BnShape { n: 6, c: 150, spatial: 1 }, true),
            (BnShape { n: 4, c: 131, spatial: 1 }, false),
        ] {
            let len = s.n * s.c * s.spatial;
            let x = data(len, 1);
            let gamma: Vec<f32> = data(s.c, 2).iter().map(|v| v + 1.0).collect();
            let beta = data(s.c, 3);
            let r = data(len, 4);
            let eps = 1e-5;
            let (y, mean, var) = forward(&x, &gamma, &beta, eps, relu, &s, None);
            let f64v = |v: &[f32]| v.iter().map(|&t| f64::from(t)).collect::<Vec<f64>>();
            let (xd, gd, bd, rd) = (f64v(&x), f64v(&gamma), f64v(&beta), f64v(&r));
            // Forward: each output against the naive loss with a one-hot weight.
            let l = naive_loss(&xd, &gd, &bd, &rd, eps, relu, &s);
            let got: f64 = y.iter().zip(&r).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            assert!((got - l).abs() < 1e-4 * l.abs().max(1.0), "{got} vs {l}");
            for ch in 0..s.c {
                let vals: Vec<f64> = (0..s.n)
                    .flat_map(|i| (0..s.spatial).map(move |p| (i * s.c + ch) * s.spatial + p))
                    .map(|i| xd[i])
                    .collect();
                let mu = vals.iter().sum::<f64>() / vals.len() as f64;
                let v = vals.iter().map(|t| (t - mu).powi(2)).sum::<f64>() / vals.len() as f64;
                assert!((f64::from(mean[ch]) - mu).abs() < 1e-6 && (f64::from(var[ch]) - v).abs() < 1e-6);
            }
            let (dx, dg, db) = backward(&x, &y, &r, &gamma, &mean, &var, eps, relu, &s, None);
            let h = 1e-6;
            let fd = |which: u8, i: usize| {
                let (mut xp, mut gp, mut bp) = (xd.clone(), gd.clone(), bd.clone());
                let (mut xm, mut gm, mut bm) = (xd.clone(), gd.clone(), bd.clone());
                match which {
                    0 => {
                        xp[i] += h;
                        xm[i] -= h;
                    }
                    1 => {
                        gp[i] += h;
                        gm[i] -= h;
                    }
                    _ => {
                        bp[i] += h;
                        bm[i] -= h;
                    }
                }
                (naive_loss(&xp, &gp, &bp, &rd, eps, relu, &s) - naive_loss(&xm, &gm, &bm, &rd, eps, relu, &s))
                    / (2.0 * h)
            };
            for (i, &got) in dx.iter().enumerate() {
                let want = fd(0, i);
                assert!((f64::from(got) - want).abs() < 2e-3 * want.abs().max(0.1), "dx[{i}] {got} vs {want}");
            }
            for ch in 0..s.c {
                assert!((f64::from(dg[ch]) - fd(1, ch)).abs() < 1e-3 * fd(1, ch).abs().max(0.1));
                assert!((f64::from(db[ch]) - fd(2, ch)).abs() < 1e-3 * fd(2, ch).abs().max(0.1));
            }
        }
    }

    /// Synchronized over two ranks (threads), each with half of the images: the outputs and
    /// input gradients are the whole batch's, and the two ranks' `dgamma`/`dbeta` add up to
    /// the whole batch's (which the test above holds to naive f64 and finite differences).
    #[test]
    fn synchronized_halves_equal_the_whole_batch() {
        for s in [BnShape { n: 6, c: 3, spatial: 10 }, BnShape { n: 6, c: 140, spatial: 1 }] {
            synchronized_halves_equal_the_whole_batch_of(s);
        }
    }

    fn synchronized_halves_equal_the_whole_batch_of(s: BnShape) {
        let half = BnShape { n: 3, ..s };
        let len = s.n * s.c * s.spatial;
        let x: Vec<f32> = data(len, 11).iter().map(|v| 2.0 + v).collect();
        let gamma: Vec<f32> = data(s.c, 12).iter().map(|v| v + 1.0).collect();
        let beta = data(s.c, 13);
        let dy = data(len, 14);
        let eps = 1e-5;
        let (y, mean, var) = forward(&x, &gamma, &beta, eps, true, &s, None);
        let (dx, dg, db) = backward(&x, &y, &dy, &gamma, &mean, &var, eps, true, &s, None);
        let parts = crate::dist::local::run(2, |world| {
            let r = world.rank() * len / 2..(world.rank() + 1) * len / 2;
            let reduce = |b: &mut [f64]| world.all_reduce_sum_f64(b);
            let (yh, mh, vh) = forward(&x[r.clone()], &gamma, &beta, eps, true, &half, Some(&reduce));
            let g = backward(&x[r.clone()], &yh, &dy[r], &gamma, &mh, &vh, eps, true, &half, Some(&reduce));
            (yh, mh, vh, g)
        });
        let close = |a: f32, b: f32, tol: f32| (a - b).abs() <= tol * b.abs().max(1.0);
        for (k, (yh, mh, vh, (dxh, _, _))) in parts.iter().enumerate() {
            for ch in 0..s.c {
                assert!(close(mh[ch], mean[ch], 1e-6) && close(vh[ch], var[ch], 1e-5), "rank {k} statistics");
            }
            let off = k * len / 2;
            for i in 0..len / 2 {
                assert!(close(yh[i], y[off + i], 1e-5), "y[{}]: {} vs {}", off + i, yh[i], y[off + i]);
                assert!(close(dxh[i], dx[off + i], 1e-4), "dx[{}]: {} vs {}", off + i, dxh[i], dx[off + i]);
            }
        }
        for ch in 0..s.c {
            let (g, b) = (parts[0].3.1[ch] + parts[1].3.1[ch], parts[0].3.2[ch] + parts[1].3.2[ch]);
            assert!(close(g, dg[ch], 1e-5) && close(b, db[ch], 1e-5), "dgamma/dbeta of channel {ch}");
        }
    }
}
