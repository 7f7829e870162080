//! The linear probe: a multinomial logistic regression on frozen features.
//!
//! Features are standardized with the training set's per-dimension mean and std (an affine map,
//! so the classifier stays linear in the original features), then the L2-regularized
//! cross-entropy `mean CE + ½·wd·‖W‖²` is minimized with full-batch L-BFGS. The weight decay
//! is picked from a grid by top-1 accuracy on a stratified validation split of the training
//! features; the probe is then retrained on all training features with it.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;
use selfsup_datasets::split::stratified_split;
use serde::{Deserialize, Serialize};

use super::collapse::Embeddings;
use super::lbfgs::{Stop, minimize};

/// How the probe is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    pub wd_grid: Vec<f64>,
    pub val_fraction: f64,
    pub max_iter: usize,
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { wd_grid: vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2], val_fraction: 0.1, max_iter: 300, seed: 0 }
    }
}

/// What the probe reports on the test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub weight_decay: f64,
    /// Validation top-1 for each weight decay tried.
    pub validation: Vec<(f64, f64)>,
    pub top1: f64,
    pub top5: f64,
    /// Accuracy of each class (by true label).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    pub iterations: usize,
    pub converged: bool,
}

/// Standardized features (f32, row-major).
pub(crate) struct Standardized {
    x: Vec<f32>,
    n: usize,
    d: usize,
}

fn stats(e: &Embeddings, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let d = e.d;
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for &i in rows {
        mean.iter_mut().zip(e.row(i)).for_each(|(m, &v)| *m += f64::from(v));
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for &i in rows {
        var.iter_mut().zip(e.row(i)).zip(&mean).for_each(|((s, &v), m)| *s += (f64::from(v) - m).powi(2));
    }
    let std = var.into_iter().map(|s| (s / n).sqrt().max(1e-6)).collect();
    (mean, std)
}

fn standardize(e: &Embeddings, rows: &[usize], mean: &[f64], std: &[f64]) -> Standardized {
    let x = rows
        .iter()
        .flat_map(|&i| e.row(i).iter().zip(mean).zip(std).map(|((&v, m), s)| ((f64::from(v) - m) / s) as f32))
        .collect();
    Standardized { x, n: rows.len(), d: e.d }
}

/// Logits of one row: `W x + b` for parameters laid out as `[W (c × d), b (c)]`.
fn logits(p: &[f64], x: &[f32], c: usize, d: usize, out: &mut [f64]) {
    for (k, o) in out.iter_mut().enumerate().take(c) {
        let w = &p[k * d..(k + 1) * d];
        *o = w.iter().zip(x).map(|(a, &b)| a * f64::from(b)).sum::<f64>() + p[c * d + k];
    }
}

/// The training problem on the device: features `[n, d]` and one-hot labels `[n, c]`. The
/// objective's two matrix products run in f32 on burn's gemm; L-BFGS keeps f64 parameters.
pub(crate) struct Problem {
    x: Tensor<2>,
    onehot: Tensor<2>,
    n: usize,
    d: usize,
    c: usize,
}

impl Problem {
    pub(crate) fn new(s: &Standardized, y: &[u32], c: usize, device: &Device) -> Self {
        let x = Tensor::<2>::from_data(TensorData::new(s.x.clone(), [s.n, s.d]), device);
        let hot: Vec<f32> = y.iter().flat_map(|&l| (0..c).map(move |k| f32::from(u8::from(k == l as usize)))).collect();
        let onehot = Tensor::<2>::from_data(TensorData::new(hot, [s.n, c]), device);
        Self { x, onehot, n: s.n, d: s.d, c }
    }

    /// Regularized mean cross-entropy `mean CE + ½·wd·‖W‖²` and its gradient.
    pub(crate) fn objective(&self, p: &[f64], wd: f64) -> (f64, Vec<f64>) {
        let (n, d, c) = (self.n, self.d, self.c);
        let device = self.x.device();
        let w = Tensor::<2>::from_data(
            TensorData::new(p[..c * d].iter().map(|&v| v as f32).collect::<Vec<f32>>(), [c, d]),
            &device,
        );
        let b = Tensor::<2>::from_data(
            TensorData::new(p[c * d..].iter().map(|&v| v as f32).collect::<Vec<f32>>(), [1, c]),
            &device,
        );
        let z = self.x.clone().matmul(w.transpose()) + b;
        let logp = log_softmax(z, 1);
        let ce = (logp.clone() * self.onehot.clone()).sum().neg().div_scalar(n as f64);
        let g = (logp.exp() - self.onehot.clone()).div_scalar(n as f64);
        let gw = g.clone().transpose().matmul(self.x.clone());
        let gb = g.sum_dim(0);
        let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        let mut grad: Vec<f64> = host(gw).into_iter().chain(host(gb)).map(f64::from).collect();
        let mut loss = f64::from(ce.into_scalar::<f32>());
        for (gi, &wv) in grad[..c * d].iter_mut().zip(&p[..c * d]) {
            *gi += wd * wv;
            loss += 0.5 * wd * wv * wv;
        }
        (loss, grad)
    }
}

fn fit(s: &Standardized, y: &[u32], c: usize, wd: f64, max_iter: usize) -> (Vec<f64>, usize, bool) {
    let problem = Problem::new(s, y, c, &Device::flex());
    let m = minimize(|p| problem.objective(p, wd), vec![0.0; c * s.d + c], 10, max_iter, 1e-5);
    // A line search that finds no decrease has reached the objective's f32 precision: as good
    // as converged for a classifier.
    (m.x, m.iterations, m.stop != Stop::MaxIterations)
}

/// Predicted class scores, ranked, for each row.
fn ranked(p: &[f64], s: &Standardized, c: usize) -> Vec<Vec<usize>> {
    s.x.par_chunks(s.d)
        .map(|row| {
            let mut z = vec![0.0; c];
            logits(p, row, c, s.d, &mut z);
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|a, b| z[*b].total_cmp(&z[*a]).then(a.cmp(b)));
            order
        })
        .collect()
}

