//! The online linear classifier (solo-learn's headline metric; lightly's
//! `OnlineLinearClassifier`): with a labelled training folder, a linear softmax classifier
//! learns, alongside the encoder, from the student's backbone features of every step's
//! full-size views, taken from the step's own forward pass and detached, so no gradient reaches
//! the encoder and the step's cost grows only by one small matrix product each way.
//!
//! It has its own optimizer and schedule: SGD with momentum 0.9 (PyTorch's form, `v ← μv + g`,
//! `w ← w − η v`), no weight decay, the rate `monitor.linear_lr` on a cosine to 0 over the
//! run's steps. Its gradient is the closed form of the mean cross-entropy,
//! `∂L/∂W = Hᵀ (softmax(HW + b) − Y) / N`, `∂L/∂b = Σᵣ (softmax − Y) / N`, with `N` the global
//! batch's rows; under several ranks it joins the model's gradients in the step's one
//! all-reduce, so every rank holds the same classifier. Its weights and momentum are in the
//! checkpoint (`online.*`), so a resumed run continues it exactly. Its top-1 on the monitor's
//! held-out images is logged at the end of every epoch ([`crate::eval::monitor`]).

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::config::Config;
use crate::data::Dataset;
use crate::model::Encoder;
use crate::named_tensors::NamedTensor;

/// The classifier's momentum (solo-learn's and lightly's SGD).
pub const MOMENTUM: f64 = 0.9;

/// The classifier and its optimizer state, on the training device without autodiff.
#[derive(Clone, Debug)]
pub struct OnlineLinear {
    /// `[dim, classes]`.
    pub weight: Tensor<2>,
    /// `[classes]`.
    pub bias: Tensor<1>,
    weight_velocity: Tensor<2>,
    bias_velocity: Tensor<1>,
    lr: f64,
}

/// One step's gradients, flattened: the weight's `[dim · classes]`, then the bias's `[classes]`
/// (the form the ranks' all-reduce takes).
pub type Gradients = [Tensor<1>; 2];

impl OnlineLinear {
    /// A classifier of `dim`-d features into `classes` classes, all zeros (the loss is convex:
    /// no random start is needed), learning at `lr`.
    pub fn new(dim: usize, classes: usize, lr: f64, device: &Device) -> Self {
        let device = device.clone().inner();
        Self {
            weight: Tensor::zeros([dim, classes], &device),
            bias: Tensor::zeros([classes], &device),
            weight_velocity: Tensor::zeros([dim, classes], &device),
            bias_velocity: Tensor::zeros([classes], &device),
            lr,
        }
    }

    /// The classifier a run of `cfg` on `ds` trains beside `model` on `device`, if any:
    /// `monitor.linear` on and at least two classes of labels.
    pub fn for_run(cfg: &Config, ds: &Dataset, model: &Encoder, device: &Device) -> Option<Self> {
        let classes = ds.classes().len();
        (cfg.monitor.linear && ds.is_labeled() && classes > 1)
            .then(|| Self::new(model.backbone.dim(), classes, cfg.monitor.linear_lr, device))
    }

