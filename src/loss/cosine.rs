//! The losses of the predictor methods, which align each view's prediction with the other view's
//! target and use no negatives: BYOL (Grill et al. 2020) against the EMA teacher's projections,
//! `Σ_{both view orders} mean(2 − 2·cos(p, t))` (the paper's symmetrized loss, as solo-learn
//! writes it), and SimSiam (Chen & He 2021) against the student's own projections,
//! `½·D(p₁, z₂) + ½·D(p₂, z₁)` with `D = −mean cos`, the target branch detached unless
//! `method.stop_gradient = false` (the ablation that collapses). Also the similarity statistics
//! the step reports for every method whose pairs are (row, other view's target).

use burn::prelude::*;

use super::contrastive::{LossOutput, l2_normalize};

/// The rows of `x` (`[2n, d]`, view-major) with the two views swapped: row `i` of the result
/// is the other view of row `i`'s image.
pub fn other_view(x: Tensor<2>, n: usize) -> Tensor<2> {
    Tensor::cat(vec![x.clone().narrow(0, n, n), x.narrow(0, 0, n)], 0)
}

/// Mean cosine similarity of every row of `p` (`[2n, d]`) with the other view's row of `t`.
pub fn cross_view_cosine(p: Tensor<2>, t: Tensor<2>, n: usize) -> Tensor<1> {
    (l2_normalize(p) * l2_normalize(other_view(t, n))).sum_dim(1).mean().reshape([1])
}

/// The mean cosine of each row of `a` (`[2n, d]`) with the other view of the same image in `b`
/// (positives) and with the other view of the other images (negatives), detached. The sum over
/// all pairs of a view is `(Σ_i â_i)·(Σ_j b̂_j)` of the unit rows, so the negatives cost
/// `O(n·d)`, not an `n × n` similarity matrix (a step's statistics must be cheap: they are
/// computed at every step, read only at logged ones).
pub fn cross_view_stats(a: Tensor<2>, b: Tensor<2>, n: usize) -> (Tensor<1>, Tensor<1>) {
    let (a, b) = (l2_normalize(a.detach()), l2_normalize(other_view(b.detach(), n)));
    let pos = (a.clone() * b.clone()).sum().reshape([1]);
    let mut all = Tensor::<1>::zeros([1], &a.device());
    for v in 0..2 {
        let (av, bv) = (a.clone().narrow(0, v * n, n), b.clone().narrow(0, v * n, n));
        all = all + (av.sum_dim(0) * bv.sum_dim(0)).sum().reshape([1]);
    }
    let pairs = (2 * n) as f64;
    let negatives = (2 * n * n.saturating_sub(1)).max(1) as f64;
    (pos.clone().div_scalar(pairs), (all - pos).div_scalar(negatives))
}

/// BYOL's loss of predictions `p` against teacher projections `t` (both `[2n, d]`,
/// view-major): `4 − 4·c̄` with `c̄` the mean cosine over both view orders.
pub fn byol(p: Tensor<2>, t: Tensor<2>, n: usize) -> LossOutput {
    let t = t.detach();
    let loss = cross_view_cosine(p.clone(), t.clone(), n).mul_scalar(-4.0).add_scalar(4.0);
    let (pos_sim, neg_sim) = cross_view_stats(p, t, n);
    LossOutput { loss, pos_sim, neg_sim }
}

