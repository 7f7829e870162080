//! Weighted k-nearest-neighbour classification (Wu et al. 2018), as lightly and solo-learn
//! report it: L2-normalized features, cosine similarity, the top-k training neighbours of each
//! test image each vote `exp(sim / t)` for their class; the class with the most weight wins.
//!
//! Similarities are computed in chunks of test images on the chosen device (a matrix product),
//! and the neighbours selected on the host, so 50,000 × 10,000 fits in little memory
//! ([`ranked`], which the retrieval metrics of `super::retrieval` share). Several `k` are
//! answered from one pass (each is a prefix of the largest).

use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::collapse::Embeddings;

/// Accuracy at one `k`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnResult {
    pub k: usize,
    pub temperature: f64,
    pub top1: f64,
    pub top5: f64,
}

/// Test rows per similarity chunk.
const CHUNK: usize = 256;

fn normalized_tensor(e: &Embeddings, device: &Device) -> Tensor<2> {
    let rows = e.normalized();
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [e.n, e.d]), device)
}

/// Indices of the `k` largest values, by value descending then index ascending.
fn top_k(sims: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..sims.len()).collect();
    let k = k.min(sims.len());
    let cmp = |a: &usize, b: &usize| sims[*b].total_cmp(&sims[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, sims[i])).collect()
}

/// Class scores from sorted neighbours, and whether the label is in the top 1 and top 5.
fn vote(neighbours: &[(usize, f32)], train_labels: &[u32], classes: usize, t: f64, label: u32) -> (bool, bool) {
    let mut score = vec![0.0f64; classes];
    for &(i, s) in neighbours {
        score[train_labels[i] as usize] += (f64::from(s) / t).exp();
    }
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|a, b| score[*b].total_cmp(&score[*a]).then(a.cmp(b)));
    (order[0] == label as usize, order.iter().take(5).any(|&c| c == label as usize))
}

/// For every row of `test`, its `depth(row)` nearest rows of `train` by cosine similarity
/// (value descending, then index ascending), handed to `per_row(row, neighbours)`: the one
/// chunked similarity search that k-NN and the retrieval metrics share.
pub(crate) fn ranked<T: Send>(
    train: &Embeddings,
    test: &Embeddings,
    device: &Device,
    depth: impl Fn(usize) -> usize + Sync,
    per_row: impl Fn(usize, &[(usize, f32)]) -> T + Sync,
) -> Vec<T> {
    assert_eq!(train.d, test.d, "feature dimensions differ");
    let bank = normalized_tensor(train, device).transpose();
    let queries = normalized_tensor(test, device);
    let mut out = Vec::with_capacity(test.n);
    for start in (0..test.n).step_by(CHUNK) {
        let len = CHUNK.min(test.n - start);
        let sims = queries.clone().narrow(0, start, len).matmul(bank.clone());
        let sims: Vec<f32> = sims.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 similarities");
        let rows: Vec<T> = sims
            .par_chunks(train.n)
            .enumerate()
            .map(|(r, row)| per_row(start + r, &top_k(row, depth(start + r))))
            .collect();
        out.extend(rows);
    }
    out
}

