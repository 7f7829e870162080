//! Supervised contrastive loss (Khosla et al. 2020, the `L_out` form): the positives of an
//! anchor are all other embeddings with its label (its twin view included); the anchor's loss
//! is the mean over its positives of `−log softmax(sim / τ)[p]`; anchors without positives are
//! skipped, and the loss is the mean over the remaining anchors.
//!
//! The same form over more than two views per image is the multi-positive loss of multi-crop
//! ([`multi_positive`]; solo-learn's SimCLR with several crops; the "multi-crop" objective of
//! Shidani et al. 2024, "Poly-View Contrastive Learning"): with each image its own class, every
//! view is an anchor whose positives are the other views of its image — NT-Xent at two views.

use burn::prelude::*;

use super::contrastive::{LossOutput, contrastive_loss};

/// SupCon of `z1`, `z2` (`[n, d]` each, views of the same `n` images) with `labels` (length `n`).
pub fn supcon(z1: Tensor<2>, z2: Tensor<2>, labels: &[u32], temperature: f64) -> LossOutput {
    multi_positive(Tensor::cat(vec![z1, z2], 0), 2, labels, temperature)
}

/// SupCon's form over `views` views of `n` images: `z` is `[views · n, d]`, view-major (every
/// image's first view, then every image's second, …), and row `r` has label `labels[r % n]`.
/// With `labels = 0..n` (each image its own class) this is multi-crop's multi-positive NT-Xent.
pub fn multi_positive(z: Tensor<2>, views: usize, labels: &[u32], temperature: f64) -> LossOutput {
    let [m, _] = z.dims();
    let n = labels.len();
    assert_eq!(m, views * n, "{views} views of {n} images");
    let label = |i: usize| labels[i % n];
    let positive: Vec<bool> = (0..m * m).map(|k| k / m != k % m && label(k / m) == label(k % m)).collect();
    let counts: Vec<usize> = positive.chunks(m).map(|row| row.iter().filter(|&&p| p).count()).collect();
    let anchors = counts.iter().filter(|&&c| c > 0).count().max(1);
    let weights = positive
        .iter()
        .enumerate()
        .map(|(k, &p)| if p { 1.0 / (counts[k / m] as f32 * anchors as f32) } else { 0.0 })
        .collect();
    contrastive_loss(z, temperature, weights, &positive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::nt_xent;
    use crate::loss::nt_xent::tests::{random_rows, tensor};

    /// Naive f64 SupCon (L_out) over `views × n` rows (view-major) with labels repeated for
    /// every view.
    fn naive(z: &[Vec<f64>], labels: &[u32], t: f64) -> f64 {
        let m = z.len();
        let n = labels.len();
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

    /// Multi-crop's form: `views` views per image (each image its own class, or shared classes)
    /// against the naive f64 loss — values, and gradients by central differences of the naive
    /// form at chosen coordinates.
    #[test]
    fn multi_positive_matches_naive_f64_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (n, views, d, t, seed, labels) in [
            (4, 3, 5, 0.5, 11, (0..4).collect::<Vec<u32>>()),
            (5, 6, 8, 0.1, 12, (0..5).collect()),
            (6, 4, 6, 0.3, 13, vec![0, 1, 0, 2, 2, 1]),
        ] {
            let rows = random_rows(views * n, d, seed);
            let z = tensor(&rows, &device).require_grad();
            let out = multi_positive(z.clone(), views, &labels, t);
            let got = f64::from(out.loss.clone().into_scalar::<f32>());
            let want = naive(&rows, &labels, t);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{views} views: {got} vs {want}");
            let g: Vec<f32> = z.grad(&out.loss.backward()).unwrap().into_data().try_to_vec().unwrap();
            let (m, h) = (views * n, 1e-5);
            for (i, j) in [(0, 0), (1, 2), (m - 1, d - 1), (m / 2, 1)] {
                let (mut plus, mut minus) = (rows.clone(), rows.clone());
                plus[i][j] += h;
                minus[i][j] -= h;
                let fd = (naive(&plus, &labels, t) - naive(&minus, &labels, t)) / (2.0 * h);
                let got = f64::from(g[i * d + j]);
                assert!((got - fd).abs() <= 2e-3 * fd.abs().max(0.05), "{views} views d/dz[{i}][{j}]: {got} vs {fd}");
            }
        }
    }
}
