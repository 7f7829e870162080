//! LARS (You et al. 2017) as SimCLR's reference implementation applies it: for weights, weight
//! decay is added to the gradient and the step is scaled by the trust ratio
//! `η·‖p‖ / ‖g‖` (1 when either norm is zero); biases and normalization parameters (1-D) get
//! neither. Then `v ← μ·v + lr·ratio·g; p ← p − v`.

use burn::prelude::*;

use super::{OptimConfig, Update, buffer};

pub fn update(cfg: &OptimConfig, u: Update<'_>) -> Tensor<1> {
    let (g, scale) = if u.is_vector {
        (u.grad, None)
    } else {
        let g = u.grad + u.param.clone().mul_scalar(cfg.weight_decay);
        (g.clone(), Some(trust_ratio(&u.param, &g, cfg.trust_coefficient)))
    };
    let step = match scale {
        Some(ratio) => g * ratio.mul_scalar(u.lr),
        None => g.mul_scalar(u.lr),
    };
    let v = buffer(u.state, 0, &step).mul_scalar(cfg.momentum) + step;
    u.state[0] = v.clone();
    u.param - v
}

/// `η·‖p‖/‖g‖` where both norms are positive, else 1 (shape `[1]`, stays on the device).
pub fn trust_ratio(param: &Tensor<1>, grad: &Tensor<1>, eta: f64) -> Tensor<1> {
    let w_norm = param.clone().powi_scalar(2).sum().sqrt();
    let g_norm = grad.clone().powi_scalar(2).sum().sqrt();
    let both = w_norm.clone().greater_elem(0.0).bool_and(g_norm.clone().greater_elem(0.0));
    let ratio = (w_norm / g_norm).mul_scalar(eta);
    ratio.clone().mask_where(both.bool_not(), ratio.ones_like())
}
