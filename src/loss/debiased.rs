//! Debiased contrastive loss (Chuang et al. 2020) and hard-negative weighting (Robinson et al.
//! 2021, "HCL"), one formula: for anchor `i` with positive `p`, `N = 2n − 2` negatives `k` and
//! `s = cos / τ`,
//!
//! ```text
//! imp_k = e^{β·s_ik},   R = Σ_k imp_k·e^{s_ik} / mean_k(imp_k)         (β = 0: R = Σ_k e^{s_ik})
//! Ng    = max((R − τ⁺·N·e^{s_ip}) / (1 − τ⁺),  N·e^{−1/τ})
//! ℓ_i   = −log(e^{s_ip} / (e^{s_ip} + Ng))
//! ```
//!
//! `τ⁺` is the class prior (the chance that a "negative" shares the anchor's class), whose
//! expected contribution is subtracted; `β` concentrates the negatives' weight on the hardest
//! ones. `τ⁺ = β = 0` is NT-Xent; `β = 0` is Chuang's debiased loss; `τ⁺ = 0` is hard-negative
//! weighting alone. The loss is the mean over the `2n` anchors, as in both papers' code (whose
//! importance weights are not detached either). Every exponential is taken relative to the
//! anchor's largest logit, which cancels in `ℓ_i`.

use burn::prelude::*;

use super::contrastive::{LossOutput, l2_normalize, mask, masked_logits, similarity_stats, twin_pairs};

