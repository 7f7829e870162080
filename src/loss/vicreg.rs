//! VICReg (Bardes et al. 2022): `λ·inv + μ·var + ν·cov` of the two views' embeddings, as the
//! paper's pseudocode and lightly's `VICRegLoss` write it: the invariance is the mean squared
//! difference of the views (over all `N·d` values); the variance term
//! `½·Σ_views mean_j relu(1 − √(Var_j + ε))` (unbiased variance, ε = 10⁻⁴) keeps every
//! dimension's std at 1 or more; the covariance term `Σ_views Σ_{i≠j} C_ij² / d` with
//! `C = (z − z̄)ᵀ(z − z̄)/(N − 1)` decorrelates the dimensions. Weights `method.invariance`,
//! `method.variance`, `method.covariance` (25, 25, 1). Under several ranks the step gives it
//! the gathered global batch, so every term is the global batch's.

use burn::prelude::*;

use super::contrastive::LossOutput;
use super::cosine::cross_view_stats;

/// ε inside the variance term's square root.
pub const EPS: f64 = 1e-4;

/// The three terms' weights.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
}

/// `mean_j relu(1 − √(Var_j + ε))` of one view's `[n, d]` embeddings (unbiased variance).
pub fn variance_term(z: Tensor<2>) -> Tensor<1> {
    let [n, _] = z.dims();
    let centered = z.clone() - z.mean_dim(0);
    let var = centered.powi_scalar(2).sum_dim(0).div_scalar((n.max(2) - 1) as f64);
    burn::tensor::activation::relu(var.add_scalar(EPS).sqrt().neg().add_scalar(1.0)).mean().reshape([1])
}

/// `Σ_{i≠j} C_ij² / d` of one view's `[n, d]` embeddings.
pub fn covariance_term(z: Tensor<2>) -> Tensor<1> {
    let [n, d] = z.dims();
    let device = z.device();
    let centered = z.clone() - z.mean_dim(0);
    let cov = centered.clone().transpose().matmul(centered).div_scalar((n.max(2) - 1) as f64);
    let off = cov * Tensor::<2>::eye(d, &device).neg().add_scalar(1.0);
    off.powi_scalar(2).sum().div_scalar(d as f64).reshape([1])
}

