//! The `selfsup` command line: argument definitions (clap derive) and dispatch to one module
//! per subcommand.

mod bench;
mod demo;
mod embed;
mod encoder_args;
mod export;
mod knn;
mod neighbors;
mod pack;
mod pretrain;
mod preview;
mod probe;
mod report;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Self-supervised pretraining of vision encoders (SimCLR, MoCo, BYOL, DINO, ...).
#[derive(Parser, Debug)]
#[command(name = "selfsup", version, about, propagate_version = true)]
pub struct Cli {
    /// Worker threads for decoding, augmentation and CPU compute (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars or informational messages (errors and warnings still go to stderr).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a PNG grid of images and their two augmented views, to check the augmentations.
    Preview(preview::PreviewArgs),
    /// Generate a small labelled image set, pretrain on it, evaluate and write a report.
    Demo(demo::DemoArgs),
    /// Pretrain an encoder on a folder of images (SimCLR, or the method of `[method]`).
    Pretrain(pretrain::PretrainArgs),
    /// Weighted k-NN accuracy of an encoder (or a baseline) on labelled folders.
    Knn(knn::KnnArgs),
    /// Linear-probe accuracy of an encoder (or a baseline) on labelled folders.
    Probe(probe::ProbeArgs),
    /// Write the backbone embeddings of a folder as .npy (plus a CSV of paths and labels).
    Embed(embed::EmbedArgs),
    /// Show a query image's nearest neighbours in a folder.
    Neighbors(neighbors::NeighborsArgs),
    /// Export the trained encoder's weights as safetensors.
    Export(export::ExportArgs),
    /// Write report.html for a run folder.
    Report(report::ReportArgs),
    /// Write an image folder as WebDataset tar shards (readable as --data).
    Pack(pack::PackArgs),
    /// Measure the throughput of a pipeline stage on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// The configuration options every command that reads a configuration shares.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (see configs/); defaults are used for keys it omits.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a configuration key, e.g. --set augment.flip.p=0.3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<crate::config::Config> {
        crate::config::Config::load(self.config.as_deref(), &self.sets)
    }
}

/// Parses the command line and runs the command.
pub fn run(cli: Cli) -> Result<()> {
    let world = crate::dist::world();
    // Several ranks on one machine share its cores, unless told otherwise.
    let threads = cli.threads.or_else(|| {
        std::env::var_os("RAYON_NUM_THREADS").is_none().then(|| crate::dist::default_threads(&*world)).flatten()
    });
    if let Some(n) = threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    let distributed = matches!(
        cli.command,
        Command::Pretrain(_)
            | Command::Knn(_)
            | Command::Probe(_)
            | Command::Embed(_)
            | Command::Bench(bench::BenchCommand::Train(_))
    );
    if world.size() > 1 && !distributed {
        anyhow::bail!(
            "this command runs in one process; start it without mpirun/srun (only pretrain, knn, probe, embed and bench train use several ranks)"
        );
    }
    // Under several ranks only rank 0 shows progress and messages.
    let verbose = !cli.quiet && crate::dist::is_root(&*world);
    match cli.command {
        Command::Preview(args) => preview::run(args, verbose),
        Command::Pretrain(args) => pretrain::run(args, verbose),
        Command::Demo(args) => demo::run(args, verbose),
        Command::Knn(args) => knn::run(args, verbose),
        Command::Probe(args) => probe::run(args, verbose),
        Command::Embed(args) => embed::run(args, verbose),
        Command::Neighbors(args) => neighbors::run(args, verbose),
        Command::Export(args) => export::run(args, verbose),
        Command::Report(args) => report::run(args, verbose),
        Command::Pack(args) => pack::run(args, verbose),
        Command::Bench(cmd) => bench::run(cmd, cli.threads),
    }
}
