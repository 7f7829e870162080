//! The shared computation of the contrastive losses: L2-normalize the `2N` embeddings, take all
//! pairwise cosine similarities divided by the temperature, mask each anchor's similarity with
//! itself, and return `−Σ_ij W_ij · log_softmax_j(s_i·)` for a target weight matrix `W` (rows
//! that sum to 1/(number of anchors counted), zero on the diagonal). The log-softmax subtracts
//! each row's maximum, so it is stable at any temperature.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Logits of an anchor with itself: far below any cosine/temperature, yet finite so that
/// gradients never meet `0 · ∞`.
pub const SELF_LOGIT: f64 = -1.0e9;

/// The loss and, for monitoring, the mean cosine similarity of positive and negative pairs.
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// Scalar loss (shape `[1]`), differentiable.
    pub loss: Tensor<1>,
    /// Mean cosine similarity over positive pairs (detached, shape `[1]`).
    pub pos_sim: Tensor<1>,
    /// Mean cosine similarity over negative pairs (detached, shape `[1]`).
    pub neg_sim: Tensor<1>,
}

/// Row-wise L2 normalization (`x / max(‖x‖, 1e-12)`, as `torch.nn.functional.normalize`).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// The contrastive loss of embeddings `z` (`[m, d]`) against targets `weights` (`m × m`,
/// row-major; see the module documentation), with `positive[i * m + j]` marking positive pairs
/// for the similarity statistics.
pub fn contrastive_loss(z: Tensor<2>, temperature: f64, weights: Vec<f32>, positive: &[bool]) -> LossOutput {
    let [m, _] = z.dims();
    let device = z.device();
    let (logits, cos) = masked_logits(l2_normalize(z), temperature);
    let log_prob = log_softmax(logits, 1);
    let w = Tensor::<2>::from_data(TensorData::new(weights, [m, m]), &device);
    let loss = (log_prob * w).sum().neg();
    let (pos_sim, neg_sim) = similarity_stats(cos, positive);
    LossOutput { loss, pos_sim, neg_sim }
}

/// Logits `cos / τ` of unit embeddings `z` (`[m, d]`) with each anchor's similarity to itself
/// masked to a large negative value, and the cosines.
pub fn masked_logits(z: Tensor<2>, temperature: f64) -> (Tensor<2>, Tensor<2>) {
    let [m, _] = z.dims();
    let cos = z.clone().matmul(z.transpose());
    let logits = cos.clone().div_scalar(temperature).mask_fill(mask(m, &cos.device(), |i, j| i == j), SELF_LOGIT);
    (logits, cos)
}

/// For the `2n` embeddings of `n` images (first views, then second views): whether embedding
/// `j` is embedding `i`'s twin view, row-major `2n × 2n` — NT-Xent's positives.
pub fn twin_pairs(n: usize) -> Vec<bool> {
    let m = 2 * n;
    (0..m * m).map(|k| k % m == (k / m + n) % m).collect()
}

/// An `m × m` boolean mask.
pub fn mask(m: usize, device: &Device, f: impl Fn(usize, usize) -> bool) -> Tensor<2, Bool> {
    Tensor::<2, Bool>::from_data(
        TensorData::new((0..m * m).map(|k| f(k / m, k % m)).collect::<Vec<bool>>(), [m, m]),
        device,
    )
}

/// Mean cosine similarity of the positive pairs (`positive[i * m + j]`) and of the negative
/// ones (every other pair but the diagonal), detached, from the cosine matrix `cos` of unit
/// embeddings.
pub fn similarity_stats(cos: Tensor<2>, positive: &[bool]) -> (Tensor<1>, Tensor<1>) {
    let [m, _] = cos.dims();
    let device = cos.device();
    let n_pos = positive.iter().filter(|&&p| p).count().max(1);
    let n_neg = (m * m - m - positive.iter().filter(|&&p| p).count()).max(1);
    let pos_mask = Tensor::<2>::from_data(
        TensorData::new(positive.iter().map(|&p| f32::from(u8::from(p))).collect::<Vec<f32>>(), [m, m]),
        &device,
    );
    let cos = cos.detach();
    let pos_sum = (cos.clone() * pos_mask).sum();
    let diag_sum = m as f64; // cosines of unit vectors with themselves
    let pos_sim = pos_sum.clone().div_scalar(n_pos as f64);
    let neg_sim = (cos.sum() - pos_sum).sub_scalar(diag_sum).div_scalar(n_neg as f64);
    (pos_sim, neg_sim)
}
