//! `convnet`: 4 × (3×3 conv, BatchNorm, ReLU) with 32, 64, 128 and 256 channels, strides 1, 2,
//! 2, 2, then global average pooling to a 256-d feature. Small enough to train on a CPU.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// One conv → BN → ReLU stage.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub relu: Relu,
}

impl ConvBnRelu {
    pub fn new(channels_in: usize, channels_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let pad = kernel / 2;
        let conv = Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(device);
        Self { conv, bn: BatchNormConfig::new(channels_out).init(device), relu: Relu::new() }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // relu(bn(conv(x))), with the project's kernels on flex (see `crate::cpu_kernels`).
        crate::cpu_kernels::batch_norm(&self.bn, crate::cpu_kernels::forward_conv(&self.conv, x), true)
    }
}

/// Channel widths of the four stages.
pub const WIDTHS: [usize; 4] = [32, 64, 128, 256];
const STRIDES: [usize; 4] = [1, 2, 2, 2];

/// The 4-layer convnet.
#[derive(Module, Debug)]
pub struct ConvNet {
    pub layers: Vec<ConvBnRelu>,
}

impl ConvNet {
    pub fn new(device: &Device) -> Self {
        let mut c_in = 3;
        let layers = WIDTHS
            .iter()
            .zip(STRIDES)
            .map(|(&c_out, s)| {
                let l = ConvBnRelu::new(c_in, c_out, 3, s, device);
                c_in = c_out;
                l
            })
            .collect();
        Self { layers }
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        WIDTHS[3]
    }

    /// `[n, 3, h, w]` → `[n, 256]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.layers.iter().fold(x, |x, l| l.forward(x));
        global_avg_pool(x)
    }
}

/// Mean over the spatial dimensions: `[n, c, h, w]` → `[n, c]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([n, c])
}