/// The loss of the two views' embeddings `z` (`[2n, d]`, view-major).
pub fn vicreg(z: Tensor<2>, n: usize, w: Weights) -> LossOutput {
    let (a, b) = (z.clone().narrow(0, 0, n), z.clone().narrow(0, n, n));
    let invariance = (a.clone() - b.clone()).powi_scalar(2).mean().reshape([1]);
    let variance = (variance_term(a.clone()) + variance_term(b.clone())).mul_scalar(0.5);
    let covariance = covariance_term(a) + covariance_term(b);
    let loss =
        invariance.mul_scalar(w.invariance) + variance.mul_scalar(w.variance) + covariance.mul_scalar(w.covariance);
    let (pos_sim, neg_sim) = cross_view_stats(z.clone(), z, n);
    LossOutput { loss, pos_sim, neg_sim }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor};

    const W: Weights = Weights { invariance: 25.0, variance: 25.0, covariance: 1.0 };

    /// Naive f64 VICReg over `2n` rows (first `n` are view 1).
    fn naive(z: &[Vec<f64>], w: Weights) -> f64 {
        let n = z.len() / 2;
        let d = z[0].len();
        let (a, b) = (&z[..n], &z[n..]);
        let inv =
            (0..n).map(|i| (0..d).map(|j| (a[i][j] - b[i][j]).powi(2)).sum::<f64>()).sum::<f64>() / (n * d) as f64;
        let stats = |x: &[Vec<f64>]| -> (f64, f64) {
            let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
            let cov = |i: usize, j: usize| {
                x.iter().map(|r| (r[i] - mean[i]) * (r[j] - mean[j])).sum::<f64>() / (n - 1) as f64
            };
            let var = (0..d).map(|j| (1.0 - (cov(j, j) + EPS).sqrt()).max(0.0)).sum::<f64>() / d as f64;
            let mut off = 0.0;
            for i in 0..d {
                for j in 0..d {
                    if i != j {
                        off += cov(i, j).powi(2);
                    }
                }
            }
            (var, off / d as f64)
        };
        let ((va, ca), (vb, cb)) = (stats(a), stats(b));
        w.invariance * inv + w.variance * 0.5 * (va + vb) + w.covariance * (ca + cb)
    }

    fn value(z: &[Vec<f64>], w: Weights) -> f64 {
        f64::from(vicreg(tensor(z, &Device::flex()), z.len() / 2, w).loss.into_scalar::<f32>())
    }

    #[test]
    fn matches_naive_f64_on_random_inputs() {
        for (n, d, seed, scale) in [(4, 3, 1, 1.0), (16, 8, 2, 0.3), (64, 32, 3, 3.0)] {
            // Small and large spreads, so that the variance hinge is active in some dimensions.
            let z: Vec<Vec<f64>> =
                random_rows(2 * n, d, seed).into_iter().map(|r| r.iter().map(|v| v * scale).collect()).collect();
            let (got, want) = (value(&z, W), naive(&z, W));
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "n={n}: {got} vs {want}");
        }
    }

    /// The variance term is 0 when every dimension's std is ≥ 1, and `1 − √ε` for a constant
    /// dimension; identical views have no invariance term; uncorrelated dimensions (Hadamard
    /// columns) no covariance term.
    #[test]
    fn closed_forms() {
        let device = Device::flex();
        let spread: Vec<Vec<f64>> =
            random_rows(32, 4, 4).into_iter().map(|r| r.iter().map(|v| 10.0 * v).collect()).collect();
        assert_eq!(f64::from(variance_term(tensor(&spread, &device)).into_scalar::<f32>()), 0.0);
        let constant = vec![vec![0.7, 0.7]; 6];
        let got = f64::from(variance_term(tensor(&constant, &device)).into_scalar::<f32>());
        assert!((got - (1.0 - EPS.sqrt())).abs() < 1e-6, "{got}");
        let h = |i: usize, j: usize| if (i & j).count_ones() % 2 == 0 { 2.0 } else { -2.0 };
        let view: Vec<Vec<f64>> = (0..8).map(|i| [1, 2, 4].iter().map(|&j| h(i, j)).collect()).collect();
        assert!(f64::from(covariance_term(tensor(&view, &device)).into_scalar::<f32>()).abs() < 1e-9);
        // Identical views with std 2·√(8/7) ≥ 1 and no covariance: the whole loss is 0.
        let z: Vec<Vec<f64>> = view.iter().chain(&view).cloned().collect();
        assert!(value(&z, W).abs() < 1e-6, "{}", value(&z, W));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (n, d, h) = (5, 3, 1e-5);
        // Spread 0.5: some dimensions' std under 1 (the hinge active), none at the kink.
        let z: Vec<Vec<f64>> =
            random_rows(2 * n, d, 8).into_iter().map(|r| r.iter().map(|v| 0.8 * v).collect()).collect();
        let device = Device::flex().autodiff();
        let x = tensor(&z, &device).require_grad();
        let g: Vec<f32> = x.grad(&vicreg(x.clone(), n, W).loss.backward()).unwrap().into_data().try_to_vec().unwrap();
        for i in 0..2 * n {
            for j in 0..d {
                let (mut a, mut b) = (z.clone(), z.clone());
                a[i][j] += h;
                b[i][j] -= h;
                let want = (naive(&a, W) - naive(&b, W)) / (2.0 * h);
                let got = f64::from(g[i * d + j]);
                assert!((got - want).abs() <= 2e-3 * want.abs().max(0.05), "d/dz[{i}][{j}]: {got} vs {want}");
            }
        }
    }
}
