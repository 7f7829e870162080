//! SGD with momentum and L2 weight decay, exactly as PyTorch's `torch.optim.SGD` with
//! `dampening = 0`, `nesterov = False`: `g ← g + wd·p; v ← μ·v + g; p ← p − lr·v`.

use burn::prelude::*;

use super::{OptimConfig, Update, buffer};

pub fn update(cfg: &OptimConfig, u: Update<'_>) -> Tensor<1> {
    let g = u.grad + u.param.clone().mul_scalar(cfg.weight_decay);
    let v = buffer(u.state, 0, &g).mul_scalar(cfg.momentum) + g;
    u.state[0] = v.clone();
    u.param - v.mul_scalar(u.lr)
}
