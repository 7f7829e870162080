//! Barlow Twins (Zbontar et al. 2021): each view's embeddings standardized per dimension over
//! the batch (batch norm without affine: biased variance, ε = 10⁻⁵, as lightly's
//! `BarlowTwinsLoss`), their cross-correlation matrix `C = ẑ₁ᵀ ẑ₂ / N` (`d × d`), and
//! `Σ_i (1 − C_ii)² + λ · Σ_{i≠j} C_ij²`: the diagonal pulled to 1 (invariance), the rest to 0
//! (redundancy reduction). Under several ranks the step gives it the gathered global batch
//! (`crate::dist::global_batch`), so `N`, the standardization and `C` are the global batch's.

use burn::prelude::*;

use super::contrastive::LossOutput;
use super::cosine::cross_view_stats;

/// Batch norm's ε in the standardization.
pub const EPS: f64 = 1e-5;

/// Each column of `z` (`[n, d]`) shifted to mean 0 and scaled by `1/√(var + ε)` (biased).
pub fn standardize(z: Tensor<2>) -> Tensor<2> {
    let centered = z.clone() - z.mean_dim(0);
    let var = centered.clone().powi_scalar(2).mean_dim(0);
    centered / var.add_scalar(EPS).sqrt()
}

/// The loss of the two views' embeddings `z` (`[2n, d]`, view-major) with off-diagonal weight
/// `lambda`.
pub fn barlow_twins(z: Tensor<2>, n: usize, lambda: f64) -> LossOutput {
    let [_, d] = z.dims();
    let (a, b) = (standardize(z.clone().narrow(0, 0, n)), standardize(z.clone().narrow(0, n, n)));
    let c = a.transpose().matmul(b).div_scalar(n as f64);
    let eye = Tensor::<2>::eye(d, &c.device());
    let on = (c.clone() * eye.clone()).sum_dim(1).reshape([d]);
    let invariance = on.sub_scalar(1.0).powi_scalar(2).sum();
    let off = (c * (eye.neg().add_scalar(1.0))).powi_scalar(2).sum();
    let loss = (invariance + off.mul_scalar(lambda)).reshape([1]);
    let (pos_sim, neg_sim) = cross_view_stats(z.clone(), z, n);
    LossOutput { loss, pos_sim, neg_sim }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor};

    /// Naive f64 Barlow Twins over `2n` rows (first `n` are view 1).
    pub(crate) fn naive(z: &[Vec<f64>], lambda: f64) -> f64 {
        let n = z.len() / 2;
        let d = z[0].len();
        let std = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let mut out = rows.to_vec();
            for j in 0..d {
                let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n as f64;
                let var = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n as f64;
                for (o, r) in out.iter_mut().zip(rows) {
                    o[j] = (r[j] - mean) / (var + EPS).sqrt();
                }
            }
            out
        };
        let (a, b) = (std(&z[..n]), std(&z[n..]));
        let mut loss = 0.0;
        for i in 0..d {
            for j in 0..d {
                let c = (0..n).map(|k| a[k][i] * b[k][j]).sum::<f64>() / n as f64;
                loss += if i == j { (1.0 - c).powi(2) } else { lambda * c * c };
            }
        }
        loss
    }

    fn value(z: &[Vec<f64>], lambda: f64) -> f64 {
        let n = z.len() / 2;
        f64::from(barlow_twins(tensor(z, &Device::flex()), n, lambda).loss.into_scalar::<f32>())
    }

    #[test]
    fn matches_naive_f64_on_random_inputs() {
        for (n, d, lambda, seed) in [(4, 3, 5e-3, 1), (16, 8, 0.1, 2), (64, 32, 5e-3, 3)] {
            let z = random_rows(2 * n, d, seed);
            let (got, want) = (value(&z, lambda), naive(&z, lambda));
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "n={n} d={d}: {got} vs {want}");
        }
    }

    /// Identical views whose dimensions are standardized and uncorrelated over the batch (the
    /// ±1 columns of a Hadamard matrix) give `C = I/(1 + ε)`: the loss is `d·(1 − 1/(1 + ε))²`,
    /// about 0; swapping two dimensions of one view moves two units of the diagonal off it.
    #[test]
    fn closed_forms() {
        let (n, d) = (8, 4);
        // Columns 1, 2, 4, 7 of the 8 × 8 Sylvester Hadamard matrix: mean 0, variance 1,
        // pairwise orthogonal.
        let h = |i: usize, j: usize| if (i & j).count_ones() % 2 == 0 { 1.0 } else { -1.0 };
        let cols = [1, 2, 4, 7];
        let view: Vec<Vec<f64>> = (0..n).map(|i| cols.iter().map(|&j| h(i, j)).collect()).collect();
        let z: Vec<Vec<f64>> = view.iter().chain(&view).cloned().collect();
        let c = 1.0 / (1.0 + EPS);
        let want = d as f64 * (1.0 - c).powi(2);
        assert!(want < 1e-9 && (value(&z, 5e-3) - want).abs() < 1e-6, "{}", value(&z, 5e-3));
        let mut swapped = z.clone();
        for r in &mut swapped[n..] {
            r.swap(0, 1);
        }
        // Diagonal: two zeros (2 · 1), off-diagonal: two entries of c² (λ · 2c²).
        let lambda = 0.5;
        let want = 2.0 * (1.0 - c).powi(2) + 2.0 + lambda * 2.0 * c * c;
        assert!((value(&swapped, lambda) - want).abs() < 1e-5, "{} vs {want}", value(&swapped, lambda));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (n, d, lambda, h) = (4, 3, 0.2, 1e-5);
        let z = random_rows(2 * n, d, 6);
        let device = Device::flex().autodiff();
        let x = tensor(&z, &device).require_grad();
        let g: Vec<f32> =
            x.grad(&barlow_twins(x.clone(), n, lambda).loss.backward()).unwrap().into_data().try_to_vec().unwrap();
        for i in 0..2 * n {
            for j in 0..d {
                let (mut a, mut b) = (z.clone(), z.clone());
                a[i][j] += h;
                b[i][j] -= h;
                let want = (naive(&a, lambda) - naive(&b, lambda)) / (2.0 * h);
                let got = f64::from(g[i * d + j]);
                assert!((got - want).abs() <= 2e-3 * want.abs().max(0.05), "d/dz[{i}][{j}]: {got} vs {want}");
            }
        }
    }
}
