//! The encoder outside selfsup, and weights from outside into it:
//!
//! - [`torch_names`] — tensor names between selfsup and PyTorch (torchvision/timm ResNets, and
//!   `convnet.py` for the convnet);
//! - [`torch_file`] — PyTorch `state_dict` safetensors files: written by `export --format
//!   torchvision`, read by `pretrain --init` (with selfsup checkpoints and exports);
//! - [`onnx`] (over the messages of [`onnx_proto`]) — `export --format onnx`.

pub mod onnx;
pub mod onnx_proto;
pub mod torch_file;
pub mod torch_names;

/// The PyTorch module of selfsup's convnet, written beside a convnet's torchvision-format export.
pub const CONVNET_PY: &str = include_str!("convnet.py");
