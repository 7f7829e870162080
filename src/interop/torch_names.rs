//! Tensor names between selfsup and PyTorch: torchvision's (and timm's) ResNet `state_dict()`
//! names for the ResNets, and those of `convnet.py` (shipped beside a convnet export) for the
//! convnet. selfsup names a tensor by its module path (`backbone.ResNet.blocks.2.inner.0.conv.weight`);
//! torchvision by its own (`layer2.0.conv1.weight`). Batch-norm parameters are `gamma`/`beta`
//! here and `weight`/`bias` there; PyTorch also keeps `num_batches_tracked`, which has no
//! counterpart here. Convolution weights have the same layout (`[out, in, kh, kw]`) on both sides.

use std::collections::HashMap;

use crate::model::Arch;

/// Residual blocks per stage, and whether they are bottlenecks (3 convolutions) or basic (2).
fn stages(arch: Arch) -> Option<([usize; 4], bool)> {
    match arch {
        Arch::Convnet => None,
        Arch::Resnet18 => Some(([2, 2, 2, 2], false)),
        Arch::Resnet34 => Some(([3, 4, 6, 3], false)),
        Arch::Resnet50 => Some(([3, 4, 6, 3], true)),
    }
}

/// A batch-norm tensor's PyTorch name.
fn bn_param(p: &str) -> Option<&'static str> {
    Some(match p {
        "gamma" => "weight",
        "beta" => "bias",
        "running_mean" => "running_mean",
        "running_var" => "running_var",
        _ => return None,
    })
}

/// The PyTorch name of the selfsup backbone tensor `name` (with its `backbone.` prefix), or
/// `None` when it has none (a head tensor, or a name this architecture does not have).
pub fn to_torch(arch: Arch, name: &str) -> Option<String> {
    let rest = name.strip_prefix("backbone.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    match (stages(arch), parts.as_slice()) {
        (None, ["ConvNet", "layers", i, "conv", "weight"]) => Some(format!("layers.{i}.conv.weight")),
        (None, ["ConvNet", "layers", i, "bn", p]) => Some(format!("layers.{i}.bn.{}", bn_param(p)?)),
        (Some(_), ["ResNet", "stem", "conv", "conv", "weight"]) => Some("conv1.weight".into()),
        (Some(_), ["ResNet", "stem", "conv", "bn", p]) => Some(format!("bn1.{}", bn_param(p)?)),
        (Some((counts, bottleneck)), ["ResNet", "blocks", i, tail @ ..]) => {
            let mut i: usize = i.parse().ok()?;
            let stage = counts.iter().position(|&c| {
                let here = i < c;
                if !here {
                    i -= c;
                }
                here
            })?;
            let block = format!("layer{}.{i}", stage + 1);
            let last = if bottleneck { 3 } else { 2 };
            let t = match tail {
                ["inner", k, "conv", "weight"] => format!("conv{}.weight", k.parse::<usize>().ok()? + 1),
                ["inner", k, "bn", p] => format!("bn{}.{}", k.parse::<usize>().ok()? + 1, bn_param(p)?),
                ["last", "weight"] => format!("conv{last}.weight"),
                ["last_bn", p] => format!("bn{last}.{}", bn_param(p)?),
                ["downsample", "conv", "weight"] => "downsample.0.weight".into(),
                ["downsample", "bn", p] => format!("downsample.1.{}", bn_param(p)?),
                _ => return None,
            };
            Some(format!("{block}.{t}"))
        }
        _ => None,
    }
}

/// PyTorch name → selfsup name for the backbone tensors `names` (selfsup names) of `arch`.
pub fn from_torch_table<'a>(arch: Arch, names: impl IntoIterator<Item = &'a str>) -> HashMap<String, String> {
    names.into_iter().filter_map(|n| Some((to_torch(arch, n)?, n.to_string()))).collect()
}

/// Batch-norm layers in PyTorch naming (`bn1`, `layer1.0.downsample.1`, …): the prefixes of
/// their `running_mean` tensors, for the `num_batches_tracked` counters PyTorch keeps.
pub fn torch_batch_norms<'a>(torch_names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    torch_names.into_iter().filter_map(|n| n.strip_suffix(".running_mean").map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet_names_follow_torchvision() {
        let r18 = |n: &str| to_torch(Arch::Resnet18, n);
        assert_eq!(r18("backbone.ResNet.stem.conv.conv.weight").as_deref(), Some("conv1.weight"));
        assert_eq!(r18("backbone.ResNet.stem.conv.bn.gamma").as_deref(), Some("bn1.weight"));
        assert_eq!(r18("backbone.ResNet.blocks.0.inner.0.conv.weight").as_deref(), Some("layer1.0.conv1.weight"));
        assert_eq!(r18("backbone.ResNet.blocks.3.last_bn.beta").as_deref(), Some("layer2.1.bn2.bias"));
        assert_eq!(
            r18("backbone.ResNet.blocks.2.downsample.bn.running_var").as_deref(),
            Some("layer2.0.downsample.1.running_var")
        );
        assert_eq!(r18("backbone.ResNet.blocks.7.last.weight").as_deref(), Some("layer4.1.conv2.weight"));
        assert_eq!(r18("backbone.ResNet.blocks.8.last.weight"), None, "ResNet-18 has 8 blocks");
        let r50 = |n: &str| to_torch(Arch::Resnet50, n);
        assert_eq!(
            r50("backbone.ResNet.blocks.3.inner.1.bn.running_mean").as_deref(),
            Some("layer2.0.bn2.running_mean")
        );
        assert_eq!(r50("backbone.ResNet.blocks.15.last.weight").as_deref(), Some("layer4.2.conv3.weight"));
        assert_eq!(r50("head.out.weight"), None);
        assert_eq!(to_torch(Arch::Convnet, "backbone.ConvNet.layers.3.bn.beta").as_deref(), Some("layers.3.bn.bias"));
    }
}
