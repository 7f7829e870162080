//! `selfsup demo`: the one-command tour for a newcomer with no dataset. Generates a labelled
//! folder of shapes and textures, pretrains the convnet on it (a few minutes on a CPU), measures
//! k-NN and linear-probe accuracy of the trained encoder against the random-init and pixel
//! baselines, and writes the run's report.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use selfsup_datasets::synthetic::write_shapes;

use super::ConfigArgs;
use super::encoder_args::EncoderArgs;
use super::knn::{KnnArgs, evaluate as knn};
use super::probe::{ProbeArgs, evaluate as probe};
use crate::backend::BackendChoice;
use crate::config::Config;
use crate::eval::record::Baseline;
use crate::train::{PretrainOptions, pretrain};

/// The demo's recipe: the CPU convnet, SimCLR's CIFAR augmentations adapted to this data, SGD
/// with warm-up. In the generated images colour is random and says nothing about the class,
/// so the colour augmentation covers the whole hue circle and drops colour half the time, and
/// crops keep at least a quarter of the image so that small shapes stay in view. (With the
/// plain CIFAR recipe the encoder learns colour: 45 % k-NN instead of 83 %, BENCHMARKS.md.)
pub const DEMO_CONFIG: &str = r#"
seed = 0

[augment]
preset = "cifar"

[augment.crop]
scale = [0.25, 1.0]
ratio = [0.75, 1.3333333333333333]

[augment.color_jitter]
p = 0.8
brightness = 0.4
contrast = 0.4
saturation = 0.4
hue = 0.5

[augment.grayscale]
p = 0.5

[model]
arch = "convnet"

[model.head]
hidden_dim = 0
out_dim = 128
layers = 2

[loss]
kind = "ntxent"
temperature = 0.5

[optim]
kind = "sgd"
lr = 0.3
lr_scaling = "linear"
momentum = 0.9
weight_decay = 5e-4
warmup_epochs = 1.0

[train]
epochs = 10
batch_size = 128
backend = "auto"
log_every = 5
checkpoint_every = 1

[monitor]
every = 20
holdout = 200
knn_every = 1
knn_bank = 1000
knn_k = 20
"#;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the generated images and the run.
    #[arg(long, default_value = "selfsup-demo")]
    pub out: PathBuf,
    /// Backend (default: auto).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Training images per class (10 classes; 100 test images per class are made too).
    #[arg(long, default_value_t = 300)]
    pub per_class: usize,
    /// Overrides of the demo's configuration, e.g. --set train.epochs=20.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

pub fn run(args: DemoArgs, verbose: bool) -> Result<()> {
    if args.per_class < 10 {
        bail!("--per-class {}: at least 10 images per class", args.per_class);
    }
    let data = args.out.join("data");
    let run_dir = args.out.join("run");
    if run_dir.exists() {
        bail!("{} already holds a demo run: delete it or pass another --out", run_dir.display());
    }
    let test_per_class = (args.per_class / 3).clamp(10, 100);
    if !data.join("train").exists() {
        if verbose {
            eprintln!(
                "generating {} training and {} test images of 10 classes in {}",
                10 * args.per_class,
                10 * test_per_class,
                data.display()
            );
        }
        write_shapes(&data, args.per_class, test_per_class, 32, 7)?;
    }
    let mut table: toml::Table = toml::from_str(DEMO_CONFIG)?;
    for s in &args.sets {
        let (k, v) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--set {s:?}: expected key=value"))?;
        let text = format!("{} = {}", k.trim(), v.trim());
        let over: toml::Table =
            toml::from_str(&text).or_else(|_| toml::from_str(&format!("{} = {:?}", k.trim(), v.trim())))?;
        merge(&mut table, over);
    }
    let config = Config::from_table(table)?;
    let (train, test) = (data.join("train"), data.join("test"));
    pretrain(&PretrainOptions {
        data: train.clone(),
        out: run_dir.clone(),
        config,
        config_given: true,
        backend: args.backend,
        resume: crate::train::run_dir::Resume::No,
        resume_from: None,
        init: None,
        stop_after_steps: None,
        stop_on_collapse: false,
        verbose,
    })?;
    let backend = args.backend.unwrap_or(BackendChoice::Auto);
    let mut rows = Vec::new();
    for baseline in [None, Some(Baseline::RandomInit), Some(Baseline::Pixels)] {
        let encoder = EncoderArgs {
            model: Some(run_dir.clone()),
            baseline,
            weights: None,
            backend,
            batch_size: 256,
            eval_dir: None,
            config: ConfigArgs::default(),
        };
        let k = knn(
            &KnnArgs {
                encoder: encoder.clone(),
                train: train.clone(),
                test: test.clone(),
                k: vec![20],
                t: 0.1,
                train_limit: None,
                test_limit: None,
            },
            false,
        )?
        .context("the demo runs in one process")?;
        let p = probe(
            &ProbeArgs {
                encoder,
                train: train.clone(),
                test: test.clone(),
                wd: vec![1e-5, 1e-4, 1e-3, 1e-2],
                val_fraction: 0.1,
                max_iter: 200,
                train_limit: None,
                test_limit: None,
            },
            false,
        )?
        .context("the demo runs in one process")?;
        let k1 = k.knn.as_ref().map_or(0.0, |r| r[0].top1);
        let p1 = p.probe.as_ref().map_or(0.0, |r| r.top1);
        rows.push((k.features.clone(), k1, p1));
    }
    let report = crate::report::html::write_report(&run_dir, backend, verbose)?;
    println!("{:<12} {:>12} {:>16}", "features", "k-NN top-1", "linear probe top-1");
    for (name, k1, p1) in &rows {
        println!("{name:<12} {:>11.1}% {:>15.1}%", 100.0 * k1, 100.0 * p1);
    }
    println!("report: {}", report.display());
    Ok(())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
