//! Representation statistics that reveal collapse, computed on a batch of embeddings:
//!
//! - **std**: the per-dimension standard deviation of the L2-normalized embeddings, averaged
//!   over dimensions — about `1/√d` for embeddings spread over the sphere, → 0 when they
//!   collapse to a point (the SimSiam diagnostic);
//! - **effective rank** (RankMe, Garrido et al. 2023): `exp(H(p))` with `p_k = σ_k / Σσ + ε`
//!   over the singular values σ of the embedding matrix — from 1 (one direction) to `min(n, d)`;
//! - **alignment** `E‖z₁ − z₂‖²` over positive pairs and **uniformity**
//!   `log E exp(−2‖zᵢ − zⱼ‖²)` over all pairs (Wang & Isola 2020), on normalized embeddings;
//! - the mean cosine similarity of positive and of negative pairs.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Row-major `[n, d]` embeddings on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub n: usize,
    pub d: usize,
    pub values: Vec<f32>,
}

impl Embeddings {
    pub fn new(n: usize, d: usize, values: Vec<f32>) -> Self {
        assert_eq!(values.len(), n * d, "{n} x {d} embeddings");
        Self { n, d, values }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.d..(i + 1) * self.d]
    }

    /// Rows scaled to unit length (in f64).
    pub fn normalized(&self) -> Vec<Vec<f64>> {
        (0..self.n)
            .map(|i| {
                let r = self.row(i);
                let norm = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|&v| f64::from(v) / norm).collect()
            })
            .collect()
    }
}

/// Mean over dimensions of the std over samples of the normalized embeddings.
pub fn embedding_std(z: &Embeddings) -> f64 {
    let u = z.normalized();
    let n = z.n as f64;
    (0..z.d)
        .map(|j| {
            let mean = u.iter().map(|r| r[j]).sum::<f64>() / n;
            (u.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n).sqrt()
        })
        .sum::<f64>()
        / z.d as f64
}

/// Singular values of the `[n, d]` matrix, from the eigenvalues of the smaller Gram matrix.
pub fn singular_values(z: &Embeddings) -> Vec<f64> {
    let m = DMatrix::from_row_iterator(z.n, z.d, z.values.iter().map(|&v| f64::from(v)));
    let gram = if z.n <= z.d { &m * m.transpose() } else { m.transpose() * &m };
    let mut s: Vec<f64> = gram.symmetric_eigenvalues().iter().map(|&l| l.max(0.0).sqrt()).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// RankMe's effective rank of the (unnormalized) embedding matrix.
pub fn effective_rank(z: &Embeddings) -> f64 {
    let s = singular_values(z);
    let total: f64 = s.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = s
        .iter()
        .map(|&v| {
            let p = v / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    entropy.exp()
}

/// `E‖ẑ₁ − ẑ₂‖²` over the pairs `(z1[i], z2[i])`.
pub fn alignment(z1: &Embeddings, z2: &Embeddings) -> f64 {
    let (a, b) = (z1.normalized(), z2.normalized());
    a.iter().zip(&b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).powi(2)).sum::<f64>()).sum::<f64>() / z1.n as f64
}

/// `log E_{i<j} exp(−2‖ẑᵢ − ẑⱼ‖²)`.
pub fn uniformity(z: &Embeddings) -> f64 {
    let u = z.normalized();
    let (mut sum, mut count) = (0.0, 0usize);
    for i in 0..z.n {
        for j in i + 1..z.n {
            let d2: f64 = u[i].iter().zip(&u[j]).map(|(p, q)| (p - q).powi(2)).sum();
            sum += (-2.0 * d2).exp();
            count += 1;
        }
    }
    (sum / count.max(1) as f64).ln()
}

/// Mean cosine similarity of positive pairs `(z1[i], z2[i])` and of negative pairs (every other
/// pair of the `2n` embeddings).
pub fn cosine_stats(z1: &Embeddings, z2: &Embeddings) -> (f64, f64) {
    let all: Vec<Vec<f64>> = z1.normalized().into_iter().chain(z2.normalized()).collect();
    let (n, m) = (z1.n, 2 * z1.n);
    let dot = |i: usize, j: usize| all[i].iter().zip(&all[j]).map(|(p, q)| p * q).sum::<f64>();
    let pos = (0..m).map(|i| dot(i, (i + n) % m)).sum::<f64>() / m as f64;
    let mut neg = 0.0;
    for i in 0..m {
        for j in 0..m {
            if i != j && j != (i + n) % m {
                neg += dot(i, j);
            }
        }
    }
    (pos, neg / (m * (m - 2)).max(1) as f64)
}

/// The statistics of one embedding space (backbone features or projections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceStats {
    pub dim: usize,
    pub std: f64,
    /// `std · √d`: 1 for embeddings spread over the sphere, 0 when collapsed.
    pub std_ratio: f64,
    pub effective_rank: f64,
    pub alignment: f64,
    pub uniformity: f64,
    pub pos_sim: f64,
    pub neg_sim: f64,
}

