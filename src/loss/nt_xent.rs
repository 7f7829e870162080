//! NT-Xent (Chen et al. 2020, SimCLR): for `N` images and their two views, `2N` anchors; each
//! anchor's positive is its twin view and the other `2N − 2` embeddings are negatives. The loss
//! is the mean over all `2N` anchors of `−log softmax(sim / τ)[twin]`.

use burn::prelude::*;

use super::contrastive::{LossOutput, contrastive_loss, twin_pairs};

/// NT-Xent of the projections `z1` (view 1) and `z2` (view 2), each `[n, d]`.
pub fn nt_xent(z1: Tensor<2>, z2: Tensor<2>, temperature: f64) -> LossOutput {
    let [n, _] = z1.dims();
    let m = 2 * n;
    let positive = twin_pairs(n);
    let weights = positive.iter().map(|&p| if p { 1.0 / m as f32 } else { 0.0 }).collect();
    contrastive_loss(Tensor::cat(vec![z1, z2], 0), temperature, weights, &positive)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Naive f64 NT-Xent over `2n` rows (first `n` are view 1).
    pub(crate) fn naive(z: &[Vec<f64>], t: f64) -> f64 {
        let m = z.len();
        let n = m / 2;
        let unit = unit_rows(z);
        let sim = |i: usize, j: usize| unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>();
        let mut total = 0.0;
        for i in 0..m {
            let denom: f64 = (0..m).filter(|&j| j != i).map(|j| (sim(i, j) / t).exp()).sum();
            total += -(sim(i, (i + n) % m) / t) + denom.ln();
        }
        total / m as f64
    }

    /// Rows scaled to unit length (as `F.normalize`).
    pub(crate) fn unit_rows(z: &[Vec<f64>]) -> Vec<Vec<f64>> {
        z.iter()
            .map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|v| v / norm).collect()
            })
            .collect()
    }

    pub(crate) fn random_rows(m: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..m)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn tensor(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
        let (m, d) = (rows.len(), rows[0].len());
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(flat, [m, d]), device)
    }

    fn loss(rows: &[Vec<f64>], t: f64) -> f64 {
        let device = Device::flex();
        let z = tensor(rows, &device);
        let n = rows.len() / 2;
        f64::from(nt_xent(z.clone().narrow(0, 0, n), z.narrow(0, n, n), t).loss.into_scalar::<f32>())
    }

    #[test]
    fn matches_naive_f64_on_random_inputs() {
        for (m, d, t, seed) in [(4, 3, 0.5, 1), (16, 8, 0.1, 2), (32, 128, 0.2, 3), (64, 16, 1.0, 4)] {
            let rows = random_rows(m, d, seed);
            let (got, want) = (loss(&rows, t), naive(&rows, t));
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "m={m} t={t}: {got} vs {want}");
        }
    }

    #[test]
    fn closed_forms() {
        // All embeddings equal: every similarity is 1, the loss is ln(2N − 1) at any temperature.
        for (n, t) in [(2, 0.5), (8, 0.1), (32, 1.0)] {
            let rows = vec![vec![0.3, -1.2, 2.0]; 2 * n];
            let want = ((2 * n - 1) as f64).ln();
            assert!((loss(&rows, t) - want).abs() < 1e-4, "n={n}");
        }
        // Twins identical and orthogonal to everything else: ln(1 + (2N − 2)·e^(−1/τ)) → 0.
        let n = 4;
        let mut rows = Vec::new();
        for v in 0..2 {
            for i in 0..n {
                let mut r = vec![0.0; 8];
                r[i] = 1.0 + v as f64;
                rows.push(r);
            }
        }
        let t: f64 = 0.05;
        let want = (1.0 + (2.0 * n as f64 - 2.0) * (-1.0 / t).exp()).ln();
        let got = loss(&rows, t);
        assert!(got < 1e-6 && (got - want).abs() < 1e-6, "{got} vs {want}");
        // Stable at a tiny temperature (logits of 100) on random data too.
        let rows = random_rows(16, 8, 9);
        let (got, want) = (loss(&rows, 0.01), naive(&rows, 0.01));
        assert!(got.is_finite() && (got - want).abs() <= 1e-3 * want.abs().max(1.0), "{got} vs {want}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let rows = random_rows(6, 3, 5);
        let t = 0.3;
        let device = Device::flex().autodiff();
        let z = tensor(&rows, &device).require_grad();
        let out = nt_xent(z.clone().narrow(0, 0, 3), z.clone().narrow(0, 3, 3), t);
        let grads = out.loss.backward();
        let g: Vec<f32> = z.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let h = 1e-5;
        for i in 0..6 {
            for j in 0..3 {
                let mut plus = rows.clone();
                plus[i][j] += h;
                let mut minus = rows.clone();
                minus[i][j] -= h;
                let fd = (naive(&plus, t) - naive(&minus, t)) / (2.0 * h);
                let got = f64::from(g[i * 3 + j]);
                assert!((got - fd).abs() <= 1e-3 * fd.abs().max(0.05), "d/dz[{i}][{j}]: {got} vs {fd}");
            }
        }
    }

    #[test]
    fn similarity_statistics_are_means_over_pairs() {
        let rows = random_rows(8, 5, 3);
        let device = Device::flex();
        let z = tensor(&rows, &device);
        let out = nt_xent(z.clone().narrow(0, 0, 4), z.narrow(0, 4, 4), 0.5);
        let unit: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter().map(|v| v / n).collect()
            })
            .collect();
        let cos = |i: usize, j: usize| unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>();
        let pos = (0..8).map(|i| cos(i, (i + 4) % 8)).sum::<f64>() / 8.0;
        let neg = (0..8)
            .flat_map(|i| (0..8).map(move |j| (i, j)))
            .filter(|&(i, j)| i != j && j != (i + 4) % 8)
            .map(|(i, j)| cos(i, j))
            .sum::<f64>()
            / 48.0;
        assert!((f64::from(out.pos_sim.into_scalar::<f32>()) - pos).abs() < 1e-5);
        assert!((f64::from(out.neg_sim.into_scalar::<f32>()) - neg).abs() < 1e-5);
    }
}
