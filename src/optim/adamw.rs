//! AdamW (Loshchilov & Hutter 2019), as PyTorch's `torch.optim.AdamW`: decoupled weight decay
//! `p ← p·(1 − lr·wd)`, then the bias-corrected Adam step `p ← p − lr·m̂/(√v̂ + ε)`.

use burn::prelude::*;

use super::{OptimConfig, Update, buffer};

pub fn update(cfg: &OptimConfig, t: u64, u: Update<'_>) -> Tensor<1> {
    let [b1, b2] = cfg.betas;
    let m = buffer(u.state, 0, &u.grad).mul_scalar(b1) + u.grad.clone().mul_scalar(1.0 - b1);
    let v = buffer(u.state, 1, &u.grad).mul_scalar(b2) + u.grad.powi_scalar(2).mul_scalar(1.0 - b2);
    u.state[0] = m.clone();
    u.state[1] = v.clone();
    let t = t.max(1) as i32;
    let m_hat = m.div_scalar(1.0 - b1.powi(t));
    let v_hat = v.div_scalar(1.0 - b2.powi(t));
    let decayed = u.param.mul_scalar(1.0 - u.lr * cfg.weight_decay);
    decayed - (m_hat / v_hat.sqrt().add_scalar(cfg.eps)).mul_scalar(u.lr)
}
