//! `selfsup bench ops`: the training step's operations one at a time on flex, burn's own
//! against the project's kernels ([`crate::cpu_kernels`]), on the convnet's layer shapes and
//! ResNet-18's (CIFAR stem) 3×3 conv shapes, plus the optimizer update: so a slow step can be
//! traced to the operation behind it. Each figure is the median over rounds, in milliseconds.

use burn::backend::Dispatch;
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;

use super::{median, time_rounds};
use crate::config::Config;
use crate::cpu_kernels::extension::CpuKernels;
use crate::model::Arch;
use crate::optim::Optimizer;

/// One convolution (+ batch norm + ReLU) layer shape, and how often a step of its network
/// runs it.
#[derive(Clone, Copy, Debug)]
pub struct Layer {
    pub n: usize,
    pub c_in: usize,
    pub size: usize,
    pub c_out: usize,
    pub stride: usize,
    pub count: usize,
}

impl Layer {
    pub fn label(&self) -> String {
        format!("{}→{} @{} s{}", self.c_in, self.c_out, self.size, self.stride)
    }
}

/// The 3×3 layers of `arch` at `pairs` image pairs (`2 · pairs` images) of 32 px.
pub fn layers(arch: Arch, pairs: usize) -> Vec<Layer> {
    let n = 2 * pairs;
    let l = |c_in, size, c_out, stride, count| Layer { n, c_in, size, c_out, stride, count };
    match arch {
        Arch::Convnet => vec![l(3, 32, 32, 1, 1), l(32, 32, 64, 2, 1), l(64, 16, 128, 2, 1), l(128, 8, 256, 2, 1)],
        _ => vec![
            l(3, 32, 64, 1, 1),
            l(64, 32, 64, 1, 4),
            l(64, 32, 128, 2, 1),
            l(128, 16, 128, 1, 3),
            l(128, 16, 256, 2, 1),
            l(256, 8, 256, 1, 3),
            l(256, 8, 512, 2, 1),
            l(512, 4, 512, 1, 3),
        ],
    }
}

/// The operations timed per layer.
pub const OPS: [&str; 5] =
    ["conv forward", "conv input grad", "conv weight grad", "BN+ReLU forward", "BN+ReLU backward"];

/// One layer's timings: `[op][burn, selfsup]` in milliseconds.
pub struct LayerTiming {
    pub layer: Layer,
    pub ms: [[f64; 2]; 5],
}

type T = FloatTensor<Dispatch>;

fn random(shape: [usize; 4], std: f64, device: &Device) -> T {
    Tensor::<4>::random(shape, Distribution::Normal(0.0, std), device).into_dispatch()
}

fn random1(len: usize, device: &Device) -> T {
    Tensor::<1>::random([len], Distribution::Uniform(0.5, 1.5), device).into_dispatch()
}

/// Median milliseconds of `f` over `rounds` (after one untimed call).
fn ms<O>(rounds: usize, mut f: impl FnMut() -> O) -> f64 {
    drop(f());
    1e3 * median(&time_rounds(rounds, |_| drop(f())))
}

/// Times every op of every layer on flex, burn's and the kernels'.
pub fn run_layers(layers: &[Layer], rounds: usize) -> Vec<LayerTiming> {
    let device = Device::flex();
    let eps = 1e-5;
    layers
        .iter()
        .map(|&layer| {
            let Layer { n, c_in, size, c_out, stride, .. } = layer;
            let out = (size - 1) / stride + 1;
            let x = random([n, c_in, size, size], 1.0, &device);
            let w = random([c_out, c_in, 3, 3], 0.1, &device);
            let dy = random([n, c_out, out, out], 1.0, &device);
            let z = random([n, c_out, out, out], 1.0, &device);
            let (gamma, beta) = (random1(c_out, &device), random1(c_out, &device));
            let opts = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
            let conv = [
                ms(rounds, || Dispatch::conv2d(x.clone(), w.clone(), None, opts.clone())),
                ms(rounds, || Dispatch::fast_conv2d(x.clone(), w.clone(), stride, 1)),
            ];
            let dx = [
                ms(rounds, || Dispatch::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), opts.clone())),
                ms(rounds, || Dispatch::fast_conv2d_input_grad(w.clone(), dy.clone(), size, size, stride, 1)),
            ];
            let dw = [
                ms(rounds, || Dispatch::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts.clone())),
                ms(rounds, || Dispatch::fast_conv2d_weight_grad(x.clone(), dy.clone(), 3, 3, stride, 1)),
            ];
            let burn_fwd = || {
                let t = Dispatch::batch_norm_train(z.clone(), gamma.clone(), beta.clone(), eps);
                (Dispatch::relu(t.output), t.mean, t.variance)
            };
            let bn_fwd = [
                ms(rounds, burn_fwd),
                ms(rounds, || Dispatch::fast_batch_norm(z.clone(), gamma.clone(), beta.clone(), eps, true, false)),
            ];
            let (y, mean, var) = burn_fwd();
            let bn_bwd = [
                ms(rounds, || {
                    let g = Dispatch::relu_backward(y.clone(), dy.clone());
                    Dispatch::batch_norm_train_backward(z.clone(), gamma.clone(), mean.clone(), var.clone(), eps, g)
                        .x_grad
                }),
                ms(rounds, || {
                    Dispatch::fast_batch_norm_backward(
                        z.clone(),
                        y.clone(),
                        dy.clone(),
                        gamma.clone(),
                        mean.clone(),
                        var.clone(),
                        eps,
                        true,
                        false,
                    )
                }),
            ];
            LayerTiming { layer, ms: [conv, dx, dw, bn_fwd, bn_bwd] }
        })
        .collect()
}

/// Median milliseconds of one optimizer update of `arch` (gradients from a small batch: the
/// update's cost does not depend on the batch).
pub fn optimizer_update_ms(cfg: &Config, rounds: usize) -> f64 {
    let device = Device::flex().autodiff();
    let mut model = cfg.model.init(&device);
    let mut optim = Optimizer::new(cfg.optim.clone());
    let mut seconds = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let (_, z) = model.forward(x);
        let grads = GradientsParams::from_grads(z.sum().backward(), &model);
        let t = std::time::Instant::now();
        model = optim.step(0.01, model, grads);
        seconds.push(t.elapsed().as_secs_f64());
    }
    1e3 * median(&seconds[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_every_op_of_small_layers() {
        let small: Vec<Layer> = layers(Arch::Resnet18, 1).into_iter().filter(|l| l.size <= 8).collect();
        let t = run_layers(&small, 1);
        assert_eq!((small.len(), t.len()), (3, 3));
        assert!(t.iter().flat_map(|l| l.ms.iter().flatten()).all(|v| v.is_finite() && *v >= 0.0));
        let mut cfg = Config::default();
        cfg.model.arch = Arch::Convnet;
        assert!(optimizer_update_ms(&cfg, 1) > 0.0);
    }
}
