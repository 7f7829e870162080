//! `selfsup embed`: backbone embeddings of a folder as a NumPy `.npy` (float32, N × d), a CSV of
//! the images' paths and labels in the same order, and a JSON of what produced them (the
//! checkpoint, which network of it — `weights`: student or teacher — the architecture).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::encoder_args::EncoderArgs;
use crate::npy;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Images to embed.
    #[arg(long)]
    pub data: PathBuf,
    /// Output .npy file; the CSV is written beside it (same name, .csv).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: EmbedArgs, verbose: bool) -> Result<()> {
    let r = args.encoder.resolve(verbose)?;
    let ds = r.open(&args.data, None, verbose)?;
    let f = r.features(&ds, args.encoder.batch_size, verbose)?;
    if !crate::dist::is_root(&*crate::dist::world()) {
        return Ok(()); // under mpirun, rank 0 writes the files
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    npy::write_f32(&args.out, f.n(), f.dim(), &f.emb.values)?;
    let mut csv = String::from("index,path,label,class\n");
    let quote =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    for i in 0..ds.len() {
        let (label, class) = match ds.label(i) {
            Some(l) => (l.to_string(), ds.classes().get(l as usize).cloned().unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(csv, "{i},{},{label},{}", quote(&ds.name(i)), quote(&class));
    }
    let csv_path = args.out.with_extension("csv");
    crate::atomic::write_bytes(&csv_path, csv.as_bytes())?;
    let about = serde_json::json!({
        "features": r.name,
        "model": r.encoder.as_ref().map(|e| e.origin.clone()),
        "weights": r.weights().map(|w| w.name()),
        "method": r.config.method.kind.name(),
        "arch": format!("{:?}", r.config.model.arch).to_lowercase(),
        "feature_dim": f.dim(),
        "images": f.n(),
        "data": args.data.display().to_string(),
    });
    let json_path = args.out.with_extension("json");
    crate::atomic::write_bytes(&json_path, format!("{about:#}\n").as_bytes())?;
    if verbose {
        eprintln!(
            "wrote {} ({} × {} float32), {} and {}",
            args.out.display(),
            f.n(),
            f.dim(),
            csv_path.display(),
            json_path.display()
        );
    }
    Ok(())
}
