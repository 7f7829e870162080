//! The encoders selfsup trains: a backbone (what evaluation uses) and a projection head (what
//! the contrastive loss sees), built from the `[model]` configuration.
//!
//! - [`convnet`]: the small 4-layer CPU workhorse;
//! - [`resnet`]: ResNet-18/34/50 with a CIFAR or ImageNet stem;
//! - [`head`]: the SimCLR projection MLP;
//! - [`encoder`]: backbone + head, and the configuration that builds them.

pub mod convnet;
pub mod encoder;
pub mod head;
pub mod resnet;

pub use encoder::{Arch, Backbone, Encoder, ModelConfig, Stem};
