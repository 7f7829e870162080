//! End-to-end: the encoder leaves selfsup and weights come in, as a user does it through the
//! binary. `export --format torchvision` has exactly the names, shapes and dtypes of
//! torchvision's ResNet-18/50 `state_dict()` (and of `convnet.py`), from fixtures generated
//! once with PyTorch (`benches/torchvision_keys.py`); `export --format onnx` runs in a real ONNX
//! runtime (tract) and gives `selfsup embed`'s features on the same images; `pretrain --init`
//! from each format starts with exactly the exported backbone; `embed`'s `.npy` reads the way
//! numpy reads it and its CSV maps each row to its image.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{SMOKE, embed, pretrain_args, read_npy, run, shapes_folder};
use safetensors::SafeTensors;
use selfsup::checkpoint::{Checkpoint, Position};
use selfsup::config::Config;
use selfsup::named_tensors::{self, NamedTensor};
use tract_onnx::prelude::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn smoke(sets: &[&str]) -> Config {
    Config::load(Some(Path::new(SMOKE)), &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// A checkpoint of a freshly initialized `cfg` model (no training needed to check names).
fn checkpoint_of(cfg: &Config, path: &Path) {
    let device = burn::tensor::Device::flex();
    device.seed(cfg.seed);
    let model = cfg.model.init(&device);
    Checkpoint {
        position: Position::default(),
        model: named_tensors::collect(&model),
        optimizer_steps: 0,
        optimizer: Vec::new(),
        method: Vec::new(),
        online: Vec::new(),
        config: cfg.to_toml(),
        notes: Default::default(),
    }
    .save(path)
    .unwrap();
}

/// `name → (shape, dtype)` of a safetensors file, as the fixtures write them.
fn keys_of(path: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let dtype = match v.dtype() {
                safetensors::Dtype::F32 => "float32",
                safetensors::Dtype::I64 => "int64",
                other => panic!("{n}: unexpected dtype {other:?}"),
            };
            (n, format!("{:?} {dtype}", v.shape()))
        })
        .collect()
}

/// A fixture written by `benches/torchvision_keys.py`: `name<TAB>[shape] dtype` lines.
fn fixture(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (n, rest) = l.split_once('\t').unwrap();
            (n.to_string(), rest.to_string())
        })
        .collect()
}

#[test]
fn torchvision_export_has_exactly_torchvisions_state_dict_keys_shapes_and_dtypes() {
    let d = tempfile::tempdir().unwrap();
    for (arch, stem, fixture_name) in [
        ("resnet18", "imagenet", "torchvision-resnet18.keys"),
        ("resnet50", "imagenet", "torchvision-resnet50.keys"),
        ("convnet", "cifar", "convnet-py.keys"),
    ] {
        let ck = d.path().join(format!("{arch}.safetensors"));
        checkpoint_of(&smoke(&[&format!("model.arch=\"{arch}\""), &format!("model.stem=\"{stem}\"")]), &ck);
        let out = d.path().join(arch).join("encoder.safetensors");
        let (o, err) = run(&[
            "export",
            "--model",
            ck.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "torchvision",
        ]);
        assert!(o.status.success(), "{err}");
        let (got, want) = (keys_of(&out), fixture(fixture_name));
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{arch}: missing {missing:?}, extra {extra:?}");
        for (k, v) in &want {
            assert_eq!(&got[k], v, "{arch}: {k}");
        }
        assert_eq!(out.with_file_name("convnet.py").exists(), arch == "convnet", "convnet.py beside a convnet export");
    }
    // The head has no place in a torchvision model: refused, pointing to the formats that hold it.
    let ck = d.path().join("convnet.safetensors");
    let (o, err) = run(&[
        "export",
        "--model",
        ck.to_str().unwrap(),
        "--out",
        d.path().join("x.safetensors").to_str().unwrap(),
        "--format",
        "torchvision",
        "--with-head",
    ]);
    assert!(!o.status.success() && err.contains("--format selfsup or onnx"), "{err}");
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

/// Runs an ONNX file in tract on `x` (`[n, 3, s, s]`): its outputs, flattened.
fn run_onnx(path: &Path, n: usize, s: usize, x: Vec<f32>) -> Vec<Vec<f32>> {
    let model = tract_onnx::onnx().model_for_path(path).unwrap().into_optimized().unwrap().into_runnable().unwrap();
    let input = Tensor::from_shape(&[n, 3, s, s], &x).unwrap();
    let out = model.run(tvec!(input.into())).unwrap();
    out.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()).collect()
}