fn top1(p: &[f64], s: &Standardized, y: &[u32], c: usize) -> f64 {
    let r = ranked(p, s, c);
    r.iter().zip(y).filter(|(o, l)| o[0] == **l as usize).count() as f64 / y.len().max(1) as f64
}

/// Trains the probe on `train` (with `train_labels`) and evaluates it on `test`.
pub fn probe(
    train: &Embeddings,
    train_labels: &[u32],
    test: &Embeddings,
    test_labels: &[u32],
    cfg: &ProbeConfig,
) -> ProbeResult {
    let c = train_labels.iter().chain(test_labels).max().map_or(1, |&m| m as usize + 1);
    let labels: Vec<Option<u32>> = train_labels.iter().map(|&l| Some(l)).collect();
    let (tr, va) = stratified_split(&labels, cfg.val_fraction, cfg.seed);
    let mut validation = Vec::new();
    if cfg.wd_grid.len() > 1 && !va.is_empty() {
        let (mean, std) = stats(train, &tr);
        let (s_tr, s_va) = (standardize(train, &tr, &mean, &std), standardize(train, &va, &mean, &std));
        let (y_tr, y_va): (Vec<u32>, Vec<u32>) =
            (tr.iter().map(|&i| train_labels[i]).collect(), va.iter().map(|&i| train_labels[i]).collect());
        for &wd in &cfg.wd_grid {
            let (p, _, _) = fit(&s_tr, &y_tr, c, wd, cfg.max_iter);
            validation.push((wd, top1(&p, &s_va, &y_va, c)));
        }
    }
    // Best validation accuracy; ties go to the stronger regularization.
    let wd = validation
        .iter()
        .fold(None, |best: Option<(f64, f64)>, &(w, a)| match best {
            Some((bw, ba)) if ba > a || (ba == a && bw > w) => Some((bw, ba)),
            _ => Some((w, a)),
        })
        .map_or(cfg.wd_grid.first().copied().unwrap_or(1e-4), |(w, _)| w);
    let all: Vec<usize> = (0..train.n).collect();
    let (mean, std) = stats(train, &all);
    let s_train = standardize(train, &all, &mean, &std);
    let (p, iterations, converged) = fit(&s_train, train_labels, c, wd, cfg.max_iter);
    let test_rows: Vec<usize> = (0..test.n).collect();
    let s_test = standardize(test, &test_rows, &mean, &std);
    let r = ranked(&p, &s_test, c);
    let mut confusion = vec![vec![0u64; c]; c];
    let (mut t1, mut t5) = (0usize, 0usize);
    for (order, &l) in r.iter().zip(test_labels) {
        confusion[l as usize][order[0]] += 1;
        t1 += usize::from(order[0] == l as usize);
        t5 += usize::from(order.iter().take(5).any(|&k| k == l as usize));
    }
    let per_class =
        confusion.iter().enumerate().map(|(k, row)| row[k] as f64 / row.iter().sum::<u64>().max(1) as f64).collect();
    let n = test.n.max(1) as f64;
    ProbeResult {
        weight_decay: wd,
        validation,
        top1: t1 as f64 / n,
        top5: t5 as f64 / n,
        per_class,
        confusion,
        iterations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive f64 objective for a gradient check.
    fn naive(p: &[f64], x: &[Vec<f64>], y: &[u32], c: usize, wd: f64) -> f64 {
        let d = x[0].len();
        let mut l = 0.0;
        for (row, &label) in x.iter().zip(y) {
            let z: Vec<f64> =
                (0..c).map(|k| (0..d).map(|j| p[k * d + j] * row[j]).sum::<f64>() + p[c * d + k]).collect();
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            l += lse - z[label as usize];
        }
        l / x.len() as f64 + 0.5 * wd * p[..c * d].iter().map(|w| w * w).sum::<f64>()
    }

    #[test]
    fn objective_matches_naive_and_its_gradient_finite_differences() {
        let (n, d, c) = (9, 3, 4);
        let x: Vec<Vec<f64>> =
            (0..n).map(|i| (0..d).map(|j| ((i * 7 + j * 3) % 5) as f64 / 5.0 - 0.4).collect()).collect();
        let xf: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
        let xd: Vec<Vec<f64>> = xf.chunks(d).map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let p: Vec<f64> = (0..c * d + c).map(|k| (k as f64 * 0.37).sin()).collect();
        let wd = 0.05;
        let problem = Problem::new(&Standardized { x: xf.clone(), n, d }, &y, c, &Device::flex());
        let (l, g) = problem.objective(&p, wd);
        // The objective runs in f32: agreement to f32 precision.
        assert!((l - naive(&p, &xd, &y, c, wd)).abs() < 1e-5 * l.abs().max(1.0), "{l}");
        for k in 0..p.len() {
            let h = 1e-6;
            let mut a = p.clone();
            a[k] += h;
            let mut b = p.clone();
            b[k] -= h;
            let fd = (naive(&a, &xd, &y, c, wd) - naive(&b, &xd, &y, c, wd)) / (2.0 * h);
            assert!((g[k] - fd).abs() < 1e-5, "dL/dp[{k}]: {} vs {fd}", g[k]);
        }
    }

    #[test]
    fn separable_classes_are_learned_and_reported_per_class() {
        // Three well-separated clusters in 5-D, with a few noise dimensions.
        let mk = |n: usize, seed: usize| {
            let mut v = Vec::new();
            for i in 0..n {
                let c = i % 3;
                for j in 0..5 {
                    let centre = if j == c { 3.0 } else { 0.0 };
                    v.push(centre + (((i + seed) * 37 + j * 11) % 17) as f32 / 17.0 - 0.5);
                }
            }
            Embeddings::new(n, 5, v)
        };
        let labels = |n: usize| (0..n).map(|i| (i % 3) as u32).collect::<Vec<_>>();
        let r = probe(&mk(120, 0), &labels(120), &mk(30, 5), &labels(30), &ProbeConfig::default());
        assert_eq!(r.top1, 1.0);
        assert_eq!(r.per_class, vec![1.0; 3]);
        assert_eq!(r.confusion, vec![vec![10, 0, 0], vec![0, 10, 0], vec![0, 0, 10]]);
        assert_eq!(r.validation.len(), 5);
    }

    #[test]
    fn optimum_has_zero_gradient() {
        // At the L-BFGS solution the independent gradient (finite differences of the naive
        // objective) vanishes.
        let (n, d, c) = (40, 2, 3);
        let x: Vec<Vec<f64>> =
            (0..n).map(|i| vec![((i * 13) % 11) as f64 / 11.0 - 0.5, ((i * 5) % 7) as f64 / 7.0 - 0.5]).collect();
        let xf: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
        let xd: Vec<Vec<f64>> = xf.chunks(d).map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
        let y: Vec<u32> = (0..n).map(|i| ((i * 7) % c) as u32).collect();
        let s = Standardized { x: xf, n, d };
        let (p, _, converged) = fit(&s, &y, c, 0.1, 500);
        assert!(converged);
        for k in 0..p.len() {
            let h = 1e-5;
            let mut a = p.clone();
            a[k] += h;
            let mut b = p.clone();
            b[k] -= h;
            let fd = (naive(&a, &xd, &y, c, 0.1) - naive(&b, &xd, &y, c, 0.1)) / (2.0 * h);
            assert!(fd.abs() < 1e-4, "gradient {k} = {fd}");
        }
    }
}
