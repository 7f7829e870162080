//! InfoNCE against keys from the EMA teacher (Oord et al. 2018, as MoCo uses it): each query's
//! softmax over its similarities to candidate keys, cross-entropy against its own key.
//!
//! - MoCo v2 ([`moco`]; He et al. 2020, Chen et al. 2020): the candidates are the query's own
//!   key (the positive) and the queue's keys (the negatives), no in-batch negatives:
//!   `−log( e^{q·k⁺/τ} / (e^{q·k⁺/τ} + Σ_{k∈queue} e^{q·k/τ}) )`, cosine similarities.
//! - MoCo v3 ([`mocov3`]; Chen et al. 2021): the candidates are the keys of the whole (global)
//!   batch, the positive the same image's, and the loss is scaled by `2τ` as in the paper's
//!   pseudocode.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::contrastive::{LossOutput, l2_normalize};

/// Mean over the rows of `−log softmax(logits)[row, target]`: `targets` of `diagonal` are the
/// rows' own indices, else column 0.
fn cross_entropy(logits: Tensor<2>, diagonal: bool) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_prob = log_softmax(logits, 1);
    let picked = if diagonal {
        let idx = Tensor::<1, Int>::arange(0..n as i64, &log_prob.device()).reshape([n, 1]);
        log_prob.gather(1, idx)
    } else {
        log_prob.narrow(1, 0, 1)
    };
    picked.mean().neg().reshape([1])
}

/// MoCo's loss of queries `q` against their keys `k` (both `[n, d]`; `k` detached) and the
/// queue `negatives` (`[K, d]`), at temperature `t`. `pos_sim`: mean cos(q, k⁺); `neg_sim`:
/// mean cos(q, queue).
pub fn moco(q: Tensor<2>, k: Tensor<2>, negatives: Tensor<2>, t: f64) -> LossOutput {
    let (q, k, neg) = (l2_normalize(q), l2_normalize(k.detach()), l2_normalize(negatives.detach()));
    let pos = (q.clone() * k).sum_dim(1);
    let negs = q.matmul(neg.transpose());
    let (pos_sim, neg_sim) = (pos.clone().detach().mean().reshape([1]), negs.clone().detach().mean().reshape([1]));
    let loss = cross_entropy(Tensor::cat(vec![pos, negs], 1).div_scalar(t), false);
    LossOutput { loss, pos_sim, neg_sim }
}

