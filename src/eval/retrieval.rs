//! Retrieval metrics of an embedding, from the search k-NN already does (`super::knn::ranked`):
//! each test image is a query against the training images as the gallery, ranked by cosine
//! similarity (ties by gallery order). A query's relevant images are the gallery's images of its
//! class; R is their number.
//!
//! - precision@1: the nearest image is relevant;
//! - recall@k (k = 1, 5, 10): at least one relevant image among the k nearest (the metric-learning
//!   usage, as in Musgrave et al. 2020's tables);
//! - MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check", eq. 1): the mean over queries
//!   of (1/R) Σ_{i ≤ R} P(i)·rel(i), with P(i) the precision of the first i retrieved.
//!
//! When a query is itself in the gallery (the same file, e.g. `--train` and `--test` the same
//! folder), it is left out of its own ranking (leave-one-out). Queries whose class the gallery
//! does not hold (R = 0) have no retrieval score and are left out of the averages.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::collapse::Embeddings;
use super::knn::ranked;

/// The `k` of recall@k.
pub const RECALL_AT: [usize; 3] = [1, 5, 10];

/// recall@k at one k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallAt {
    pub k: usize,
    pub recall: f64,
}

/// The retrieval metrics of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalResult {
    /// Queries scored (those with R ≥ 1).
    pub queries: usize,
    /// Whether queries were left out of their own ranking (they are in the gallery).
    pub leave_one_out: bool,
    pub precision_at_1: f64,
    pub recall_at: Vec<RecallAt>,
    pub map_at_r: f64,
}