/// SimSiam's loss of predictions `p` against the student's projections `z` (both `[2n, d]`):
/// `−c̄`; `stop_gradient` detaches `z`.
pub fn simsiam(p: Tensor<2>, z: Tensor<2>, n: usize, stop_gradient: bool) -> LossOutput {
    let z = if stop_gradient { z.detach() } else { z };
    let loss = cross_view_cosine(p.clone(), z.clone(), n).neg();
    let (pos_sim, neg_sim) = cross_view_stats(p, z, n);
    LossOutput { loss, pos_sim, neg_sim }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor, unit_rows};

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        let u = unit_rows(&[a.to_vec(), b.to_vec()]);
        u[0].iter().zip(&u[1]).map(|(x, y)| x * y).sum()
    }

    /// Naive f64 BYOL: Σ over both orders of the mean of 2 − 2·cos(p, other view's t).
    fn naive_byol(p: &[Vec<f64>], t: &[Vec<f64>]) -> f64 {
        let n = p.len() / 2;
        let order = |a: usize, b: usize| (0..n).map(|i| 2.0 - 2.0 * cos(&p[a * n + i], &t[b * n + i])).sum::<f64>();
        (order(0, 1) + order(1, 0)) / n as f64
    }

    /// Naive f64 SimSiam: ½·D(p₁, z₂) + ½·D(p₂, z₁), D = −mean cos.
    fn naive_simsiam(p: &[Vec<f64>], z: &[Vec<f64>]) -> f64 {
        let n = p.len() / 2;
        let d = |a: usize, b: usize| -(0..n).map(|i| cos(&p[a * n + i], &z[b * n + i])).sum::<f64>() / n as f64;
        0.5 * d(0, 1) + 0.5 * d(1, 0)
    }

    fn value(t: Tensor<1>) -> f64 {
        f64::from(t.into_scalar::<f32>())
    }

    #[test]
    fn byol_and_simsiam_match_naive_f64_and_their_closed_forms() {
        let device = Device::flex();
        for (n, d, seed) in [(3, 4, 1), (8, 16, 2), (32, 64, 3)] {
            let p = random_rows(2 * n, d, seed);
            let t = random_rows(2 * n, d, seed + 100);
            let got = value(byol(tensor(&p, &device), tensor(&t, &device), n).loss);
            let want = naive_byol(&p, &t);
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "byol n={n}: {got} vs {want}");
            let got = value(simsiam(tensor(&p, &device), tensor(&t, &device), n, true).loss);
            let want = naive_simsiam(&p, &t);
            assert!((got - want).abs() <= 1e-5, "simsiam n={n}: {got} vs {want}");
        }
        // Predictions equal (up to scale) to the other view's targets: BYOL 0, SimSiam −1.
        let (n, d) = (5, 6);
        let t = random_rows(2 * n, d, 9);
        let p: Vec<Vec<f64>> = (0..2 * n).map(|i| t[(i + n) % (2 * n)].iter().map(|v| 3.0 * v).collect()).collect();
        let (pt, tt) = (tensor(&p, &device), tensor(&t, &device));
        assert!(value(byol(pt.clone(), tt.clone(), n).loss).abs() < 1e-5);
        assert!((value(simsiam(pt.clone(), tt.clone(), n, true).loss) + 1.0).abs() < 1e-6);
        // Opposite predictions: BYOL's maximum 2 · (2 − 2·(−1)) = 8.
        assert!((value(byol(pt.neg(), tt, n).loss) - 8.0).abs() < 1e-5);
    }

    /// Gradients against central finite differences of the naive f64 losses, at every
    /// coordinate of the predictions, and for SimSiam without the stop-gradient at every
    /// coordinate of the targets too (with it, the targets get none).
    #[test]
    fn gradients_match_finite_differences() {
        let (n, d, h) = (3, 4, 1e-5);
        let p = random_rows(2 * n, d, 4);
        let z = random_rows(2 * n, d, 5);
        let device = Device::flex().autodiff();
        let fd = |f: &dyn Fn(&[Vec<f64>], &[Vec<f64>]) -> f64, which: usize, i: usize, j: usize| {
            let (mut a, mut b) = ((p.clone(), z.clone()), (p.clone(), z.clone()));
            if which == 0 {
                a.0[i][j] += h;
                b.0[i][j] -= h;
            } else {
                a.1[i][j] += h;
                b.1[i][j] -= h;
            }
            (f(&a.0, &a.1) - f(&b.0, &b.1)) / (2.0 * h)
        };
        type Loss = fn(Tensor<2>, Tensor<2>, usize) -> LossOutput;
        let simsiam_open: Loss = |p, z, n| simsiam(p, z, n, false);
        let simsiam_stop: Loss = |p, z, n| simsiam(p, z, n, true);
        let byol_loss: Loss = byol;
        for (name, loss, naive, target_grad) in [
            ("byol", byol_loss, naive_byol as fn(&[Vec<f64>], &[Vec<f64>]) -> f64, false),
            ("simsiam without stop-gradient", simsiam_open, naive_simsiam, true),
            ("simsiam", simsiam_stop, naive_simsiam, false),
        ] {
            let (pt, zt) = (tensor(&p, &device).require_grad(), tensor(&z, &device).require_grad());
            let grads = loss(pt.clone(), zt.clone(), n).loss.backward();
            let gp: Vec<f32> = pt.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
            let gz = zt.grad(&grads).map(|g| g.into_data().try_to_vec::<f32>().unwrap());
            for i in 0..2 * n {
                for j in 0..d {
                    let want = fd(&naive, 0, i, j);
                    let got = f64::from(gp[i * d + j]);
                    assert!((got - want).abs() <= 1e-3 * want.abs().max(0.02), "{name} dp[{i}][{j}]: {got} vs {want}");
                    match (&gz, target_grad) {
                        (Some(gz), true) => {
                            let want = fd(&naive, 1, i, j);
                            let got = f64::from(gz[i * d + j]);
                            assert!((got - want).abs() <= 1e-3 * want.abs().max(0.02), "{name} dz[{i}][{j}]");
                        }
                        (Some(gz), false) => assert_eq!(gz[i * d + j], 0.0, "{name}: the target is detached"),
                        (None, true) => panic!("{name}: no gradient reached the targets"),
                        (None, false) => {}
                    }
                }
            }
        }
    }

    #[test]
    fn cross_view_statistics_are_means_over_pairs() {
        let (n, d) = (4, 3);
        let a = random_rows(2 * n, d, 11);
        let b = random_rows(2 * n, d, 12);
        let device = Device::flex();
        let (pos, neg) = cross_view_stats(tensor(&a, &device), tensor(&b, &device), n);
        let other = |i: usize| if i < n { i + n } else { i - n };
        let want_pos = (0..2 * n).map(|i| cos(&a[i], &b[other(i)])).sum::<f64>() / (2 * n) as f64;
        let mut neg_sum = 0.0;
        for i in 0..2 * n {
            let base = if i < n { n } else { 0 };
            for j in 0..n {
                if base + j != other(i) {
                    neg_sum += cos(&a[i], &b[base + j]);
                }
            }
        }
        let want_neg = neg_sum / (2 * n * (n - 1)) as f64;
        assert!((value(pos) - want_pos).abs() < 1e-5);
        assert!((value(neg) - want_neg).abs() < 1e-5);
    }
}
