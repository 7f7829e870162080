//! Optimizers and the learning-rate schedule.
//!
//! selfsup applies its own per-parameter update rules ([`sgd`], [`lars`], [`adamw`]) through a
//! module mapper, with each parameter's state keyed by its path in the model
//! (`backbone.ConvNet.layers.0.conv.weight`). Keying by path rather than by burn's random
//! parameter ids is what makes a checkpoint's optimizer state load back into a freshly built
//! model, so that a resumed run continues exactly.
//!
//! One-dimensional parameters — biases and BatchNorm scales and shifts — are excluded from
//! LARS's layer adaptation and weight decay, as SimCLR does.

pub mod adamw;
pub mod lars;
pub mod schedule;
pub mod sgd;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use schedule::{LrScaling, Schedule};

use crate::named_tensors::NamedTensor;

/// The update rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Sgd,
    Lars,
    Adamw,
}

/// The `[optim]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub kind: OptimKind,
    /// Peak learning rate for a batch of 256; scaled to the actual batch by `lr_scaling`.
    pub lr: f64,
    pub lr_scaling: LrScaling,
    /// Momentum (SGD, LARS).
    pub momentum: f64,
    pub weight_decay: f64,
    /// LARS trust coefficient η.
    pub trust_coefficient: f64,
    /// AdamW β₁, β₂.
    pub betas: [f64; 2],
    /// AdamW ε.
    pub eps: f64,
    /// Linear warm-up length in epochs (may be fractional), then cosine decay to `min_lr`.
    pub warmup_epochs: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimKind::Sgd,
            lr: 0.06,
            lr_scaling: LrScaling::Linear,
            momentum: 0.9,
            weight_decay: 5e-4,
            trust_coefficient: 0.001,
            betas: [0.9, 0.999],
            eps: 1e-8,
            warmup_epochs: 0.0,
            min_lr_ratio: 0.0,
        }
    }
}

/// The optimizer: a rule, its hyper-parameters, and per-parameter state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimConfig,
    /// Updates done so far (AdamW's bias correction uses it).
    steps: u64,
    /// State buffers per parameter path, flattened to 1-D.
    state: BTreeMap<String, Vec<Tensor<1>>>,
}

/// A parameter's update: flattened parameter and gradient in, new parameter out.
pub struct Update<'a> {
    pub param: Tensor<1>,
    pub grad: Tensor<1>,
    pub lr: f64,
    /// Whether the parameter is a bias or normalization weight (1-D).
    pub is_vector: bool,
    pub state: &'a mut Vec<Tensor<1>>,
}

impl Optimizer {
    pub fn new(cfg: OptimConfig) -> Self {
        Self { cfg, steps: 0, state: BTreeMap::new() }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update with learning rate `lr` to every parameter that has a gradient.
    pub fn step<M: Module>(&mut self, lr: f64, model: M, mut grads: GradientsParams) -> M {
        self.steps += 1;
        let mut mapper = StepMapper { opt: self, grads: &mut grads, path: Vec::new(), lr };
        model.map(&mut mapper)
    }

    fn update(&self, u: Update<'_>) -> Tensor<1> {
        match self.cfg.kind {
            OptimKind::Sgd => sgd::update(&self.cfg, u),
            OptimKind::Lars => lars::update(&self.cfg, u),
            OptimKind::Adamw => adamw::update(&self.cfg, self.steps, u),
        }
    }

    /// The state as named host tensors (`<path>/<buffer index>`), for checkpoints.
    pub fn export_state(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (path, bufs) in &self.state {
            for (i, t) in bufs.iter().enumerate() {
                let values = t.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 optimizer state");
                out.push(NamedTensor { name: format!("{path}/{i}"), shape: vec![values.len()], values });
            }
        }
        out
    }

    /// Restores state exported by [`export_state`](Self::export_state) onto `device`.
    pub fn import_state(&mut self, steps: u64, tensors: &[NamedTensor], device: &Device) -> anyhow::Result<()> {
        self.steps = steps;
        self.state.clear();
        for t in tensors {
            let bad = || anyhow::anyhow!("checkpoint: bad optimizer state name {:?}", t.name);
            let (path, idx) = t.name.rsplit_once('/').ok_or_else(bad)?;
            let idx: usize = idx.parse().map_err(|_| bad())?;
            let bufs = self.state.entry(path.to_string()).or_default();
            if bufs.len() != idx {
                anyhow::bail!("checkpoint: optimizer state for {path} is incomplete");
            }
            bufs.push(Tensor::<1>::from_data(TensorData::new(t.values.clone(), [t.values.len()]), device));
        }
        Ok(())
    }

    /// Checks imported state against the model's tensors: every buffer belongs to one of its
    /// parameters and has that parameter's number of values (a damaged or foreign checkpoint
    /// would otherwise fail inside the first update).
    pub fn check_fits(&self, model: &[NamedTensor]) -> anyhow::Result<()> {
        let sizes: std::collections::HashMap<&str, usize> =
            model.iter().map(|t| (t.name.as_str(), t.shape.iter().product())).collect();
        for (path, bufs) in &self.state {
            let Some(&n) = sizes.get(path.as_str()) else {
                anyhow::bail!("checkpoint: optimizer state for {path}, which the model does not have");
            };
            if let Some(b) = bufs.iter().find(|b| b.dims()[0] != n) {
                anyhow::bail!(
                    "checkpoint: optimizer state for {path} has {} values, the parameter has {n}",
                    b.dims()[0]
                );
            }
        }
        Ok(())
    }
}

struct StepMapper<'a> {
    opt: &'a mut Optimizer,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    lr: f64,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let numel = shape.num_elements();
        let require_grad = tensor.is_require_grad();
        let path = self.path.join(".");
        let mut state = self.opt.state.remove(&path).unwrap_or_default();
        let update = Update {
            param: tensor.inner().reshape([numel]),
            grad: grad.reshape([numel]),
            lr: self.lr,
            is_vector: D == 1,
            state: &mut state,
        };
        let new = self.opt.update(update).reshape(shape);
        self.opt.state.insert(path, state);
        let mut tensor = Tensor::from_inner(new);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// The first state buffer, created as zeros on first use.
pub(crate) fn buffer(state: &mut Vec<Tensor<1>>, i: usize, like: &Tensor<1>) -> Tensor<1> {
    while state.len() <= i {
        state.push(like.zeros_like());
    }
    state[i].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};

