//! `selfsup probe`: a linear probe on frozen features, with the weight decay picked on a
//! validation split; reports top-1/top-5 and per-class accuracy and writes the confusion matrix.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::encoder_args::EncoderArgs;
use super::knn::save;
use crate::eval::confusion;
use crate::eval::probe::{ProbeConfig, probe};
use crate::eval::record::EvalRecord;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Labelled training images.
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled test images.
    #[arg(long)]
    pub test: PathBuf,
    /// Weight decays to try (comma-separated); the best on the validation split is used.
    #[arg(long, value_delimiter = ',', default_value = "1e-6,1e-5,1e-4,1e-3,1e-2")]
    pub wd: Vec<f64>,
    /// Fraction of the training images held out to pick the weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// L-BFGS iterations per fit.
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[arg(long)]
    pub test_limit: Option<usize>,
}

/// `None` on ranks other than 0 of a run under mpirun (they only help extract features).
pub fn evaluate(args: &ProbeArgs, verbose: bool) -> Result<Option<EvalRecord>> {
    if args.wd.is_empty() || args.wd.iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
        bail!("--wd {:?}: weight decays must be >= 0", args.wd);
    }
    if !(0.0..1.0).contains(&args.val_fraction) {
        bail!("--val-fraction {}: must be in [0, 1)", args.val_fraction);
    }
    let r = args.encoder.resolve(verbose)?;
    let started = Instant::now();
    let (train, test) =
        r.open_labeled((&args.train, args.train_limit), (&args.test, args.test_limit), "the probe", verbose)?;
    if train.classes() != test.classes() {
        bail!("--train and --test have different classes ({:?} vs {:?})", train.classes(), test.classes());
    }
    let (ftr, ytr) = r.labeled_features(&train, args.encoder.batch_size, verbose)?;
    let (fte, yte) = r.labeled_features(&test, args.encoder.batch_size, verbose)?;
    if !crate::dist::is_root(&*crate::dist::world()) {
        return Ok(None);
    }
    if verbose {
        eprintln!("fitting the linear probe ({} weight decays, {} features)", args.wd.len(), ftr.dim());
    }
    let cfg = ProbeConfig {
        wd_grid: args.wd.clone(),
        val_fraction: args.val_fraction,
        max_iter: args.max_iter,
        seed: r.config.seed,
    };
    let result = probe(&ftr.emb, &ytr, &fte.emb, &yte, &cfg);
    if let Some(dir) = &r.out {
        std::fs::create_dir_all(dir)?;
        let stem = format!("confusion-{}", r.name);
        confusion::write(
            dir,
            &stem,
            &format!("linear probe ({}) — confusion", r.name),
            train.classes(),
            &result.confusion,
        )?;
        if verbose {
            eprintln!("wrote {}/{stem}.csv and .png", dir.display());
        }
    }
    let rec = EvalRecord {
        features: r.name.clone(),
        weights: r.weights().map(|w| w.name().to_string()),
        train: args.train.display().to_string(),
        test: args.test.display().to_string(),
        train_images: train.len(),
        test_images: test.len(),
        feature_dim: ftr.dim(),
        classes: train.classes().to_vec(),
        seconds: started.elapsed().as_secs_f64(),
        knn: None,
        probe: Some(result),
        retrieval: None,
    };
    save(&rec, r.out.as_deref(), verbose)?;
    Ok(Some(rec))
}

pub fn run(args: ProbeArgs, verbose: bool) -> Result<()> {
    let Some(rec) = evaluate(&args, verbose)? else { return Ok(()) };
    let p = rec.probe.as_ref().expect("probe record");
    println!(
        "linear probe ({} features, {} train / {} test images): top-1 {:.2}%  top-5 {:.2}%  (weight decay {:e}{})",
        rec.features,
        rec.train_images,
        rec.test_images,
        100.0 * p.top1,
        100.0 * p.top5,
        p.weight_decay,
        if p.converged { "" } else { ", L-BFGS hit --max-iter" }
    );
    for (i, acc) in p.per_class.iter().enumerate() {
        let name = rec.classes.get(i).cloned().unwrap_or_else(|| i.to_string());
        println!("  {name:>16}: {:6.2}%", 100.0 * acc);
    }
    Ok(())
}
