//! `selfsup neighbors`: a query image and its nearest images in a folder, as a PNG row.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::RgbImage;
use selfsup_augment::{Augmenter, ImageRef};
use selfsup_datasets::decode::{DecodeOptions, decode_file};

use super::encoder_args::EncoderArgs;
use crate::eval::features::Extractor;
use crate::neighbors::{grid, nearest};

#[derive(Args, Debug)]
pub struct NeighborsArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Images to search.
    #[arg(long)]
    pub data: PathBuf,
    /// The query image file.
    #[arg(long)]
    pub query: PathBuf,
    /// Neighbours to show.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: NeighborsArgs, verbose: bool) -> Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let r = args.encoder.resolve(verbose)?;
    let decode = DecodeOptions { load_size: r.config.data.load_size, max_pixels: r.config.data.max_pixels };
    let q = decode_file(&args.query, &decode).map_err(|e| anyhow::anyhow!("{}: {e}", args.query.display()))?;
    let ds = r.open(&args.data, None, verbose)?;
    let bank = r.features(&ds, args.encoder.batch_size, verbose)?;
    // The query's features, through the same evaluation view.
    let aug = Augmenter::new(r.config.augment.clone())?;
    let mut view = vec![0.0f32; aug.view_len()];
    let one = [ImageRef::new(q.width, q.height, &q.pixels)];
    aug.eval_batch(&one[..], &[0], &mut view);
    let qf: Vec<f32> = match r.extractor() {
        Extractor::Pixels => view,
        Extractor::Encoder(e, device) => {
            use burn::prelude::*;
            let s = aug.size();
            let x = Tensor::<4>::from_data(TensorData::new(view, [1, 3, s, s]), device);
            e.backbone.forward(x).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 features")
        }
    };
    let nb = nearest(&bank.emb, &qf, args.k, None);
    let query = RgbImage::from_raw(q.width, q.height, q.pixels).context("query buffer")?;
    let cell = crate::preview::cell_size(r.config.augment.size.min(128));
    let img = grid(&ds, &[(query, nb.iter().map(|p| p.0).collect())], cell);
    let mut text = vec![("features", r.name.clone()), ("query", args.query.display().to_string())];
    if let Some(e) = &r.encoder {
        text.push(("model", e.origin.clone()));
    }
    if let Some(w) = r.weights() {
        text.push(("weights", w.name().to_string()));
    }
    crate::neighbors::save_png(&args.out, &img, &text)?;
    for (rank, (i, sim)) in nb.iter().enumerate() {
        println!("{:>3}  {:.4}  {}", rank + 1, sim, ds.name(*i));
    }
    if verbose {
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}