    fn vec_tensor(v: &[f64], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), [v.len()]), device)
    }

    fn values(t: Tensor<1>) -> Vec<f64> {
        t.into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
    }

    #[test]
    fn imported_state_must_fit_the_model() {
        let device = Device::flex();
        let model = [NamedTensor { name: "a.weight".into(), shape: vec![2, 3], values: vec![0.0; 6] }];
        let buf = |name: &str, n: usize| NamedTensor { name: name.into(), shape: vec![n], values: vec![0.5; n] };
        let mut o = Optimizer::new(OptimConfig::default());
        o.import_state(3, &[buf("a.weight/0", 6)], &device).unwrap();
        o.check_fits(&model).unwrap();
        o.import_state(3, &[buf("a.weight/0", 5)], &device).unwrap();
        let e = o.check_fits(&model).unwrap_err().to_string();
        assert!(e.contains("a.weight has 5 values, the parameter has 6"), "{e}");
        o.import_state(3, &[buf("b.weight/0", 6)], &device).unwrap();
        assert!(o.check_fits(&model).unwrap_err().to_string().contains("b.weight, which the model does not have"));
    }

    /// Runs `steps` updates of `kind` on a parameter with the gradients `g_k = a·p + b_k` (so
    /// they depend on the parameter, as real ones do) and returns the trajectory.
    fn run(cfg: &OptimConfig, is_vector: bool, lrs: &[f64]) -> Vec<Vec<f64>> {
        let device = Device::flex();
        let opt = Optimizer::new(cfg.clone());
        let mut p = vec![0.5, -1.0, 2.0, 0.0, 3.0];
        let mut state = Vec::new();
        let mut out = Vec::new();
        for (k, &lr) in lrs.iter().enumerate() {
            let g: Vec<f64> =
                p.iter().enumerate().map(|(i, x)| 0.3 * x + (i as f64 - 2.0) * 0.1 * (k + 1) as f64).collect();
            let steps = k as u64 + 1;
            let u = Update {
                param: vec_tensor(&p, &device),
                grad: vec_tensor(&g, &device),
                lr,
                is_vector,
                state: &mut state,
            };
            let new = match cfg.kind {
                OptimKind::Sgd => sgd::update(cfg, u),
                OptimKind::Lars => lars::update(cfg, u),
                OptimKind::Adamw => adamw::update(cfg, steps, u),
            };
            let _ = &opt;
            p = values(new);
            out.push(p.clone());
        }
        out
    }

    /// Independent f64 implementations of the same three rules.
    fn naive(cfg: &OptimConfig, is_vector: bool, lrs: &[f64]) -> Vec<Vec<f64>> {
        let mut p: Vec<f64> = vec![0.5, -1.0, 2.0, 0.0, 3.0];
        let (mut m1, mut m2) = (vec![0.0; 5], vec![0.0; 5]);
        let mut out = Vec::new();
        for (k, &lr) in lrs.iter().enumerate() {
            let g: Vec<f64> =
                p.iter().enumerate().map(|(i, x)| 0.3 * x + (i as f64 - 2.0) * 0.1 * (k + 1) as f64).collect();
            match cfg.kind {
                OptimKind::Sgd => {
                    for i in 0..5 {
                        let gi = g[i] + cfg.weight_decay * p[i];
                        m1[i] = cfg.momentum * m1[i] + gi;
                        p[i] -= lr * m1[i];
                    }
                }
                OptimKind::Lars => {
                    let gd: Vec<f64> =
                        (0..5).map(|i| if is_vector { g[i] } else { g[i] + cfg.weight_decay * p[i] }).collect();
                    let wn = p.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let gn = gd.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let ratio = if is_vector || wn == 0.0 || gn == 0.0 { 1.0 } else { cfg.trust_coefficient * wn / gn };
                    for i in 0..5 {
                        m1[i] = cfg.momentum * m1[i] + lr * ratio * gd[i];
                        p[i] -= m1[i];
                    }
                }
                OptimKind::Adamw => {
                    let t = (k + 1) as i32;
                    for i in 0..5 {
                        m1[i] = cfg.betas[0] * m1[i] + (1.0 - cfg.betas[0]) * g[i];
                        m2[i] = cfg.betas[1] * m2[i] + (1.0 - cfg.betas[1]) * g[i] * g[i];
                        let mh = m1[i] / (1.0 - cfg.betas[0].powi(t));
                        let vh = m2[i] / (1.0 - cfg.betas[1].powi(t));
                        p[i] = p[i] * (1.0 - lr * cfg.weight_decay) - lr * mh / (vh.sqrt() + cfg.eps);
                    }
                }
            }
            out.push(p.clone());
        }
        out
    }

    #[test]
    fn rules_match_naive_f64_over_several_steps() {
        let lrs = [0.1, 0.2, 0.15, 0.05, 0.3];
        for kind in [OptimKind::Sgd, OptimKind::Lars, OptimKind::Adamw] {
            for is_vector in [false, true] {
                let cfg =
                    OptimConfig { kind, lr: 0.1, weight_decay: 0.01, trust_coefficient: 0.5, ..OptimConfig::default() };
                let got = run(&cfg, is_vector, &lrs);
                let want = naive(&cfg, is_vector, &lrs);
                for (s, (a, b)) in got.iter().zip(&want).enumerate() {
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                            "{kind:?} vector={is_vector} step {s}: {a:?} vs {b:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn lars_trust_ratio_is_one_when_a_norm_is_zero() {
        let device = Device::flex();
        let zero = vec_tensor(&[0.0, 0.0], &device);
        let some = vec_tensor(&[3.0, 4.0], &device);
        let r = |p: &Tensor<1>, g: &Tensor<1>| values(lars::trust_ratio(p, g, 0.001))[0];
        assert_eq!(r(&zero, &some), 1.0);
        assert_eq!(r(&some, &zero), 1.0);
        assert!((r(&some, &vec_tensor(&[0.0, 10.0], &device)) - 0.001 * 5.0 / 10.0).abs() < 1e-9);
    }

    #[derive(Module, Debug)]
    struct Tiny {
        linear: Linear,
        bn: BatchNorm,
    }

    #[test]
    fn step_updates_parameters_by_path_and_leaves_running_stats() {
        let device = Device::flex().autodiff();
        let model = Tiny { linear: LinearConfig::new(3, 2).init(&device), bn: BatchNormConfig::new(2).init(&device) };
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.5, 0.3, 0.1, -1.0, 2.0, 1.0, 0.0], [3, 3]),
            &device,
        );
        let before = crate::named_tensors::collect(&model);
        let loss = model.bn.forward(model.linear.forward(x)).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut opt = Optimizer::new(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.0, ..OptimConfig::default() });
        let model = opt.step(0.1, model, grads);
        let after = crate::named_tensors::collect(&model);
        let changed: Vec<&str> =
            before.iter().zip(&after).filter(|(a, b)| a.values != b.values).map(|(a, _)| a.name.as_str()).collect();
        // The running statistics change in the forward pass, not by the optimizer; weights by the step.
        assert!(changed.contains(&"linear.weight") && changed.contains(&"bn.gamma"), "{changed:?}");
        let state: Vec<String> = opt.export_state().into_iter().map(|t| t.name).collect();
        assert!(
            state.contains(&"linear.weight/0".to_string()) && !state.iter().any(|n| n.contains("running")),
            "{state:?}"
        );
        assert!(model.linear.weight.val().is_require_grad());
    }
}
