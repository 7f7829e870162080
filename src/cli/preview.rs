//! `selfsup preview`: the augmentation preview grid as a PNG.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use selfsup_augment::Augmenter;
use selfsup_datasets::split::stratified_subset;

use super::ConfigArgs;
use crate::data::open_dataset;
use crate::preview::grid;

#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// Dataset: an image folder, CIFAR binary folder/file or IDX folder/file.
    #[arg(long)]
    pub data: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images (rows), picked evenly across classes.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: PreviewArgs, verbose: bool) -> Result<()> {
    anyhow::ensure!(args.n >= 1, "--n must be at least 1");
    let cfg = args.config.load()?;
    let aug = Augmenter::new(cfg.augment.clone())?;
    let ds = open_dataset(&args.data, &cfg, verbose)?;
    let picks = stratified_subset(&ds.labels(), args.n, cfg.seed);
    let img = grid(&ds, &aug, aug.small_views().as_ref(), &picks, cfg.seed);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::atomic::write_with(&args.out, |path| {
        img.save_with_format(path, image::ImageFormat::Png).map_err(Into::into)
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    if verbose {
        eprintln!("wrote {} ({} rows: original, view 1, view 2)", args.out.display(), picks.len());
    }
    Ok(())
}
