//! `selfsup export`: the trained encoder's weights as a standalone safetensors file.
//!
//! Tensor names are the module paths: `backbone.<Arch>.<layer path>.<param>` for the backbone
//! (e.g. `backbone.ConvNet.layers.0.conv.weight`, `backbone.ConvNet.layers.0.bn.running_mean`)
//! and, with `--with-head`, `head.hidden.<i>.{linear.weight, bn.*}` and `head.out.{weight,
//! bias}`. Convolution weights are `[out, in, kh, kw]`, linear weights `[in, out]` (burn's
//! layout; transpose for PyTorch's `nn.Linear`). The metadata records the architecture, stem,
//! feature dimension, input size, normalization mean/std and the evaluation crop, which is all
//! that is needed to embed new images the way selfsup does.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::Checkpoint;
use crate::eval::load::checkpoint_config;
use crate::train::run_dir::checkpoint_path;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Trained encoder: a run folder or a checkpoint file.
    #[arg(long)]
    pub model: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Include the projection head (by default only the backbone, which evaluation uses).
    #[arg(long)]
    pub with_head: bool,
}

pub fn run(args: ExportArgs, verbose: bool) -> Result<()> {
    let ck = Checkpoint::load(&checkpoint_path(&args.model)?)?;
    let cfg = checkpoint_config(&ck)?;
    let keep: Vec<_> = ck
        .model
        .iter()
        .filter(|t| t.name.starts_with("backbone.") || (args.with_head && t.name.starts_with("head.")))
        .collect();
    if keep.is_empty() {
        bail!("{}: the checkpoint has no backbone tensors", args.model.display());
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = keep
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let feature_dim = cfg.model.init(&burn::tensor::Device::flex()).backbone.dim();
    let a = &cfg.augment;
    let meta: HashMap<String, String> = [
        ("format", "selfsup-encoder-1".to_string()),
        ("arch", format!("{:?}", cfg.model.arch).to_lowercase()),
        ("stem", format!("{:?}", cfg.model.stem).to_lowercase()),
        ("feature_dim", feature_dim.to_string()),
        ("input_size", a.size.to_string()),
        ("normalize_mean", format!("{:?}", a.normalize.mean)),
        ("normalize_std", format!("{:?}", a.normalize.std)),
        ("eval_crop", a.eval_crop.to_string()),
        ("trained_steps", ck.position.global_step.to_string()),
        ("selfsup", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let data = safetensors::serialize(views, Some(meta))?;
    crate::atomic::write_bytes(&args.out, &data)?;
    if verbose {
        eprintln!(
            "wrote {} ({} tensors, {:?} backbone, {feature_dim}-d features)",
            args.out.display(),
            keep.len(),
            cfg.model.arch
        );
    }
    Ok(())
}