/// All statistics of two views' embeddings.
pub fn space_stats(z1: &Embeddings, z2: &Embeddings) -> SpaceStats {
    let both = Embeddings::new(z1.n + z2.n, z1.d, z1.values.iter().chain(&z2.values).copied().collect());
    let std = embedding_std(&both);
    let (pos_sim, neg_sim) = cosine_stats(z1, z2);
    SpaceStats {
        dim: z1.d,
        std,
        std_ratio: std * (z1.d as f64).sqrt(),
        effective_rank: effective_rank(&both),
        alignment: alignment(z1, z2),
        uniformity: uniformity(&both),
        pos_sim,
        neg_sim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, d: usize, seed: u64) -> Embeddings {
        let mut s = seed | 1;
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let values = (0..n * d)
            .map(|_| {
                let (a, b) = (u().max(1e-300), u());
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect();
        Embeddings::new(n, d, values)
    }

    #[test]
    fn identical_vectors_are_fully_collapsed() {
        let z = Embeddings::new(16, 8, [0.3f32, -1.0, 2.0, 0.0, 0.5, 0.5, 1.0, -0.2].repeat(16));
        assert!(embedding_std(&z) < 1e-9);
        assert!((effective_rank(&z) - 1.0).abs() < 1e-3, "{}", effective_rank(&z));
        assert!(alignment(&z, &z).abs() < 1e-12);
        assert!(uniformity(&z).abs() < 1e-9, "log E exp(0) = 0");
        let (pos, neg) = cosine_stats(&z, &z);
        assert!((pos - 1.0).abs() < 1e-9 && (neg - 1.0).abs() < 1e-9);
    }

    #[test]
    fn orthonormal_vectors_have_full_rank_and_known_std() {
        let d = 8;
        let z = Embeddings::new(d, d, (0..d * d).map(|k| f32::from(u8::from(k / d == k % d))).collect());
        assert!((effective_rank(&z) - d as f64).abs() < 1e-3, "{}", effective_rank(&z));
        // Each dimension holds one 1 and d − 1 zeros: std = √(1/d − 1/d²).
        let want = (1.0 / d as f64 - 1.0 / (d * d) as f64).sqrt();
        assert!((embedding_std(&z) - want).abs() < 1e-9);
        // Distinct orthonormal vectors are √2 apart: uniformity = log exp(−4) = −4.
        assert!((uniformity(&z) + 4.0).abs() < 1e-9);
    }

    #[test]
    fn isotropic_gaussian_is_spread() {
        let (n, d) = (4000, 16);
        let z = gaussian(n, d, 7);
        let ratio = embedding_std(&z) * (d as f64).sqrt();
        assert!((ratio - 1.0).abs() < 0.03, "{ratio}");
        // Singular values of a tall Gaussian matrix are all near √n: effective rank near d.
        assert!(effective_rank(&z) > 0.95 * d as f64, "{}", effective_rank(&z));
    }

    #[test]
    fn rank_k_data_has_effective_rank_k() {
        // Rows drawn from a k-dimensional subspace with equal energy per direction.
        let (n, d, k) = (64, 32, 4);
        let values: Vec<f32> =
            (0..n).flat_map(|i| (0..d).map(move |j| if j < k && i % k == j { 1.0 } else { 0.0 })).collect();
        let z = Embeddings::new(n, d, values);
        assert!((effective_rank(&z) - k as f64).abs() < 1e-3, "{}", effective_rank(&z));
        let s = singular_values(&z);
        assert!(s[..k].iter().all(|v| (v - 4.0).abs() < 1e-9) && s[k..].iter().all(|v| v.abs() < 1e-6), "{s:?}");
    }
}
