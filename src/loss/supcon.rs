//! Supervised contrastive loss (Khosla et al. 2020, the `L_out` form): the positives of an
//! anchor are all other embeddings with its label (its twin view included); the anchor's loss
//! is the mean over its positives of `−log softmax(sim / τ)[p]`; anchors without positives are
//! skipped, and the loss is the mean over the remaining anchors.

use burn::prelude::*;

use super::contrastive::{LossOutput, contrastive_loss};

/// SupCon of `z1`, `z2` (`[n, d]` each, views of the same `n` images) with `labels` (length `n`).
pub fn supcon(z1: Tensor<2>, z2: Tensor<2>, labels: &[u32], temperature: f64) -> LossOutput {
    let [n, _] = z1.dims();
    assert_eq!(labels.len(), n, "one label per image");
    let m = 2 * n;
    let label = |i: usize| labels[i % n];
    let positive: Vec<bool> = (0..m * m).map(|k| k / m != k % m && label(k / m) == label(k % m)).collect();
    let counts: Vec<usize> = positive.chunks(m).map(|row| row.iter().filter(|&&p| p).count()).collect();
    let anchors = counts.iter().filter(|&&c| c > 0).count().max(1);
    let weights = positive
        .iter()
        .enumerate()
        .map(|(k, &p)| if p { 1.0 / (counts[k / m] as f32 * anchors as f32) } else { 0.0 })
        .collect();
    contrastive_loss(Tensor::cat(vec![z1, z2], 0), temperature, weights, &positive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::nt_xent;
    use crate::loss::nt_xent::tests::{random_rows, tensor};

    /// Naive f64 SupCon (L_out) over `2n` rows with labels repeated for both views.
    fn naive(z: &[Vec<f64>], labels: &[u32], t: f64) -> f64 {
        let m = z.len();
        let n = m / 2;
        let unit: Vec<Vec<f64>> = z
            .iter()
            .map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter().map(|v| v / norm).collect()
            })
            .collect();
        let sim = |i: usize, j: usize| unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>() / t;
        let (mut total, mut anchors) = (0.0, 0);
        for i in 0..m {
            let denom: f64 = (0..m).filter(|&j| j != i).map(|j| sim(i, j).exp()).sum();
            let pos: Vec<usize> = (0..m).filter(|&j| j != i && labels[j % n] == labels[i % n]).collect();
            if pos.is_empty() {
                continue;
            }
            total += pos.iter().map(|&p| -(sim(i, p) - denom.ln())).sum::<f64>() / pos.len() as f64;
            anchors += 1;
        }
        total / anchors as f64
    }

    #[test]
    fn matches_naive_f64_and_reduces_to_nt_xent_with_distinct_labels() {
        let device = Device::flex();
        for (n, d, t, seed, labels) in [
            (4, 6, 0.5, 1, vec![0, 1, 0, 1]),
            (8, 16, 0.1, 2, vec![3, 3, 3, 1, 2, 2, 0, 5]),
            (6, 4, 0.2, 3, vec![7; 6]),
        ] {
            let rows = random_rows(2 * n, d, seed);
            let z = tensor(&rows, &device);
            let got =
                f64::from(supcon(z.clone().narrow(0, 0, n), z.narrow(0, n, n), &labels, t).loss.into_scalar::<f32>());
            let want = naive(&rows, &labels, t);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{labels:?}: {got} vs {want}");
        }
        let rows = random_rows(10, 8, 4);
        let z = tensor(&rows, &device);
        let distinct: Vec<u32> = (0..5).collect();
        let a = supcon(z.clone().narrow(0, 0, 5), z.clone().narrow(0, 5, 5), &distinct, 0.3).loss.into_scalar::<f32>();
        let b = nt_xent(z.clone().narrow(0, 0, 5), z.narrow(0, 5, 5), 0.3).loss.into_scalar::<f32>();
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}