/// MoCo v3's loss of queries `q` against keys `k` (both `[n, d]`, row `i` the same image;
/// `k` detached): `2τ · mean_i −log softmax_j(q_i·k_j/τ)[i]`.
pub fn mocov3(q: Tensor<2>, k: Tensor<2>, t: f64) -> LossOutput {
    let [n, _] = q.dims();
    let cos = l2_normalize(q).matmul(l2_normalize(k.detach()).transpose());
    let diag = super::contrastive::mask(n, &cos.device(), |i, j| i == j);
    let d = cos.clone().detach();
    let pos_sum = d.clone().mask_fill(diag.bool_not(), 0.0).sum();
    let pos_sim = pos_sum.clone().div_scalar(n as f64).reshape([1]);
    let neg_sim = (d.sum() - pos_sum).div_scalar((n * n.saturating_sub(1)).max(1) as f64).reshape([1]);
    let loss = cross_entropy(cos.div_scalar(t), true).mul_scalar(2.0 * t);
    LossOutput { loss, pos_sim, neg_sim }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor, unit_rows};

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Naive f64 MoCo: per query, log-sum-exp over the positive and the queue.
    pub(crate) fn naive_moco(q: &[Vec<f64>], k: &[Vec<f64>], queue: &[Vec<f64>], t: f64) -> f64 {
        let (q, k, queue) = (unit_rows(q), unit_rows(k), unit_rows(queue));
        let mut total = 0.0;
        for i in 0..q.len() {
            let pos = dot(&q[i], &k[i]) / t;
            let denom: f64 = pos.exp() + queue.iter().map(|r| (dot(&q[i], r) / t).exp()).sum::<f64>();
            total += denom.ln() - pos;
        }
        total / q.len() as f64
    }

    /// Naive f64 MoCo v3.
    fn naive_mocov3(q: &[Vec<f64>], k: &[Vec<f64>], t: f64) -> f64 {
        let (q, k) = (unit_rows(q), unit_rows(k));
        let n = q.len();
        let mut total = 0.0;
        for i in 0..n {
            let denom: f64 = (0..n).map(|j| (dot(&q[i], &k[j]) / t).exp()).sum();
            total += denom.ln() - dot(&q[i], &k[i]) / t;
        }
        2.0 * t * total / n as f64
    }

    fn value(x: Tensor<1>) -> f64 {
        f64::from(x.into_scalar::<f32>())
    }

    #[test]
    fn match_naive_f64_on_random_inputs() {
        let device = Device::flex();
        for (n, kq, d, t, seed) in [(4, 6, 3, 0.2, 1), (16, 64, 8, 0.1, 2), (8, 32, 32, 0.5, 3)] {
            let (q, k, queue) = (random_rows(n, d, seed), random_rows(n, d, seed + 10), random_rows(kq, d, seed + 20));
            let got = value(moco(tensor(&q, &device), tensor(&k, &device), tensor(&queue, &device), t).loss);
            let want = naive_moco(&q, &k, &queue, t);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "moco n={n}: {got} vs {want}");
            let got = value(mocov3(tensor(&q, &device), tensor(&k, &device), t).loss);
            let want = naive_mocov3(&q, &k, t);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "mocov3 n={n}: {got} vs {want}");
        }
    }

    /// Closed forms: every query, key and queue row equal gives ln(1 + K) for MoCo and
    /// 2τ·ln(n) for MoCo v3; keys equal to their queries and orthogonal to all else give
    /// ln(1 + (n − 1)·e^{−1/τ}) for MoCo v3.
    #[test]
    fn closed_forms() {
        let device = Device::flex();
        let same = |m: usize| tensor(&vec![vec![0.5, -1.0, 2.0]; m], &device);
        let got = value(moco(same(4), same(4), same(10), 0.3).loss);
        assert!((got - 11f64.ln()).abs() < 1e-5, "{got}");
        let t = 0.2;
        let got = value(mocov3(same(6), same(6), t).loss);
        assert!((got - 2.0 * t * 6f64.ln()).abs() < 1e-5, "{got}");
        let n = 4;
        let eye: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
        let got = value(mocov3(tensor(&eye, &device), tensor(&eye, &device), t).loss);
        let want = 2.0 * t * (1.0 + (n as f64 - 1.0) * (-1.0 / t).exp()).ln();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    /// The queries' gradients against central finite differences of the naive losses (keys
    /// and queue get none).
    #[test]
    fn gradients_match_finite_differences() {
        let (n, kq, d, t, h) = (3, 5, 4, 0.3, 1e-5);
        let (q, k, queue) = (random_rows(n, d, 7), random_rows(n, d, 8), random_rows(kq, d, 9));
        let device = Device::flex().autodiff();
        type Naive<'a> = Box<dyn Fn(&[Vec<f64>]) -> f64 + 'a>;
        let cases: [(&str, Naive, Box<dyn Fn(Tensor<2>) -> LossOutput>); 2] = [
            (
                "moco",
                Box::new(|q: &[Vec<f64>]| naive_moco(q, &k, &queue, t)),
                Box::new(|x| moco(x, tensor(&k, &device), tensor(&queue, &device), t)),
            ),
            (
                "mocov3",
                Box::new(|q: &[Vec<f64>]| naive_mocov3(q, &k, t)),
                Box::new(|x| mocov3(x, tensor(&k, &device), t)),
            ),
        ];
        for (name, naive, loss) in cases {
            let x = tensor(&q, &device).require_grad();
            let g: Vec<f32> = x.grad(&loss(x.clone()).loss.backward()).unwrap().into_data().try_to_vec().unwrap();
            for i in 0..n {
                for j in 0..d {
                    let (mut a, mut b) = (q.clone(), q.clone());
                    a[i][j] += h;
                    b[i][j] -= h;
                    let want = (naive(&a) - naive(&b)) / (2.0 * h);
                    let got = f64::from(g[i * d + j]);
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(0.02),
                        "{name} d/dq[{i}][{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
