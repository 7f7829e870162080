//! ResNet-18, -34 and -50 (He et al. 2016) as torchvision builds them, with either the
//! ImageNet stem (7×7 stride-2 conv and a 3×3 stride-2 max-pool) or the CIFAR stem (one 3×3
//! stride-1 conv, no pooling), as SimCLR uses for 32 px images.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::convnet::{ConvBnRelu, global_avg_pool};

/// ResNet stems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 conv, no max-pool (32 px inputs).
    Cifar,
    /// 7×7 stride-2 conv and 3×3 stride-2 max-pool (224 px inputs).
    Imagenet,
}

fn conv(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// The 1×1 conv + BN that matches the shortcut's shape to the block's output.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl Downsample {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self { conv: conv(c_in, c_out, 1, stride, device), bn: BatchNormConfig::new(c_out).init(device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::cpu_kernels::batch_norm(&self.bn, crate::cpu_kernels::forward_conv(&self.conv, x), false)
    }
}

/// A residual block: basic (two 3×3 convs, ResNet-18/34) or bottleneck (1×1, 3×3, 1×1 with
/// 4× expansion, ResNet-50). The stride sits on the 3×3 conv, as in torchvision.
#[derive(Module, Debug)]
pub struct Block {
    /// All but the last conv: each followed by BN and ReLU.
    pub inner: Vec<ConvBnRelu>,
    pub last: Conv2d,
    pub last_bn: BatchNorm,
    pub downsample: Option<Downsample>,
    pub relu: Relu,
}

impl Block {
    fn basic(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample::new(c_in, c_out, stride, device));
        Self {
            inner: vec![ConvBnRelu::new(c_in, c_out, 3, stride, device)],
            last: conv(c_out, c_out, 3, 1, device),
            last_bn: BatchNormConfig::new(c_out).init(device),
            downsample,
            relu: Relu::new(),
        }
    }

    fn bottleneck(c_in: usize, width: usize, stride: usize, device: &Device) -> Self {
        let c_out = width * 4;
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample::new(c_in, c_out, stride, device));
        Self {
            inner: vec![ConvBnRelu::new(c_in, width, 1, 1, device), ConvBnRelu::new(width, width, 3, stride, device)],
            last: conv(width, c_out, 1, 1, device),
            last_bn: BatchNormConfig::new(c_out).init(device),
            downsample,
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.inner.iter().fold(x, |y, l| l.forward(y));
        let y = crate::cpu_kernels::batch_norm(&self.last_bn, crate::cpu_kernels::forward_conv(&self.last, y), false);
        self.relu.forward(y + identity)
    }
}

/// The stem before the residual stages.
#[derive(Module, Debug)]
pub struct ResNetStem {
    pub conv: ConvBnRelu,
    pub pool: Option<MaxPool2d>,
}

/// A ResNet backbone (no classifier): `[n, 3, h, w]` → `[n, 512]` (18/34) or `[n, 2048]` (50).
#[derive(Module, Debug)]
pub struct ResNet {
    pub stem: ResNetStem,
    pub blocks: Vec<Block>,
    pub out_dim: usize,
}

impl ResNet {
    /// `depth` is 18, 34 or 50.
    pub fn new(depth: usize, stem: Stem, device: &Device) -> Self {
        let (counts, bottleneck) = match depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            other => panic!("unsupported ResNet depth {other} (the configuration allows 18, 34, 50)"),
        };
        let stem = match stem {
            Stem::Cifar => ResNetStem { conv: ConvBnRelu::new(3, 64, 3, 1, device), pool: None },
            Stem::Imagenet => ResNetStem {
                conv: ConvBnRelu::new(3, 64, 7, 2, device),
                pool: Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            },
        };
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &count) in counts.iter().enumerate() {
            let width = 64 << stage;
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let block = if bottleneck {
                    Block::bottleneck(c_in, width, stride, device)
                } else {
                    Block::basic(c_in, width, stride, device)
                };
                c_in = if bottleneck { width * 4 } else { width };
                blocks.push(block);
            }
        }
        Self { stem, blocks, out_dim: c_in }
    }

    pub fn dim(&self) -> usize {
        self.out_dim
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.conv.forward(x);
        if let Some(pool) = &self.stem.pool {
            x = pool.forward(x);
        }
        let x = self.blocks.iter().fold(x, |x, b| b.forward(x));
        global_avg_pool(x)
    }
}
