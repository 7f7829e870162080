//! PyTorch `state_dict` files in safetensors: what `selfsup export --format torchvision` writes
//! (a torchvision ResNet's names, shapes and dtypes exactly, `num_batches_tracked` as int64, so
//! `load_state_dict(load_file(path), strict=True)` works), and the backbone weights that
//! `selfsup pretrain --init` reads from such a file, a selfsup checkpoint or a selfsup export.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::torch_names::{from_torch_table, to_torch, torch_batch_norms};
use crate::model::Arch;
use crate::named_tensors::NamedTensor;
use crate::safetensors_file::{Entry, serialize};

/// Writes the backbone tensors among `tensors` (selfsup names) to `path` under their PyTorch
/// names, with a `num_batches_tracked` of `steps` for every batch norm; returns the number of
/// tensors written.
pub fn write(
    path: &Path,
    arch: Arch,
    tensors: &[NamedTensor],
    steps: u64,
    meta: HashMap<String, String>,
) -> Result<usize> {
    let mut out: Vec<Entry> = Vec::new();
    for t in tensors.iter().filter(|t| t.name.starts_with("backbone.")) {
        let name = to_torch(arch, &t.name)
            .with_context(|| format!("{} has no PyTorch name for model.arch = {arch:?}", t.name))?;
        out.push(Entry::f32(name, t.shape.clone(), &t.values));
    }
    let norms = torch_batch_norms(out.iter().map(|e| e.name.as_str()));
    for bn in norms {
        out.push(Entry::i64_scalar(format!("{bn}.num_batches_tracked"), steps as i64));
    }
    crate::atomic::write_bytes(path, &serialize(&out, meta)?)?;
    Ok(out.len())
}

/// Backbone weights read from an `--init` file, in selfsup names (`backbone.…`).
#[derive(Debug)]
pub struct InitWeights {
    pub tensors: Vec<NamedTensor>,
    /// What the file was, for messages ("a torchvision-format state_dict", …).
    pub kind: &'static str,
    /// Tensors of the file left aside (a classifier, `num_batches_tracked`, a projection head).
    pub ignored: Vec<String>,
}

fn floats(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<f32>> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
        other => bail!(
            "{}: tensor {name} is {other:?}; --init reads float32 (or float64) weights: convert with `model.float()` before saving",
            path.display()
        ),
    })
}

/// Reads the backbone weights for a model whose backbone tensors are `expected` (selfsup names
/// and shapes, in module order) from `path`: a torchvision/timm or `convnet.py` state_dict saved
/// with safetensors, a selfsup checkpoint, or a selfsup export. Every expected tensor must be
/// there with its shape: the first that is not is named (in the file's own naming).
pub fn read_backbone(path: &Path, arch: Arch, expected: &[NamedTensor]) -> Result<InitWeights> {
    let data = std::fs::read(path).with_context(|| format!("reading --init {}", path.display()))?;
    let bad = |why: String| anyhow::anyhow!("--init {}: {why}", path.display());
    let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let format = header.metadata().as_ref().and_then(|m| m.get("format").cloned()).unwrap_or_default();
    let st = SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    // The file's name of each expected tensor.
    let (kind, file_name): (&'static str, HashMap<String, String>) =
        if format == crate::checkpoint::FORMAT || format == "selfsup-encoder-1" {
            let kind = if format == crate::checkpoint::FORMAT { "a selfsup checkpoint" } else { "a selfsup export" };
            let prefix = if format == crate::checkpoint::FORMAT { "model." } else { "" };
            (kind, expected.iter().map(|t| (t.name.clone(), format!("{prefix}{}", t.name))).collect())
        } else {
            let table = from_torch_table(arch, expected.iter().map(|t| t.name.as_str()));
            ("a PyTorch state_dict", table.into_iter().map(|(torch, ours)| (ours, torch)).collect())
        };
    let mut tensors = Vec::with_capacity(expected.len());
    for want in expected {
        let theirs = &file_name[&want.name];
        let view = st.tensor(theirs).map_err(|_| {
            let hint = if names.iter().any(|n| n.starts_with("module.")) {
                " (its names start with `module.`: save `model.module.state_dict()` of a DataParallel model)"
            } else {
                ""
            };
            bad(format!("{kind} without {theirs}, which a model.arch = {arch:?} backbone needs{hint}"))
        })?;
        if view.shape() != want.shape.as_slice() {
            let stem = if theirs == "conv1.weight" || theirs.ends_with("stem.conv.conv.weight") {
                " (a 7×7 first convolution is the ImageNet stem: set model.stem = \"imagenet\"; 3×3 is the CIFAR stem)"
            } else {
                ""
            };
            bail!(
                "--init {}: {theirs} has shape {:?}, the model (model.arch = {arch:?}) expects {:?}{stem}",
                path.display(),
                view.shape(),
                want.shape
            );
        }
        tensors.push(NamedTensor {
            name: want.name.clone(),
            shape: want.shape.clone(),
            values: floats(&view, theirs, path)?,
        });
    }
    let used: HashSet<&String> = file_name.values().collect();
    let ignored: Vec<String> = names.iter().filter(|n| !used.contains(n)).cloned().collect();
    let foreign: Vec<&String> = ignored
        .iter()
        .filter(|n| {
            !(n.ends_with("num_batches_tracked")
                || n.starts_with("fc.")
                || n.starts_with("head.")
                || n.starts_with("model.head.")
                || n.starts_with("optim.")
                || n.starts_with("method.")
                || n.starts_with("online."))
        })
        .take(3)
        .collect();
    if !foreign.is_empty() {
        bail!(
            "--init {}: {kind} with tensors a model.arch = {arch:?} backbone does not have, such as {foreign:?} (another architecture?)",
            path.display()
        );
    }
    Ok(InitWeights { tensors, kind, ignored })
}

/// `model` with its backbone's weights from `path` (see [`read_backbone`]); its projection
/// head (and a method's predictor or prototypes) is left as it is (freshly initialized when
/// pretraining starts).
pub fn init_backbone(
    model: crate::model::Encoder,
    path: &Path,
    arch: Arch,
) -> Result<(crate::model::Encoder, InitWeights)> {
    let expected: Vec<NamedTensor> =
        crate::named_tensors::collect(&model).into_iter().filter(|t| t.name.starts_with("backbone.")).collect();
    let weights = read_backbone(path, arch, &expected)?;
    let crate::model::Encoder { backbone, head, predictor, prototypes } = model;
    let own: Vec<NamedTensor> = weights
        .tensors
        .iter()
        .map(|t| NamedTensor { name: t.name["backbone.".len()..].to_string(), ..t.clone() })
        .collect();
    let backbone = crate::named_tensors::apply(backbone, &own).with_context(|| format!("--init {}", path.display()))?;
    Ok((crate::model::Encoder { backbone, head, predictor, prototypes }, weights))
}
