//! Decoupled contrastive learning (Yeh et al. 2022, "Decoupled Contrastive Learning"): NT-Xent
//! with the positive removed from the denominator, `ℓ_i = −w_i·s_ip + log Σ_{k∉{i,p}} e^{s_ik}`
//! (`s = cos / τ`), which removes the negative-positive coupling that makes NT-Xent need large
//! batches. DCLW weights the positive term by `w_i = 2 − N·softmax_j(⟨z1_j, z2_j⟩ / σ)_i` over
//! the batch's `N` pairs (the same for both views of an image; not detached, as in the paper's
//! code); plain DCL has `w = 1`. The loss is the mean over all `2N` anchors — half of the
//! reference implementation's `dcl(z1, z2) + dcl(z2, z1)`.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::contrastive::{LossOutput, SELF_LOGIT, l2_normalize, mask, masked_logits, similarity_stats, twin_pairs};

/// DCL (`sigma = None`) or DCLW (`Some(σ)`) of the projections `z1`, `z2` (`[n, d]` each).
pub fn dcl(z1: Tensor<2>, z2: Tensor<2>, temperature: f64, sigma: Option<f64>) -> LossOutput {
    let [n, _] = z1.dims();
    let m = 2 * n;
    let device = z1.device();
    let positive = twin_pairs(n);
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let (logits, cos) = masked_logits(z.clone(), temperature);
    let pos_mask = mask(m, &device, |i, j| positive[i * m + j]);
    let pos_logit = logits.clone().mask_fill(pos_mask.clone().bool_not(), 0.0).sum_dim(1); // [m, 1]
    // log Σ over the negatives, shifted by the row maximum for stability.
    let neg = logits.mask_fill(pos_mask, SELF_LOGIT);
    let top = neg.clone().max_dim(1).detach();
    let lse = (neg - top.clone()).exp().sum_dim(1).log() + top;
    let weight = match sigma {
        None => Tensor::<2>::ones([m, 1], &device),
        Some(s) => {
            // ⟨z1_i, z2_i⟩ for each pair, twice (both views of image i).
            let pair = (z.clone().narrow(0, 0, n) * z.narrow(0, n, n)).sum_dim(1); // [n, 1]
            let w = softmax(pair.div_scalar(s), 0).mul_scalar(-(n as f64)).add_scalar(2.0);
            Tensor::cat(vec![w.clone(), w], 0)
        }
    };
    let loss = (lse - weight * pos_logit).mean();
    let (pos_sim, neg_sim) = similarity_stats(cos, &positive);
    LossOutput { loss: loss.reshape([1]), pos_sim, neg_sim }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor, unit_rows};

    /// Naive f64 DCL/DCLW over `2n` rows (first `n` are view 1).
    fn naive(z: &[Vec<f64>], t: f64, sigma: Option<f64>) -> f64 {
        let m = z.len();
        let n = m / 2;
        let u = unit_rows(z);
        let cos = |i: usize, j: usize| u[i].iter().zip(&u[j]).map(|(a, b)| a * b).sum::<f64>();
        let w: Vec<f64> = match sigma {
            None => vec![1.0; n],
            Some(s) => {
                let e: Vec<f64> = (0..n).map(|i| (cos(i, i + n) / s).exp()).collect();
                let total: f64 = e.iter().sum();
                e.iter().map(|v| 2.0 - n as f64 * v / total).collect()
            }
        };
        let mut sum = 0.0;
        for i in 0..m {
            let p = (i + n) % m;
            let neg: f64 = (0..m).filter(|&k| k != i && k != p).map(|k| (cos(i, k) / t).exp()).sum();
            sum += -w[i % n] * cos(i, p) / t + neg.ln();
        }
        sum / m as f64
    }

    fn value(rows: &[Vec<f64>], t: f64, sigma: Option<f64>, device: &Device) -> (f64, Tensor<2>, Tensor<1>) {
        let z = tensor(rows, device).require_grad();
        let n = rows.len() / 2;
        let out = dcl(z.clone().narrow(0, 0, n), z.clone().narrow(0, n, n), t, sigma);
        (f64::from(out.loss.clone().into_scalar::<f32>()), z, out.loss)
    }

    #[test]
    fn matches_naive_f64_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (m, d, t, sigma, seed) in
            [(4, 3, 0.5, None, 1), (16, 8, 0.1, None, 2), (8, 5, 0.3, Some(0.5), 3), (32, 16, 0.2, Some(1.0), 4)]
        {
            let rows = random_rows(m, d, seed);
            let (got, z, loss) = value(&rows, t, sigma, &device);
            let want = naive(&rows, t, sigma);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "m={m} {sigma:?}: {got} vs {want}");
            let g: Vec<f32> = z.grad(&loss.backward()).unwrap().into_data().try_to_vec().unwrap();
            let h = 1e-5;
            for (i, j) in [(0, 0), (1, 2), (m - 1, d - 1), (m / 2, 1)] {
                let (mut plus, mut minus) = (rows.clone(), rows.clone());
                plus[i][j] += h;
                minus[i][j] -= h;
                let fd = (naive(&plus, t, sigma) - naive(&minus, t, sigma)) / (2.0 * h);
                let got = f64::from(g[i * d + j]);
                assert!((got - fd).abs() <= 2e-3 * fd.abs().max(0.05), "m={m} {sigma:?} d/dz[{i}][{j}]: {got} vs {fd}");
            }
        }
    }

    #[test]
    fn closed_forms() {
        // All embeddings equal: −1/τ + log((2N − 2)·e^{1/τ}) = log(2N − 2), whatever τ.
        let device = Device::flex();
        for (n, t) in [(2, 0.5), (8, 0.1)] {
            let rows = vec![vec![0.3, -1.2, 2.0]; 2 * n];
            let got = f64::from(
                dcl(tensor(&rows[..n], &device), tensor(&rows[n..], &device), t, None).loss.into_scalar::<f32>(),
            );
            assert!((got - ((2 * n - 2) as f64).ln()).abs() < 1e-4, "n={n}: {got}");
        }
        // A σ so large that the softmax is uniform: DCLW's weights are 1, DCLW = DCL.
        let rows = random_rows(12, 6, 7);
        let (a, b) = (naive(&rows, 0.2, None), naive(&rows, 0.2, Some(1e9)));
        assert!((a - b).abs() < 1e-9);
    }
}