#[test]
fn onnx_export_runs_in_tract_and_gives_embeds_features_and_the_heads_projections() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 3, 4, 20);
    for (arch, stem) in [("convnet", "cifar"), ("resnet18", "imagenet")] {
        let run_dir = d.path().join(arch);
        let sets = [format!("model.arch=\"{arch}\""), format!("model.stem=\"{stem}\"")];
        let mut args = pretrain_args(&data, &run_dir, &[&sets[0], &sets[1]]);
        args.extend(["--stop-after-steps", "2", "-q"].map(String::from));
        let (o, err) = run(&args);
        assert!(o.status.success(), "{err}");
        let onnx = d.path().join(format!("{arch}.onnx"));
        let (o, err) = run(&[
            "export",
            "--model",
            run_dir.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
            "--format",
            "onnx",
            "--with-head",
        ]);
        assert!(o.status.success(), "{err}");
        let npy = d.path().join(format!("{arch}.npy"));
        let (o, err) = embed(&run_dir, &data, &npy);
        assert!(o.status.success(), "{err}");
        let (rows, dim, features) = read_npy(&npy);
        assert_eq!(rows, 12);

        // The same evaluation views the backbone saw, through tract.
        let cfg = smoke(&[&sets[0], &sets[1]]);
        let ds = selfsup::data::open_dataset(&data, &cfg, false).unwrap();
        let aug = selfsup_augment::Augmenter::new(cfg.augment.clone()).unwrap();
        let idx: Vec<usize> = (0..ds.len()).collect();
        let views = selfsup::eval::features::eval_views(&aug, &ds, &idx);
        let s = aug.size();
        let out = run_onnx(&onnx, rows, s, views.clone());
        assert_eq!(out[0].len(), rows * dim, "{arch}: features [n, {dim}]");
        let mut worst = 0.0f32;
        for i in 0..rows {
            let (a, b) = (unit(&out[0][i * dim..(i + 1) * dim]), unit(&features[i * dim..(i + 1) * dim]));
            worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(worst, f32::max);
        }
        assert!(worst <= 1e-4, "{arch}: ONNX vs embed, max abs difference {worst:e} of unit-normalized features");

        // The head's projections against the encoder in selfsup, on the same views.
        let loaded = selfsup::eval::load::load(&run_dir, selfsup::backend::BackendChoice::Flex, None).unwrap();
        let x = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(views, [rows, 3, s, s]),
            loaded.device(),
        );
        let want: Vec<f32> = loaded
            .encoder
            .head
            .forward(loaded.encoder.backbone.forward(x))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = out[1].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err <= 1e-4 * scale.max(1.0), "{arch}: projections differ by {err:e} (scale {scale})");

        // The CSV beside the .npy: row i is image i, with its path and label.
        let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "index,path,label,class");
        assert_eq!(lines.len(), rows + 1);
        for (i, line) in lines[1..].iter().enumerate() {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f[0], i.to_string());
            let path = Path::new(f[1]);
            assert!(path.is_file(), "{line}");
            assert_eq!(path.parent().unwrap().file_name().unwrap().to_str().unwrap(), f[3], "class is the folder");
            assert_eq!(ds.name(i), f[1], "row {i} is image {i}");
        }
    }
}

fn backbone(path: &Path) -> Vec<NamedTensor> {
    Checkpoint::load(&path.join("checkpoint.safetensors"))
        .unwrap()
        .model
        .into_iter()
        .filter(|t| t.name.starts_with("backbone."))
        .filter(|t| !t.name.ends_with("num_batches_tracked"))
        .collect()
}

#[test]
fn pretrain_init_starts_from_each_format_with_exactly_its_backbone_and_names_a_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let pretrain = |out: &Path, extra: &[&str]| {
        let mut args = pretrain_args(&data, out, &["model.arch=\"resnet18\""]);
        args.extend(["-q"].iter().chain(extra).map(|a| a.to_string()));
        run(&args)
    };
    let a = d.path().join("a");
    let (o, err) = pretrain(&a, &["--stop-after-steps", "2"]);
    assert!(o.status.success(), "{err}");
    let want = backbone(&a);
    let tv = d.path().join("tv.safetensors");
    let own = d.path().join("own.safetensors");
    for (file, format) in [(&tv, "torchvision"), (&own, "selfsup")] {
        let (o, err) =
            run(&["export", "--model", a.to_str().unwrap(), "--out", file.to_str().unwrap(), "--format", format]);
        assert!(o.status.success(), "{err}");
    }
    for (i, init) in [tv.as_path(), own.as_path(), a.as_path()].into_iter().enumerate() {
        let b = d.path().join(format!("b{i}"));
        let (o, err) = pretrain(&b, &["--init", init.to_str().unwrap(), "--stop-after-steps", "0"]);
        assert!(o.status.success(), "{init:?}: {err}");
        assert_eq!(backbone(&b), want, "--init {init:?}: the backbone is the exported one, bit for bit");
        let ck = Checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ck.position.global_step, 0);
        assert!(ck.notes.get("init").is_some_and(|p| p.contains(init.file_name().unwrap().to_str().unwrap())));
    }
    // A CIFAR-stem ResNet-18 cannot take an ImageNet-stem file: the first mismatch is named.
    let imagenet = d.path().join("imagenet.safetensors");
    let imagenet_ck = d.path().join("imagenet-ck.safetensors");
    checkpoint_of(&smoke(&["model.arch=\"resnet18\"", "model.stem=\"imagenet\""]), &imagenet_ck);
    let (o, err) = run(&[
        "export",
        "--model",
        imagenet_ck.to_str().unwrap(),
        "--out",
        imagenet.to_str().unwrap(),
        "--format",
        "torchvision",
    ]);
    assert!(o.status.success(), "{err}");
    let (o, err) = pretrain(&d.path().join("c"), &["--init", imagenet.to_str().unwrap(), "--stop-after-steps", "0"]);
    assert!(!o.status.success());
    assert!(
        err.contains("conv1.weight has shape [64, 3, 7, 7]")
            && err.contains("expects [64, 3, 3, 3]")
            && err.contains("model.stem"),
        "{err}"
    );
    // A convnet from a ResNet file: the first tensor it lacks is named.
    let mut args = pretrain_args(&data, &d.path().join("e"), &[]);
    args.extend(["--init", tv.to_str().unwrap(), "--stop-after-steps", "0"].map(String::from));
    let (o, err) = run(&args);
    assert!(!o.status.success() && err.contains("without layers.0.conv.weight"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
}
