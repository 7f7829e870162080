//! `selfsup pack`: writes an image folder as WebDataset tar shards, readable as `--data` by every
//! command and by the `webdataset` Python package.
//!
//! The images are listed as `pretrain` lists them (class folders become `.cls` labels, their
//! names `classes.txt`), their headers checked (a file that would be skipped at training is
//! skipped now, with a warning, and counted), put in a seeded random order (so each shard mixes
//! the classes and a shuffle buffer over a few shards sees them all), and copied byte for byte
//! into shards of at most `--shard-size`. Every shard is written atomically, so an interrupted
//! pack leaves whole shards only.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use selfsup_datasets::dataset::{progress_bar, thousands};
use selfsup_datasets::decode::probe_read;
use selfsup_datasets::pack::{PackItem, plan_shards, write_shard};
use selfsup_datasets::scan::scan_folder;

use crate::config::ByteSize;

#[derive(Args, Debug)]
pub struct PackArgs {
    /// The image folder to pack (class sub-folders give labels).
    #[arg(long)]
    pub data: PathBuf,
    /// The folder to write the shards into (created; must hold no shards yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Largest shard, e.g. 1GB, 500MB, 256MiB.
    #[arg(long, default_value = "1GB", value_parser = parse_size)]
    pub shard_size: ByteSize,
    /// Seed of the order the images are packed in.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shard file names: PREFIX-000000.tar, PREFIX-000001.tar, ...
    #[arg(long, default_value = "shard")]
    pub prefix: String,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    match ByteSize::parse(s) {
        Some(b) if b.0 >= 10_240 => Ok(b),
        Some(_) => Err(format!("{s:?} is smaller than one shard can be (at least 10KB)")),
        None => Err(format!("{s:?} is not a size (e.g. 1GB, 500MB, 256MiB)")),
    }
}

/// What a pack wrote.
pub struct Packed {
    pub shards: Vec<PathBuf>,
    pub images: usize,
    pub skipped: usize,
}

pub fn run(args: PackArgs, verbose: bool) -> Result<()> {
    let packed = pack(&args, verbose)?;
    let last = packed.shards.len() - 1;
    let pattern = if last == 0 {
        packed.shards[0].display().to_string()
    } else {
        args.out.join(format!("{}-{{{:06}..{last:06}}}.tar", args.prefix, 0)).display().to_string()
    };
    if verbose {
        let skipped = if packed.skipped > 0 {
            format!(", skipped {} (see above)", thousands(packed.skipped))
        } else {
            String::new()
        };
        eprintln!(
            "packed {} images into {} shards in {}{skipped}; train with --data {}",
            thousands(packed.images),
            packed.shards.len(),
            args.out.display(),
            args.out.display()
        );
    }
    println!("{pattern}");
    Ok(())
}

/// Packs `args.data` into `args.out`.
pub fn pack(args: &PackArgs, verbose: bool) -> Result<Packed> {
    if args.prefix.is_empty() || args.prefix.contains(['/', '{', '}']) {
        bail!("--prefix {:?}: a shard name prefix cannot be empty or hold '/', '{{' or '}}'", args.prefix);
    }
    let scan = scan_folder(&args.data, verbose)?;
    for (path, reason) in &scan.unreadable {
        eprintln!("warning: skipped unreadable folder {}: {reason}", path.display());
    }
    if let Some(c) = scan.classes.iter().find(|c| c.contains(['\n', '\r'])) {
        bail!(
            "{}: the class folder {c:?} has a line break in its name, which classes.txt cannot hold",
            args.data.display()
        );
    }
    let pb = progress_bar(verbose, scan.entries.len(), "checking");
    let checked: Vec<Option<PackItem>> = scan
        .entries
        .par_iter()
        .map(|e| {
            // One open and one stat per file: the size the shard plan needs, then the header.
            let r = std::fs::File::open(&e.path)
                .and_then(|f| Ok((f.metadata()?.len(), f)))
                .map_err(|e| e.to_string())
                .and_then(|(len, f)| probe_read(f, len, &Default::default()).map(|_| len))
                .map(|len| PackItem { source: e.path.clone(), label: e.label, len });
            pb.inc(1);
            r.map_err(|reason| pb.suspend(|| eprintln!("warning: skipped {}: {reason}", e.path.display()))).ok()
        })
        .collect();
    pb.finish_and_clear();
    let skipped = checked.iter().filter(|c| c.is_none()).count() + scan.unreadable.len();
    let mut items: Vec<PackItem> = checked.into_iter().flatten().collect();
    if items.is_empty() {
        bail!("{}: no image to pack (all {} image files were skipped)", args.data.display(), thousands(skipped));
    }
    items.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(args.seed));

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let existing = std::fs::read_dir(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x.eq_ignore_ascii_case("tar")));
    if let Some(e) = existing {
        bail!(
            "{}: already holds shards ({}); pack into an empty folder",
            args.out.display(),
            e.file_name().to_string_lossy()
        );
    }

    let plan = plan_shards(&items, args.shard_size.0);
    let paths: Vec<PathBuf> = (0..plan.len()).map(|i| args.out.join(format!("{}-{i:06}.tar", args.prefix))).collect();
    let pb = progress_bar(verbose, items.len(), "packing");
    let done = AtomicUsize::new(0);
    plan.par_iter().zip(&paths).try_for_each(|(range, path)| -> Result<()> {
        write_one(path, &items[range.clone()], range.start)?;
        pb.set_position((done.fetch_add(range.len(), Ordering::Relaxed) + range.len()) as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    if !scan.classes.is_empty() {
        let text: String = scan.classes.iter().map(|c| format!("{c}\n")).collect();
        crate::atomic::write_bytes(&args.out.join("classes.txt"), text.as_bytes())?;
    }
    Ok(Packed { shards: paths, images: items.len(), skipped })
}

fn write_one(path: &Path, items: &[PackItem], first: usize) -> Result<()> {
    crate::atomic::write_with(path, |tmp| {
        let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write_shard(&mut out, items, first).with_context(|| format!("writing {}", path.display()))?;
        out.flush().with_context(|| format!("writing {}", path.display()))
    })
}