/// One query's scores from the relevance of its ranking (nearest first, itself left out) and
/// its R: (precision@1, hits for each of [`RECALL_AT`], AP@R).
pub fn query_scores(relevant: &[bool], r: usize) -> (bool, [bool; RECALL_AT.len()], f64) {
    let p1 = relevant.first().copied().unwrap_or(false);
    let recall = RECALL_AT.map(|k| relevant.iter().take(k).any(|&x| x));
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, &rel) in relevant.iter().take(r).enumerate() {
        if rel {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    (p1, recall, if r == 0 { 0.0 } else { sum / r as f64 })
}

/// The metrics of `test` (queries) against `train` (gallery). `itself[q]` is the gallery index of
/// query `q` when the query is in the gallery.
pub fn retrieval(
    train: &Embeddings,
    train_labels: &[u32],
    test: &Embeddings,
    test_labels: &[u32],
    itself: &[Option<usize>],
    device: &Device,
) -> RetrievalResult {
    let classes = train_labels.iter().chain(test_labels).max().map_or(1, |&m| m as usize + 1);
    let mut per_class = vec![0usize; classes];
    for &l in train_labels {
        per_class[l as usize] += 1;
    }
    let r_of = |q: usize| {
        let own = itself[q].is_some_and(|g| train_labels[g] == test_labels[q]);
        per_class[test_labels[q] as usize] - usize::from(own)
    };
    let longest = *RECALL_AT.iter().max().expect("non-empty");
    let scores: Vec<Option<(bool, [bool; RECALL_AT.len()], f64)>> = ranked(
        train,
        test,
        device,
        |q| r_of(q).max(longest) + usize::from(itself[q].is_some()),
        |q, nb| {
            let r = r_of(q);
            (r > 0).then(|| {
                let relevant: Vec<bool> = nb
                    .iter()
                    .filter(|&&(g, _)| Some(g) != itself[q])
                    .map(|&(g, _)| train_labels[g] == test_labels[q])
                    .collect();
                query_scores(&relevant, r)
            })
        },
    );
    let scored: Vec<_> = scores.into_iter().flatten().collect();
    let n = scored.len().max(1) as f64;
    let mean = |f: &dyn Fn(&(bool, [bool; RECALL_AT.len()], f64)) -> f64| scored.iter().map(f).sum::<f64>() / n;
    RetrievalResult {
        queries: scored.len(),
        leave_one_out: itself.iter().any(Option::is_some),
        precision_at_1: mean(&|s| f64::from(u8::from(s.0))),
        recall_at: RECALL_AT
            .iter()
            .enumerate()
            .map(|(j, &k)| RecallAt { k, recall: mean(&|s| f64::from(u8::from(s.1[j]))) })
            .collect(),
        map_at_r: mean(&|s| s.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force in f64: every gallery similarity, a full sort, the definitions written out.
    fn naive(
        train: &Embeddings,
        tl: &[u32],
        test: &Embeddings,
        ql: &[u32],
        itself: &[Option<usize>],
    ) -> (usize, f64, [f64; 3], f64) {
        let (a, b) = (train.normalized(), test.normalized());
        let (mut n, mut p1, mut rec, mut map) = (0usize, 0.0, [0.0; 3], 0.0);
        for (q, v) in b.iter().enumerate() {
            let mut sims: Vec<(f64, usize)> = a
                .iter()
                .enumerate()
                .filter(|(g, _)| Some(*g) != itself[q])
                .map(|(g, r)| (r.iter().zip(v).map(|(x, y)| x * y).sum::<f64>(), g))
                .collect();
            sims.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            let rel: Vec<bool> = sims.iter().map(|&(_, g)| tl[g] == ql[q]).collect();
            let r = rel.iter().filter(|&&x| x).count();
            if r == 0 {
                continue;
            }
            n += 1;
            p1 += f64::from(u8::from(rel[0]));
            for (j, k) in [1, 5, 10].into_iter().enumerate() {
                rec[j] += f64::from(u8::from(rel[..k.min(rel.len())].contains(&true)));
            }
            let mut ap = 0.0;
            for i in 1..=r {
                if rel[i - 1] {
                    let precision = rel[..i].iter().filter(|&&x| x).count() as f64 / i as f64;
                    ap += precision;
                }
            }
            map += ap / r as f64;
        }
        let n_f = n as f64;
        (n, p1 / n_f, rec.map(|x| x / n_f), map / n_f)
    }

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn check(train: &Embeddings, tl: &[u32], test: &Embeddings, ql: &[u32], itself: &[Option<usize>]) {
        let got = retrieval(train, tl, test, ql, itself, &Device::flex());
        let (n, p1, rec, map) = naive(train, tl, test, ql, itself);
        assert_eq!(got.queries, n);
        assert!((got.precision_at_1 - p1).abs() < 1e-12, "P@1 {} vs {p1}", got.precision_at_1);
        for (r, want) in got.recall_at.iter().zip(rec) {
            assert!((r.recall - want).abs() < 1e-12, "R@{} {} vs {want}", r.k, r.recall);
        }
        assert!((got.map_at_r - map).abs() < 1e-12, "MAP@R {} vs {map}", got.map_at_r);
    }

    #[test]
    fn matches_brute_force_f64_with_ties_absent_classes_and_leave_one_out() {
        // 200 gallery rows of 6 classes, every fourth a copy of the one before (exact ties);
        // 60 queries over 7 classes (class 6 is not in the gallery: no score).
        let mut g = random(200, 8, 3);
        for i in (4..200).step_by(4) {
            let prev: Vec<f32> = g[(i - 1) * 8..i * 8].to_vec();
            g[i * 8..(i + 1) * 8].copy_from_slice(&prev);
        }
        let train = Embeddings::new(200, 8, g.clone());
        let tl: Vec<u32> = (0..200).map(|i| (i * 5 % 6) as u32).collect();
        let test = Embeddings::new(60, 8, random(60, 8, 4));
        let ql: Vec<u32> = (0..60).map(|i| (i % 7) as u32).collect();
        check(&train, &tl, &test, &ql, &vec![None; 60]);
        // Leave-one-out within one set: the gallery against itself.
        let itself: Vec<Option<usize>> = (0..200).map(Some).collect();
        check(&train, &tl, &train, &tl, &itself);
        let r = retrieval(&train, &tl, &train, &tl, &itself, &Device::flex());
        assert!(r.leave_one_out && r.precision_at_1 < 1.0, "itself is not its own neighbour: {r:?}");
    }

    #[test]
    fn closed_forms() {
        // Perfectly clustered: every metric is 1.
        let centre = |c: usize| (0..4).map(move |j| if j == c { 1.0 } else { 0.01 * c as f32 });
        let rows = |n: usize| Embeddings::new(n, 4, (0..n).flat_map(|i| centre(i % 4)).collect());
        let labels = |n: usize| (0..n).map(|i| (i % 4) as u32).collect::<Vec<_>>();
        let r = retrieval(&rows(40), &labels(40), &rows(12), &labels(12), &[None; 12], &Device::flex());
        assert_eq!((r.queries, r.precision_at_1, r.map_at_r), (12, 1.0, 1.0));
        assert!(r.recall_at.iter().all(|x| x.recall == 1.0));
        // AP@R by hand: relevant at ranks 1 and 3 with R = 2 counts only rank 1 (1/1) → 0.5;
        // with R = 3 and ranks 1, 3, 4 relevant: (1/1 + 2/3) / 3.
        assert_eq!(query_scores(&[true, false, true], 2), (true, [true, true, true], 0.5));
        let (_, _, ap) = query_scores(&[true, false, true, true], 3);
        assert!((ap - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
        assert_eq!(query_scores(&[false; 12], 4), (false, [false; 3], 0.0));
    }
}
