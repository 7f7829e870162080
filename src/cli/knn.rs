//! `selfsup knn`: weighted k-NN accuracy of an encoder (or a baseline) on a labelled folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::encoder_args::EncoderArgs;
use crate::eval::knn::knn;
use crate::eval::record::EvalRecord;
use crate::eval::retrieval::retrieval;

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Labelled images to search (the neighbours).
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled images to classify.
    #[arg(long)]
    pub test: PathBuf,
    /// Number of neighbours; several comma-separated values are answered in one pass.
    #[arg(long, value_delimiter = ',', default_value = "200")]
    pub k: Vec<usize>,
    /// Temperature of the exp(sim / t) vote.
    #[arg(long, default_value_t = 0.1)]
    pub t: f64,
    /// Use a stratified subset of this many training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use a stratified subset of this many test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
}

/// Runs k-NN and returns the record (saved when the encoder has an output folder).
/// `None` on ranks other than 0 of a run under mpirun (they only help extract features).
pub fn evaluate(args: &KnnArgs, verbose: bool) -> Result<Option<EvalRecord>> {
    if args.k.contains(&0) {
        bail!("--k: every k must be at least 1");
    }
    if !(args.t > 0.0 && args.t.is_finite()) {
        bail!("--t {}: the temperature must be > 0", args.t);
    }
    let r = args.encoder.resolve(verbose)?;
    let started = Instant::now();
    let (train, test) =
        r.open_labeled((&args.train, args.train_limit), (&args.test, args.test_limit), "k-NN", verbose)?;
    let (ftr, ytr) = r.labeled_features(&train, args.encoder.batch_size, verbose)?;
    let (fte, yte) = r.labeled_features(&test, args.encoder.batch_size, verbose)?;
    if !crate::dist::is_root(&*crate::dist::world()) {
        return Ok(None);
    }
    let device = r.encoder.as_ref().map(|e| e.device().clone()).unwrap_or_else(burn::tensor::Device::flex);
    let results = knn(&ftr.emb, &ytr, &fte.emb, &yte, &args.k, args.t, &device);
    // A test image that is also a training image (the same file) is left out of its own ranking.
    let gallery: std::collections::HashMap<String, usize> = (0..train.len()).map(|i| (train.name(i), i)).collect();
    let itself: Vec<Option<usize>> = (0..test.len()).map(|q| gallery.get(&test.name(q)).copied()).collect();
    let retrieval = retrieval(&ftr.emb, &ytr, &fte.emb, &yte, &itself, &device);
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
        knn: Some(results),
        probe: None,
        retrieval: Some(retrieval),
    };
    save(&rec, r.out.as_deref(), verbose)?;
    Ok(Some(rec))
}

/// Saves a record where the evaluation has an output folder.
pub fn save(rec: &EvalRecord, dir: Option<&std::path::Path>, verbose: bool) -> Result<()> {
    if let Some(dir) = dir {
        let p = rec.save(dir)?;
        if verbose {
            eprintln!("saved {}", p.display());
        }
    }
    Ok(())
}

pub fn run(args: KnnArgs, verbose: bool) -> Result<()> {
    let Some(rec) = evaluate(&args, verbose)? else { return Ok(()) };
    println!(
        "k-NN ({} features, {} train / {} test images, t = {}):",
        rec.features, rec.train_images, rec.test_images, args.t
    );
    for k in rec.knn.iter().flatten() {
        println!("  k = {:>4}: top-1 {:6.2}%  top-5 {:6.2}%", k.k, 100.0 * k.top1, 100.0 * k.top5);
    }
    if let Some(r) = &rec.retrieval {
        let recall: Vec<String> = r.recall_at.iter().map(|x| format!("R@{} {:.2}%", x.k, 100.0 * x.recall)).collect();
        println!(
            "retrieval ({} queries{}): P@1 {:.2}%  {}  MAP@R {:.2}%",
            r.queries,
            if r.leave_one_out { ", each left out of its own ranking" } else { "" },
            100.0 * r.precision_at_1,
            recall.join("  "),
            100.0 * r.map_at_r
        );
    }
    Ok(())
}