    pub fn classes(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Class scores of `features` (`[m, dim]`): `[m, classes]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        let c = self.classes();
        features.inner().matmul(self.weight.clone()) + self.bias.clone().reshape([1, c])
    }

    /// The gradients of the cross-entropy of `features` (`[v · n, dim]`, view-major: row `r`
    /// is image `r mod n`) against `labels` (the `n` images' classes), as this rank's share of
    /// the mean over `total_rows` rows (all ranks').
    pub fn gradients(&self, features: Tensor<2>, labels: &[u32], total_rows: usize) -> Gradients {
        let features = features.inner();
        let [m, _] = features.dims();
        let (n, c) = (labels.len(), self.classes());
        let mut onehot = vec![0f32; m * c];
        for r in 0..m {
            onehot[r * c + labels[r % n] as usize] = 1.0;
        }
        let device = features.device();
        let y = Tensor::<2>::from_data(TensorData::new(onehot, [m, c]), &device);
        let g = (softmax(self.logits(features.clone()), 1) - y).div_scalar(total_rows as f32);
        let dw = features.transpose().matmul(g.clone());
        let db = g.sum_dim(0);
        [dw.reshape([self.weight.dims()[0] * c]), db.reshape([c])]
    }

    /// One SGD-with-momentum update by `grads` (summed over the ranks) at step `step` of
    /// `total_steps` (the cosine schedule's position).
    pub fn update(&mut self, grads: Gradients, step: u64, total_steps: u64) {
        let [dw, db] = grads;
        let lr = self.lr_at(step, total_steps) as f32;
        let dims = self.weight.dims();
        self.weight_velocity = self.weight_velocity.clone().mul_scalar(MOMENTUM as f32) + dw.reshape(dims);
        self.bias_velocity = self.bias_velocity.clone().mul_scalar(MOMENTUM as f32) + db;
        self.weight = self.weight.clone() - self.weight_velocity.clone().mul_scalar(lr);
        self.bias = self.bias.clone() - self.bias_velocity.clone().mul_scalar(lr);
    }

    /// The learning rate at `step` of `total_steps`: `lr · ½ (1 + cos(π step / total))`.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        let t = step as f64 / total_steps.max(1) as f64;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }

    /// Top-1 accuracy on `features` (`[m, dim]`, host rows) with `labels`.
    pub fn top1(&self, features: &[f32], labels: &[u32]) -> f64 {
        let m = labels.len();
        if m == 0 {
            return 0.0;
        }
        let dim = features.len() / m;
        let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [m, dim]), &self.weight.device());
        let scores: Vec<f32> = self.logits(x).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 logits");
        let c = self.classes();
        let right = scores
            .chunks_exact(c)
            .zip(labels)
            .filter(|&(row, &l)| {
                // The first of equal maxima, as argmax does.
                let best = row.iter().enumerate().fold(0, |b, (k, &v)| if v > row[b] { k } else { b });
                best == l as usize
            })
            .count();
        right as f64 / m as f64
    }

    /// The classifier and its momentum as named tensors (the checkpoint's `online.*`).
    pub fn export(&self) -> Vec<NamedTensor> {
        fn named<const D: usize>(name: &str, x: &Tensor<D>) -> NamedTensor {
            let values = x.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 classifier");
            NamedTensor { name: name.into(), shape: x.dims().to_vec(), values }
        }
        vec![
            named("linear.weight", &self.weight),
            named("linear.bias", &self.bias),
            named("linear.weight_momentum", &self.weight_velocity),
            named("linear.bias_momentum", &self.bias_velocity),
        ]
    }

    /// Restores what [`Self::export`] wrote into `self` (a fresh classifier of the run's shape).
    pub fn import(mut self, tensors: &[NamedTensor]) -> Result<Self> {
        let device = self.weight.device();
        let find = |name: &str, shape: &[usize]| -> Result<TensorData> {
            let Some(t) = tensors.iter().find(|t| t.name == name) else {
                bail!("the checkpoint has no online {name} (monitor.linear is on and the data has labels)")
            };
            if t.shape != shape {
                bail!(
                    "the checkpoint's online {name} is {:?}, this run's {shape:?} (another number of classes?)",
                    t.shape
                );
            }
            Ok(TensorData::new(t.values.clone(), t.shape.clone()))
        };
        let (wd, c) = (self.weight.dims(), self.classes());
        self.weight = Tensor::from_data(find("linear.weight", &wd)?, &device);
        self.weight_velocity = Tensor::from_data(find("linear.weight_momentum", &wd)?, &device);
        self.bias = Tensor::from_data(find("linear.bias", &[c])?, &device);
        self.bias_velocity = Tensor::from_data(find("linear.bias_momentum", &[c])?, &device);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
    }

    /// The mean cross-entropy of a linear softmax classifier, naively in f64.
    fn naive_loss(x: &[f64], labels: &[u32], w: &[f64], b: &[f64], dim: usize, c: usize) -> f64 {
        let m = x.len() / dim;
        let n = labels.len();
        (0..m)
            .map(|r| {
                let z: Vec<f64> =
                    (0..c).map(|k| b[k] + (0..dim).map(|j| x[r * dim + j] * w[j * c + k]).sum::<f64>()).collect();
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                lse - z[labels[r % n] as usize]
            })
            .sum::<f64>()
            / m as f64
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn gradients_match_finite_differences_of_a_naive_cross_entropy() {
        let device = Device::flex();
        let (dim, c, n, views) = (5, 4, 3, 2);
        let mut lin = OnlineLinear::new(dim, c, 0.1, &device);
        lin.weight = Tensor::from_data(TensorData::new(random(dim * c, 1), [dim, c]), &device);
        lin.bias = Tensor::from_data(TensorData::new(random(c, 2), [c]), &device);
        let x = random(views * n * dim, 3);
        let labels = [2u32, 0, 3];
        let features = Tensor::<2>::from_data(TensorData::new(x.clone(), [views * n, dim]), &device);
        let [dw, db] = lin.gradients(features, &labels, views * n);
        let (dw, db) = (host(dw), host(db));
        let x: Vec<f64> = x.into_iter().map(f64::from).collect();
        let (w, b) = (host(lin.weight.clone()), host(lin.bias.clone()));
        // Central differences of the naive loss in the weights (`which` = 0) or the bias (1).
        let eps = 1e-5;
        let fd = |which: usize, i: usize| {
            let at = |delta: f64| {
                let (mut w, mut b) = (w.clone(), b.clone());
                if which == 0 {
                    w[i] += delta
                } else {
                    b[i] += delta
                }
                naive_loss(&x, &labels, &w, &b, dim, c)
            };
            (at(eps) - at(-eps)) / (2.0 * eps)
        };
        for (which, grads) in [(0, &dw), (1, &db)] {
            for (i, &g) in grads.iter().enumerate() {
                let want = fd(which, i);
                assert!((g - want).abs() < 1e-5, "{}[{i}]: {g} vs {want}", ["dW", "db"][which]);
            }
        }
        // Two halves' shares (each over the whole batch's rows) sum to the whole batch's.
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let rows = |r: std::ops::Range<usize>| {
            let picked: Vec<f32> = r.clone().flat_map(|i| x32[i * dim..(i + 1) * dim].to_vec()).collect();
            Tensor::<2>::from_data(TensorData::new(picked, [r.len(), dim]), &device)
        };
        // Rank 0 holds image 0 and 1's views, rank 1 image 2's (view-major within each rank).
        let rank0 = Tensor::cat(vec![rows(0..2), rows(3..5)], 0);
        let rank1 = Tensor::cat(vec![rows(2..3), rows(5..6)], 0);
        let [a, _] = lin.gradients(rank0, &labels[..2], views * n);
        let [b1, _] = lin.gradients(rank1, &labels[2..], views * n);
        let summed: Vec<f64> = host(a).iter().zip(host(b1)).map(|(p, q)| p + q).collect();
        assert!(summed.iter().zip(&dw).all(|(p, q)| (p - q).abs() < 1e-6));
    }

    #[test]
    fn the_update_is_sgd_with_momentum_on_a_cosine_schedule() {
        let device = Device::flex();
        let mut lin = OnlineLinear::new(2, 2, 0.5, &device);
        assert_eq!(lin.lr_at(0, 10), 0.5);
        assert!((lin.lr_at(5, 10) - 0.25).abs() < 1e-12);
        assert!(lin.lr_at(10, 10).abs() < 1e-12);
        let g = |v: f32| {
            [
                Tensor::<1>::from_data(TensorData::new(vec![v; 4], [4]), &device),
                Tensor::<1>::from_data(TensorData::new(vec![v; 2], [2]), &device),
            ]
        };
        lin.update(g(1.0), 0, 10);
        lin.update(g(2.0), 5, 10);
        // v1 = 1, w1 = −0.5; v2 = 0.9 + 2 = 2.9, w2 = −0.5 − 0.25 · 2.9.
        let want = -0.5 - 0.25 * 2.9;
        assert!(host(lin.weight.clone()).iter().all(|&w| (w - want).abs() < 1e-6));
        assert!(host(lin.bias.clone()).iter().all(|&w| (w - want).abs() < 1e-6));
    }

    #[test]
    fn it_learns_separable_classes_and_round_trips_through_the_checkpoint_tensors() {
        let device = Device::flex();
        let (dim, c, n) = (8, 3, 60);
        let labels: Vec<u32> = (0..n as u32).map(|i| i % c as u32).collect();
        let noise = random(n * dim, 9);
        let x: Vec<f32> = (0..n * dim)
            .map(|i| noise[i] * 0.3 + if i % dim == labels[i / dim] as usize { 1.0 } else { 0.0 })
            .collect();
        let mut lin = OnlineLinear::new(dim, c, 1.0, &device);
        assert!((lin.top1(&x, &labels) - 1.0 / 3.0).abs() < 1e-9, "all zeros: every row picks class 0");
        for step in 0..100 {
            let f = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, dim]), &device);
            let g = lin.gradients(f, &labels, n);
            lin.update(g, step, 100);
        }
        assert_eq!(lin.top1(&x, &labels), 1.0);
        let back = OnlineLinear::new(dim, c, 1.0, &device).import(&lin.export()).unwrap();
        assert_eq!(host(back.weight.clone()), host(lin.weight.clone()));
        assert_eq!(host(back.bias_velocity.clone()), host(lin.bias_velocity.clone()));
        let e = OnlineLinear::new(dim, c + 1, 1.0, &device).import(&lin.export()).unwrap_err().to_string();
        assert!(e.contains("another number of classes"), "{e}");
    }
}
