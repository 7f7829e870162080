//! `selfsup bench …`: the benchmark subcommands' arguments and their printed reports.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use selfsup_augment::{AugmentConfig, Preset};

use super::ConfigArgs;
use crate::backend::{self, BackendChoice};
use crate::bench::{self, augment::BenchImages, median};
use crate::data::open_dataset;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Two-view augmentation throughput (images/s, both views) from decoded images.
    Augment(AugmentArgs),
    /// Decoding a dataset into the in-memory cache.
    Decode(DecodeArgs),
    /// Listing an image folder (the scan every command starts with) and its memory per image.
    Scan(ScanArgs),
    /// Training-step throughput (pairs/s) on pre-made tensors and with the real data path.
    Train(TrainArgs),
    /// The step's operations one at a time on flex: burn's ops against selfsup's CPU kernels.
    Ops(OpsArgs),
}

#[derive(Args, Debug)]
pub struct OpsArgs {
    /// Networks whose layer shapes to time.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["convnet", "resnet18"])]
    pub arch: Vec<crate::model::Arch>,
    /// Image pairs per batch (default: 256 for the convnet, 128 for ResNets).
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Timed rounds per op (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Images to train on (a subset of `batch × (steps + warmup)` is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Backend (default: train.backend from the configuration).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Timed steps per mode.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first (allocation, autotuning, shader compilation).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Which data path to time.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: TrainMode,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainMode {
    /// Batches made before timing: compute alone.
    Premade,
    /// Batches augmented on the loader thread during the steps, as in `pretrain`.
    Loader,
    Both,
}

#[derive(Args, Debug)]
pub struct AugmentArgs {
    /// Dataset to take images from: decoded once before timing when it fits `data.cache_limit`;
    /// with `--set data.cache_limit=0` every image is read and decoded as its views are made
    /// (the streaming path, timed whole).
    #[arg(long, conflicts_with = "synthetic")]
    pub data: Option<PathBuf>,
    /// Use synthetic images of this size instead, e.g. 500x375.
    #[arg(long, value_name = "WxH")]
    pub synthetic: Option<String>,
    /// Augmentation preset (overridden by --config/--set keys).
    #[arg(long, default_value = "cifar")]
    pub preset: String,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Images augmented per timed round.
    #[arg(long, default_value_t = 4096)]
    pub images: usize,
    /// Timed rounds (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => bail!("--synthetic {s:?}: expected WIDTHxHEIGHT, e.g. 500x375"),
    }
}

pub fn run(cmd: BenchCommand, threads: Option<usize>) -> Result<()> {
    let threads = threads.unwrap_or_else(rayon::current_num_threads);
    match cmd {
        BenchCommand::Augment(a) => {
            let mut sets = vec![format!("augment.preset={}", a.preset)];
            sets.extend(a.config.sets.iter().cloned());
            let cfg = crate::config::Config::load(a.config.config.as_deref(), &sets)?;
            let ds;
            let source = match (&a.data, &a.synthetic) {
                (Some(path), _) => {
                    ds = open_dataset(path, &cfg, false)?;
                    BenchImages::Dataset(&ds)
                }
                (None, Some(s)) => {
                    let (width, height) = parse_size(s)?;
                    BenchImages::Synthetic { width, height, count: 64 }
                }
                (None, None) => bail!("give --data DIR or --synthetic WxH"),
            };
            let aug: &AugmentConfig = &cfg.augment;
            let r = bench::augment::run(aug, &source, threads, a.batch, a.images, a.rounds)?;
            let preset =
                a.preset.parse::<Preset>().map(|p| format!("{p:?}").to_lowercase()).unwrap_or(a.preset.clone());
            println!(
                "augment preset={preset} size={} blur_p={} threads={} batch={}: median {:.0} images/s ({}) over {} rounds of {} images [min {:.0}, max {:.0}]",
                aug.size,
                aug.blur.p,
                r.threads,
                a.batch,
                r.median_images_per_sec(),
                match aug.small_views {
                    0 => format!("{} views each", aug.views),
                    s => format!("{} views + {s} small views of {} px each", aug.views, aug.small.size),
                },
                r.seconds.len(),
                r.images_per_round,
                r.images_per_round as f64 / r.seconds.iter().cloned().fold(0.0, f64::max),
                r.images_per_round as f64 / r.seconds.iter().cloned().fold(f64::INFINITY, f64::min),
            );
        }
        BenchCommand::Train(t) => {
            let cfg = t.config.load()?;
            let chosen = backend::choose(t.backend.unwrap_or(cfg.train.backend))?;
            let needed = cfg.train.batch_size * (t.steps + t.warmup);
            let mut cfg = cfg;
            cfg.data.limit = Some(cfg.data.limit.map_or(needed, |l| l.min(needed)));
            let ds = open_dataset(&t.data, &cfg, false)?;
            let modes: &[bool] = match t.mode {
                TrainMode::Premade => &[false],
                TrainMode::Loader => &[true],
                TrainMode::Both => &[false, true],
            };
            let mut totals = Vec::new();
            for &loader in modes {
                let r = bench::train::run(&cfg, &chosen.device, &ds, t.steps, t.warmup, loader)?;
                let ranks = if r.ranks > 1 {
                    format!(
                        " ranks={} ({:.1}% of the time in collectives; gradient all-reduce {:.1} MB, projection all-gather {:.2} MB per step)",
                        r.ranks,
                        100.0 * r.comm_seconds / r.total_seconds.max(1e-9),
                        4.0 * r.trainable_values as f64 / 1e6,
                        (2 * r.batch * cfg.model.head.out_dim * 4) as f64 / 1e6
                    )
                } else {
                    String::new()
                };
                let micro = match cfg.train.micro_batch {
                    0 => String::new(),
                    m => format!(" micro_batch={m}"),
                };
                let views = match (cfg.augment.views, cfg.augment.small_views) {
                    (2, 0) => String::new(),
                    (v, s) => format!(" views={v}+{s}x{}px", cfg.augment.small.size),
                };
                root_println(format!(
                    "train method={} arch={:?} batch={}{micro}{views}{ranks} size={} device=\"{}\" data={}: median step {:.3} s = {:.1} pairs/s; {} steps in {:.2} s",
                    cfg.method.kind.name(),
                    cfg.model.arch,
                    r.batch,
                    cfg.augment.size,
                    chosen.description,
                    if loader { "loader (augmenting during the steps)" } else { "pre-made tensors" },
                    median(&r.step_seconds),
                    r.pairs_per_sec(),
                    r.step_seconds.len(),
                    r.total_seconds
                ));
                if !r.online_seconds.is_empty() {
                    let (online, step) = (median(&r.online_seconds), median(&r.step_seconds));
                    root_println(format!(
                        "online linear classifier ({} classes, in the step above): median {:.2} ms a step = {:.2}% of the step without it",
                        ds.classes().len(),
                        1e3 * online,
                        100.0 * online / (step - online).max(1e-9)
                    ));
                }
                totals.push(r.total_seconds);
            }
            if let [premade, loader] = totals[..] {
                root_println(format!("loader / pre-made wall time: {:.3}x", loader / premade));
            }
            if let Some(rss) = bench::train::peak_rss_bytes() {
                root_println(format!("peak RSS {:.0} MiB (rank 0)", rss as f64 / (1 << 20) as f64));
            }
        }
        BenchCommand::Ops(o) => {
            if o.rounds == 0 {
                bail!("bench ops: --rounds must be at least 1");
            }
            for &arch in &o.arch {
                let pairs = o.pairs.unwrap_or(if arch == crate::model::Arch::Convnet { 256 } else { 128 });
                println!(
                    "\n{arch:?}, {pairs} pairs ({} images) of 32 px, flex, {threads} threads: median ms per call",
                    2 * pairs
                );
                println!("| layer (×per step) | op | burn | selfsup | speed-up |");
                println!("| --- | --- | ---: | ---: | ---: |");
                let timings = bench::ops::run_layers(&bench::ops::layers(arch, pairs), o.rounds);
                let mut totals = [[0.0; 2]; 5];
                for t in &timings {
                    for (k, op) in bench::ops::OPS.iter().enumerate() {
                        let [b, s] = t.ms[k];
                        println!(
                            "| {} (×{}) | {op} | {b:.1} | {s:.1} | {:.2}× |",
                            t.layer.label(),
                            t.layer.count,
                            b / s
                        );
                        totals[k][0] += b * t.layer.count as f64;
                        totals[k][1] += s * t.layer.count as f64;
                    }
                }
                for (k, op) in bench::ops::OPS.iter().enumerate() {
                    let [b, s] = totals[k];
                    println!("| **all 3×3 layers of a step** | {op} | {b:.0} | {s:.0} | {:.2}× |", b / s);
                }
                let mut cfg = crate::config::Config::default();
                cfg.model.arch = arch;
                let update = bench::ops::optimizer_update_ms(&cfg, o.rounds);
                println!("| optimizer update ({:?}, whole model) | | {update:.1} | | |", cfg.optim.kind);
            }
        }
        BenchCommand::Scan(a) => {
            let runs = bench::scan::run(&a.data, threads, a.rounds)?;
            let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
            let last = runs.last().expect("at least one round");
            println!(
                "scan {} threads={}: {} images in median {:.2} s = {:.0} images/s (rounds: {}); {:.0} bytes per image listed",
                a.data.display(),
                threads,
                last.images,
                median(&secs),
                last.images as f64 / median(&secs),
                secs.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", "),
                last.bytes_per_image,
            );
        }
        BenchCommand::Decode(d) => {
            let cfg = d.config.load()?;
            let runs = bench::decode::run(&d.data, &cfg, threads, d.rounds)?;
            let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
            let last = runs.last().expect("at least one round");
            println!(
                "decode {} threads={}: {} images in median {:.2} s = {:.0} images/s; cache {} pixel bytes, {} allocated ({:.3}x)",
                d.data.display(),
                threads,
                last.images,
                median(&secs),
                last.images as f64 / median(&secs),
                last.cached_bytes,
                last.allocated_bytes,
                last.allocated_bytes as f64 / last.cached_bytes.max(1) as f64,
            );
        }
    }
    Ok(())
}

/// Prints on rank 0 only (every rank measures; one reports).
fn root_println(line: String) {
    if crate::dist::is_root(&*crate::dist::world()) {
        println!("{line}");
    }
}
