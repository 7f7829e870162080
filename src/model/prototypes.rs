//! DINO's last layer (Caron et al. 2021): the head's output L2-normalized, then a linear layer
//! without bias whose weight is normalized per output ("prototype"), i.e. weight normalization
//! with its gain fixed at 1 (`norm_last_layer`, the default of DINO, lightly and solo-learn):
//! logits `x̂ · (w_k / ‖w_k‖)` for each of the `method.prototypes` prototypes `w_k`. Its gradient
//! flows through both normalizations. `method.freeze_last_layer_epochs` keeps it fixed for the
//! first epochs (the step drops its gradient).

use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;

use crate::loss::contrastive::l2_normalize;

/// The prototypes, `[in_dim, count]` (burn's linear layout: one prototype per column).
#[derive(Module, Debug)]
pub struct Prototypes {
    pub weight: Param<Tensor<2>>,
}

impl Prototypes {
    /// `count` prototypes of dimension `in_dim`, initialized as PyTorch's `nn.Linear` is
    /// (uniform in ±1/√in_dim), which DINO's weight-normalized layer starts from.
    pub fn new(in_dim: usize, count: usize, device: &Device) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = Initializer::Uniform { min: -bound, max: bound }.init_with(
            [in_dim, count],
            Some(in_dim),
            Some(count),
            device,
        );
        Self { weight }
    }

    pub fn count(&self) -> usize {
        self.weight.dims()[1]
    }

    /// `[n, in_dim]` → `[n, count]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let w = self.weight.val();
        let norm = w.clone().powi_scalar(2).sum_dim(0).sqrt().clamp_min(1e-12);
        l2_normalize(x).matmul(w / norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits against the formula on the host: the cosine of each input with each prototype.
    #[test]
    fn logits_are_cosines_with_the_prototypes() {
        let device = Device::flex();
        device.seed(3);
        let p = Prototypes::new(5, 7, &device);
        let x = Tensor::<2>::random([4, 5], burn::tensor::Distribution::Normal(0.0, 2.0), &device);
        let got: Vec<f32> = p.forward(x.clone()).into_data().try_to_vec().unwrap();
        let w: Vec<f32> = p.weight.val().into_data().try_to_vec().unwrap();
        let xs: Vec<f32> = x.into_data().try_to_vec().unwrap();
        for i in 0..4 {
            for k in 0..7 {
                let (mut dot, mut nx, mut nw) = (0f64, 0f64, 0f64);
                for j in 0..5 {
                    let (a, b) = (f64::from(xs[i * 5 + j]), f64::from(w[j * 7 + k]));
                    dot += a * b;
                    nx += a * a;
                    nw += b * b;
                }
                let want = dot / (nx.sqrt() * nw.sqrt());
                assert!((f64::from(got[i * 7 + k]) - want).abs() < 1e-5, "[{i}][{k}]");
            }
        }
    }
}