/// The debiased / hard-negative loss of `z1`, `z2` (`[n, d]` each) with class prior `tau_plus`
/// (in `[0, 1)`) and concentration `beta` (`≥ 0`).
pub fn debiased(z1: Tensor<2>, z2: Tensor<2>, temperature: f64, tau_plus: f64, beta: f64) -> LossOutput {
    let [n, _] = z1.dims();
    let m = 2 * n;
    let device = z1.device();
    let negatives = (m - 2) as f64;
    let positive = twin_pairs(n);
    let (logits, cos) = masked_logits(l2_normalize(Tensor::cat(vec![z1, z2], 0)), temperature);
    let top = logits.clone().max_dim(1).detach(); // [m, 1]
    let shifted = logits - top.clone();
    let pos_mask = mask(m, &device, |i, j| positive[i * m + j]);
    let neg_mask = mask(m, &device, |i, j| i != j && !positive[i * m + j]);
    let pos_shifted = shifted.clone().mask_fill(pos_mask.bool_not(), 0.0).sum_dim(1); // s_ip − top
    let pos = pos_shifted.clone().exp();
    let e = shifted.clone().exp().mask_fill(neg_mask.clone().bool_not(), 0.0);
    let reweighted = if beta == 0.0 {
        e.sum_dim(1)
    } else {
        let imp = shifted.mul_scalar(beta).exp().mask_fill(neg_mask.bool_not(), 0.0);
        (imp.clone() * e).sum_dim(1) / imp.sum_dim(1).div_scalar(negatives)
    };
    let ng = (reweighted - pos.clone().mul_scalar(tau_plus * negatives)).div_scalar(1.0 - tau_plus);
    let floor = (top.neg().sub_scalar(1.0 / temperature)).exp().mul_scalar(negatives);
    let ng = ng.max_pair(floor);
    let loss = ((pos + ng).log() - pos_shifted).mean();
    let (pos_sim, neg_sim) = similarity_stats(cos, &positive);
    LossOutput { loss: loss.reshape([1]), pos_sim, neg_sim }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{naive as naive_nt_xent, random_rows, tensor, unit_rows};

    /// Naive f64 form of the module's formula over `2n` rows (first `n` are view 1).
    fn naive(z: &[Vec<f64>], t: f64, tau_plus: f64, beta: f64) -> f64 {
        let m = z.len();
        let n = m / 2;
        let big_n = (m - 2) as f64;
        let u = unit_rows(z);
        let s = |i: usize, j: usize| u[i].iter().zip(&u[j]).map(|(a, b)| a * b).sum::<f64>() / t;
        let mut sum = 0.0;
        for i in 0..m {
            let p = (i + n) % m;
            let negs: Vec<usize> = (0..m).filter(|&k| k != i && k != p).collect();
            let imp: Vec<f64> = negs.iter().map(|&k| (beta * s(i, k)).exp()).collect();
            let mean_imp = imp.iter().sum::<f64>() / big_n;
            let r = negs.iter().zip(&imp).map(|(&k, w)| w * s(i, k).exp()).sum::<f64>() / mean_imp;
            let pos = s(i, p).exp();
            let ng = ((r - tau_plus * big_n * pos) / (1.0 - tau_plus)).max(big_n * (-1.0 / t).exp());
            sum += -(pos / (pos + ng)).ln();
        }
        sum / m as f64
    }

    #[test]
    fn matches_naive_f64_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (m, d, t, tau_plus, beta, seed) in [
            (4, 3, 0.5, 0.1, 0.0, 1),
            (16, 8, 0.2, 0.1, 1.0, 2),
            (8, 5, 0.5, 0.0, 0.5, 3),
            (32, 16, 0.1, 0.05, 2.0, 4),
            (12, 4, 0.5, 0.3, 0.0, 5),
        ] {
            let rows = random_rows(m, d, seed);
            let z = tensor(&rows, &device).require_grad();
            let n = m / 2;
            let out = debiased(z.clone().narrow(0, 0, n), z.clone().narrow(0, n, n), t, tau_plus, beta);
            let got = f64::from(out.loss.clone().into_scalar::<f32>());
            let want = naive(&rows, t, tau_plus, beta);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "m={m} τ⁺={tau_plus} β={beta}: {got} vs {want}");
            let g: Vec<f32> = z.grad(&out.loss.backward()).unwrap().into_data().try_to_vec().unwrap();
            let h = 1e-5;
            for (i, j) in [(0, 0), (1, 2), (m - 1, d - 1), (n, 1)] {
                let (mut plus, mut minus) = (rows.clone(), rows.clone());
                plus[i][j] += h;
                minus[i][j] -= h;
                let fd = (naive(&plus, t, tau_plus, beta) - naive(&minus, t, tau_plus, beta)) / (2.0 * h);
                let got = f64::from(g[i * d + j]);
                assert!(
                    (got - fd).abs() <= 2e-3 * fd.abs().max(0.05),
                    "m={m} τ⁺={tau_plus} β={beta} d/dz[{i}][{j}]: {got} vs {fd}"
                );
            }
        }
    }

    #[test]
    fn without_prior_or_concentration_it_is_nt_xent_and_the_floor_holds() {
        let device = Device::flex();
        let rows = random_rows(16, 8, 9);
        let z = tensor(&rows, &device);
        let got =
            f64::from(debiased(z.clone().narrow(0, 0, 8), z.narrow(0, 8, 8), 0.3, 0.0, 0.0).loss.into_scalar::<f32>());
        let want = naive_nt_xent(&rows, 0.3);
        assert!((got - want).abs() <= 1e-4 * want, "{got} vs {want}");
        // Twins identical, everything else orthogonal (s_ip = 1/τ, s_ik = 0) and τ⁺·e^{1/τ} > 1:
        // (R − τ⁺·N·e^{s_ip}) / (1 − τ⁺) is negative, the floor N·e^{−1/τ} holds, and
        // ℓ = log(1 + N·e^{−2/τ}).
        let (n, t) = (4, 0.5);
        let rows: Vec<Vec<f64>> =
            (0..2 * n).map(|r| (0..8).map(|c| if c == r % n { 1.0 + (r / n) as f64 } else { 0.0 }).collect()).collect();
        let z = tensor(&rows, &device);
        let got =
            f64::from(debiased(z.clone().narrow(0, 0, n), z.narrow(0, n, n), t, 0.5, 0.0).loss.into_scalar::<f32>());
        let want = (1.0 + (2 * n - 2) as f64 * (-2.0 / t).exp()).ln();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
