//! `selfsup export`: the trained encoder as a file other tools load.
//!
//! - `--format selfsup` (default): safetensors with selfsup's names — `backbone.<Arch>.<layer
//!   path>.<param>` (e.g. `backbone.ConvNet.layers.0.conv.weight`, `….bn.running_mean`) and,
//!   with `--with-head`, `head.hidden.<i>.{linear.weight, bn.*}` and `head.out.{weight, bias}`;
//!   convolution weights `[out, in, kh, kw]`, linear weights `[in, out]` (burn's layout).
//! - `--format torchvision`: a PyTorch `state_dict` (see [`crate::interop::torch_file`]):
//!   torchvision's ResNet names, or for the convnet the names of `convnet.py`, written beside.
//! - `--format onnx`: an ONNX model (see [`crate::interop::onnx`]).
//!
//! Every format records in its metadata the architecture, stem, feature dimension, input size,
//! normalization mean/std and evaluation crop: all that is needed to embed new images the way
//! selfsup does; and which network of the run it holds (`weights`: the student, or the EMA
//! teacher with `--weights teacher`; DINO's default is its teacher), and the method.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::eval::load::{checkpoint_config, network_tensors};
use crate::interop;
use crate::method::Weights;
use crate::model::Arch;
use crate::named_tensors::{self, NamedTensor};
use crate::safetensors_file::{Entry, serialize};
use crate::train::run_dir::checkpoint_path;

/// File formats of `selfsup export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// safetensors with selfsup's own tensor names and layouts.
    Selfsup,
    /// A PyTorch state_dict (safetensors) with torchvision's ResNet names (convnet: convnet.py's).
    Torchvision,
    /// An ONNX model (opset 17, dynamic batch).
    Onnx,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Trained encoder: a run folder or a checkpoint file.
    #[arg(long)]
    pub model: PathBuf,
    /// Output file (.safetensors, or .onnx).
    #[arg(long)]
    pub out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value = "selfsup")]
    pub format: Format,
    /// Include the projection head (by default only the backbone, which evaluation uses).
    #[arg(long)]
    pub with_head: bool,
    /// Which network: the trained `student`, or the EMA `teacher` (MoCo, MoCo v3, BYOL, DINO).
    /// Default: the teacher for DINO, the student otherwise.
    #[arg(long, value_enum)]
    pub weights: Option<Weights>,
}

/// What every format records about the encoder.
fn metadata(cfg: &Config, feature_dim: usize, steps: u64, format: &str, weights: Weights) -> Vec<(String, String)> {
    let a = &cfg.augment;
    [
        ("format", format.to_string()),
        ("method", cfg.method.kind.name()),
        ("weights", weights.name().to_string()),
        ("arch", format!("{:?}", cfg.model.arch).to_lowercase()),
        ("stem", format!("{:?}", cfg.model.stem).to_lowercase()),
        ("feature_dim", feature_dim.to_string()),
        ("input", format!("[batch, 3, {0}, {0}] RGB, (x / 255 - mean) / std per channel", a.size)),
        ("input_size", a.size.to_string()),
        ("normalize_mean", format!("{:?}", a.normalize.mean)),
        ("normalize_std", format!("{:?}", a.normalize.std)),
        ("eval_crop", a.eval_crop.to_string()),
        ("trained_steps", steps.to_string()),
        ("selfsup", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn write_selfsup(args: &ExportArgs, tensors: &[NamedTensor], meta: HashMap<String, String>) -> Result<usize> {
    let keep: Vec<_> = tensors
        .iter()
        .filter(|t| t.name.starts_with("backbone.") || (args.with_head && t.name.starts_with("head.")))
        .collect();
    if keep.is_empty() {
        bail!("{}: the checkpoint has no backbone tensors", args.model.display());
    }
    let entries: Vec<Entry> = keep.iter().map(|t| Entry::f32(t.name.clone(), t.shape.clone(), &t.values)).collect();
    crate::atomic::write_bytes(&args.out, &serialize(&entries, meta)?)?;
    Ok(keep.len())
}

pub fn run(args: ExportArgs, verbose: bool) -> Result<()> {
    let path = checkpoint_path(&args.model)?;
    let ck = Checkpoint::load(&path)?;
    let cfg = checkpoint_config(&ck)?;
    let arch = cfg.model.arch;
    let weights = args.weights.unwrap_or_else(|| cfg.method.kind.default_weights());
    let tensors = network_tensors(&ck, &cfg, weights)?;
    let mut model = cfg.encoder(&burn::tensor::Device::flex());
    if weights == Weights::Teacher {
        model.predictor = None;
    }
    let feature_dim = model.backbone.dim();
    let steps = ck.position.global_step;
    let format_name = match args.format {
        Format::Selfsup => "selfsup-encoder-1",
        Format::Torchvision => "pytorch-state-dict",
        Format::Onnx => "onnx",
    };
    let meta = metadata(&cfg, feature_dim, steps, format_name, weights);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let what = match args.format {
        Format::Selfsup => format!("{} tensors", write_selfsup(&args, &tensors, meta.into_iter().collect())?),
        Format::Torchvision => {
            if args.with_head {
                bail!(
                    "--format torchvision holds the backbone (a torchvision ResNet has no projection head); export the head with --format selfsup or onnx"
                );
            }
            let n = interop::torch_file::write(&args.out, arch, &tensors, steps, meta.into_iter().collect())?;
            let mut what = format!("{n} tensors with PyTorch names");
            if arch == Arch::Convnet {
                let py = args.out.with_file_name("convnet.py");
                crate::atomic::write_bytes(&py, interop::CONVNET_PY.as_bytes())?;
                what.push_str(&format!(", and {} (its nn.Module)", py.display()));
            }
            what
        }
        Format::Onnx => {
            // The checkpoint already read, into the model already built (on flex: inference form).
            let encoder =
                named_tensors::apply(model, &tensors).with_context(|| format!("loading {}", path.display()))?;
            let bytes = interop::onnx::encode(&encoder, cfg.augment.size as usize, args.with_head, &meta)?;
            crate::atomic::write_bytes(&args.out, &bytes)?;
            format!("an ONNX model, opset {}, {} bytes", interop::onnx::OPSET, bytes.len())
        }
    };
    if verbose {
        eprintln!(
            "wrote {} ({what}; the {} {arch:?} backbone, {feature_dim}-d features)",
            args.out.display(),
            weights.name()
        );
    }
    Ok(())
}