/// Weighted k-NN accuracy of `test` against `train` for each of `ks`, with temperature `t`.
pub fn knn(
    train: &Embeddings,
    train_labels: &[u32],
    test: &Embeddings,
    test_labels: &[u32],
    ks: &[usize],
    t: f64,
    device: &Device,
) -> Vec<KnnResult> {
    let classes = train_labels.iter().chain(test_labels).max().map_or(1, |&m| m as usize + 1);
    let k_max = ks.iter().copied().max().unwrap_or(1);
    let rows: Vec<Vec<(bool, bool)>> = ranked(
        train,
        test,
        device,
        |_| k_max,
        |q, nb| ks.iter().map(|&k| vote(&nb[..k.min(nb.len())], train_labels, classes, t, test_labels[q])).collect(),
    );
    let mut hits = vec![(0usize, 0usize); ks.len()];
    for row in rows {
        for (h, (t1, t5)) in hits.iter_mut().zip(row) {
            h.0 += usize::from(t1);
            h.1 += usize::from(t5);
        }
    }
    let n = test.n.max(1) as f64;
    ks.iter()
        .zip(hits)
        .map(|(&k, (t1, t5))| KnnResult { k, temperature: t, top1: t1 as f64 / n, top5: t5 as f64 / n })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive f64 weighted k-NN: full sort per test row.
    fn naive(train: &Embeddings, tl: &[u32], test: &Embeddings, ql: &[u32], k: usize, t: f64) -> (f64, f64) {
        let (a, b) = (train.normalized(), test.normalized());
        let classes = tl.iter().chain(ql).max().unwrap() + 1;
        let (mut t1, mut t5) = (0, 0);
        for (qi, q) in b.iter().enumerate() {
            let mut sims: Vec<(f64, usize)> =
                a.iter().enumerate().map(|(i, r)| (r.iter().zip(q).map(|(x, y)| x * y).sum::<f64>(), i)).collect();
            sims.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            let mut score = vec![0.0; classes as usize];
            for &(s, i) in &sims[..k] {
                score[tl[i] as usize] += (s / t).exp();
            }
            let mut order: Vec<usize> = (0..classes as usize).collect();
            order.sort_by(|x, y| score[*y].total_cmp(&score[*x]).then(x.cmp(y)));
            t1 += usize::from(order[0] == ql[qi] as usize);
            t5 += usize::from(order[..5.min(order.len())].contains(&(ql[qi] as usize)));
        }
        (t1 as f64 / b.len() as f64, t5 as f64 / b.len() as f64)
    }

    fn random(n: usize, d: usize, seed: u64) -> Embeddings {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let values = (0..n * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        Embeddings::new(n, d, values)
    }

    #[test]
    fn matches_naive_f64_for_several_k() {
        let device = Device::flex();
        let (train, test) = (random(300, 12, 1), random(70, 12, 2));
        let tl: Vec<u32> = (0..300).map(|i| (i * 7 % 8) as u32).collect();
        let ql: Vec<u32> = (0..70).map(|i| (i * 3 % 8) as u32).collect();
        let res = knn(&train, &tl, &test, &ql, &[1, 5, 20, 300], 0.1, &device);
        for r in &res {
            let (t1, t5) = naive(&train, &tl, &test, &ql, r.k, 0.1);
            assert!((r.top1 - t1).abs() < 1e-12 && (r.top5 - t5).abs() < 1e-12, "k={}: {r:?} vs {t1} {t5}", r.k);
        }
        // With every training image voting, top-5 over 8 classes is mostly right anyway.
        assert!(res[3].top5 > 0.4);
    }

    #[test]
    fn separated_clusters_are_classified_perfectly() {
        let device = Device::flex();
        let centre = |c: usize| -> Vec<f32> { (0..4).map(|j| if j == c { 1.0 } else { 0.0 }).collect() };
        let mk = |n: usize, jitter: f32| {
            let v: Vec<f32> = (0..n)
                .flat_map(|i| centre(i % 4).into_iter().map(move |x| x + jitter * ((i * 31 % 7) as f32 / 7.0)))
                .collect();
            Embeddings::new(n, 4, v)
        };
        let (train, test) = (mk(40, 0.2), mk(12, 0.3));
        let labels = |n: usize| (0..n).map(|i| (i % 4) as u32).collect::<Vec<_>>();
        let r = knn(&train, &labels(40), &test, &labels(12), &[10], 0.1, &device);
        assert_eq!(r[0].top1, 1.0);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        assert_eq!(top_k(&[0.5, 0.9, 0.5, 0.1], 3), vec![(1, 0.9), (0, 0.5), (2, 0.5)]);
        assert_eq!(top_k(&[0.2], 5), vec![(0, 0.2)]);
    }
}
